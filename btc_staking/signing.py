"""Signing helpers for taproot script-path and key-path spends (libsecp256k1 via coincurve)."""

from __future__ import annotations

import hashlib
from typing import Sequence

from .errors import InvalidSignatureError
from .keys import schnorr_sign, schnorr_verify, taproot_tweak_pubkey, taproot_tweak_secret, xonly_from_secret
from .sighash import SIGHASH_DEFAULT, taproot_sighash
from .tx import Tx, TxOut, p2tr_script

__all__ = [
    "script_path_sighash",
    "sign_script_path",
    "verify_script_path_sig",
    "bip86_output_key",
    "p2tr_key_path_script",
    "sign_key_path",
    "pop_digest",
    "sign_pop_bip340",
    "verify_pop_bip340",
]


def script_path_sighash(tx: Tx, input_index: int, prevouts: Sequence[TxOut], leaf_script: bytes) -> bytes:
    """BIP-341 SIGHASH_DEFAULT sighash of a tapscript spend of `leaf_script` (what covenants and
    finality providers sign, plain or adaptor-encrypted, for the slashing and unbonding txs)."""
    return taproot_sighash(tx, input_index, list(prevouts), SIGHASH_DEFAULT, leaf_script=leaf_script)


def sign_script_path(
    sk: bytes, tx: Tx, input_index: int, prevouts: Sequence[TxOut], leaf_script: bytes, aux32: bytes | None = None
) -> bytes:
    """64-byte BIP-340 signature (SIGHASH_DEFAULT) of the tapscript sighash for `leaf_script`."""
    return schnorr_sign(sk, script_path_sighash(tx, input_index, prevouts, leaf_script), aux32)


def verify_script_path_sig(
    xonly_pk: bytes, sig: bytes, tx: Tx, input_index: int, prevouts: Sequence[TxOut], leaf_script: bytes
) -> bool:
    """Verify a SIGHASH_DEFAULT tapscript signature."""
    return schnorr_verify(xonly_pk, script_path_sighash(tx, input_index, prevouts, leaf_script), sig)


def bip86_output_key(internal_xonly: bytes) -> bytes:
    """BIP-86 output key x(P + H_TapTweak(P)·G) (no script tree)."""
    return taproot_tweak_pubkey(internal_xonly, b"")[0]


def p2tr_key_path_script(sk_or_internal: bytes, *, is_secret: bool = False) -> bytes:
    """BIP-86 P2TR scriptPubKey for an internal x-only key (or for a secret if is_secret=True)."""
    internal = xonly_from_secret(sk_or_internal) if is_secret else sk_or_internal
    return p2tr_script(bip86_output_key(internal))


def sign_key_path(
    sk: bytes,
    tx: Tx,
    input_index: int,
    prevouts: Sequence[TxOut],
    merkle_root: bytes = b"",
    hash_type: int = SIGHASH_DEFAULT,
    aux32: bytes | None = None,
) -> bytes:
    """Key-path signature for an output keyed by tweak(sk, merkle_root) (BIP-86 when root is empty).
    Returns 64 bytes for SIGHASH_DEFAULT, else 64 bytes + hash_type byte."""
    msg = taproot_sighash(tx, input_index, list(prevouts), hash_type, leaf_script=None)
    tweaked = taproot_tweak_secret(sk, merkle_root)
    sig = schnorr_sign(tweaked, msg, aux32)
    if not schnorr_verify(xonly_from_secret(tweaked), msg, sig):
        raise InvalidSignatureError("key-path signature failed self-check")
    return sig if hash_type == SIGHASH_DEFAULT else sig + bytes([hash_type])


def pop_digest(account_address: bytes) -> bytes:
    """Babylon BIP-340 proof-of-possession message: SHA256(raw account-address bytes)."""
    if not isinstance(account_address, (bytes, bytearray)) or not account_address:
        raise InvalidSignatureError("PoP account address must be non-empty bytes")
    return hashlib.sha256(bytes(account_address)).digest()


def sign_pop_bip340(sk: bytes, account_address: bytes) -> bytes:
    """BIP-340 PoP (btc_sig_type 0): the BTC key signs SHA256(account address bytes)."""
    return schnorr_sign(sk, pop_digest(account_address))


def verify_pop_bip340(xonly_pk: bytes, account_address: bytes, sig: bytes) -> bool:
    """Verify a BIP-340 proof of possession."""
    return schnorr_verify(xonly_pk, pop_digest(account_address), sig)
