"""Finality-provider client: commits EOTS public randomness and casts finality votes.

Nonces are derived deterministically, so nothing secret has to be stored per height::

    k(h) = int(H_tag("btcmesh/eots-nonce", sk || context || uint64_be(h) || uint32_be(ctr))) mod n

with ``ctr`` the first counter (from 0) giving a non-zero scalar and ``context`` a caller-chosen
byte string (e.g. the chain id). The pub rand for height ``h`` is ``x(k(h)·G)``. Because the nonce
is a function of the height alone, signing two different app hashes at one height reveals the
secret key — which is exactly the EOTS guarantee. ``vote`` therefore refuses to sign a second,
different app hash at a height it already voted on; only ``double_sign`` (for the slashing demo)
does it on purpose.

The client talks to the chain through a ``FinalityChannel`` (``submit(msg)`` / ``query(msg)``
with the finality module's JSON messages); ``ModuleChannel`` drives an in-process module,
``ClientChannel`` a cosmpy ``checkpoint.chain_client.ChainClient``, and
``AppChannel`` an in-process ``cosmos_chain`` app (see ``cosmos_chain.mesh``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from btc_staking import eots
from btc_staking.keys import N, check_secret, int_to_bytes32, tagged_hash, xonly_from_secret

__all__ = ["FinalityProviderError", "DoubleSignRefused", "FinalityChannel", "CallableChannel",
           "FinalityProvider", "derive_nonce"]


class FinalityProviderError(ValueError):
    """Client-side misuse: no commit for a height, bad range, ..."""


class DoubleSignRefused(FinalityProviderError):
    """``vote`` was asked to sign a second, different app hash at one height."""


class FinalityChannel(Protocol):
    """Transport to the finality module."""

    def submit(self, msg: dict) -> Any:
        """Execute one finality-module message (raises on rejection)."""

    def query(self, msg: dict) -> Any:
        """Smart-query the finality module."""


@dataclass
class CallableChannel:
    """Channel from two callables (``submit(msg)``, ``query(msg)``)."""

    submit_fn: Callable[[dict], Any]
    query_fn: Callable[[dict], Any]

    def submit(self, msg: dict) -> Any:
        return self.submit_fn(msg)

    def query(self, msg: dict) -> Any:
        return self.query_fn(msg)


def derive_nonce(secret: bytes, height: int, context: bytes = b"") -> bytes:
    """Deterministic EOTS nonce k(h) for ``height`` (see module docstring)."""
    if not isinstance(height, int) or not 0 <= height < 2**64:
        raise FinalityProviderError(f"height must be a uint64, got {height!r}")
    ctr = 0
    while True:
        k = int.from_bytes(tagged_hash("btcmesh/eots-nonce", bytes(secret) + bytes(context)
                                       + height.to_bytes(8, "big") + ctr.to_bytes(4, "big")), "big") % N
        if k:
            return int_to_bytes32(k)
        ctr += 1


@dataclass
class _Commit:
    start: int
    num: int
    root: bytes
    proofs: list[eots.MerkleProof]


@dataclass
class FinalityProvider:
    """One finality provider: its BTC secret key and a channel to the chain."""

    secret: bytes
    chain: FinalityChannel
    context: bytes = b""
    commits: list[_Commit] = field(default_factory=list)
    voted: dict[int, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_secret(self.secret)

    @property
    def btc_pk(self) -> bytes:
        """x-only public key (32 bytes)."""
        return xonly_from_secret(self.secret)

    @property
    def btc_pk_hex(self) -> str:
        return self.btc_pk.hex()

    def nonce(self, height: int) -> bytes:
        """Secret randomness for ``height``."""
        return derive_nonce(self.secret, height, self.context)

    def pub_rand(self, height: int) -> bytes:
        """Public randomness x(k(h)·G)."""
        return eots.pub_rand(self.nonce(height))

    # ------------------------------------------------------------------ commit
    def pub_rand_commit_msg(self, start_height: int, num_pub_rand: int) -> dict:
        """Build (and remember) a ``commit_pub_rand_list`` message for [start, start+num)."""
        if not isinstance(num_pub_rand, int) or num_pub_rand < 1:
            raise FinalityProviderError("num_pub_rand must be a positive int")
        if not isinstance(start_height, int) or start_height < 0:
            raise FinalityProviderError("start_height must be a non-negative int")
        rands = [self.pub_rand(h) for h in range(start_height, start_height + num_pub_rand)]
        root, proofs = eots.commit_pub_rand(rands)
        sig = eots.sign_pub_rand_commit(self.secret, start_height, num_pub_rand, root)
        self.commits.append(_Commit(start_height, num_pub_rand, root, proofs))
        return {"commit_pub_rand_list": {"fp_btc_pk": self.btc_pk_hex, "start_height": start_height,
                                         "num_pub_rand": num_pub_rand, "commitment": root.hex(), "sig": sig.hex()}}

    def commit_pub_rand(self, start_height: int, num_pub_rand: int) -> Any:
        """Commit public randomness for heights [start, start+num) on chain."""
        msg = self.pub_rand_commit_msg(start_height, num_pub_rand)
        try:
            return self.chain.submit(msg)
        except Exception:
            self.commits.pop()
            raise

    # ------------------------------------------------------------------ votes
    def _proof(self, height: int) -> eots.MerkleProof:
        for c in reversed(self.commits):
            if c.start <= height < c.start + c.num:
                return c.proofs[height - c.start]
        raise FinalityProviderError(f"no public randomness committed for height {height}")

    def vote_msg(self, height: int, app_hash: bytes) -> dict:
        """Build an ``add_finality_sig`` message (no double-sign guard; nothing submitted)."""
        proof = self._proof(height)
        sig = eots.sign(self.secret, self.nonce(height), eots.vote_message(height, app_hash))
        return {"add_finality_sig": {"fp_btc_pk": self.btc_pk_hex, "block_height": height,
                                     "pub_rand": self.pub_rand(height).hex(), "proof": proof.to_dict(),
                                     "block_app_hash": bytes(app_hash).hex(), "finality_sig": sig.hex()}}

    def vote(self, height: int, app_hash: bytes) -> Any:
        """Honest vote on ``app_hash`` at ``height``; refuses to sign a second, different hash."""
        prev = self.voted.get(height)
        if prev is not None and prev != bytes(app_hash):
            raise DoubleSignRefused(f"already voted {prev.hex()} at height {height}; refusing to equivocate")
        result = self.chain.submit(self.vote_msg(height, app_hash))
        self.voted[height] = bytes(app_hash)
        return result

    def double_sign(self, height: int, fork_app_hash: bytes) -> Any:
        """Demo only: vote on a conflicting app hash at ``height`` with the same randomness."""
        return self.chain.submit(self.vote_msg(height, fork_app_hash))

    # ------------------------------------------------------------------ queries
    def is_slashed(self) -> bool:
        """Whether the chain marked this FP slashed."""
        return bool(self.chain.query({"is_slashed": {"fp_btc_pk": self.btc_pk_hex}})["slashed"])
