"""Babylon tapscript leaves and btcd-compatible taproot script trees."""

from __future__ import annotations

from typing import Iterable, Sequence

from .errors import DuplicateKeyError, InvalidParamsError, InvalidScriptError, InvalidTimelockError
from .keys import tagged_hash, taproot_tweak_pubkey, to_xonly
from .sighash import LEAF_VERSION_TAPSCRIPT, tapleaf_hash
from .tx import p2tr_script

__all__ = [
    "OP_0", "OP_1", "OP_RETURN", "OP_CHECKSIG", "OP_CHECKSIGVERIFY", "OP_CHECKSIGADD",
    "OP_NUMEQUAL", "OP_NUMEQUALVERIFY", "OP_CHECKSEQUENCEVERIFY",
    "NUMS_KEY",
    "script_num",
    "push_data",
    "push_int",
    "sort_keys",
    "check_no_duplicates",
    "check_timelock",
    "single_key_script",
    "multisig_script",
    "timelock_script",
    "unbonding_script",
    "slashing_script",
    "tap_branch",
    "TaprootTree",
]

OP_0 = 0x00
OP_1 = 0x51
OP_RETURN = 0x6A
OP_CHECKSIG = 0xAC
OP_CHECKSIGVERIFY = 0xAD
OP_CHECKSIGADD = 0xBA
OP_NUMEQUAL = 0x9C
OP_NUMEQUALVERIFY = 0x9D
OP_CHECKSEQUENCEVERIFY = 0xB2

#: BIP-341 "H" point (x-only), Babylon's unspendable internal key for every output.
NUMS_KEY = bytes.fromhex("50929b74c1a04954b78b4b6035e97a5e078a5a0f28ec96d547bfee9ace803ac0")

MAX_TIMELOCK = 0xFFFF


def script_num(v: int) -> bytes:
    """Minimal CScriptNum encoding (little-endian magnitude, sign bit in the top byte)."""
    if v == 0:
        return b""
    neg, mag = v < 0, abs(v)
    out = bytearray()
    while mag:
        out.append(mag & 0xFF)
        mag >>= 8
    if out[-1] & 0x80:
        out.append(0x80 if neg else 0x00)
    elif neg:
        out[-1] |= 0x80
    return bytes(out)


def push_data(data: bytes) -> bytes:
    """Minimal data push (direct length, PUSHDATA1/2/4)."""
    n = len(data)
    if n < 0x4C:
        return bytes([n]) + data
    if n <= 0xFF:
        return b"\x4c" + bytes([n]) + data
    if n <= 0xFFFF:
        return b"\x4d" + n.to_bytes(2, "little") + data
    return b"\x4e" + n.to_bytes(4, "little") + data


def push_int(v: int) -> bytes:
    """btcd ScriptBuilder.AddInt64: OP_0, OP_1NEGATE, OP_1..OP_16, else minimal CScriptNum push."""
    if not isinstance(v, int):
        raise InvalidScriptError(f"push_int needs an int, got {type(v).__name__}")
    if v == 0:
        return bytes([OP_0])
    if v == -1 or 1 <= v <= 16:
        return bytes([OP_1 - 1 + v])
    return push_data(script_num(v))


def sort_keys(keys: Iterable[bytes]) -> list[bytes]:
    """Normalize to x-only and sort ascending bytewise (Go SortKeys on 32-byte keys)."""
    return sorted(to_xonly(k) for k in keys)


def check_no_duplicates(*groups: Iterable[bytes]) -> None:
    """Raise DuplicateKeyError if any x-only key appears twice across all groups."""
    seen: set[bytes] = set()
    for group in groups:
        for k in group:
            x = to_xonly(k)
            if x in seen:
                raise DuplicateKeyError(f"duplicate key {x.hex()}")
            seen.add(x)


def single_key_script(pk: bytes, verify: bool) -> bytes:
    """<pk> OP_CHECKSIGVERIFY (verify) or <pk> OP_CHECKSIG."""
    return b"\x20" + to_xonly(pk) + bytes([OP_CHECKSIGVERIFY if verify else OP_CHECKSIG])


def multisig_script(keys: Sequence[bytes], threshold: int, verify: bool) -> bytes:
    """Babylon m-of-n CHECKSIGADD multisig; a single key degenerates to single_key_script."""
    if not keys:
        raise InvalidScriptError("multisig needs at least one key")
    if not isinstance(threshold, int) or threshold < 1:
        raise InvalidParamsError(f"multisig threshold must be >= 1, got {threshold!r}")
    if threshold > len(keys):
        raise InvalidParamsError(f"threshold {threshold} exceeds number of keys {len(keys)}")
    check_no_duplicates(keys)
    if len(keys) == 1:
        return single_key_script(keys[0], verify)
    ordered = sort_keys(keys)
    out = bytearray(b"\x20" + ordered[0] + bytes([OP_CHECKSIG]))
    for k in ordered[1:]:
        out += b"\x20" + k + bytes([OP_CHECKSIGADD])
    out += push_int(threshold)
    out.append(OP_NUMEQUALVERIFY if verify else OP_NUMEQUAL)
    return bytes(out)


