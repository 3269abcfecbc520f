"""BIP-341 signature hashes (key path and tapscript / BIP-342 script path)."""

from __future__ import annotations

import hashlib
from typing import Sequence

from .errors import InvalidTxError
from .keys import tagged_hash
from .tx import Tx, TxOut, compact_size, ser_string

__all__ = [
    "SIGHASH_DEFAULT",
    "SIGHASH_ALL",
    "SIGHASH_NONE",
    "SIGHASH_SINGLE",
    "SIGHASH_ANYONECANPAY",
    "LEAF_VERSION_TAPSCRIPT",
    "tapleaf_hash",
    "taproot_sighash",
]

SIGHASH_DEFAULT = 0x00
SIGHASH_ALL = 0x01
SIGHASH_NONE = 0x02
SIGHASH_SINGLE = 0x03
SIGHASH_ANYONECANPAY = 0x80
LEAF_VERSION_TAPSCRIPT = 0xC0
_VALID_TYPES = {0x00, 0x01, 0x02, 0x03, 0x81, 0x82, 0x83}


def tapleaf_hash(script: bytes, leaf_version: int = LEAF_VERSION_TAPSCRIPT) -> bytes:
    """H_TapLeaf(leaf_version || compact_size(len) || script)."""
    return tagged_hash("TapLeaf", bytes([leaf_version]) + ser_string(script))


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def taproot_sighash(
    tx: Tx,
    input_index: int,
    prevouts: Sequence[TxOut],
    hash_type: int = SIGHASH_DEFAULT,
    leaf_script: bytes | None = None,
    annex: bytes | None = None,
    codesep_pos: int = 0xFFFFFFFF,
) -> bytes:
    """BIP-341 SigMsg digest. leaf_script=None → key path (ext_flag 0); else tapscript (ext_flag 1)."""
    if hash_type not in _VALID_TYPES:
        raise InvalidTxError(f"invalid taproot sighash type {hash_type:#x}")
    if not 0 <= input_index < len(tx.inputs):
        raise InvalidTxError(f"input index {input_index} out of range")
    if len(prevouts) != len(tx.inputs):
        raise InvalidTxError("taproot sighash needs exactly one prevout per input")
    out_type = SIGHASH_ALL if hash_type == SIGHASH_DEFAULT else hash_type & 0x03
    anyone = bool(hash_type & SIGHASH_ANYONECANPAY)
    if out_type == SIGHASH_SINGLE and input_index >= len(tx.outputs):
        raise InvalidTxError("SIGHASH_SINGLE without matching output")

    msg = [bytes([hash_type]), tx.version.to_bytes(4, "little", signed=True), tx.locktime.to_bytes(4, "little")]
    if not anyone:
        msg.append(_sha(b"".join(i.prevout.serialize() for i in tx.inputs)))
        msg.append(_sha(b"".join(p.value.to_bytes(8, "little") for p in prevouts)))
        msg.append(_sha(b"".join(ser_string(p.script_pubkey) for p in prevouts)))
        msg.append(_sha(b"".join(i.sequence.to_bytes(4, "little") for i in tx.inputs)))
    if out_type == SIGHASH_ALL:
        msg.append(_sha(b"".join(o.serialize() for o in tx.outputs)))
    ext_flag = 0 if leaf_script is None else 1
    spend_type = ext_flag * 2 + (1 if annex is not None else 0)
    msg.append(bytes([spend_type]))
    if anyone:
        txin = tx.inputs[input_index]
        msg.append(txin.prevout.serialize())
        msg.append(prevouts[input_index].serialize())
        msg.append(txin.sequence.to_bytes(4, "little"))
    else:
        msg.append(input_index.to_bytes(4, "little"))
    if annex is not None:
        msg.append(_sha(compact_size(len(annex)) + annex))
    if out_type == SIGHASH_SINGLE:
        msg.append(_sha(tx.outputs[input_index].serialize()))
    if leaf_script is not None:
        msg.append(tapleaf_hash(leaf_script))
        msg.append(b"\x00")
        msg.append(codesep_pos.to_bytes(4, "little"))
    return tagged_hash("TapSighash", b"\x00" + b"".join(msg))
