"""A chain holding many real BTC delegations, built fast without skipping any validation (issue 13).

Every delegation goes the whole way a real one does: a staking tx built and signed by
:class:`btcmesh.staker.Staker`, mined (with thousands of others) into a regtest-PoW BTC block whose header and
``k`` more reach the chain's light client through ``insert_headers``; ``create_btc_delegation`` with its merkle
inclusion proof and the staker's signatures, then the covenant quorum's signatures
(:class:`btcmesh.covenant.CovenantCommittee`), all in cosmpy-signed txs through CheckTx, FinalizeBlock and
Commit of an :class:`~cosmos_chain.node.EmbeddedChain` with the ``mesh`` module wired to the registry (ACTIVE
mints collateral and virtual stake). What makes it fast: many messages per tx and many txs per block (as the
checkpoint service now sends them), BTC blocks of thousands of staking txs, and the chain's per-block cost no
longer growing with the state (issue 13)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Sequence

from cosmpy.aerial.tx import SigningCfg, Transaction, TxFee
from cosmpy.aerial.wallet import LocalWallet
from cosmpy.crypto.address import Address
from cosmpy.protos.cosmwasm.wasm.v1.tx_pb2 import MsgExecuteContract

from btc_staking.headers import BlockHeader
from btc_staking.keys import schnorr_sign, xonly_from_secret
from btc_staking.merkle import MerkleTree
from btc_staking.params import StakingParams, regtest_default_params
from btc_staking.signing import pop_digest
from btc_staking.tx import OutPoint, Tx, TxIn, TxOut, p2tr_script
from btcmesh.covenant import CovenantCommittee
from btcmesh.staker import Staker, StakingDelegation
from cosmos_chain.app import ChainApp
from cosmos_chain.genesis import build_genesis, deterministic_wallet
from cosmos_chain.node import EmbeddedChain
from regtest.mining import REGTEST_BITS, solve_header

CHAIN_ID = "btcmesh-scale-1"
DENOM = "ubbn"
MSG_GAS = 4_000_000
MSGS_PER_TX = 50
K = 2


def _secret(label: str) -> bytes:
    return hashlib.sha256(b"btcmesh-bench-scale/" + label.encode()).digest()


@dataclass
class Staked:
    """One delegation the fixture built (BTC side)."""

    d: StakingDelegation
    value: int
    staking_time: int


class _NoMesh:
    """Registry hooks that do nothing: the registry alone, without the mesh module's status hooks."""

    def on_delegation_status(self, ctx: Any, delegation: dict, old_status: str | None, new_status: str) -> None:
        return None


