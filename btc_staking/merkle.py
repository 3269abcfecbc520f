"""Bitcoin transaction merkle trees and Babylon-style inclusion proofs (spec §5.2)."""

from __future__ import annotations

from typing import Sequence

from .errors import InvalidProofError
from .tx import hash256

__all__ = ["merkle_root", "build_merkle_proof", "verify_merkle_proof", "MerkleTree"]


def _check_hashes(txids: Sequence[bytes]) -> list[bytes]:
    if not txids:
        raise InvalidProofError("merkle tree needs at least one txid")
    out = []
    for t in txids:
        if not isinstance(t, (bytes, bytearray)) or len(t) != 32:
            raise InvalidProofError("txids must be 32 bytes (internal byte order)")
        out.append(bytes(t))
    return out


def _next_level(level: list[bytes]) -> list[bytes]:
    if len(level) % 2:
        level = level + [level[-1]]
    return [hash256(level[i] + level[i + 1]) for i in range(0, len(level), 2)]


def merkle_root(txids: Sequence[bytes]) -> bytes:
    """Bitcoin merkle root (internal byte order), duplicating the last node on odd levels."""
    level = _check_hashes(txids)
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def build_merkle_proof(txids: Sequence[bytes], index: int) -> bytes:
    """Concatenated sibling hashes (internal order), deepest first, excluding txid and root."""
    level = _check_hashes(txids)
    if not isinstance(index, int) or not 0 <= index < len(level):
        raise InvalidProofError(f"index {index!r} out of range for {len(level)} txids")
    proof, idx = [], index
    while len(level) > 1:
        padded = level + [level[-1]] if len(level) % 2 else level
        proof.append(padded[idx ^ 1])
        level = _next_level(level)
        idx >>= 1
    return b"".join(proof)


def verify_merkle_proof(txid: bytes, root: bytes, index: int, proof: bytes) -> bool:
    """Babylon VerifyInclusionProof: fold siblings by index bits; accept iff the result equals root."""
    for name, v in (("txid", txid), ("root", root)):
        if not isinstance(v, (bytes, bytearray)) or len(v) != 32:
            raise InvalidProofError(f"{name} must be 32 bytes")
    if not isinstance(proof, (bytes, bytearray)):
        raise InvalidProofError("proof must be bytes")
    if not isinstance(index, int) or not 0 <= index <= 0xFFFFFFFF:
        raise InvalidProofError("index must be a uint32")
    if bytes(txid) == bytes(root) and index == 0 and len(proof) == 0:
        return True
    total = 32 + len(proof) + 32
    if total % 32 != 0 or total == 64:
        return False
    cur = bytes(txid)
    for i in range(0, len(proof), 32):
        sib = bytes(proof[i : i + 32])
        cur = hash256(sib + cur) if index & 1 else hash256(cur + sib)
        index >>= 1
    return cur == bytes(root)


class MerkleTree:
    """Every level of a block's merkle tree, built once: ``proof(i)`` equals ``build_merkle_proof(txids, i)``
    without rehashing the tree per proof (many proofs from one block)."""

    def __init__(self, txids: Sequence[bytes]) -> None:
        level = _check_hashes(txids)
        self.levels: list[list[bytes]] = [level]
        while len(level) > 1:
            level = _next_level(level)
            self.levels.append(level)

    @property
    def root(self) -> bytes:
        """The merkle root (internal byte order)."""
        return self.levels[-1][0]

    def proof(self, index: int) -> bytes:
        """Concatenated sibling hashes, deepest first (as :func:`build_merkle_proof`)."""
        if not isinstance(index, int) or not 0 <= index < len(self.levels[0]):
            raise InvalidProofError(f"index {index!r} out of range for {len(self.levels[0])} txids")
        out, idx = [], index
        for level in self.levels[:-1]:
            sib = idx ^ 1
            out.append(level[sib] if sib < len(level) else level[-1])
            idx >>= 1
        return b"".join(out)
