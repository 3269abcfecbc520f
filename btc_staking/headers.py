"""Bitcoin block headers: parse/serialize/hash, compact targets, PoW and chain-work checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .errors import InvalidHeaderError
from .tx import hash256

__all__ = [
    "MAINNET_POW_LIMIT",
    "REGTEST_POW_LIMIT",
    "BlockHeader",
    "bits_to_target",
    "target_to_bits",
    "header_work",
    "check_proof_of_work",
    "verify_header_chain",
]

MAINNET_POW_LIMIT = 0x00000000FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF
REGTEST_POW_LIMIT = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF


@dataclass(frozen=True)
class BlockHeader:
    """80-byte block header; prev_hash / merkle_root in internal byte order."""

    version: int
    prev_hash: bytes
    merkle_root: bytes
    timestamp: int
    bits: int
    nonce: int

    def __post_init__(self) -> None:
        if len(self.prev_hash) != 32 or len(self.merkle_root) != 32:
            raise InvalidHeaderError("prev_hash and merkle_root must be 32 bytes")
        for name in ("timestamp", "bits", "nonce"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 0 <= v <= 0xFFFFFFFF:
                raise InvalidHeaderError(f"{name} must be a uint32")
        if not isinstance(self.version, int) or not -(2**31) <= self.version < 2**31:
            raise InvalidHeaderError("version must be an int32")

    @classmethod
    def parse(cls, raw: bytes) -> "BlockHeader":
        """Parse exactly 80 bytes."""
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != 80:
            raise InvalidHeaderError(f"block header must be 80 bytes, got {len(raw) if isinstance(raw, (bytes, bytearray)) else type(raw).__name__}")
        raw = bytes(raw)
        return cls(
            int.from_bytes(raw[0:4], "little", signed=True),
            raw[4:36],
            raw[36:68],
            int.from_bytes(raw[68:72], "little"),
            int.from_bytes(raw[72:76], "little"),
            int.from_bytes(raw[76:80], "little"),
        )

    def serialize(self) -> bytes:
        """80-byte serialization."""
        return (
            self.version.to_bytes(4, "little", signed=True)
            + self.prev_hash
            + self.merkle_root
            + self.timestamp.to_bytes(4, "little")
            + self.bits.to_bytes(4, "little")
            + self.nonce.to_bytes(4, "little")
        )

    def hash(self) -> bytes:
        """Block hash, internal byte order."""
        return hash256(self.serialize())

    def hash_hex(self) -> str:
        """Block hash, display (reversed) hex."""
        return self.hash()[::-1].hex()

    @property
    def target(self) -> int:
        """Target decoded from bits."""
        return bits_to_target(self.bits)

    @property
    def work(self) -> int:
        """Expected work of this header."""
        return header_work(self.bits)


def bits_to_target(bits: int) -> int:
    """Decode compact 'bits'; negative, zero or overflowing targets raise InvalidHeaderError."""
    if not isinstance(bits, int) or not 0 <= bits <= 0xFFFFFFFF:
        raise InvalidHeaderError("bits must be a uint32")
    exponent, mantissa = bits >> 24, bits & 0x007FFFFF
    if bits & 0x00800000 and mantissa:
        raise InvalidHeaderError(f"negative target in bits {bits:#010x}")
    target = mantissa >> (8 * (3 - exponent)) if exponent <= 3 else mantissa << (8 * (exponent - 3))
    if target == 0:
        raise InvalidHeaderError(f"zero target in bits {bits:#010x}")
    if target >= 2**256:
        raise InvalidHeaderError(f"target overflow in bits {bits:#010x}")
    return target


def target_to_bits(target: int) -> int:
    """Encode a positive target in compact form (Bitcoin Core GetCompact)."""
    if not 0 < target < 2**256:
        raise InvalidHeaderError("target out of range")
    size = (target.bit_length() + 7) // 8
    mantissa = target >> (8 * (size - 3)) if size > 3 else target << (8 * (3 - size))
    if mantissa & 0x00800000:
        mantissa >>= 8
        size += 1
    return (size << 24) | mantissa


def header_work(bits: int) -> int:
    """2^256 // (target + 1) — Bitcoin Core GetBlockProof."""
    return (1 << 256) // (bits_to_target(bits) + 1)


def check_proof_of_work(header: BlockHeader, pow_limit: int = REGTEST_POW_LIMIT) -> bool:
    """True iff hash ≤ target; raises InvalidHeaderError if bits are malformed or above pow_limit."""
    target = bits_to_target(header.bits)
    if target > pow_limit:
        raise InvalidHeaderError(f"target above proof-of-work limit (bits {header.bits:#010x})")
    return int.from_bytes(header.hash(), "little") <= target


def verify_header_chain(
    headers: Sequence[BlockHeader | bytes],
    parent: BlockHeader | bytes | None = None,
    pow_limit: int = REGTEST_POW_LIMIT,
) -> int:
    """Check linkage (prev_hash), PoW of every header; return the cumulative work of `headers`.
    `parent` may be a header, its 80 raw bytes, or a 32-byte block hash (internal order)."""
    if not headers:
        raise InvalidHeaderError("empty header chain")
    hs = [h if isinstance(h, BlockHeader) else BlockHeader.parse(h) for h in headers]
    if parent is not None:
        if isinstance(parent, (bytes, bytearray)) and len(parent) == 80:
            parent = BlockHeader.parse(parent)
        parent_hash = parent.hash() if isinstance(parent, BlockHeader) else bytes(parent)
        if len(parent_hash) != 32:
            raise InvalidHeaderError("parent hash must be 32 bytes")
        if hs[0].prev_hash != parent_hash:
            raise InvalidHeaderError("first header does not link to the parent")
    work = 0
    for i, h in enumerate(hs):
        if i and h.prev_hash != hs[i - 1].hash():
            raise InvalidHeaderError(f"header {i} does not link to header {i - 1}")
        if not check_proof_of_work(h, pow_limit):
            raise InvalidHeaderError(f"header {i} ({h.hash_hex()}) fails proof of work")
        work += h.work
    return work
