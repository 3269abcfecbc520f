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
with the finality module's JSON messages): ``CallableChannel`` wraps two callables (e.g. a
``StandaloneFinality``), ``AppChannel`` sends cosmpy-signed ``MsgExecuteContract`` txs to an
in-process :class:`cosmos_chain.app.ChainApp` (one block per tx by default, or through a
caller-supplied ``deliver``), and ``ClientChannel`` goes through a
``checkpoint.chain_client.ChainClient`` (cosmpy ``LedgerClient``) to a running node.
Rejections raise :class:`ChainRejected` (``AppChannel``) or ``checkpoint.errors.ChainError``
(``ClientChannel``) with the chain's ``raw_log``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Protocol

from btc_staking import eots
from btc_staking.keys import N, check_secret, int_to_bytes32, tagged_hash, xonly_from_secret

if TYPE_CHECKING:  # pragma: no cover
    from cosmpy.aerial.wallet import Wallet

    from checkpoint.chain_client import ChainClient
    from cosmos_chain.app import ChainApp, TxResult

__all__ = ["FinalityProviderError", "DoubleSignRefused", "ChainRejected", "FinalityChannel", "CallableChannel",
           "AppChannel", "ClientChannel", "FinalityProvider", "derive_nonce", "sign_execute_tx"]


class FinalityProviderError(ValueError):
    """Client-side misuse: no commit for a height, bad range, ..."""


class DoubleSignRefused(FinalityProviderError):
    """``vote`` was asked to sign a second, different app hash at one height."""


class ChainRejected(FinalityProviderError):
    """The chain refused the tx; ``code`` and ``log`` are the chain's (``raw_log``)."""

    def __init__(self, code: int, log: str) -> None:
        super().__init__(f"chain rejected the tx (code {code}): {log}")
        self.code = code
        self.log = log


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


def sign_execute_tx(wallet: "Wallet", contract: str, msg: dict, *, chain_id: str, account_number: int,
                    sequence: int, gas_limit: int, fee: str) -> bytes:
    """A cosmpy-built, SIGN_MODE_DIRECT-signed ``MsgExecuteContract`` tx (raw bytes)."""
    from cosmpy.aerial.tx import SigningCfg, Transaction, TxFee
    from cosmpy.protos.cosmwasm.wasm.v1.tx_pb2 import MsgExecuteContract

    tx = Transaction()
    tx.add_message(MsgExecuteContract(sender=str(wallet.address()), contract=contract,
                                      msg=json.dumps(msg, sort_keys=True).encode()))
    tx.seal(SigningCfg.direct(wallet.public_key(), sequence), fee=TxFee(amount=fee, gas_limit=gas_limit))
    tx.sign(wallet.signer(), chain_id, account_number)
    tx.complete()
    return tx.tx.SerializeToString()


@dataclass
class AppChannel:
    """Signed txs to the finality module of an in-process ``ChainApp``.

    ``submit`` signs with the wallet's committed account number/sequence, pays
    ``ceil(gas_limit × min_gas_price)`` and hands the tx to ``deliver`` (default: finalize and
    commit a block holding just this tx, ``block_interval`` seconds after the last one). Returns
    the module's result dict; raises :class:`ChainRejected` when the tx fails."""

    app: "ChainApp"
    wallet: "Wallet"
    deliver: Callable[[bytes], "TxResult"] | None = None
    gas_limit: int = 2_000_000
    block_interval: float = 1.0
    contract: str = "finality"

    def _contract_address(self) -> str:
        return self.app.module(self.contract).address

    def sign(self, msg: dict) -> bytes:
        """The signed tx for ``msg`` (does not submit it)."""
        address = str(self.wallet.address())
        acct = self.app.account(address)
        if acct is None:
            raise FinalityProviderError(f"account {address} does not exist on chain {self.app.chain_id}")
        denom, price = self.app.fee_params()
        fee = f"{math.ceil(Decimal(self.gas_limit) * price)}{denom}"
        return sign_execute_tx(self.wallet, self._contract_address(), msg, chain_id=self.app.chain_id,
                               account_number=acct["account_number"], sequence=acct["sequence"],
                               gas_limit=self.gas_limit, fee=fee)

    def _produce_block(self, tx: bytes) -> "TxResult":
        last = self.app.latest_block()
        t = (last["time"] if last else self.app.genesis_time) + self.block_interval
        results, _ = self.app.finalize_block(self.app.last_height + 1, t, [tx])
        self.app.commit()
        return results[0]

    def submit(self, msg: dict) -> Any:
        result = (self.deliver or self._produce_block)(self.sign(msg))
        if result.code != 0:
            raise ChainRejected(result.code, result.log)
        datas = json.loads(result.data or b"[]")
        return datas[0] if datas else None

    def query(self, msg: dict) -> Any:
        return self.app.smart_query(self._contract_address(), msg)


