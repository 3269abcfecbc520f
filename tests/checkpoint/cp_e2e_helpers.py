"""End-to-end fixture for the checkpoint service on the embedded backends.

* Bitcoin: :class:`regtest.EmbeddedNode` (every block validated by libbitcoinkernel) and a
  :class:`regtest.wallet.Wallet` funding real Babylon staking txs built by ``btcmesh.staker``
  (``btc_staking`` underneath).
* Chain: :class:`cosmos_chain.rest.LocalChain` (ChainApp + EmbeddedChain + RestServer) with the BTC
  light client (base = the node's tip when the chain starts) and the staking registry; every tx
  is signed by an unmodified cosmpy ``LedgerClient`` through :class:`checkpoint.ChainClient`.
* The service is built by :func:`checkpoint.runner.build_service` from the REST URL alone.
* Covenant signatures come from ``btcmesh.covenant.CovenantCommittee`` (devnet covenant keys).
"""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path
from typing import Any, Callable

from btcmesh_testkit.btc import K, UNBONDING_TIME, pop_hex, small_params  # noqa: F401  (re-exported)

from btc_staking.keys import xonly_from_secret
from btc_staking.merkle import build_merkle_proof, merkle_root, verify_merkle_proof
from btc_staking.tx import Tx
from btcmesh.covenant import CovenantCommittee
from btcmesh.staker import Staker, StakingDelegation
from checkpoint.chain_client import ChainClient
from checkpoint.runner import build_service, connect, light_client_genesis
from checkpoint.service import CheckpointService, RunReport
from cosmos_chain.genesis import build_genesis, deterministic_wallet
from cosmos_chain.rest import LocalChain
from cosmos_chain.txcodec import decode_tx
from regtest.embedded import EmbeddedNode
from regtest.mining import parse_block
from regtest.wallet import Wallet

CHAIN_ID = "btcmesh-cp-e2e"
STAKING_TIME = 30
VALUE = 200_000
PREMINE = 110  # > coinbase maturity: the miner wallet has spendable coins
MAX_ROUNDS = 30


def secret(label: str) -> bytes:
    """Deterministic secp256k1 secret for a label."""
    return hashlib.sha256(b"btcmesh-cp-e2e/" + label.encode()).digest()


