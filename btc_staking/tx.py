"""Minimal Bitcoin transaction model (segwit-aware) with parse / serialize / txid."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from io import BytesIO

from .errors import InvalidKeyError, InvalidTxError

__all__ = [
    "hash256",
    "hash160",
    "compact_size",
    "read_compact_size",
    "ser_string",
    "OutPoint",
    "TxIn",
    "TxOut",
    "Tx",
    "p2tr_script",
    "p2wpkh_script",
    "p2pkh_script",
    "is_op_return",
]

MAX_MONEY = 21_000_000 * 100_000_000


def hash256(data: bytes) -> bytes:
    """Double SHA-256."""
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def hash160(data: bytes) -> bytes:
    """RIPEMD160(SHA256(data))."""
    return hashlib.new("ripemd160", hashlib.sha256(data).digest()).digest()


def compact_size(n: int) -> bytes:
    """Bitcoin CompactSize encoding."""
    if n < 0:
        raise InvalidTxError("compact size must be non-negative")
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "little")
    if n <= 0xFFFFFFFF:
        return b"\xfe" + n.to_bytes(4, "little")
    return b"\xff" + n.to_bytes(8, "little")


def _read(stream: BytesIO, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise InvalidTxError("unexpected end of data")
    return data


def read_compact_size(stream: BytesIO) -> int:
    """Read a CompactSize integer (rejects non-canonical encodings)."""
    first = _read(stream, 1)[0]
    if first < 0xFD:
        return first
    size = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
    n = int.from_bytes(_read(stream, size), "little")
    if n < {0xFD: 0xFD, 0xFE: 0x10000, 0xFF: 0x100000000}[first]:
        raise InvalidTxError("non-canonical compact size")
    return n


def ser_string(data: bytes) -> bytes:
    """CompactSize length prefix followed by the bytes."""
    return compact_size(len(data)) + bytes(data)


def _read_string(stream: BytesIO) -> bytes:
    n = read_compact_size(stream)
    if n > 4_000_000:
        raise InvalidTxError("string too long")
    return _read(stream, n)


@dataclass(frozen=True)
class OutPoint:
    """Reference to a transaction output; txid is in internal (little-endian) byte order."""

    txid: bytes
    vout: int

    def __post_init__(self) -> None:
        if not isinstance(self.txid, (bytes, bytearray)) or len(self.txid) != 32:
            raise InvalidTxError("outpoint txid must be 32 bytes")
        if not 0 <= self.vout <= 0xFFFFFFFF:
            raise InvalidTxError("outpoint index out of range")

    @classmethod
    def from_hex(cls, txid_hex: str, vout: int) -> "OutPoint":
        """Build from a display-order (reversed) txid hex string."""
        return cls(bytes.fromhex(txid_hex)[::-1], vout)

    def serialize(self) -> bytes:
        """36-byte serialization."""
        return bytes(self.txid) + self.vout.to_bytes(4, "little")


@dataclass
class TxIn:
    """Transaction input."""

    prevout: OutPoint
    script_sig: bytes = b""
    sequence: int = 0xFFFFFFFF
    witness: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0 <= self.sequence <= 0xFFFFFFFF:
            raise InvalidTxError("sequence out of range")

    def serialize(self) -> bytes:
        """Non-witness serialization."""
        return self.prevout.serialize() + ser_string(self.script_sig) + self.sequence.to_bytes(4, "little")


@dataclass(frozen=True)
class TxOut:
    """Transaction output."""

    value: int
    script_pubkey: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.value, int) or not 0 <= self.value <= MAX_MONEY:
            raise InvalidTxError(f"output value out of range: {self.value!r}")

    def serialize(self) -> bytes:
        """value (8 LE) || scriptPubKey with length."""
        return self.value.to_bytes(8, "little") + ser_string(self.script_pubkey)


@dataclass
class Tx:
    """A Bitcoin transaction."""

    version: int = 2
    inputs: list[TxIn] = field(default_factory=list)
    outputs: list[TxOut] = field(default_factory=list)
    locktime: int = 0

    def has_witness(self) -> bool:
        """True if any input carries witness items."""
        return any(i.witness for i in self.inputs)

    def serialize(self, include_witness: bool = True) -> bytes:
        """Serialize; witness (BIP-144) form only when include_witness and some witness is present."""
        segwit = include_witness and self.has_witness()
        out = [self.version.to_bytes(4, "little", signed=True)]
        if segwit:
            out.append(b"\x00\x01")
        out.append(compact_size(len(self.inputs)))
        out.extend(i.serialize() for i in self.inputs)
        out.append(compact_size(len(self.outputs)))
        out.extend(o.serialize() for o in self.outputs)
        if segwit:
            for i in self.inputs:
                out.append(compact_size(len(i.witness)))
                out.extend(ser_string(item) for item in i.witness)
        out.append(self.locktime.to_bytes(4, "little"))
        return b"".join(out)

    @classmethod
    def parse(cls, raw: bytes) -> "Tx":
        """Parse a raw transaction (segwit or legacy form); trailing bytes are rejected.
        Like Bitcoin Core, the extended (segwit) reading is tried first, then the legacy one, so
        unfunded zero-input transactions round-trip too."""
        if not isinstance(raw, (bytes, bytearray)):
            raise InvalidTxError("raw transaction must be bytes")
        raw = bytes(raw)
        try:
            return cls._parse(raw, allow_witness=True)
        except InvalidTxError:
            if len(raw) > 4 and raw[4] == 0:
                return cls._parse(raw, allow_witness=False)
            raise

    @classmethod
    def _parse(cls, raw: bytes, allow_witness: bool) -> "Tx":
        s = BytesIO(raw)
        version = int.from_bytes(_read(s, 4), "little", signed=True)
        n_in = read_compact_size(s)
        segwit = False
        if n_in == 0 and allow_witness:
            flag = _read(s, 1)[0]
            if flag != 1:
                raise InvalidTxError("bad segwit flag")
            segwit = True
            n_in = read_compact_size(s)
            if n_in == 0:
                raise InvalidTxError("segwit transaction without inputs")
        inputs = []
        for _ in range(n_in):
            txid = _read(s, 32)
            vout = int.from_bytes(_read(s, 4), "little")
            script_sig = _read_string(s)
            seq = int.from_bytes(_read(s, 4), "little")
            inputs.append(TxIn(OutPoint(txid, vout), script_sig, seq))
        n_out = read_compact_size(s)
        outputs = []
        for _ in range(n_out):
            value = int.from_bytes(_read(s, 8), "little")
            outputs.append(TxOut(value, _read_string(s)))
        if segwit:
            for txin in inputs:
                txin.witness = [_read_string(s) for _ in range(read_compact_size(s))]
            if not any(i.witness for i in inputs):
                raise InvalidTxError("segwit marker with empty witnesses")
        locktime = int.from_bytes(_read(s, 4), "little")
        if s.read(1):
            raise InvalidTxError("trailing bytes after transaction")
        return cls(version, inputs, outputs, locktime)

    def txid(self) -> bytes:
        """Transaction id, internal byte order."""
        return hash256(self.serialize(include_witness=False))

    def txid_hex(self) -> str:
        """Transaction id, display (reversed) hex."""
        return self.txid()[::-1].hex()

    def wtxid(self) -> bytes:
        """Witness transaction id, internal byte order."""
        return hash256(self.serialize(include_witness=True))

    def weight(self) -> int:
        """BIP-141 weight."""
        base = len(self.serialize(include_witness=False))
        total = len(self.serialize(include_witness=True))
        return base * 3 + total

    def vsize(self) -> int:
        """Virtual size in vbytes (weight / 4 rounded up)."""
        return (self.weight() + 3) // 4

    def copy(self) -> "Tx":
        """Deep copy (witnesses included)."""
        ins = [TxIn(i.prevout, i.script_sig, i.sequence, list(i.witness)) for i in self.inputs]
        return Tx(self.version, ins, list(self.outputs), self.locktime)


def p2tr_script(xonly: bytes) -> bytes:
    """Witness v1 (taproot) scriptPubKey: OP_1 PUSH32 <key>."""
    if not isinstance(xonly, (bytes, bytearray)) or len(xonly) != 32:
        raise InvalidKeyError("p2tr output key must be 32 bytes")
    return b"\x51\x20" + bytes(xonly)


def p2wpkh_script(pubkey33: bytes) -> bytes:
    """Witness v0 keyhash scriptPubKey: OP_0 PUSH20 HASH160(pubkey)."""
    if not isinstance(pubkey33, (bytes, bytearray)) or len(pubkey33) != 33 or pubkey33[0] not in (2, 3):
        raise InvalidKeyError("p2wpkh needs a 33-byte compressed public key")
    return b"\x00\x14" + hash160(bytes(pubkey33))


def p2pkh_script(pubkey33: bytes) -> bytes:
    """Legacy P2PKH scriptPubKey."""
    if not isinstance(pubkey33, (bytes, bytearray)) or len(pubkey33) != 33:
        raise InvalidKeyError("p2pkh needs a 33-byte compressed public key")
    return b"\x76\xa9\x14" + hash160(bytes(pubkey33)) + b"\x88\xac"


def is_op_return(script: bytes) -> bool:
    """True for a null-data (OP_RETURN) script."""
    return len(script) > 0 and script[0] == 0x6A
