"""The messages the service sends (docs/CHAIN_MESSAGES.md) and their order, on the in-memory backend.

The chain side is a recording double of :class:`checkpoint.ChainClient` (a light client that
checks header linkage + a registry that records messages and applies the documented status
changes); the real chain is exercised in ``test_checkpoint_e2e.py``. Every inclusion proof the
service builds is verified here with ``btc_staking.merkle`` against the relayed header.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bitcoin.core import CTransaction
from cp_memchain import MemChain

from btc_staking.headers import BlockHeader
from btc_staking.keys import generate_secret, xonly_from_secret
from btc_staking.merkle import verify_merkle_proof
from btc_staking.params import regtest_default_params
from btc_staking.staking import (build_staking_info, build_staking_tx, build_unbonding_info, build_unbonding_tx,
                                 build_withdraw_tx)
from btc_staking.tx import OutPoint, Tx, TxIn
from btc_staking.witness import timelock_witness, unbonding_witness
from checkpoint.errors import ChainError
from checkpoint.service import CheckpointService
from checkpoint.store import submission_key

PARAMS = regtest_default_params(unbonding_time_blocks=3)
K = 2
SIG = b"\x11" * 64


class RecordingChain:
    """Light client (linkage-checked headers, heaviest = longest) + registry recording messages."""

    def __init__(self, base_height: int, base_header: bytes) -> None:
        self.headers: dict[str, tuple[int, bytes]] = {}
        self.main: list[str] = []       # index = height - base
        self.base = base_height
        self.main = [self._add(base_header, base_height)]
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.records: dict[str, dict[str, Any]] = {}

    def _add(self, header: bytes, height: int) -> str:
        h = BlockHeader.parse(header).hash_hex()
        self.headers[h] = (height, header)
        return h

    def _branch(self, tip: str) -> list[str]:
        out = []
        while tip in self.headers:
            out.append(tip)
            height, raw = self.headers[tip]
            if height == self.base:
                break
            tip = BlockHeader.parse(raw).prev_hash[::-1].hex()
        return out[::-1]

    # ChainClient surface ---------------------------------------------------
    def light_client_tip(self) -> tuple[int, str]:
        return self.base + len(self.main) - 1, self.main[-1]

    def light_client_hash_at(self, height: int) -> str | None:
        i = height - self.base
        return self.main[i] if 0 <= i < len(self.main) else None

    def light_client_header(self, hash_hex: str) -> dict[str, Any] | None:
        if hash_hex not in self.headers:
            return None
        height, raw = self.headers[hash_hex]
        return {"height": height, "hash": hash_hex, "header": raw.hex(),
                "main_chain": self.light_client_hash_at(height) == hash_hex}

    def insert_headers(self, headers: list[bytes], wallet: Any) -> str:
        self.sent.append(("insert_headers", {"headers": [h.hex() for h in headers]}))
        parent = BlockHeader.parse(headers[0]).prev_hash[::-1].hex()
        if parent not in self.headers:
            raise ChainError("unknown header: parent of the first header", transient=False)
        height = self.headers[parent][0]
        for raw in headers:
            assert BlockHeader.parse(raw).prev_hash[::-1].hex() == parent, "headers must link"
            height += 1
            parent = self._add(raw, height)
        branch = self._branch(parent)
        if len(branch) > len(self.main):
            self.main = branch
        return f"tx{len(self.sent)}"

    def _check_proof(self, tx_hex: str, proof: dict[str, Any]) -> int:
        height, raw = self.headers[proof["block_hash"]]
        assert proof["block_hash"] in self.main, "proof block not on the light client's main chain"
        depth = self.light_client_tip()[0] - height
        if depth < K:
            raise ChainError(f"not k-deep: depth {depth} < {K}", transient=True)
        txid = Tx.parse(bytes.fromhex(tx_hex)).txid()
        assert verify_merkle_proof(txid, BlockHeader.parse(raw).merkle_root, proof["index"],
                                   bytes.fromhex(proof["proof"]))
        return height

    def delegation(self, staking_tx_hash: str) -> dict[str, Any] | None:
        return self.records.get(staking_tx_hash)

    def is_registered(self, staking_tx_hash: str) -> bool:
        return staking_tx_hash in self.records

    def submit_delegation(self, msg: dict[str, Any], wallet: Any) -> str:
        self.sent.append(("create_btc_delegation", msg))
        txid = Tx.parse(bytes.fromhex(msg["staking_tx"])).txid_hex()
        if txid in self.records:
            raise ChainError("already registered", transient=False)
        start = self._check_proof(msg["staking_tx"], msg["inclusion_proof"]) if "inclusion_proof" in msg else None
        self.records[txid] = {"staking_tx_hash": txid, "staking_tx": msg["staking_tx"], "status": "PENDING",
                              "start_height": start, "unbonding_height": None, "withdrawn_height": None}
        return f"tx{len(self.sent)}"

    def add_inclusion_proof(self, msg: dict[str, Any], wallet: Any) -> str:
        self.sent.append(("add_btc_delegation_inclusion_proof", msg))
        rec = self.records[msg["staking_tx_hash"]]
        assert rec["start_height"] is None, "already has a proof"
        rec["start_height"] = self._check_proof(rec["staking_tx"], msg["inclusion_proof"])
        return f"tx{len(self.sent)}"

    def submit_undelegate(self, msg: dict[str, Any], wallet: Any) -> str:
        self.sent.append(("btc_undelegate", msg))
        self._check_proof(msg["unbonding_tx"], msg["inclusion_proof"])
        self.records[msg["staking_tx_hash"]].update(status="UNBONDING", unbonding_height=1)
        return f"tx{len(self.sent)}"

    def report_withdrawal(self, msg: dict[str, Any], wallet: Any) -> str:
        self.sent.append(("report_withdrawal", msg))
        self._check_proof(msg["spend_tx"], msg["inclusion_proof"])
        rec = self.records[msg["staking_tx_hash"]]
        assert rec["status"] == "UNBONDING", "withdrawal of the unbonding output before btc_undelegate"
        rec.update(status="WITHDRAWN", withdrawn_height=1)
        return f"tx{len(self.sent)}"

    def report_slashing(self, msg: dict[str, Any], wallet: Any) -> str:
        self.sent.append(("report_btc_slashing", msg))
        self._check_proof(msg["slashing_tx"], msg["inclusion_proof"])
        txid = Tx.parse(bytes.fromhex(msg["slashing_tx"])).txid_hex()
        self.records[msg["staking_tx_hash"]]["slashing_btc_txid"] = txid
        return f"tx{len(self.sent)}"

    def kinds(self) -> list[str]:
        return [k for k, _ in self.sent if k != "insert_headers"]


def _ctx(tx: Tx) -> CTransaction:
    return CTransaction.deserialize(tx.serialize())


def _witnessed(tx: Tx, witness: list[bytes]) -> Tx:
    tx.inputs[0] = replace(tx.inputs[0], witness=list(witness))
    return tx


def test_full_lifecycle_messages_and_order(tmp_path):
    btc = MemChain()
    btc.mine(3)
    base_h = btc.get_block_count()
    chain = RecordingChain(base_h, btc.get_block_header(btc.best[-1]))
    svc = CheckpointService(btc, chain, tmp_path / "s.sqlite", PARAMS, K, object(), 0.01,  # type: ignore[arg-type]
                            start_height=base_h)
    staker, fp = xonly_from_secret(generate_secret()), xonly_from_secret(generate_secret())
    material = {"pop": "aa" * 64, "slashing_tx": "00", "delegator_slashing_sig": "bb" * 64, "unbonding_time": 3}
    svc.register_intent(staker, [fp], 150, 50_000, material)
    stx = build_staking_tx(staker, fp, PARAMS, 150, 50_000)
    stx.inputs.append(TxIn(OutPoint(b"\x07" * 32, 0)))
    info = build_staking_info(staker, [fp], PARAMS.covenant_pks, PARAMS.covenant_quorum, 150, 50_000)
    ub = build_unbonding_tx(OutPoint(stx.txid(), 0), 50_000, staker, [fp], PARAMS)
    covsigs = {pk: SIG for pk in PARAMS.covenant_pks[:PARAMS.covenant_quorum]}
    _witnessed(ub, unbonding_witness(PARAMS.covenant_pks, covsigs, PARAMS.covenant_quorum, SIG,
                                     info.unbonding_script, info.control_block(info.unbonding_script)))
    uinfo = build_unbonding_info(staker, [fp], PARAMS.covenant_pks, PARAMS.covenant_quorum, 3, ub.outputs[0].value)
    wd = build_withdraw_tx(OutPoint(ub.txid(), 0), ub.outputs[0].value, 3, b"\x00\x14" + b"\x22" * 20, 500)
    _witnessed(wd, timelock_witness(SIG, uinfo.timelock_script, uinfo.control_block(uinfo.timelock_script)))

    # staking in one block; the unbonding and its withdrawal together in the next
    btc.mine(1, [_ctx(stx)])
    btc.mine(1, [_ctx(ub), _ctx(wd)])
    btc.mine(1)
    rep = svc.run_once()                             # staking depth 2 = k, the spends depth 1
    assert rep.headers_relayed == 3 and chain.light_client_tip() == (btc.get_block_count(), btc.best[-1])
    assert chain.kinds() == ["create_btc_delegation"]
    create = chain.sent[-1][1]
    assert create["staking_tx"] == stx.serialize().hex() and create["staking_output_index"] == 0
    assert create["staker_btc_pk"] == staker.hex() and create["fp_btc_pk_list"] == [fp.hex()]
    assert create["staking_time"] == 150 and create["staking_value"] == 50_000
    assert {k: create[k] for k in material} == material
    assert create["inclusion_proof"]["block_hash"] == btc.best[base_h + 1]

    # the undelegation fails transiently once: the withdrawal (same block, also due) must wait for it
    flaky = {"n": 1}
    real_undelegate = chain.submit_undelegate

    def undelegate_once_unreachable(msg, wallet):  # type: ignore[no-untyped-def]
        if flaky["n"]:
            flaky["n"] -= 1
            raise ChainError("chain unreachable while broadcasting: connection refused", transient=True)
        return real_undelegate(msg, wallet)

    chain.submit_undelegate = undelegate_once_unreachable  # type: ignore[method-assign]
    btc.mine(1)
    rep = svc.run_once()
    assert rep.retried == [submission_key("undelegate", ub.txid_hex())] and rep.submitted == []
    assert chain.kinds() == ["create_btc_delegation"]
    assert svc.store.submission(submission_key("withdraw", wd.txid_hex())).attempts == 0
    svc.clock = lambda: 1e12                         # the backoff elapsed
    rep = svc.run_once()
    assert rep.submitted == [submission_key("undelegate", ub.txid_hex()), submission_key("withdraw", wd.txid_hex())]
    assert chain.kinds() == ["create_btc_delegation", "btc_undelegate", "report_withdrawal"]
    undelegate, withdraw = chain.sent[-2][1], chain.sent[-1][1]
    assert undelegate == {"staking_tx_hash": stx.txid_hex(), "unbonding_tx": ub.serialize().hex(),
                          "inclusion_proof": undelegate["inclusion_proof"]}
    assert withdraw == {"staking_tx_hash": stx.txid_hex(), "spend_tx": wd.serialize().hex(),
                        "inclusion_proof": withdraw["inclusion_proof"]}
    assert undelegate["inclusion_proof"]["index"] == 1 and withdraw["inclusion_proof"]["index"] == 2
    assert chain.records[stx.txid_hex()]["status"] == "WITHDRAWN"
    assert svc.run_once().submitted == [] and svc.dead_letters() == []


def test_bookkeeping_lost_after_each_message_is_recovered_from_the_chain(tmp_path):
    """A restart that lost every 'done' mark finds all three attestations on the chain (no resend)."""
    btc = MemChain()
    base_h = btc.get_block_count()
    chain = RecordingChain(base_h, btc.get_block_header(btc.best[-1]))
    path = tmp_path / "s.sqlite"
    svc = CheckpointService(btc, chain, path, PARAMS, K, object(), 0.01, start_height=base_h)  # type: ignore[arg-type]
    staker, fp = xonly_from_secret(generate_secret()), xonly_from_secret(generate_secret())
    svc.register_intent(staker, [fp], 150, 50_000, {"pop": "aa" * 64})
    stx = build_staking_tx(staker, fp, PARAMS, 150, 50_000)
    stx.inputs.append(TxIn(OutPoint(b"\x08" * 32, 0)))
    btc.mine(1, [_ctx(stx)])
    btc.mine(K)
    key = submission_key("delegation", stx.txid_hex())
    svc.follow()
    svc.relay_headers()
    svc.store.mark_submitting(key, btc.best[base_h + 1])
    chain.submit_delegation(svc._build_message(svc.store.submission(key), svc.store.btc_tx(stx.txid_hex())),
                            None)                    # broadcast happened; the process died before mark_done
    svc.close()
    svc = CheckpointService(btc, chain, path, PARAMS, K, object(), 0.01, start_height=base_h)  # type: ignore[arg-type]
    rep = svc.run_once()
    assert rep.already_on_chain == [key] and rep.submitted == []
    assert chain.kinds() == ["create_btc_delegation"]
    assert svc.store.submission(key).status == "done"


def test_delegation_registered_without_proof_gets_the_proof(tmp_path):
    """Babylon's pre-approval flow: the staker registered first (no proof); the service proves it."""
    btc = MemChain()
    base_h = btc.get_block_count()
    chain = RecordingChain(base_h, btc.get_block_header(btc.best[-1]))
    svc = CheckpointService(btc, chain, tmp_path / "s.sqlite", PARAMS, K, object(), 0.01,  # type: ignore[arg-type]
                            start_height=base_h)
    staker, fp = xonly_from_secret(generate_secret()), xonly_from_secret(generate_secret())
    svc.register_intent(staker, [fp], 150, 50_000, {"pop": "aa" * 64})
    stx = build_staking_tx(staker, fp, PARAMS, 150, 50_000)
    stx.inputs.append(TxIn(OutPoint(b"\x09" * 32, 0)))
    chain.submit_delegation({"staking_tx": stx.serialize().hex()}, None)   # registered by the staker, no proof
    btc.mine(1, [_ctx(stx)])
    btc.mine(K)
    key = submission_key("delegation", stx.txid_hex())
    rep = svc.run_once()
    assert rep.submitted == [key]
    assert chain.kinds() == ["create_btc_delegation", "add_btc_delegation_inclusion_proof"]
    assert chain.sent[-1][1]["staking_tx_hash"] == stx.txid_hex()
    assert chain.records[stx.txid_hex()]["start_height"] == base_h + 1
    assert svc.run_once().submitted == []