class ScaleChain:
    """An embedded chain (registry + light client + mesh) and helpers to add delegations in bulk.
    ``mesh=False``: the registry's status changes do not reach the mesh module (registry-only figures)."""

    def __init__(self, n_fps: int = 4, params: StakingParams | None = None, *, mesh: bool = True) -> None:
        self.params = params or regtest_default_params(confirmation_depth=K)
        self.submitter: LocalWallet = deterministic_wallet("bench-scale/submitter")
        self.relayer: LocalWallet = deterministic_wallet("bench-scale/relayer")
        self.covenant_sender: LocalWallet = deterministic_wallet("bench-scale/covenant")
        self.address = str(self.submitter.address())
        self.fp_sks = [_secret(f"fp/{i}") for i in range(n_fps)]
        self.fp_pks = [xonly_from_secret(s) for s in self.fp_sks]
        self.base = solve_header(b"\x00" * 32, os.urandom(32), 1_700_000_000, REGTEST_BITS)
        self.headers: list[BlockHeader] = [self.base]
        admin = str(self.submitter.address())
        genesis = build_genesis(
            {str(w.address()): 10**16 for w in (self.submitter, self.relayer, self.covenant_sender)}, denom=DENOM,
            chain_id=CHAIN_ID,
            btc_light_client={"base": {"height": 0, "header": self.base.serialize().hex()}},
            btc_staking={"params": [self.params.to_dict()]},
            mesh={"admin": admin, "price": "1", "unbonding_period": 1000,
                  "fp_to_validator": {pk.hex(): f"val-{i}" for i, pk in enumerate(self.fp_pks)}})
        self.app = ChainApp(CHAIN_ID)
        if not mesh:
            self.app.module("btc_staking").hooks = _NoMesh()  # type: ignore[attr-defined]
        self.node = EmbeddedChain(self.app, genesis=genesis, max_block_txs=10**6, max_mempool_txs=10**6)
        self.registry = self.app.module_address("btc_staking")
        self.light_client = self.app.module_address("btc_light_client")
        self.committee = CovenantCommittee.regtest(self.params)
        self._seq: dict[str, int] = {}
        self._n = 0
        self.hashes: list[str] = []
        for i, sk in enumerate(self.fp_sks):
            self.deliver([self.tx(self.submitter, self.registry, [{"create_finality_provider": {
                "btc_pk": self.fp_pks[i].hex(), "pop": schnorr_sign(sk, pop_digest(bytes(Address(self.address)))).hex(),
                "description": {"moniker": f"fp-{i}"}, "commission": "0.05", "validator": f"val-{i}"}}])])

    # ------------------------------------------------------------------ chain plumbing
    def tx(self, wallet: LocalWallet, contract: str, msgs: Sequence[dict[str, Any]]) -> bytes:
        """A cosmpy-signed tx of ``MsgExecuteContract``s (sequence tracked locally)."""
        addr = str(wallet.address())
        acct = self.app.account(addr)
        assert acct is not None
        seq = self._seq.get(addr, acct["sequence"])
        tx = Transaction()
        for m in msgs:
            tx.add_message(MsgExecuteContract(sender=addr, contract=contract, msg=json.dumps(m).encode()))
        gas = MSG_GAS * len(msgs)
        tx.seal(SigningCfg.direct(wallet.public_key(), seq), fee=TxFee(amount=f"{gas // 100}{DENOM}", gas_limit=gas))
        tx.sign(wallet.signer(), CHAIN_ID, acct["account_number"])
        tx.complete()
        self._seq[addr] = seq + 1
        return tx.tx.SerializeToString()

    def deliver(self, txs: Sequence[bytes]) -> None:
        """CheckTx each, then one block; every tx must succeed."""
        for raw in txs:
            r = self.node.broadcast_tx(raw)
            if not r.ok:
                raise AssertionError(f"CheckTx rejected a fixture tx: {r.code} {r.log}")
        _, results = self.node.produce_block()
        bad = [(x.code, x.log) for x in results if x.code != 0]
        if bad or len(results) != len(txs):
            raise AssertionError(f"fixture block failed: {bad[:3]}")

    def mine(self, txids: Sequence[bytes] = (), n: int = 1) -> BlockHeader:
        """Mine ``n`` BTC headers (the first commits to ``txids`` after a coinbase stand-in) and relay them."""
        first_tree = MerkleTree([hashlib.sha256(os.urandom(8)).digest(), *txids]) if txids else None
        new = []
        for i in range(n):
            prev = self.headers[-1]
            root = first_tree.root if (i == 0 and first_tree) else os.urandom(32)
            new.append(solve_header(prev.hash(), root, prev.timestamp + 600, REGTEST_BITS))
            self.headers.append(new[-1])
        for start in range(0, len(new), 500):
            self.deliver([self.headers_tx(new[start:start + 500])])
        self._last_tree = first_tree
        return new[0]

    def headers_tx(self, headers: Sequence[BlockHeader]) -> bytes:
        """The relayer's signed ``insert_headers`` tx."""
        part = [h.serialize().hex() for h in headers]
        return self.tx(self.relayer, self.light_client, [{"insert_headers": {"headers": part}}])

    def next_header_tx(self) -> bytes:
        """Mine one empty BTC header on the tip (recorded) and return the tx relaying it (not delivered)."""
        prev = self.headers[-1]
        h = solve_header(prev.hash(), os.urandom(32), prev.timestamp + 600, REGTEST_BITS)
        self.headers.append(h)
        return self.headers_tx([h])

    @property
    def btc_tip(self) -> int:
        return len(self.headers) - 1

    # ------------------------------------------------------------------ delegations
    def build(self, n: int, staking_time: int | Sequence[int] = 1000, value: int = 100_000) -> list[Staked]:
        """``n`` staking txs and their pre-signed material (BTC side only)."""
        out = []
        for j in range(n):
            i = self._n
            self._n += 1
            staker = Staker(_secret(f"staker/{i}"), self.params)
            fp = self.fp_pks[i % len(self.fp_pks)]
            t = staking_time if isinstance(staking_time, int) else staking_time[j % len(staking_time)]
            outputs = staker.staking_outputs(fp, t, value)
            funding = OutPoint(hashlib.sha256(f"bench-scale/funding/{i}".encode()).digest(), 0)
            staking_tx = Tx(2, [TxIn(funding)], [*outputs, TxOut(50_000, p2tr_script(staker.pk))], 0)
            out.append(Staked(staker.delegation(staking_tx, [fp], t, value), value, t))
            out[-1].pop = staker.pop(self.address).hex()  # type: ignore[attr-defined]
        return out

    def register(self, staked: Sequence[Staked], quorum_signers: int | None = None) -> list[str]:
        """Mine the staking txs into one BTC block (k-deep), register every delegation with its inclusion
        proof, then send ``quorum_signers`` covenant signatures each (default: a quorum → ACTIVE)."""
        if not staked:
            return []
        txids = [s.d.staking_tx.txid() for s in staked]
        block = self.mine(txids, n=1 + K)
        tree = self._last_tree
        assert tree is not None
        block_hash = block.hash()[::-1].hex()
        creates = []
        for idx, s in enumerate(staked):
            proof = {"block_hash": block_hash, "index": idx + 1, "proof": tree.proof(idx + 1).hex()}
            creates.append({"create_btc_delegation": s.d.create_msg(bytes.fromhex(s.pop), proof)})  # type: ignore[attr-defined]
        self._bulk(self.submitter, creates)
        signers = self.committee.quorum if quorum_signers is None else quorum_signers
        hashes = [s.d.staking_tx_hash for s in staked]
        if signers:
            msgs = []
            for h in hashes:
                record = self.app.smart_query("btc_staking", {"delegation": {"staking_tx_hash": h}})["delegation"]
                msgs.extend(sig.to_msg() for sig in self.committee.sign(record, signers=signers))
            self._bulk(self.covenant_sender, msgs)
        self.hashes.extend(hashes)
        return hashes

    def covenant_msgs(self, h: str, member: int) -> dict[str, Any]:
        """The ``add_covenant_sigs`` message of covenant member ``member`` for delegation ``h``."""
        record = self.app.smart_query("btc_staking", {"delegation": {"staking_tx_hash": h}})["delegation"]
        return self.committee.members[member].sign(record, self.params).to_msg()

    def _bulk(self, wallet: LocalWallet, msgs: list[dict[str, Any]], txs_per_block: int = 20) -> None:
        contract = self.registry
        txs = [self.tx(wallet, contract, msgs[i:i + MSGS_PER_TX]) for i in range(0, len(msgs), MSGS_PER_TX)]
        for i in range(0, len(txs), txs_per_block):
            self.deliver(txs[i:i + txs_per_block])

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for k, v in self.app.root.iter_prefix("m/btc_staking/del/"):
            s = json.loads(v)["status"]
            counts[s] = counts.get(s, 0) + 1
        return counts

    def close(self) -> None:
        self.node.close()
