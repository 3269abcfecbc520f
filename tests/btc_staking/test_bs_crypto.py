"""EOTS and adaptor-signature properties over many random keys, all parities covered.
btclib's pure-Python BIP-340 verifier (independent of libsecp256k1) is used as an oracle."""

from __future__ import annotations

import hashlib
import os
from collections import Counter

import pytest
from btclib.ecc import ssa

from btc_staking import eots
from btc_staking.adaptor import AdaptorSignature, encrypt_sign
from btc_staking.errors import AdaptorSignatureError, EOTSError, InvalidKeyError, InvalidProofError
from btc_staking.keys import (
    N,
    generate_secret,
    has_even_y,
    negate_secret,
    pubkey_from_secret,
    schnorr_sign,
    schnorr_verify,
    secret_even_y,
    xonly_from_secret,
)

ROUNDS = 64


def _sk_with_parity(even: bool) -> bytes:
    sk = generate_secret()
    return sk if has_even_y(pubkey_from_secret(sk)) == even else negate_secret(sk)


def test_schnorr_sign_verify_matches_btclib():
    for _ in range(16):
        sk, msg = generate_secret(), os.urandom(32)
        sig = schnorr_sign(sk, msg)
        assert schnorr_verify(xonly_from_secret(sk), msg, sig)
        assert ssa.verify_(msg, xonly_from_secret(sk), sig)
        bad = sig[:63] + bytes([sig[63] ^ 1])
        assert not schnorr_verify(xonly_from_secret(sk), msg, bad)
        assert not ssa.verify_(msg, xonly_from_secret(sk), bad)


def test_eots_sign_verify_extract_all_parities():
    seen = Counter()
    for i in range(ROUNDS):
        sk = _sk_with_parity(even=bool(i & 1))
        k = _sk_with_parity(even=bool(i & 2))
        seen[(has_even_y(pubkey_from_secret(sk)), has_even_y(pubkey_from_secret(k)))] += 1
        pk, pr = xonly_from_secret(sk), eots.pub_rand(k)
        assert pr == xonly_from_secret(k)
        height = int.from_bytes(os.urandom(4), "big")
        m1, m2 = eots.vote_message(height, os.urandom(32)), eots.vote_message(height, os.urandom(32))
        s1, s2 = eots.sign(sk, k, m1), eots.sign(sk, k, m2)
        assert eots.verify(pk, pr, m1, s1) and eots.verify(pk, pr, m2, s2)
        # independent oracle: (pub_rand || s) is a BIP-340 signature over SHA256(m)
        assert ssa.verify_(hashlib.sha256(m1).digest(), pk, pr + s1)
        assert ssa.verify_(hashlib.sha256(m2).digest(), pk, pr + s2)
        # tamper: wrong message, wrong s, wrong randomness, wrong key
        assert not eots.verify(pk, pr, m2, s1)
        assert not eots.verify(pk, pr, m1, ((int.from_bytes(s1, "big") + 1) % N).to_bytes(32, "big"))
        assert not eots.verify(pk, eots.pub_rand(eots.new_nonce()), m1, s1)
        assert not eots.verify(xonly_from_secret(generate_secret()), pr, m1, s1)
        # double signing reveals the (even-Y) key
        x = eots.extract_secret(pk, pr, m1, s1, m2, s2)
        assert x == secret_even_y(sk)
        assert xonly_from_secret(x) == pk
        # the extracted key signs like the FP
        msg = os.urandom(32)
        assert schnorr_verify(pk, msg, schnorr_sign(x, msg))
    assert len(seen) == 4, seen


