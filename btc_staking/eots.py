"""Extractable one-time signatures (Babylon crypto/eots) and CometBFT pub-rand commitments."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

from .errors import EOTSError, InvalidKeyError, InvalidProofError
from .keys import (
    N,
    bip340_challenge,
    check_secret,
    generate_secret,
    int_to_bytes32,
    point_from_scalar,
    pubkey_from_secret,
    schnorr_sign,
    schnorr_verify,
    to_xonly,
    xonly,
    xonly_from_secret,
)

__all__ = [
    "vote_message",
    "new_nonce",
    "pub_rand",
    "sign",
    "verify",
    "extract_secret",
    "MerkleProof",
    "commit_pub_rand",
    "pub_rand_root",
    "verify_pub_rand_proof",
    "pub_rand_commit_digest",
    "sign_pub_rand_commit",
    "verify_pub_rand_commit",
]


def vote_message(height: int, app_hash: bytes) -> bytes:
    """Finality vote message uint64_be(height) || app_hash (40 bytes)."""
    if not isinstance(height, int) or not 0 <= height < 2**64:
        raise EOTSError(f"height must be a uint64, got {height!r}")
    if not isinstance(app_hash, (bytes, bytearray)) or len(app_hash) != 32:
        raise EOTSError("app_hash must be 32 bytes")
    return height.to_bytes(8, "big") + bytes(app_hash)


def new_nonce() -> bytes:
    """Fresh secret randomness k (32 bytes, in [1, n-1])."""
    return generate_secret()


def _check_k(k: bytes) -> int:
    try:
        return check_secret(k)
    except InvalidKeyError as exc:
        raise EOTSError(f"invalid secret randomness: {exc}") from exc


def pub_rand(k: bytes) -> bytes:
    """Public randomness x(k·G), 32 bytes, whatever the parity of k·G."""
    _check_k(k)
    return xonly_from_secret(k)


def _digest(msg: bytes) -> bytes:
    if not isinstance(msg, (bytes, bytearray)):
        raise EOTSError("message must be bytes")
    return hashlib.sha256(bytes(msg)).digest()


def _check_s(s: bytes) -> int:
    if not isinstance(s, (bytes, bytearray)) or len(s) != 32:
        raise EOTSError("EOTS signature must be 32 bytes")
    v = int.from_bytes(s, "big")
    if v >= N:
        raise EOTSError("EOTS signature scalar out of range")
    return v


def sign(sk: bytes, k: bytes, msg: bytes) -> bytes:
    """s = k' + e·d mod n with e = H_challenge(x(kG) || x(P) || SHA256(msg)); BIP-340 parity rules."""
    d0, k0 = check_secret(sk), _check_k(k)
    p_c = pubkey_from_secret(sk).format()
    r_c = pubkey_from_secret(k).format()
    d = d0 if p_c[0] == 2 else N - d0
    kk = k0 if r_c[0] == 2 else N - k0
    e = bip340_challenge(r_c[1:], p_c[1:], _digest(msg))
    return int_to_bytes32((kk + e * d) % N)


def verify(pk: bytes, pub_rand_x: bytes, msg: bytes, s: bytes) -> bool:
    """(pub_rand || s) is a BIP-340 signature of SHA256(msg) under x-only pk (libsecp256k1)."""
    if not isinstance(pub_rand_x, (bytes, bytearray)) or len(pub_rand_x) != 32:
        raise EOTSError("public randomness must be 32 bytes")
    _check_s(s)
    return schnorr_verify(pk, _digest(msg), bytes(pub_rand_x) + bytes(s))  # the key is validated (cached) there


def extract_secret(pk: bytes, pub_rand_x: bytes, msg1: bytes, s1: bytes, msg2: bytes, s2: bytes) -> bytes:
    """Recover the even-Y secret from two valid signatures on different messages with one pub rand."""
    p_x = to_xonly(pk)
    if bytes(msg1) == bytes(msg2):
        raise EOTSError("messages are equal: nothing to extract")
    v1, v2 = _check_s(s1), _check_s(s2)
    if v1 == v2:
        raise EOTSError("signatures are equal: nothing to extract")
    if not verify(p_x, pub_rand_x, msg1, s1) or not verify(p_x, pub_rand_x, msg2, s2):
        raise EOTSError("an EOTS signature does not verify")
    e1 = bip340_challenge(bytes(pub_rand_x), p_x, _digest(msg1))
    e2 = bip340_challenge(bytes(pub_rand_x), p_x, _digest(msg2))
    if e1 == e2:
        raise EOTSError("challenges collide")
    x = (v1 - v2) * pow(e1 - e2, -1, N) % N
    point = point_from_scalar(x)
    if point is None or xonly(point) != p_x:
        raise EOTSError("extracted key does not match the public key")
    return int_to_bytes32(x)


# --- CometBFT simple merkle tree over public randomness --------------------------------------