def check_timelock(blocks: int) -> int:
    """Validate a relative block timelock (1..65535)."""
    if not isinstance(blocks, int) or isinstance(blocks, bool) or not 1 <= blocks <= MAX_TIMELOCK:
        raise InvalidTimelockError(f"timelock must be an int in 1..{MAX_TIMELOCK}, got {blocks!r}")
    return blocks


def timelock_script(pk: bytes, blocks: int) -> bytes:
    """<pk> OP_CHECKSIGVERIFY <blocks> OP_CHECKSEQUENCEVERIFY."""
    check_timelock(blocks)
    return single_key_script(pk, True) + push_int(blocks) + bytes([OP_CHECKSEQUENCEVERIFY])


def unbonding_script(staker: bytes, covenant_pks: Sequence[bytes], quorum: int) -> bytes:
    """<staker> CHECKSIGVERIFY || covenant multisig (NUMEQUAL form)."""
    check_no_duplicates([staker], covenant_pks)
    return single_key_script(staker, True) + multisig_script(covenant_pks, quorum, False)


def slashing_script(staker: bytes, fp_pks: Sequence[bytes], covenant_pks: Sequence[bytes], quorum: int) -> bytes:
    """<staker> CHECKSIGVERIFY || FP 1-of-k (VERIFY form) || covenant multisig (NUMEQUAL form)."""
    check_no_duplicates([staker], fp_pks, covenant_pks)
    return (
        single_key_script(staker, True)
        + multisig_script(fp_pks, 1, True)
        + multisig_script(covenant_pks, quorum, False)
    )


def tap_branch(a: bytes, b: bytes) -> bytes:
    """H_TapBranch(min(a,b) || max(a,b))."""
    return tagged_hash("TapBranch", a + b if a < b else b + a)


class TaprootTree:
    """Script tree assembled exactly like btcd AssembleTaprootScriptTree, over a given internal key."""

    def __init__(self, leaf_scripts: Sequence[bytes], internal_key: bytes = NUMS_KEY) -> None:
        if not leaf_scripts:
            raise InvalidScriptError("taproot tree needs at least one leaf")
        scripts = [bytes(s) for s in leaf_scripts]
        if any(not s for s in scripts):
            raise InvalidScriptError("empty leaf script")
        if len(set(scripts)) != len(scripts):
            raise InvalidScriptError("duplicate leaf script")
        self.leaf_scripts: tuple[bytes, ...] = tuple(scripts)
        self.internal_key = to_xonly(internal_key)
        self.leaf_hashes: tuple[bytes, ...] = tuple(tapleaf_hash(s) for s in scripts)
        proofs: list[list[bytes]] = [[] for _ in scripts]
        # node = (hash, leaf indices below it)
        leaves = [(h, [i]) for i, h in enumerate(self.leaf_hashes)]

        def merge(a: tuple[bytes, list[int]], b: tuple[bytes, list[int]]) -> tuple[bytes, list[int]]:
            for i in a[1]:
                proofs[i].append(b[0])
            for i in b[1]:
                proofs[i].append(a[0])
            return tap_branch(a[0], b[0]), a[1] + b[1]

        if len(leaves) == 1:
            root = leaves[0]
        else:
            branches: list[tuple[bytes, list[int]]] = []
            for i in range(0, len(leaves), 2):
                if i == len(leaves) - 1:
                    branches[-1] = merge(branches[-1], leaves[i])
                else:
                    branches.append(merge(leaves[i], leaves[i + 1]))
            while len(branches) > 1:
                branches = branches[2:] + [merge(branches[0], branches[1])]
            root = branches[0]
        self.merkle_root: bytes = root[0]
        self._proofs = [b"".join(p) for p in proofs]
        self.output_key, self.parity = taproot_tweak_pubkey(self.internal_key, self.merkle_root)

    @property
    def pk_script(self) -> bytes:
        """P2TR scriptPubKey of the tweaked output key."""
        return p2tr_script(self.output_key)

    def leaf_index(self, leaf_script: bytes) -> int:
        """Index of a leaf script (raises InvalidScriptError if absent)."""
        try:
            return self.leaf_scripts.index(bytes(leaf_script))
        except ValueError:
            raise InvalidScriptError("leaf script is not in this tree") from None

    def inclusion_proof(self, leaf_script: bytes) -> bytes:
        """Concatenated sibling hashes from the leaf upward."""
        return self._proofs[self.leaf_index(leaf_script)]

    def control_block(self, leaf_script: bytes) -> bytes:
        """(0xc0 | parity) || internal key || inclusion proof."""
        proof = self.inclusion_proof(leaf_script)
        return bytes([LEAF_VERSION_TAPSCRIPT | self.parity]) + self.internal_key + proof