def test_v0_lock_without_intent_waits_for_its_registration_then_is_proven(tmp_path):
    btc = MemChain()
    base_h = btc.get_block_count()
    chain = RecordingChain(base_h, btc.get_block_header(btc.best[-1]))
    now = [1000.0]
    svc = CheckpointService(btc, chain, tmp_path / "s.sqlite", PARAMS, K, object(), 0.01,  # type: ignore[arg-type]
                            start_height=base_h, retry_max_s=30.0, clock=lambda: now[0])
    staker, fp = xonly_from_secret(generate_secret()), xonly_from_secret(generate_secret())
    stx = build_staking_tx(staker, fp, PARAMS, 150, 50_000)              # with the V0 OP_RETURN
    stx.inputs.append(TxIn(OutPoint(b"\x0a" * 32, 0)))
    btc.mine(1, [_ctx(stx)])
    btc.mine(K)
    key = submission_key("delegation", stx.txid_hex())
    rep = svc.run_once()
    assert rep.awaiting_registration == [key] and chain.kinds() == []      # nobody registered it: nothing sent
    sub = svc.store.submission(key)
    assert sub.status == "waiting" and sub.attempts == 0 and sub.next_attempt_at == 1030.0
    assert svc.run_once().awaiting_registration == []                      # not asked again before then
    chain.submit_delegation({"staking_tx": stx.serialize().hex()}, None)   # the staker registers it
    now[0] = 1030.0
    rep = svc.run_once()
    assert rep.submitted == [key]
    assert chain.kinds() == ["create_btc_delegation", "add_btc_delegation_inclusion_proof"]
    assert chain.records[stx.txid_hex()]["start_height"] == base_h + 1