def test_eots_extract_rejects_bad_inputs():
    sk, k = generate_secret(), eots.new_nonce()
    pk, pr = xonly_from_secret(sk), eots.pub_rand(k)
    m1, m2 = eots.vote_message(1, b"\x01" * 32), eots.vote_message(1, b"\x02" * 32)
    s1, s2 = eots.sign(sk, k, m1), eots.sign(sk, k, m2)
    with pytest.raises(EOTSError):
        eots.extract_secret(pk, pr, m1, s1, m1, s1)  # same message
    with pytest.raises(EOTSError):
        eots.extract_secret(pk, pr, m1, s1, m2, s1)  # invalid second signature
    with pytest.raises(EOTSError):  # signatures under different randomness
        k2 = eots.new_nonce()
        eots.extract_secret(pk, pr, m1, s1, m2, eots.sign(sk, k2, m2))
    with pytest.raises(EOTSError):
        eots.extract_secret(xonly_from_secret(generate_secret()), pr, m1, s1, m2, s2)
    with pytest.raises(EOTSError):
        eots.sign(sk, b"\x00" * 32, m1)
    with pytest.raises(EOTSError):
        eots.verify(pk, pr, m1, b"\x01" * 31)
    with pytest.raises(EOTSError):
        eots.verify(pk, pr, m1, N.to_bytes(32, "big"))
    with pytest.raises(EOTSError):
        eots.vote_message(-1, b"\x00" * 32)
    with pytest.raises(EOTSError):
        eots.vote_message(1, b"\x00" * 31)
    with pytest.raises(InvalidKeyError):
        eots.verify(b"\x01" * 31, pr, m1, s1)


def test_adaptor_encsign_verify_decrypt_extract_all_parities():
    seen = Counter()
    for i in range(ROUNDS * 2):
        sk = _sk_with_parity(even=bool(i & 1))
        fp_sk = _sk_with_parity(even=bool(i & 2))
        pk, fp_pk33 = xonly_from_secret(sk), pubkey_from_secret(fp_sk).format()
        msg = os.urandom(32)
        # encryption key given as the 33-byte compressed FP key (03… is normalised to even)
        a = encrypt_sign(sk, fp_pk33, msg)
        seen[(has_even_y(pubkey_from_secret(sk)), fp_pk33[0] == 2, a.r0_even)] += 1
        assert len(a.serialize()) == 65
        assert AdaptorSignature.parse(a.serialize()) == a
        assert a.verify(pk, fp_pk33, msg) and a.verify(pk, fp_pk33[1:], msg)
        # tamper cases fail
        assert not a.verify(pk, xonly_from_secret(generate_secret()), msg)
        assert not a.verify(pk, fp_pk33, os.urandom(32))
        assert not a.verify(xonly_from_secret(generate_secret()), fp_pk33, msg)
        assert not AdaptorSignature(a.r0, (a.s0 + 1) % N).verify(pk, fp_pk33, msg)
        # decrypting with the FP secret (either sign) gives a valid BIP-340 signature
        sig = a.decrypt(fp_sk)
        assert sig == a.decrypt(negate_secret(fp_sk))
        assert schnorr_verify(pk, msg, sig)
        assert ssa.verify_(msg, pk, sig)
        assert a.decrypt_and_verify(fp_sk, pk, msg) == sig
        # and the pair reveals the (even-Y) FP secret
        t = a.extract(sig)
        assert t == secret_even_y(fp_sk)
        assert xonly_from_secret(t) == fp_pk33[1:]
        # wrong decryption key → invalid signature
        wrong = a.decrypt(generate_secret())
        assert not schnorr_verify(pk, msg, wrong)
        assert not ssa.verify_(msg, pk, wrong)
    assert len(seen) == 8, seen


def test_adaptor_parsing_and_errors():
    sk, fp_sk, msg = generate_secret(), generate_secret(), os.urandom(32)
    a = encrypt_sign(sk, xonly_from_secret(fp_sk), msg)
    # legacy 66-byte form: 02 || x(R0) || s0 || needsNegation
    legacy = b"\x02" + a.r0[1:] + a.s0.to_bytes(32, "big") + bytes([0 if a.r0_even else 1])
    assert AdaptorSignature.parse(legacy) == a
    for bad in (b"", a.serialize()[:64], b"\x04" + a.serialize()[1:], a.r0 + N.to_bytes(32, "big"),
                b"\x02" + b"\xff" * 32 + b"\x01" * 32):
        with pytest.raises(AdaptorSignatureError):
            AdaptorSignature.parse(bad)
    with pytest.raises(AdaptorSignatureError):
        encrypt_sign(sk, xonly_from_secret(fp_sk), b"\x00" * 31)
    with pytest.raises(InvalidKeyError):
        encrypt_sign(sk, b"\x02" * 31, msg)
    with pytest.raises(AdaptorSignatureError):
        a.extract(os.urandom(64))  # nonce mismatch