def _leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def _inner_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split_point(n: int) -> int:
    """Largest power of two strictly less than n (n ≥ 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@dataclass(frozen=True)
class MerkleProof:
    """CometBFT merkle proof: total, index, leaf_hash and aunts (bottom-up)."""

    total: int
    index: int
    leaf_hash: bytes
    aunts: tuple[bytes, ...]

    def compute_root(self) -> bytes:
        """Root implied by this proof (raises InvalidProofError if inconsistent)."""
        root = _root_from_aunts(self.index, self.total, self.leaf_hash, list(self.aunts))
        if root is None:
            raise InvalidProofError("inconsistent merkle proof")
        return root

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        return {"total": self.total, "index": self.index, "leaf_hash": self.leaf_hash.hex(),
                "aunts": [a.hex() for a in self.aunts]}

    @classmethod
    def from_dict(cls, d: dict) -> "MerkleProof":
        """Inverse of to_dict."""
        try:
            return cls(int(d["total"]), int(d["index"]), bytes.fromhex(d["leaf_hash"]),
                       tuple(bytes.fromhex(a) for a in d["aunts"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidProofError(f"bad merkle proof dict: {exc}") from exc


def _root_from_aunts(index: int, total: int, leaf_hash: bytes, aunts: list[bytes]) -> bytes | None:
    if index >= total or index < 0 or total <= 0:
        return None
    if total == 1:
        return leaf_hash if not aunts else None
    if not aunts:
        return None
    k = _split_point(total)
    if index < k:
        left = _root_from_aunts(index, k, leaf_hash, aunts[:-1])
        return None if left is None else _inner_hash(left, aunts[-1])
    right = _root_from_aunts(index - k, total - k, leaf_hash, aunts[:-1])
    return None if right is None else _inner_hash(aunts[-1], right)


def _tree(items: list[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """(root, aunts per leaf bottom-up) for a list of leaf hashes."""
    if len(items) == 1:
        return items[0], [[]]
    k = _split_point(len(items))
    lroot, launts = _tree(items[:k])
    rroot, raunts = _tree(items[k:])
    return _inner_hash(lroot, rroot), [a + [rroot] for a in launts] + [a + [lroot] for a in raunts]


def commit_pub_rand(pub_rands: Sequence[bytes]) -> tuple[bytes, list[MerkleProof]]:
    """CometBFT merkle root over 32-byte pub rands and one inclusion proof per entry."""
    if not pub_rands:
        raise EOTSError("cannot commit to an empty pub rand list")
    for pr in pub_rands:
        if not isinstance(pr, (bytes, bytearray)) or len(pr) != 32:
            raise EOTSError("each public randomness must be 32 bytes")
    leaves = [_leaf_hash(bytes(pr)) for pr in pub_rands]
    root, aunts = _tree(leaves)
    total = len(leaves)
    return root, [MerkleProof(total, i, leaves[i], tuple(aunts[i])) for i in range(total)]


def pub_rand_root(pub_rands: Sequence[bytes]) -> bytes:
    """CometBFT merkle root of the list (SHA256("") for an empty list)."""
    if not pub_rands:
        return hashlib.sha256(b"").digest()
    return commit_pub_rand(pub_rands)[0]


def verify_pub_rand_proof(root: bytes, pub_rand_x: bytes, proof: MerkleProof | dict) -> bool:
    """True iff `proof` shows `pub_rand_x` under `root` (leaf hash must match the value).
    `proof` may be a MerkleProof or its to_dict() form."""
    if isinstance(proof, dict):
        proof = MerkleProof.from_dict(proof)
    if not isinstance(proof, MerkleProof):
        raise InvalidProofError("proof must be a MerkleProof")
    if not isinstance(root, (bytes, bytearray)) or len(root) != 32:
        raise InvalidProofError("root must be 32 bytes")
    if proof.leaf_hash != _leaf_hash(bytes(pub_rand_x)):
        return False
    computed = _root_from_aunts(proof.index, proof.total, proof.leaf_hash, list(proof.aunts))
    return computed is not None and computed == bytes(root)


def pub_rand_commit_digest(start_height: int, num_pub_rand: int, commitment: bytes) -> bytes:
    """SHA256(uint64_be(start) || uint64_be(num) || commitment) — signed directly by the FP."""
    if not 0 <= start_height < 2**64 or not 0 < num_pub_rand < 2**64 or start_height + num_pub_rand >= 2**64:
        raise EOTSError("invalid pub rand commit range")
    if len(commitment) != 32:
        raise EOTSError("commitment must be 32 bytes")
    return hashlib.sha256(start_height.to_bytes(8, "big") + num_pub_rand.to_bytes(8, "big") + commitment).digest()


def sign_pub_rand_commit(sk: bytes, start_height: int, num_pub_rand: int, commitment: bytes) -> bytes:
    """BIP-340 signature of pub_rand_commit_digest."""
    return schnorr_sign(sk, pub_rand_commit_digest(start_height, num_pub_rand, commitment))


def verify_pub_rand_commit(pk: bytes, start_height: int, num_pub_rand: int, commitment: bytes, sig: bytes) -> bool:
    """Verify the FP's signature over a pub rand commitment."""
    return schnorr_verify(pk, pub_rand_commit_digest(start_height, num_pub_rand, commitment), sig)