def test_v0_lock_never_registered_is_given_up_when_its_timelock_expires(tmp_path):
    btc = MemChain()
    base_h = btc.get_block_count()
    chain = RecordingChain(base_h, btc.get_block_header(btc.best[-1]))
    now = [0.0]
    svc = CheckpointService(btc, chain, tmp_path / "s.sqlite", PARAMS, K, object(), 0.01,  # type: ignore[arg-type]
                            start_height=base_h, retry_max_s=1.0, clock=lambda: now[0])
    staker, fp = xonly_from_secret(generate_secret()), xonly_from_secret(generate_secret())
    stx = build_staking_tx(staker, fp, PARAMS, 100, 50_000)
    stx.inputs.append(TxIn(OutPoint(b"\x0b" * 32, 0)))
    btc.mine(1, [_ctx(stx)])
    btc.mine(99)                                                           # depth 99 < staking time 100
    key = submission_key("delegation", stx.txid_hex())
    assert svc.run_once().awaiting_registration == [key]
    btc.mine(1)
    now[0] = 2.0
    rep = svc.run_once()
    assert rep.dead_lettered == [key] and chain.kinds() == []
    (dl,) = svc.dead_letters()
    assert "never registered" in dl.reason and "timelock expired" in dl.reason


def test_slashing_tx_is_reported_after_the_delegation(tmp_path):
    from btc_staking.staking import build_slashing_tx
    from btc_staking.witness import slashing_witness

    btc = MemChain()
    base_h = btc.get_block_count()
    chain = RecordingChain(base_h, btc.get_block_header(btc.best[-1]))
    svc = CheckpointService(btc, chain, tmp_path / "s.sqlite", PARAMS, K, object(), 0.01,  # type: ignore[arg-type]
                            start_height=base_h)
    staker, fp = xonly_from_secret(generate_secret()), xonly_from_secret(generate_secret())
    svc.register_intent(staker, [fp], 150, 50_000, {"pop": "aa" * 64})
    stx = build_staking_tx(staker, fp, PARAMS, 150, 50_000)
    stx.inputs.append(TxIn(OutPoint(b"\x0c" * 32, 0)))
    info = build_staking_info(staker, [fp], PARAMS.covenant_pks, PARAMS.covenant_quorum, 150, 50_000)
    sl = build_slashing_tx(OutPoint(stx.txid(), 0), 50_000, staker, PARAMS)
    covsigs = {pk: SIG for pk in PARAMS.covenant_pks[:PARAMS.covenant_quorum]}
    _witnessed(sl, slashing_witness(PARAMS.covenant_pks, covsigs, PARAMS.covenant_quorum, [fp], {fp: SIG}, SIG,
                                    info.slashing_script, info.control_block(info.slashing_script)))
    btc.mine(1, [_ctx(stx), _ctx(sl)])                 # lock and its slashing in the same block
    btc.mine(K)
    rep = svc.run_once()
    skey, lkey = submission_key("slashing", sl.txid_hex()), submission_key("delegation", stx.txid_hex())
    assert rep.submitted == [lkey, skey]
    assert chain.kinds() == ["create_btc_delegation", "report_btc_slashing"]
    assert chain.sent[-1][1] == {"staking_tx_hash": stx.txid_hex(), "slashing_tx": sl.serialize().hex(),
                                 "inclusion_proof": chain.sent[-1][1]["inclusion_proof"]}
    assert chain.records[stx.txid_hex()]["slashing_btc_txid"] == sl.txid_hex()
    assert svc.run_once().submitted == []


