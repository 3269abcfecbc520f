"""Keys and BIP-340 Schnorr primitives, all point/signature operations via coincurve (libsecp256k1)."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache

from coincurve import PrivateKey, PublicKey, PublicKeyXOnly

from .errors import InvalidKeyError, InvalidSignatureError

__all__ = [
    "N",
    "tagged_hash",
    "to_xonly",
    "check_secret",
    "generate_secret",
    "xonly_from_secret",
    "pubkey_from_secret",
    "lift_x",
    "has_even_y",
    "negate_secret",
    "secret_even_y",
    "schnorr_sign",
    "schnorr_verify",
    "taproot_tweak_secret",
    "taproot_tweak_pubkey",
    "int_to_bytes32",
    "point_from_scalar",
    "point_mul",
    "point_negate",
    "point_add",
    "xonly",
    "bip340_challenge",
]

#: secp256k1 group order.
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

_TAG_CACHE: dict[str, bytes] = {}


def tagged_hash(tag: str, data: bytes) -> bytes:
    """BIP-340 tagged hash: SHA256(SHA256(tag) || SHA256(tag) || data)."""
    prefix = _TAG_CACHE.get(tag)
    if prefix is None:
        th = hashlib.sha256(tag.encode()).digest()
        prefix = _TAG_CACHE[tag] = th + th
    return hashlib.sha256(prefix + bytes(data)).digest()


@lru_cache(maxsize=8192)
def _parse_point(compressed: bytes) -> PublicKey | None:
    """Parse a compressed point once (keys repeat a lot: covenants, FPs); None if invalid."""
    try:
        return PublicKey(compressed)
    except Exception:  # coincurve raises ValueError for non-curve points
        return None


def lift_x(xonly: bytes) -> PublicKey:
    """Return the even-Y point with X coordinate `xonly` (raises InvalidKeyError if none)."""
    if not isinstance(xonly, (bytes, bytearray)) or len(xonly) != 32:
        raise InvalidKeyError(f"x-only key must be 32 bytes, got {_len(xonly)}")
    point = _parse_point(b"\x02" + bytes(xonly))
    if point is None:
        raise InvalidKeyError(f"not a valid x coordinate: {bytes(xonly).hex()}")
    return point


def _len(obj: object) -> str:
    try:
        return str(len(obj))  # type: ignore[arg-type]
    except TypeError:
        return type(obj).__name__


def to_xonly(pk: bytes | PublicKey) -> bytes:
    """Return the 32-byte x-only form of a 32-byte x-only or 33-byte compressed key (validated)."""
    if isinstance(pk, PublicKey):
        return pk.format(compressed=True)[1:]
    if not isinstance(pk, (bytes, bytearray)):
        raise InvalidKeyError(f"public key must be bytes, got {type(pk).__name__}")
    pk = bytes(pk)
    if len(pk) == 32:
        lift_x(pk)
        return pk
    if len(pk) == 33:
        if pk[0] not in (2, 3):
            raise InvalidKeyError(f"compressed key must start with 02/03, got {pk[0]:02x}")
        if _parse_point(pk) is None:
            raise InvalidKeyError(f"not a valid compressed key: {pk.hex()}")
        return pk[1:]
    raise InvalidKeyError(f"public key must be 32 (x-only) or 33 (compressed) bytes, got {len(pk)}")


def check_secret(sk: bytes) -> int:
    """Validate a 32-byte secret key and return it as an int in [1, n-1]."""
    if not isinstance(sk, (bytes, bytearray)) or len(sk) != 32:
        raise InvalidKeyError(f"secret key must be 32 bytes, got {_len(sk)}")
    d = int.from_bytes(sk, "big")
    if not 0 < d < N:
        raise InvalidKeyError("secret key out of range [1, n-1]")
    return d


def generate_secret() -> bytes:
    """Return a fresh random 32-byte secret key."""
    while True:
        sk = os.urandom(32)
        if 0 < int.from_bytes(sk, "big") < N:
            return sk


def pubkey_from_secret(sk: bytes) -> PublicKey:
    """Return the full public point sk·G."""
    check_secret(sk)
    return PublicKey.from_valid_secret(bytes(sk))


def xonly_from_secret(sk: bytes) -> bytes:
    """Return the 32-byte x-only public key of `sk`."""
    return pubkey_from_secret(sk).format(compressed=True)[1:]


def has_even_y(point: PublicKey) -> bool:
    """True iff the point has even Y."""
    return point.format(compressed=True)[0] == 2


def negate_secret(sk: bytes) -> bytes:
    """Return n - sk."""
    return ((N - check_secret(sk)) % N).to_bytes(32, "big")


def secret_even_y(sk: bytes) -> bytes:
    """Return sk or n-sk, whichever has an even-Y public key (BIP-340 normalisation)."""
    return sk if has_even_y(pubkey_from_secret(sk)) else negate_secret(sk)


def schnorr_sign(sk: bytes, msg32: bytes, aux32: bytes | None = None) -> bytes:
    """BIP-340 sign a 32-byte message with libsecp256k1; aux32 defaults to fresh randomness."""
    check_secret(sk)
    if not isinstance(msg32, (bytes, bytearray)) or len(msg32) != 32:
        raise InvalidSignatureError(f"message must be 32 bytes, got {_len(msg32)}")
    if aux32 is None:
        aux32 = os.urandom(32)
    elif len(aux32) != 32:
        raise InvalidSignatureError(f"aux randomness must be 32 bytes, got {len(aux32)}")
    return PrivateKey(bytes(sk)).sign_schnorr(bytes(msg32), bytes(aux32))


def schnorr_verify(xonly_pk: bytes, msg32: bytes, sig64: bytes) -> bool:
    """BIP-340 verify with libsecp256k1. Malformed keys raise InvalidKeyError; bad sigs return False."""
    key = _xonly_key(bytes(xonly_pk)) if isinstance(xonly_pk, (bytes, bytearray)) else _xonly_key(to_xonly(xonly_pk))
    if not isinstance(sig64, (bytes, bytearray)) or len(sig64) != 64:
        raise InvalidSignatureError(f"signature must be 64 bytes, got {_len(sig64)}")
    if not isinstance(msg32, (bytes, bytearray)) or len(msg32) != 32:
        raise InvalidSignatureError(f"message must be 32 bytes, got {_len(msg32)}")
    return key.verify(bytes(sig64), bytes(msg32))


@lru_cache(maxsize=8192)
def _xonly_key(pk: bytes) -> PublicKeyXOnly:
    """Validated, parsed x-only key, cached (verifiers see the same FP/covenant/staker keys again and again);
    malformed keys raise InvalidKeyError (exceptions are not cached)."""
    return PublicKeyXOnly(to_xonly(pk))


def taproot_tweak_pubkey(internal_xonly: bytes, merkle_root: bytes = b"") -> tuple[bytes, int]:
    """BIP-341 output key: returns (x(Q), parity of Q.y) for Q = P + H_TapTweak(P||root)·G."""
    internal_xonly = to_xonly(internal_xonly)
    tweak = tagged_hash("TapTweak", internal_xonly + merkle_root)
    if int.from_bytes(tweak, "big") >= N:
        raise InvalidKeyError("taproot tweak out of range")
    q = lift_x(internal_xonly).add(tweak)
    c = q.format(compressed=True)
    return c[1:], c[0] & 1


def taproot_tweak_secret(sk: bytes, merkle_root: bytes = b"") -> bytes:
    """Tweak a secret for a key-path spend of p2tr_script(output key) (BIP-86 when root is empty)."""
    d = int.from_bytes(secret_even_y(sk), "big")
    tweak = int.from_bytes(tagged_hash("TapTweak", xonly_from_secret(sk) + merkle_root), "big")
    if tweak >= N:
        raise InvalidKeyError("taproot tweak out of range")
    out = (d + tweak) % N
    if out == 0:
        raise InvalidKeyError("tweaked secret is zero")
    return out.to_bytes(32, "big")


# --- small point helpers over coincurve (None stands for the point at infinity) ---------------


def int_to_bytes32(x: int) -> bytes:
    """Big-endian 32-byte encoding of an int in [0, 2^256)."""
    return x.to_bytes(32, "big")


def point_from_scalar(k: int) -> PublicKey | None:
    """k·G (None when k ≡ 0 mod n)."""
    k %= N
    return None if k == 0 else PublicKey.from_valid_secret(int_to_bytes32(k))


def point_mul(point: PublicKey | None, k: int) -> PublicKey | None:
    """k·point (None for infinity)."""
    k %= N
    if point is None or k == 0:
        return None
    return point.multiply(int_to_bytes32(k))


def point_negate(point: PublicKey | None) -> PublicKey | None:
    """−point."""
    if point is None:
        return None
    c = point.format(compressed=True)
    return PublicKey(bytes([c[0] ^ 1]) + c[1:])


def point_add(a: PublicKey | None, b: PublicKey | None) -> PublicKey | None:
    """a + b (None for infinity)."""
    if a is None:
        return b
    if b is None:
        return a
    ca, cb = a.format(compressed=True), b.format(compressed=True)
    if ca[1:] == cb[1:]:
        if ca[0] != cb[0]:
            return None
        return a.multiply(int_to_bytes32(2))
    return PublicKey.combine_keys([a, b])


def xonly(point: PublicKey) -> bytes:
    """32-byte X coordinate of a point."""
    return point.format(compressed=True)[1:]


def bip340_challenge(r_x: bytes, p_x: bytes, msg32: bytes) -> int:
    """int(H_BIP0340/challenge(r_x || p_x || m)) mod n."""
    return int.from_bytes(tagged_hash("BIP0340/challenge", r_x + p_x + msg32), "big") % N
