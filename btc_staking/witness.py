"""Witness stacks for every Babylon spend path (Go witness_utils.go ordering)."""

from __future__ import annotations

from typing import Mapping, Sequence

from .errors import InvalidKeyError, InvalidSignatureError
from .keys import to_xonly

__all__ = [
    "ordered_sig_items",
    "covenant_sig_items",
    "fp_sig_items",
    "timelock_witness",
    "unbonding_witness",
    "slashing_witness",
    "key_path_witness",
]


def _check_sig(sig: bytes) -> bytes:
    if not isinstance(sig, (bytes, bytearray)) or len(sig) != 64:
        raise InvalidSignatureError(f"BIP-340 signature must be 64 bytes, got {len(sig) if isinstance(sig, (bytes, bytearray)) else type(sig).__name__}")
    return bytes(sig)


def ordered_sig_items(keys: Sequence[bytes], sigs: Mapping[bytes, bytes], required: int) -> list[bytes]:
    """Witness items for a CHECKSIGADD multisig: keys in DESCENDING x-only order, the first `required`
    available signatures kept (Go behaviour), every other slot an empty byte string."""
    xkeys = sorted((to_xonly(k) for k in keys), reverse=True)
    by_x = {to_xonly(k): _check_sig(s) for k, s in sigs.items()}
    unknown = set(by_x) - set(xkeys)
    if unknown:
        raise InvalidKeyError(f"signature for a key not in the multisig: {sorted(unknown)[0].hex()}")
    items, used = [], 0
    for k in xkeys:
        if k in by_x and used < required:
            items.append(by_x[k])
            used += 1
        else:
            items.append(b"")
    if used < required:
        raise InvalidSignatureError(f"need {required} signatures, only {used} provided")
    return items


def covenant_sig_items(covenant_pks: Sequence[bytes], covenant_sigs: Mapping[bytes, bytes], quorum: int) -> list[bytes]:
    """Covenant part of the witness: descending key order, exactly `quorum` non-empty signatures."""
    return ordered_sig_items(covenant_pks, covenant_sigs, quorum)


def fp_sig_items(fp_pks: Sequence[bytes], fp_sigs: Mapping[bytes, bytes]) -> list[bytes]:
    """Finality-provider part of the slashing witness: exactly one non-empty signature."""
    return ordered_sig_items(fp_pks, fp_sigs, 1)


def _leaf(script: bytes, control_block: bytes) -> list[bytes]:
    if not script:
        raise InvalidSignatureError("leaf script must not be empty")
    if len(control_block) < 33 or (len(control_block) - 33) % 32:
        raise InvalidSignatureError("malformed control block")
    return [bytes(script), bytes(control_block)]


def timelock_witness(staker_sig: bytes, leaf_script: bytes, control_block: bytes) -> list[bytes]:
    """[staker_sig, timelock_script, control_block]."""
    return [_check_sig(staker_sig)] + _leaf(leaf_script, control_block)


def unbonding_witness(
    covenant_pks: Sequence[bytes],
    covenant_sigs: Mapping[bytes, bytes],
    quorum: int,
    staker_sig: bytes,
    leaf_script: bytes,
    control_block: bytes,
) -> list[bytes]:
    """[cov_sig(desc)…, staker_sig, unbonding_script, control_block]."""
    return covenant_sig_items(covenant_pks, covenant_sigs, quorum) + [_check_sig(staker_sig)] + _leaf(
        leaf_script, control_block
    )


def slashing_witness(
    covenant_pks: Sequence[bytes],
    covenant_sigs: Mapping[bytes, bytes],
    quorum: int,
    fp_pks: Sequence[bytes],
    fp_sigs: Mapping[bytes, bytes],
    staker_sig: bytes,
    leaf_script: bytes,
    control_block: bytes,
) -> list[bytes]:
    """[cov_sig(desc)…, fp_sig(desc)…, staker_sig, slashing_script, control_block]."""
    return (
        covenant_sig_items(covenant_pks, covenant_sigs, quorum)
        + fp_sig_items(fp_pks, fp_sigs)
        + [_check_sig(staker_sig)]
        + _leaf(leaf_script, control_block)
    )


def key_path_witness(sig: bytes) -> list[bytes]:
    """Key-path witness: the single 64-byte (SIGHASH_DEFAULT) or 65-byte signature."""
    if not isinstance(sig, (bytes, bytearray)) or len(sig) not in (64, 65):
        raise InvalidSignatureError("key-path signature must be 64 or 65 bytes")
    return [bytes(sig)]