@dataclass
class ClientChannel:
    """The finality module of a running node through ``checkpoint.chain_client.ChainClient``
    (cosmpy ``LedgerClient``). ``submit`` returns the committed tx hash."""

    client: "ChainClient"
    wallet: "Wallet"
    contract: str = ""  # bech32 address of the finality module; default: module_address("finality")

    def __post_init__(self) -> None:
        if not self.contract:
            from cosmos_chain.modules.base import module_address

            hrp = str(self.wallet.address()).rsplit("1", 1)[0]  # bech32 prefix of the chain
            self.contract = module_address("finality", hrp)

    def submit(self, msg: dict) -> Any:
        return self.client.execute(self.contract, msg, self.wallet)

    def query(self, msg: dict) -> Any:
        return self.client.query(self.contract, msg)


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

    def chain_height(self) -> int:
        """The chain's latest committed height (finality ``status`` query)."""
        return int(self.chain.query({"status": {}})["height"])

    def commit_pub_rand_ahead(self, num_pub_rand: int, lead: int = 2) -> Any:
        """Commit randomness for [h + lead, h + lead + num) with h the chain's latest height: the
        chain refuses a start that is not above the height of the block including the commit, so
        ``lead`` must cover the blocks the tx may wait (≥ 2; more on a fast CometBFT chain)."""
        if not isinstance(lead, int) or lead < 2:
            raise FinalityProviderError("lead must be an int ≥ 2 (the commit lands in a later block)")
        for _ in range(4):  # the chain may outrun the lead (building the list, a slow inclusion): widen it
            start = self.chain_height() + lead
            msg = self.pub_rand_commit_msg(start, num_pub_rand)
            if self.chain_height() + 1 < start:
                try:
                    return self.chain.submit(msg)
                except Exception as exc:
                    self.commits.pop()
                    if "not above the current height" not in str(exc):
                        raise
            else:
                self.commits.pop()
            lead *= 2
        raise FinalityProviderError(f"the chain outran every lead up to {lead // 2} blocks")

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

    def block_app_hash(self, height: int) -> bytes | None:
        """Block ``height``'s header app hash as the chain indexed it (what a vote signs; None
        until block ``height`` began)."""
        h = self.chain.query({"block_app_hash": {"height": height}})["app_hash"]
        return None if h is None else bytes.fromhex(h)

    def vote_block(self, height: int) -> Any:
        """Honest vote on the chain's own app hash of block ``height``."""
        app_hash = self.block_app_hash(height)
        if app_hash is None:
            raise FinalityProviderError(f"the chain has no app hash for height {height} yet")
        return self.vote(height, app_hash)

    def double_sign(self, height: int, fork_app_hash: bytes) -> Any:
        """Demo only: vote on a conflicting app hash at ``height`` with the same randomness."""
        return self.chain.submit(self.vote_msg(height, fork_app_hash))

    def voting_power(self, height: int) -> int:
        """This FP's voting power at ``height`` (the chain's power table)."""
        return int(self.chain.query({"finality_provider": {"fp_btc_pk": self.btc_pk_hex, "height": height}})
                   ["voting_power"])

    def vote_pending(self, up_to: int | None = None) -> list[int]:
        """Vote honestly on every indexed height ≤ ``up_to`` (default: the latest) that this FP has
        randomness and voting power for and has not voted on yet; returns the heights voted."""
        top = self.chain_height() if up_to is None else up_to
        voted = []
        for c in self.commits:
            for height in range(c.start, min(c.start + c.num - 1, top) + 1):
                if height in self.voted or self.voting_power(height) <= 0:
                    continue
                app_hash = self.block_app_hash(height)
                if app_hash is None:
                    continue
                self.vote(height, app_hash)
                voted.append(height)
        return voted

    def unjail(self) -> Any:
        """Ask the chain to lift this FP's liveness jail (after ``jail_duration``)."""
        return self.chain.submit({"unjail_finality_provider": {"fp_btc_pk": self.btc_pk_hex}})

    def status(self) -> dict:
        """``{fp_btc_pk, height, voting_power, state, jailed_until}`` from the chain."""
        return self.chain.query({"finality_provider": {"fp_btc_pk": self.btc_pk_hex}})

    # ------------------------------------------------------------------ queries
    def is_slashed(self) -> bool:
        """Whether the chain marked this FP slashed."""
        return bool(self.chain.query({"is_slashed": {"fp_btc_pk": self.btc_pk_hex}})["slashed"])
