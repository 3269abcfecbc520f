"""A real btcmesh chain for the API tests: Bitcoin side built with ``btc_staking``, chain side
driven by cosmpy-signed ``MsgExecuteContract`` txs against ``LocalChain``.

* ``MiniBtc`` mines real blocks (coinbase + our txs, real merkle roots, PoW at regtest ``bits``)
  and serves headers and merkle inclusion proofs to relay to the chain's BTC light client.
* ``Delegation`` (:class:`btcmesh_testkit.btc.StakeFixture` with this suite's keys) builds everything
  ``create_btc_delegation`` needs plus covenant signatures and oracle-checked spends.
* ``StakingChain`` wraps ``LocalChain`` + a funded cosmpy wallet and sends the registry and light
  client messages of ``docs/CHAIN_MESSAGES.md``.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from cosmpy.aerial.client.utils import prepare_and_broadcast_basic_transaction
from cosmpy.aerial.exceptions import BroadcastError
from cosmpy.aerial.tx import Transaction, TxFee
from cosmpy.aerial.wallet import LocalWallet
from cosmpy.protos.cosmwasm.wasm.v1.tx_pb2 import MsgExecuteContract

from btcmesh_testkit.btc import (  # noqa: F401  (small_params and its constants are re-exported)
    K, NUM_COVENANTS, QUORUM, UNBONDING_TIME, StakeFixture, labelled_secret, mine_header, pop_hex, small_params,
)

from btc_staking.headers import BlockHeader
from btc_staking.keys import xonly_from_secret
from btc_staking.merkle import build_merkle_proof, merkle_root
from btc_staking.params import StakingParams
from btc_staking.tx import OutPoint, Tx, TxIn, TxOut, p2tr_script
from btcmesh.finality_provider import sign_execute_tx
from cosmos_chain.app import ChainApp
from cosmos_chain.genesis import build_genesis, deterministic_wallet
from cosmos_chain.modules.base import Context, Module, module_address
from cosmos_chain.rest import LocalChain

CHAIN_ID = "btcmesh-api-test"
DENOM = "ubbn"
GAS_LIMIT = 3_000_000
TX_TIMEOUT = 20.0


SECRET_NAMESPACE = b"btcmesh-api-test/"


def secret(label: str) -> bytes:
    """Deterministic secp256k1 secret for a label."""
    return labelled_secret(SECRET_NAMESPACE, label)


# ---------------------------------------------------------------------------- Bitcoin side


@dataclass
class MinedBlock:
    """A mined block: header, height and its txids (internal order, coinbase first)."""

    header: BlockHeader
    height: int
    txids: list[bytes]


class MiniBtc:
    """A linear regtest block chain: real headers with PoW, real merkle roots and proofs."""

    def __init__(self, start_time: int = 1_700_000_000) -> None:
        self.blocks: list[MinedBlock] = []
        self._time = start_time
        self.mine()  # the light client's trusted base at height 0

    @property
    def tip_height(self) -> int:
        """Height of the last block."""
        return len(self.blocks) - 1

    def base(self) -> dict[str, Any]:
        """``btc_light_client`` genesis section."""
        return {"base": {"height": 0, "header": self.blocks[0].header.serialize().hex()}}

    def mine(self, txs: list[Tx] = (), n: int = 1) -> list[MinedBlock]:  # type: ignore[assignment]
        """Mine ``n`` blocks; ``txs`` go into the first."""
        out = []
        for i in range(n):
            height = len(self.blocks)
            coinbase = Tx(2, [TxIn(OutPoint(b"\0" * 32, 0xFFFFFFFF), script_sig=bytes([3]) + height.to_bytes(3, "little"),
                                   sequence=0xFFFFFFFF)], [TxOut(50_0000_0000, p2tr_script(xonly_from_secret(secret("miner"))))], 0)
            block_txs = [coinbase] + (list(txs) if i == 0 else [])
            txids = [t.txid() for t in block_txs]
            prev = self.blocks[-1].header.hash() if self.blocks else b"\0" * 32
            self._time += 600
            header = mine_header(prev, merkle_root(txids), self._time)
            block = MinedBlock(header, height, txids)
            self.blocks.append(block)
            out.append(block)
        return out

    def headers_after(self, height: int) -> list[str]:
        """Hex headers above ``height`` (parent first)."""
        return [b.header.serialize().hex() for b in self.blocks[height + 1:]]

    def find(self, tx: Tx) -> tuple[MinedBlock, int]:
        """The block containing ``tx`` and its index."""
        txid = tx.txid()
        for b in self.blocks:
            if txid in b.txids:
                return b, b.txids.index(txid)
        raise KeyError(f"tx {tx.txid_hex()} not mined")

    def inclusion_proof(self, tx: Tx) -> dict[str, Any]:
        """``{block_hash, index, proof}`` for a mined tx."""
        block, index = self.find(tx)
        return {"block_hash": block.header.hash_hex(), "index": index,
                "proof": build_merkle_proof(block.txids, index).hex()}


# ---------------------------------------------------------------------------- delegations


@dataclass
class FinalityProviderKey:
    """A finality provider's BTC key."""

    label: str

    @property
    def sk(self) -> bytes:
        return secret("fp/" + self.label)

    @property
    def pk(self) -> bytes:
        return xonly_from_secret(self.sk)