def test_pub_rand_commitment_cometbft():
    """CometBFT simple merkle tree: leaf 0x00, inner 0x01, split = largest power of two < n."""

    def h(b):
        return hashlib.sha256(b).digest()

    prs = [os.urandom(32) for _ in range(5)]
    leaf = [h(b"\x00" + p) for p in prs]
    inner = lambda a, b: h(b"\x01" + a + b)  # noqa: E731
    # hand-built tree for n = 5: split 4 | 1
    expected = inner(inner(inner(leaf[0], leaf[1]), inner(leaf[2], leaf[3])), leaf[4])
    root, proofs = eots.commit_pub_rand(prs)
    assert root == expected
    assert eots.commit_pub_rand(prs[:1])[0] == leaf[0]
    assert eots.commit_pub_rand(prs[:3])[0] == inner(inner(leaf[0], leaf[1]), leaf[2])
    assert eots.pub_rand_root([]) == h(b"")
    for n in range(1, 18):
        items = [os.urandom(32) for _ in range(n)]
        r, ps = eots.commit_pub_rand(items)
        for i, p in enumerate(ps):
            assert p.total == n and p.index == i
            assert eots.verify_pub_rand_proof(r, items[i], p)
            assert eots.MerkleProof.from_dict(p.to_dict()) == p
            assert not eots.verify_pub_rand_proof(r, os.urandom(32), p)
            if n > 1:
                wrong_idx = eots.MerkleProof(p.total, (i + 1) % n, p.leaf_hash, p.aunts)
                assert not eots.verify_pub_rand_proof(r, items[i], wrong_idx)
    with pytest.raises(EOTSError):
        eots.commit_pub_rand([])
    with pytest.raises(EOTSError):
        eots.commit_pub_rand([b"\x00" * 31])
    with pytest.raises(InvalidProofError):
        eots.verify_pub_rand_proof(b"\x00" * 31, prs[0], proofs[0])


def test_pub_rand_commit_signature():
    sk = generate_secret()
    root, _ = eots.commit_pub_rand([os.urandom(32) for _ in range(4)])
    sig = eots.sign_pub_rand_commit(sk, 100, 4, root)
    digest = hashlib.sha256((100).to_bytes(8, "big") + (4).to_bytes(8, "big") + root).digest()
    assert ssa.verify_(digest, xonly_from_secret(sk), sig)
    assert eots.verify_pub_rand_commit(xonly_from_secret(sk), 100, 4, root, sig)
    assert not eots.verify_pub_rand_commit(xonly_from_secret(sk), 101, 4, root, sig)
    with pytest.raises(EOTSError):
        eots.pub_rand_commit_digest(1, 0, root)


def test_api_aliases():
    sk, fp_sk, msg = generate_secret(), generate_secret(), os.urandom(32)
    a = AdaptorSignature.encrypt_sign(sk, xonly_from_secret(fp_sk), msg)
    assert a.verify(xonly_from_secret(sk), xonly_from_secret(fp_sk), msg)
    prs = [os.urandom(32) for _ in range(3)]
    root, proofs = eots.commit_pub_rand(prs)
    assert eots.verify_pub_rand_proof(root, prs[2], proofs[2].to_dict())


def test_bip340_proof_of_possession():
    from btc_staking.errors import InvalidSignatureError
    from btc_staking.signing import sign_pop_bip340, verify_pop_bip340

    sk, addr = generate_secret(), os.urandom(20)
    sig = sign_pop_bip340(sk, addr)
    assert ssa.verify_(hashlib.sha256(addr).digest(), xonly_from_secret(sk), sig)
    assert verify_pop_bip340(xonly_from_secret(sk), addr, sig)
    assert not verify_pop_bip340(xonly_from_secret(sk), os.urandom(20), sig)
    with pytest.raises(InvalidSignatureError):
        sign_pop_bip340(sk, b"")