class E2E:
    """One Bitcoin node + one chain + helpers; ``close()`` stops everything."""

    def __init__(self, tmp_path: Path, *, node_dir: Path | None = None, premine: int = PREMINE,
                 num_fps: int = 1, backend: Any = None, on_close: Callable[[], None] | None = None) -> None:
        """``backend``: any ``BitcoinBackend`` mining to ``miner_wallet_address()`` (default: a new
        EmbeddedNode); ``on_close`` runs last in :meth:`close`."""
        self.tmp = Path(tmp_path)
        self.params = small_params()
        self.node = EmbeddedNode(node_dir) if backend is None else backend
        self._on_close = on_close
        self.chain: LocalChain | None = None
        try:
            self.miner = Wallet(self.node, secret("miner"))
            self.node.mine_blocks(premine, self.miner.script_pubkey)
            self.cp_wallet = deterministic_wallet("cp-e2e/checkpoint")
            self.admin_wallet = deterministic_wallet("cp-e2e/admin")
            self.cp_address = str(self.cp_wallet.address())
            self.base = light_client_genesis(self.node)   # the node's tip: the chain starts now
            genesis = build_genesis({self.cp_address: 10**13, str(self.admin_wallet.address()): 10**13},
                                    chain_id=CHAIN_ID, btc_light_client=self.base,
                                    btc_staking={"params": [self.params.to_dict()]})
            self.chain = LocalChain(CHAIN_ID, genesis, home=str(self.tmp / "chain"), block_interval=0.02)
            denom, price = self.chain.app.fee_params()
            self.denom, self.gas_price = denom, float(price)
            self.client: ChainClient = connect(self.chain.url, chain_id=CHAIN_ID, denom=denom,
                                               gas_price=self.gas_price, tx_timeout_s=20.0)
            self.committee = CovenantCommittee.regtest(self.params)
            self.fp_sks = [secret(f"fp-{i}") for i in range(num_fps)]
            self.fp_pks = [xonly_from_secret(s) for s in self.fp_sks]
            for i, sk in enumerate(self.fp_sks):
                self.register_fp(sk, f"fp-{i}")
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ chain side
    @property
    def registry(self) -> str:
        return self.client.contracts.btc_staking

    @property
    def light_client(self) -> str:
        return self.client.contracts.light_client

    def admin(self, msg: dict[str, Any]) -> str:
        """Execute ``msg`` on the registry signed by the admin account (not the service's)."""
        return self.client.execute(self.registry, msg, self.admin_wallet)

    def register_fp(self, sk: bytes, moniker: str) -> None:
        """``create_finality_provider`` (PoP over the sender's address)."""
        sender = str(self.admin_wallet.address())
        self.admin({"create_finality_provider": {
            "btc_pk": xonly_from_secret(sk).hex(),
            "pop": pop_hex(sk, sender),
            "description": {"moniker": moniker}, "commission": "0.05", "validator": f"val-{moniker}"}})

    def delegation(self, staking_txid: str) -> dict[str, Any] | None:
        """The registry's record (None when not registered)."""
        return self.client.delegation(staking_txid)

    def covenant_quorum(self, staking_txid: str) -> None:
        """The covenant committee checks the registered delegation and sends a quorum of signatures."""
        record = self.delegation(staking_txid)
        assert record is not None, f"delegation {staking_txid} not registered"
        for sigs in self.committee.sign(record, signers=self.params.covenant_quorum):
            self.admin(sigs.to_msg())

    def chain_msgs(self, action: str) -> list[dict[str, Any]]:
        """Every committed chain tx message ``{action: ...}`` (any sender, any result), oldest first,
        decoded from the chain's blocks: ``{height, code, sender, body}``."""
        assert self.chain is not None
        app = self.chain.app
        out = []
        for h in range(1, app.last_height + 1):
            block = app.get_block(h) or {}
            for raw_b64, tx_hash in zip(block.get("txs", []), block.get("tx_hashes", [])):
                if not raw_b64:
                    continue
                decoded = decode_tx(base64.b64decode(raw_b64))
                rec = app.get_tx(tx_hash) or {}
                code = int((rec.get("result") or {}).get("code", -1))
                for m in decoded.msgs:
                    if isinstance(m.msg_json, dict) and action in m.msg_json:
                        out.append({"height": h, "code": code, "sender": m.signer, "body": m.msg_json[action]})
        return out

    def account_sequence(self, wallet: Any) -> int:
        """The account's sequence on the chain (number of its committed txs)."""
        return int(self.client.ledger.query_account(wallet.address()).sequence)

    def light_client_tip(self) -> tuple[int, str]:
        tip = self.client.light_client_tip()
        assert tip is not None
        return tip

    # ------------------------------------------------------------------ Bitcoin side
    def mine(self, n: int = 1) -> list[str]:
        """Mine ``n`` blocks on the tip (the first takes the mempool)."""
        return self.node.mine_blocks(n, self.miner.script_pubkey)

    def staker(self, label: str = "staker") -> Staker:
        return Staker(secret(label), self.params)

    def new_lock(self, staker: Staker, *, value: int = VALUE, staking_time: int = STAKING_TIME,
                 fp_index: int = 0) -> StakingDelegation:
        """A funded, signed staking tx (not broadcast) and the staker's pre-signed material."""
        self.miner.scan()
        fp = self.fp_pks[fp_index]
        tx = staker.fund_staking_tx(self.miner, fp, staking_time, value)
        return staker.delegation(tx, [fp], staking_time)

    def material(self, staker: Staker, d: StakingDelegation) -> dict[str, Any]:
        """``create_btc_delegation`` material with the PoP over the service's address."""
        return d.material(pop=staker.pop(self.cp_address))

    def broadcast(self, tx: Tx) -> str:
        return self.node.send_raw_transaction(tx.serialize())

    def lock(self, svc: CheckpointService, label: str) -> StakingDelegation:
        """A new staker ``label``: register its intent (with material) with ``svc``, broadcast the lock."""
        staker = self.staker(label)
        d = self.new_lock(staker)
        svc.register_intent(staker.pk, list(d.fp_pks), STAKING_TIME, VALUE, self.material(staker, d))
        self.broadcast(d.staking_tx)
        return d

    def inclusion_proof(self, txid: str) -> dict[str, Any]:
        """``{block_hash, index, proof}`` of a confirmed tx (checked locally)."""
        where = self.node.get_tx_block(txid)
        assert where is not None, f"{txid} not confirmed"
        block_hash = where[0]
        header, txs = parse_block(self.node.get_block(block_hash))
        txids = [t.txid() for t in txs]
        index = [t.txid_hex() for t in txs].index(txid)
        proof = build_merkle_proof(txids, index)
        assert merkle_root(txids) == header.merkle_root
        assert verify_merkle_proof(txids[index], header.merkle_root, index, proof)
        return {"block_hash": block_hash, "index": index, "proof": bytes(proof).hex()}

    # ------------------------------------------------------------------ the service
    def service(self, store: Path | None = None, **kw: Any) -> CheckpointService:
        """A service built from the REST URL (params, k, start height read from the chain)."""
        assert self.chain is not None
        kw.setdefault("poll_interval", 0.02)
        kw.setdefault("retry_base_s", 0.05)
        kw.setdefault("retry_max_s", 0.2)
        return build_service(self.node, self.chain.url, store or (self.tmp / "cp.sqlite"), wallet=self.cp_wallet,
                             chain_id=CHAIN_ID, denom=self.denom, gas_price=self.gas_price, **kw)

    @staticmethod
    def rounds(svc: CheckpointService, until: Callable[[RunReport], bool], max_rounds: int = MAX_ROUNDS,
               pause: float = 0.05) -> list[RunReport]:
        """``run_once`` until ``until(report)`` holds (bounded); returns the reports."""
        reports = []
        for _ in range(max_rounds):
            rep = svc.run_once()
            reports.append(rep)
            if until(rep):
                return reports
            time.sleep(pause)
        raise AssertionError(f"condition not reached in {max_rounds} rounds; last report {reports[-1]}")

    def close(self) -> None:
        if self.chain is not None:
            self.chain.close()
            self.chain = None
        self.node.close()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None


def miner_wallet_address() -> str:
    """The address the E2E miner wallet owns (what an external node must mine to)."""
    return Wallet(None, secret("miner")).address  # type: ignore[arg-type]