class Delegation(StakeFixture):
    """One staker's BTC delegation with every tx and signature the registry needs (keys from :func:`secret`)."""

    SECRET_NAMESPACE = SECRET_NAMESPACE


# ---------------------------------------------------------------------------- chain side


class TxFailed(RuntimeError):
    """A chain tx was rejected (carries the raw log)."""


class StakingChain:
    """``LocalChain`` with the BTC light client + staking registry, and a funded cosmpy wallet."""

    def __init__(self, btc: MiniBtc, params: list[StakingParams], *, block_interval: float = 0.05,
                 extra_genesis: dict[str, Any] | None = None) -> None:
        self.btc = btc
        self.wallet: LocalWallet = deterministic_wallet("api-test-sender")
        self.sender = str(self.wallet.address())
        sections: dict[str, Any] = {
            "btc_light_client": btc.base(),
            "btc_staking": {"params": [p.to_dict() for p in params]},
        }
        sections.update(extra_genesis or {})
        genesis = build_genesis({self.sender: 10**13}, denom=DENOM, **sections)
        self.chain = LocalChain(CHAIN_ID, genesis, block_interval=block_interval)
        self.client = self.chain.ledger_client(query_interval_secs=0.05, query_timeout_secs=TX_TIMEOUT)
        self.registry = module_address("btc_staking")
        self.light_client = module_address("btc_light_client")
        self.relayed = 0
        self.closed = False

    def execute(self, contract: str, msg: dict[str, Any]) -> Any:
        """Sign (cosmpy, SIGN_MODE_DIRECT), broadcast and wait for one execute msg; raise TxFailed on failure."""
        tx = Transaction()
        tx.add_message(MsgExecuteContract(sender=self.sender, contract=contract, msg=json.dumps(msg).encode()))
        try:
            submitted = prepare_and_broadcast_basic_transaction(self.client, tx, self.wallet,
                                                                fee=TxFee(gas_limit=GAS_LIMIT))
            submitted.wait_to_complete(timeout=TX_TIMEOUT, poll_period=0.05)
        except (BroadcastError, RuntimeError) as exc:  # check_tx / deliver_tx rejections carry the raw log
            raise TxFailed(str(exc)) from exc
        resp = submitted.response
        if resp is None or resp.code != 0:
            raise TxFailed(resp.raw_log if resp is not None else "no response")
        return resp

    def query(self, contract: str, msg: dict[str, Any]) -> Any:
        """Smart query through the LedgerClient."""
        from api.chain_source import ledger_query_fn

        return ledger_query_fn(self.client)(contract, msg)

    def relay_headers(self) -> None:
        """Send every header the light client has not seen yet."""
        headers = self.btc.headers_after(self.relayed)
        if headers:
            self.execute(self.light_client, {"insert_headers": {"headers": headers}})
            self.relayed = self.btc.tip_height

    def mine(self, txs: list[Tx] = (), n: int = 1) -> None:  # type: ignore[assignment]
        """Mine on BTC and relay the headers to the chain."""
        self.btc.mine(list(txs), n)
        self.relay_headers()

    def register_fp(self, fp: FinalityProviderKey, moniker: str, commission: str = "0.05",
                    validator: str = "") -> None:
        """``create_finality_provider`` signed by our wallet."""
        self.execute(self.registry, {"create_finality_provider": {
            "btc_pk": fp.pk.hex(), "pop": pop_hex(fp.sk, self.sender),
            "description": {"moniker": moniker, "identity": "", "website": f"https://{moniker}.example",
                            "security_contact": f"sec@{moniker}.example", "details": ""},
            "commission": commission, "validator": validator or f"val-{moniker}"}})

    def create(self, d: Delegation, *, proof: bool) -> None:
        """Register a delegation, with the inclusion proof (tx mined k deep first) or without."""
        inclusion = None
        if proof:
            self.mine([d.staking_tx])
            self.mine(n=K)
            inclusion = self.btc.inclusion_proof(d.staking_tx)
        self.execute(self.registry, {"create_btc_delegation": d.create_msg(self.sender, inclusion)})

    def add_proof(self, d: Delegation) -> None:
        """Mine the staking tx k deep and send ``add_btc_delegation_inclusion_proof``."""
        self.mine([d.staking_tx])
        self.mine(n=K)
        self.execute(self.registry, {"add_btc_delegation_inclusion_proof": {
            "staking_tx_hash": d.staking_tx_hash, "inclusion_proof": self.btc.inclusion_proof(d.staking_tx)}})

    def covenant_quorum(self, d: Delegation, members: int = QUORUM) -> None:
        """``add_covenant_sigs`` from the first ``members`` covenant members."""
        for i in range(members):
            self.execute(self.registry, {"add_covenant_sigs": d.covenant_sigs_msg(i)})

    def unbond(self, d: Delegation) -> Tx:
        """Mine the witnessed unbonding tx k deep and send ``btc_undelegate``."""
        tx = d.signed_unbonding_tx()
        self.mine([tx])
        self.mine(n=K)
        self.execute(self.registry, {"btc_undelegate": {
            "staking_tx_hash": d.staking_tx_hash, "unbonding_tx": tx.serialize().hex(),
            "inclusion_proof": self.btc.inclusion_proof(tx)}})
        return tx

    def withdraw(self, d: Delegation, *, after_unbonding: bool) -> Tx:
        """Mine the witnessed withdrawal k deep and send ``report_withdrawal``."""
        tx = d.signed_withdraw_tx(after_unbonding=after_unbonding)
        self.mine([tx])
        self.mine(n=K)
        self.execute(self.registry, {"report_withdrawal": {
            "staking_tx_hash": d.staking_tx_hash, "spend_tx": tx.serialize().hex(),
            "inclusion_proof": self.btc.inclusion_proof(tx)}})
        return tx

    def height(self) -> int:
        """The chain's latest block height (through the LedgerClient)."""
        return int(self.client.query_height())

    def wait_for_height(self, height: int, timeout: float = TX_TIMEOUT) -> None:
        """Bounded wait until the chain has produced block ``height``."""
        deadline = time.monotonic() + timeout
        while self.height() < height:
            if time.monotonic() > deadline:
                raise TimeoutError(f"chain did not reach height {height} in {timeout}s")
            time.sleep(0.05)

    def commit_randomness(self, fp: FinalityProviderKey, num: int) -> int:
        """``fp`` commits EOTS randomness for ``num`` heights above the chain's; waits until the first
        of them is produced (the FP then has voting power if it has ACTIVE stake); returns that height."""
        from btcmesh.finality_provider import CallableChannel, FinalityProvider

        finality = module_address("finality")
        channel = CallableChannel(lambda msg: self.execute(finality, msg), lambda msg: self.query(finality, msg))
        provider = FinalityProvider(fp.sk, channel, context=CHAIN_ID.encode())
        provider.commit_pub_rand_ahead(num, lead=40)
        start = provider.commits[-1].start
        self.wait_for_height(start)
        return start

    def slash_fp(self, fp: FinalityProviderKey) -> dict[str, Any]:
        """Make ``fp`` equivocate through the finality module (EOTS double sign); returns the is_slashed reply."""
        from btcmesh.finality_provider import CallableChannel, FinalityProvider

        finality = module_address("finality")
        channel = CallableChannel(lambda msg: self.execute(finality, msg), lambda msg: self.query(finality, msg))
        provider = FinalityProvider(fp.sk, channel, context=CHAIN_ID.encode())
        provider.commit_pub_rand_ahead(16, lead=5)  # randomness only for heights above the chain's
        start = provider.commits[-1].start
        self.wait_for_height(start + 1)  # block `start` indexed (its header app hash is what votes sign)
        provider.vote_block(start)  # the FP needs voting power at `start`: ACTIVE stake and randomness
        provider.double_sign(start, hashlib.sha256(b"fork").digest())
        return self.query(finality, {"is_slashed": {"fp_btc_pk": fp.pk.hex()}})

    def close(self) -> None:
        """Stop the chain (idempotent)."""
        if not self.closed:
            self.closed = True
            self.chain.close()