def test_depth_counts_from_the_relayed_tip_not_from_blocks_mined_since(tmp_path):
    """Blocks the light client has not been sent yet do not make a lock due (the chain would say
    "not k-deep" and the attempt would be wasted)."""
    btc = MemChain()
    base_h = btc.get_block_count()
    chain = RecordingChain(base_h, btc.get_block_header(btc.best[-1]))
    svc = CheckpointService(btc, chain, tmp_path / "s.sqlite", PARAMS, K, object(), 0.01,  # type: ignore[arg-type]
                            start_height=base_h)
    staker, fp = xonly_from_secret(generate_secret()), xonly_from_secret(generate_secret())
    svc.register_intent(staker, [fp], 150, 50_000, {"pop": "aa" * 64})
    stx = build_staking_tx(staker, fp, PARAMS, 150, 50_000)
    stx.inputs.append(TxIn(OutPoint(b"\x0d" * 32, 0)))
    btc.mine(1, [_ctx(stx)])
    btc.mine(K - 1)
    svc.follow()
    svc.relay_headers()                               # the chain knows depth k-1
    btc.mine(1)                                       # a block arrives between relaying and submitting
    rep = svc.submit_due()
    assert rep.submitted == [] and rep.retried == [] and chain.kinds() == []
    rep = svc.run_once()                              # followed and relayed: now k deep for both
    assert rep.submitted == [submission_key("delegation", stx.txid_hex())]
    assert chain.kinds() == ["create_btc_delegation"]
