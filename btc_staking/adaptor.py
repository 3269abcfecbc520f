"""Schnorr adaptor signatures as used by Babylon covenants (spec §4.6).

Encoding: 65 bytes = compressed(R0) || s0. Encryption keys are forced to even Y."""

from __future__ import annotations

import os
from dataclasses import dataclass

from coincurve import PublicKey

from .errors import AdaptorSignatureError
from .keys import (
    N,
    bip340_challenge,
    check_secret,
    has_even_y,
    int_to_bytes32,
    lift_x,
    point_add,
    point_from_scalar,
    point_mul,
    point_negate,
    pubkey_from_secret,
    schnorr_verify,
    secret_even_y,
    tagged_hash,
    to_xonly,
    xonly,
)

__all__ = ["AdaptorSignature", "encryption_key", "decryption_key", "encrypt_sign"]


def encryption_key(pk: bytes) -> PublicKey:
    """Encryption point T from a 32/33-byte key, forced to even Y (NewEncryptionKeyFromBTCPK)."""
    return lift_x(to_xonly(pk))


def decryption_key(sk: bytes) -> bytes:
    """Decryption scalar t with t·G = even-Y point (NewDecryptionKeyFromBTCSK)."""
    return secret_even_y(sk)


def _check_msg(msg32: bytes) -> bytes:
    if not isinstance(msg32, (bytes, bytearray)) or len(msg32) != 32:
        raise AdaptorSignatureError("adaptor message must be 32 bytes")
    return bytes(msg32)


@dataclass(frozen=True)
class AdaptorSignature:
    """Pre-signature (R0, s0); R0 keeps its parity."""

    r0: bytes  # 33-byte compressed point
    s0: int

    def __post_init__(self) -> None:
        if len(self.r0) != 33 or self.r0[0] not in (2, 3):
            raise AdaptorSignatureError("R0 must be a 33-byte compressed point")
        try:
            PublicKey(self.r0)
        except Exception as exc:
            raise AdaptorSignatureError("R0 is not on the curve") from exc
        if not 0 <= self.s0 < N:
            raise AdaptorSignatureError("s0 out of range")

    # -- encoding ---------------------------------------------------------------------------
    def serialize(self) -> bytes:
        """65-byte encoding compressed(R0) || s0."""
        return self.r0 + int_to_bytes32(self.s0)

    def __bytes__(self) -> bytes:
        return self.serialize()

    @classmethod
    def parse(cls, data: bytes) -> "AdaptorSignature":
        """Parse 65 bytes, or the legacy 66-byte form 02 || x || s || needsNegation."""
        if not isinstance(data, (bytes, bytearray)):
            raise AdaptorSignatureError("adaptor signature must be bytes")
        data = bytes(data)
        if len(data) == 65:
            s0 = int.from_bytes(data[33:], "big")
            if s0 >= N:
                raise AdaptorSignatureError("s0 out of range")
            return cls(data[:33], s0)
        if len(data) == 66:
            if data[0] != 2 or data[65] not in (0, 1):
                raise AdaptorSignatureError("malformed legacy 66-byte adaptor signature")
            s0 = int.from_bytes(data[33:65], "big")
            if s0 >= N:
                raise AdaptorSignatureError("s0 out of range")
            prefix = 3 if data[65] else 2
            return cls(bytes([prefix]) + data[1:33], s0)
        raise AdaptorSignatureError(f"adaptor signature must be 65 or 66 bytes, got {len(data)}")

    @property
    def r0_even(self) -> bool:
        """True iff R0 has even Y."""
        return self.r0[0] == 2

    # -- operations -------------------------------------------------------------------------
    def verify(self, pk: bytes, enc_pk: bytes, msg32: bytes) -> bool:
        """EncVerify: R = s0·G − e·P; T' = R0 − R (R0 even) or R0 + R (R0 odd); accept iff T' == T."""
        msg32 = _check_msg(msg32)
        p_x = to_xonly(pk)
        p_point = lift_x(p_x)
        t_point = encryption_key(enc_pk)
        e = bip340_challenge(self.r0[1:], p_x, msg32)
        r = point_add(point_from_scalar(self.s0), point_negate(point_mul(p_point, e)))
        if r is None:
            return False
        r0 = PublicKey(self.r0)
        t_prime = point_add(r0, point_negate(r) if self.r0_even else r)
        return t_prime is not None and t_prime.format() == t_point.format()

    def decrypt(self, dec_sk: bytes) -> bytes:
        """Complete to a 64-byte BIP-340 signature with the decryption secret (parity handled)."""
        t = int.from_bytes(decryption_key(dec_sk), "big")
        s = (self.s0 + t) % N if self.r0_even else (self.s0 - t) % N
        return self.r0[1:] + int_to_bytes32(s)

    def extract(self, sig64: bytes) -> bytes:
        """Recover the (even-Y) decryption secret from the completed signature."""
        if not isinstance(sig64, (bytes, bytearray)) or len(sig64) != 64:
            raise AdaptorSignatureError("signature must be 64 bytes")
        if bytes(sig64[:32]) != self.r0[1:]:
            raise AdaptorSignatureError("signature nonce does not match the adaptor signature")
        s = int.from_bytes(sig64[32:], "big")
        if s >= N:
            raise AdaptorSignatureError("signature s out of range")
        t = (s - self.s0) % N if self.r0_even else (self.s0 - s) % N
        if t == 0:
            raise AdaptorSignatureError("extracted secret is zero")
        return int_to_bytes32(t)

    def decrypt_and_verify(self, dec_sk: bytes, pk: bytes, msg32: bytes) -> bytes:
        """decrypt() then check the result is a valid BIP-340 signature under pk."""
        sig = self.decrypt(dec_sk)
        if not schnorr_verify(pk, msg32, sig):
            raise AdaptorSignatureError("decrypted signature does not verify (wrong decryption key?)")
        return sig


def encrypt_sign(sk: bytes, enc_pk: bytes, msg32: bytes, aux32: bytes | None = None) -> AdaptorSignature:
    """EncSign(sk, T, m): R0 = k0·G + T, s0 = k + e·d with k = ±k0 so that ±R0 has even Y."""
    msg32 = _check_msg(msg32)
    check_secret(sk)
    if aux32 is None:
        aux32 = os.urandom(32)
    if len(aux32) != 32:
        raise AdaptorSignatureError("aux randomness must be 32 bytes")
    t_point = encryption_key(enc_pk)
    p_full = pubkey_from_secret(sk)
    d = int.from_bytes(sk, "big") if has_even_y(p_full) else N - int.from_bytes(sk, "big")
    p_x = xonly(p_full)
    masked = bytes(a ^ b for a, b in zip(int_to_bytes32(d), tagged_hash("SchnorrAdaptor/aux", aux32)))
    k0 = int.from_bytes(
        tagged_hash("SchnorrAdaptor/nonce", masked + t_point.format() + p_full.format() + msg32), "big"
    ) % N
    if k0 == 0:
        raise AdaptorSignatureError("nonce is zero")
    r0 = point_add(point_from_scalar(k0), t_point)
    if r0 is None:
        raise AdaptorSignatureError("R0 is infinity")
    k = k0 if has_even_y(r0) else N - k0
    e = bip340_challenge(xonly(r0), p_x, msg32)
    sig = AdaptorSignature(r0.format(), (k + e * d) % N)
    return sig




#: Also reachable as ``AdaptorSignature.encrypt_sign(sk, enc_pk, msg32)``.
AdaptorSignature.encrypt_sign = staticmethod(encrypt_sign)  # type: ignore[attr-defined]