# ---------------------------------------------------------------------------- chain only (no Bitcoin)


class RegistryStandIn(Module):
    """``btc_staking`` stand-in for API tests over a bare :class:`ChainApp`: FP records under ``fp/<pk>``,
    params with a 10 % slashing rate; subclasses add the messages that move delegations through
    ``self.hooks`` (the mesh hooks, installed by the chain)."""

    name = "btc_staking"

    def __init__(self) -> None:
        super().__init__()
        self.hooks: Any = None

    def finality_provider(self, ctx: Context, btc_pk_hex: str) -> dict | None:
        return self.store(ctx).get("fp/" + btc_pk_hex.lower())

    def query_params(self, ctx: Context, body: dict) -> dict:
        return {"params_versions": [{"version": 0, "slashing_rate": "0.1"}]}


def finalize_block(app: ChainApp, txs: list[bytes] = ()) -> None:
    """The next block (5 s after the last) with ``txs``, committed; every tx must succeed."""
    height = app.last_height + 1
    results, _ = app.finalize_block(height, 1_700_000_000.0 + 5 * height, list(txs))
    app.commit()
    assert all(r.code == 0 for r in results), [r.log for r in results]


def execute_in_block(app: ChainApp, wallet: LocalWallet, module: str, msg: dict) -> None:
    """``msg`` to ``module``, signed by ``wallet`` (zero fee), alone in the next block."""
    acct = app.account(str(wallet.address()))
    finalize_block(app, [sign_execute_tx(wallet, app.module_address(module), msg, chain_id=app.chain_id,
                                         account_number=acct["account_number"], sequence=acct["sequence"],
                                         gas_limit=2_000_000, fee="0ubbn")])
