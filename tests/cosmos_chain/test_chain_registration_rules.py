"""Registration rules as Babylon runs them (issue 9), on the real registry + BTC light client:
params versions by BTC activation height, the proof of possession over the raw address bytes
(Babylon types/pop.go, rebuilt here independently with bech32 + btclib), early unbonding by any
unbonding-path spend signed by the staker (inclusion proof, not k depth; not for EXPIRED), a
coinbase staking tx refused, and a slashed FP's ACTIVE / UNBONDING delegations slashed while its
EXPIRED / WITHDRAWN ones are left alone. Every hand-built Bitcoin spend is checked by libbitcoinkernel."""

from __future__ import annotations

import hashlib
from typing import Any

import bech32
import pytest
from btclib.ecc import ssa

from btc_staking.keys import xonly_from_secret
from btc_staking.params import covenant_secret
from btc_staking.signing import sign_script_path
from btc_staking.staking import build_slashing_tx, build_unbonding_tx
from btc_staking.tx import OutPoint, Tx, TxIn, TxOut, p2tr_script
from btc_staking.witness import unbonding_witness
from chain_helpers import (
    K, QUORUM, UNBONDING_TIME, BtcChain, StakeFixture, TestChain, fp_pk, fp_secret, kernel_verify, make_genesis, pop,
    small_params, wallet,
)
from cosmos_chain.modules.base import Context, Module

pytestmark = pytest.mark.timeout(120)

REG, LC = "btc_staking", "btc_light_client"
SUBMITTER, OPERATOR, COVENANT = wallet("rr-submitter"), wallet("rr-operator"), wallet("rr-covenant")
FPA = fp_pk("a")
V0 = small_params()


class SlashTrigger(Module):
    """Test-only contract: ``{"slash": {btc_pk, height}}`` calls the registry's slashing hook."""

    name = "slash_trigger"

    def exec_slash(self, ctx: Context, sender: str, body: dict, funds: list) -> Any:
        return [d["staking_tx_hash"] for d in ctx.module(REG).slash_finality_provider(ctx, body["btc_pk"], 7)]


class Net:
    def __init__(self, params: list | None = None) -> None:
        self.btc = BtcChain()
        self.btc.mine(n=3)
        self.chain = TestChain(make_genesis([SUBMITTER, OPERATOR, COVENANT], self.btc, params or [V0]),
                               modules=[SlashTrigger()])
        self.relayed = 0
        self.relay()

    def relay(self) -> None:
        new = self.btc.best[self.relayed + 1:]
        if new:
            self.chain.ok(SUBMITTER, LC, {"insert_headers": {"headers": [b.raw for b in new]}})
            self.relayed = self.btc.tip.height

    def mine(self, txs=(), n: int = 1) -> None:
        self.btc.mine(list(txs), n)
        self.relay()

    def register_fp(self, label: str = "a", pop_hex: str | None = None) -> str:
        sk = fp_secret(label)
        msg = {"create_finality_provider": {"btc_pk": xonly_from_secret(sk).hex(),
                                            "pop": pop_hex or pop(sk, str(OPERATOR.address())),
                                            "description": {"moniker": label}, "commission": "0.05"}}
        res = self.chain.execute(OPERATOR, REG, msg)
        return "" if res.code == 0 else res.log

    def create(self, s: StakeFixture, proof: bool = True) -> dict:
        return self.chain.ok(SUBMITTER, REG, {"create_btc_delegation": s.create_msg(
            str(SUBMITTER.address()), self.btc.inclusion_proof(s.staking_tx) if proof else None)})

    def active(self, s: StakeFixture, members=range(QUORUM)) -> None:
        self.mine([s.staking_tx])
        self.mine(n=K)
        self.create(s)
        for i in members:
            self.chain.ok(COVENANT, REG, {"add_covenant_sigs": s.covenant_sigs_msg(i)})

    def delegation(self, s: StakeFixture) -> dict:
        return self.chain.query(REG, {"delegation": {"staking_tx_hash": s.staking_tx_hash}})["delegation"]


# ---------------------------------------------------------------------------- params by BTC height
def test_delegation_validated_against_the_params_in_force_at_its_inclusion_height() -> None:
    h = 13  # version 1 (another covenant committee) activates at BTC height H
    v1 = small_params(covenant_pks=tuple(xonly_from_secret(covenant_secret(i)) for i in (3, 4, 5)),
                      btc_activation_height=h)
    net = Net([V0, v1])
    assert net.register_fp() == ""
    old = StakeFixture("rr-v0", [FPA], 100_000, 200, V0, funding_label="v0")
    early_v1 = StakeFixture("rr-v1-early", [FPA], 100_000, 200, v1, funding_label="v1e")
    net.mine(n=h - 2 - net.btc.tip.height)
    net.mine([old.staking_tx, early_v1.staking_tx])  # included at H - 1
    assert net.btc.find(old.staking_tx)[0].height == h - 1
    net.mine(n=K + 2)  # registered after H: the tip is past the activation height
    assert net.btc.tip.height > h
    assert net.create(old)["status"] == "PENDING"
    assert net.delegation(old)["params_version"] == 0
    # built for version 1 but included before H: version 0's committee is what applies
    res = net.chain.execute(SUBMITTER, REG, {"create_btc_delegation": early_v1.create_msg(
        str(SUBMITTER.address()), net.btc.inclusion_proof(early_v1.staking_tx))})
    assert res.code != 0 and "wrong staking script" in res.log
    # version 0's covenants sign the old one; version 1's committee is refused for it
    for i in range(QUORUM):
        net.chain.ok(COVENANT, REG, {"add_covenant_sigs": old.covenant_sigs_msg(i)})
    assert net.delegation(old)["status"] == "ACTIVE"
    # a tx included at or above H validates against version 1 (and its committee)
    new = StakeFixture("rr-v1", [FPA], 100_000, 200, v1, funding_label="v1")
    net.mine([new.staking_tx])
    net.mine(n=K)
    assert net.create(new)["status"] == "PENDING" and net.delegation(new)["params_version"] == 1
    res = net.chain.execute(COVENANT, REG, {"add_covenant_sigs": new.covenant_sigs_msg(0)})
    assert res.code != 0 and "not a covenant committee member (params version 1)" in res.log
    for i in (3, 4):
        net.chain.ok(COVENANT, REG, {"add_covenant_sigs": new.covenant_sigs_msg(i)})
    assert net.delegation(new)["status"] == "ACTIVE"


def test_pre_approval_delegation_keeps_its_version_and_a_proof_from_another_version_is_refused() -> None:
    h = 12
    v1 = small_params(covenant_pks=tuple(xonly_from_secret(covenant_secret(i)) for i in (3, 4, 5)),
                      btc_activation_height=h)
    net = Net([V0, v1])
    net.register_fp()
    assert net.btc.tip.height < h
    s = StakeFixture("rr-pre", [FPA], 100_000, 200, V0, funding_label="pre")
    net.create(s, proof=False)  # validated at the tip (< H): version 0
    assert net.delegation(s)["params_version"] == 0
    net.mine(n=h - net.btc.tip.height)
    net.mine([s.staking_tx])  # but mined above H, where version 1 applies
    net.mine(n=K)
    res = net.chain.execute(SUBMITTER, REG, {"add_btc_delegation_inclusion_proof": {
        "staking_tx_hash": s.staking_tx_hash, "inclusion_proof": net.btc.inclusion_proof(s.staking_tx)}})
    assert res.code != 0 and "the delegation was validated against version 0" in res.log
    assert net.delegation(s)["start_height"] is None


def test_genesis_refuses_decreasing_activation_heights() -> None:
    btc = BtcChain()
    genesis = make_genesis([SUBMITTER], btc, [small_params(btc_activation_height=10), small_params()])
    chain = TestChain(genesis, init=False)
    with pytest.raises(ValueError, match="btc_activation_height"):
        chain.app.init_chain(genesis)


# ---------------------------------------------------------------------------- proof of possession
def _babylon_pop(sk: bytes, address: str) -> str:
    """Babylon types/pop.go, independently: BIP-340 (btclib) over sha256(bech32-decoded address bytes)."""
    hrp, data = bech32.bech32_decode(address)
    raw = bytes(bech32.convertbits(data, 5, 8, False))
    assert hrp == "bbn" and len(raw) == 20
    return ssa.sign_(hashlib.sha256(raw).digest(), int.from_bytes(sk, "big")).serialize().hex()


def test_pop_is_over_the_raw_address_bytes_not_the_bech32_string() -> None:
    net = Net()
    sk = fp_secret("a")
    address = str(OPERATOR.address())
    over_string = ssa.sign_(hashlib.sha256(address.encode()).digest(), int.from_bytes(sk, "big")).serialize().hex()
    assert "invalid proof of possession" in net.register_fp("a", over_string)
    assert net.register_fp("a", _babylon_pop(sk, address)) == ""
    # the staker's PoP follows the same rule
    s = StakeFixture("rr-pop", [FPA], 100_000, 200, V0, funding_label="pop")
    net.mine([s.staking_tx])
    net.mine(n=K)
    body = s.create_msg(str(SUBMITTER.address()), net.btc.inclusion_proof(s.staking_tx))
    sub = str(SUBMITTER.address())
    bad = dict(body, pop=ssa.sign_(hashlib.sha256(sub.encode()).digest(),
                                   int.from_bytes(s.staker_sk, "big")).serialize().hex())
    res = net.chain.execute(SUBMITTER, REG, {"create_btc_delegation": bad})
    assert res.code != 0 and "invalid proof of possession for staker" in res.log
    good = dict(body, pop=_babylon_pop(s.staker_sk, sub))
    assert net.chain.ok(SUBMITTER, REG, {"create_btc_delegation": good})["status"] == "PENDING"


# ---------------------------------------------------------------------------- odd staking txs
class CoinbaseStake(StakeFixture):
    """The same delegation, but its staking tx is a coinbase (null prevout)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        p = self.params
        self.staking_tx = Tx(2, [TxIn(OutPoint(bytes(32), 0xFFFFFFFF), script_sig=b"\x03\x10\x00\x00")],
                             [self.info.output], 0)
        self.staking_outpoint = OutPoint(self.staking_tx.txid(), 0)
        self.slashing_tx = build_slashing_tx(self.staking_outpoint, self.value, self.staker_pk, p)
        self.unbonding_tx = build_unbonding_tx(self.staking_outpoint, self.value, self.staker_pk, self.fps, p)
        self.unbonding_outpoint = OutPoint(self.unbonding_tx.txid(), 0)
        self.unbonding_slashing_tx = build_slashing_tx(self.unbonding_outpoint, self.unbonding_value,
                                                       self.staker_pk, p)


def test_coinbase_staking_tx_is_refused() -> None:
    net = Net()
    net.register_fp()
    s = CoinbaseStake("rr-cb", [FPA], 100_000, 200, V0, funding_label="cb")
    res = net.chain.execute(SUBMITTER, REG, {"create_btc_delegation": s.create_msg(str(SUBMITTER.address()))})
    assert res.code != 0 and "coinbase tx cannot be used for staking" in res.log
    ok = StakeFixture("rr-cb", [FPA], 100_000, 200, V0, funding_label="cb")  # same keys, a normal tx
    assert net.create(ok, proof=False)["status"] == "PENDING"


# ---------------------------------------------------------------------------- early unbonding
def _unbonding_path_spend(s: StakeFixture, outputs: list[TxOut], staker_sk: bytes) -> Tx:
    """A tx (not the registered unbonding tx) spending the staking output through the unbonding leaf."""
    p = s.params
    tx = Tx(2, [TxIn(s.staking_outpoint)], outputs, 0)
    leaf = s.info.unbonding_script
    cov = {xonly_from_secret(covenant_secret(i)): sign_script_path(covenant_secret(i), tx, 0, [s.info.output], leaf)
           for i in range(p.covenant_quorum)}
    staker_sig = sign_script_path(staker_sk, tx, 0, [s.info.output], leaf)
    tx.inputs[0].witness = unbonding_witness(p.covenant_pks, cov, p.covenant_quorum, staker_sig, leaf,
                                             s.info.control_block(leaf))
    return tx


def test_any_unbonding_path_spend_signed_by_the_staker_unbonds_with_a_plain_inclusion_proof() -> None:
    net = Net()
    net.register_fp()
    s = StakeFixture("rr-ub", [FPA], 100_000, 200, V0, funding_label="ub")
    net.active(s)
    assert net.delegation(s)["status"] == "ACTIVE"
    outs = [TxOut(100_000 - 3_000, p2tr_script(s.staker_pk))]
    spend = _unbonding_path_spend(s, outs, s.staker_sk)
    assert spend.txid() != s.unbonding_tx.txid()
    assert kernel_verify(spend, [s.info.output]), "unbonding-path spend rejected by libbitcoinkernel"
    forged = _unbonding_path_spend(s, outs, fp_secret("a"))  # right leaf, not the staker's signature
    assert not kernel_verify(forged, [s.info.output])
    net.mine([spend])  # depth 0: only included, not k-deep
    msg = {"staking_tx_hash": s.staking_tx_hash, "inclusion_proof": net.btc.inclusion_proof(spend)}
    res = net.chain.execute(SUBMITTER, REG, {"btc_undelegate": dict(msg, unbonding_tx=forged.serialize().hex())})
    assert res.code != 0 and "valid staker signature" in res.log
    out = net.chain.ok(SUBMITTER, REG, {"btc_undelegate": dict(msg, unbonding_tx=spend.serialize().hex())})
    assert out["status"] == "UNBONDING" and out["unbonding_height"] == net.btc.tip.height
    d = net.delegation(s)
    assert d["unbonding_btc_txid"] == spend.txid_hex() and d["unbonding_registered_tx"] is False


def test_an_expired_delegation_cannot_be_unbonded() -> None:
    net = Net()
    net.register_fp()
    s = StakeFixture("rr-exp", [FPA], 100_000, 10 + UNBONDING_TIME, V0, funding_label="exp")
    net.active(s)
    net.mine(n=10)
    assert net.delegation(s)["status"] == "EXPIRED"
    ub = s.signed_unbonding_tx()
    net.mine([ub])
    net.mine(n=K)
    res = net.chain.execute(SUBMITTER, REG, {"btc_undelegate": {
        "staking_tx_hash": s.staking_tx_hash, "unbonding_tx": ub.serialize().hex(),
        "inclusion_proof": net.btc.inclusion_proof(ub)}})
    assert res.code != 0 and "is EXPIRED" in res.log
    # the staker still withdraws what the unbonding tx locked, once its timelock passed
    net.mine(n=UNBONDING_TIME)
    w = s.signed_withdraw_tx(after_unbonding=True)
    net.mine([w])
    net.mine(n=K)
    out = net.chain.ok(SUBMITTER, REG, {"report_withdrawal": {"staking_tx_hash": s.staking_tx_hash,
                                                              "spend_tx": w.serialize().hex(),
                                                              "inclusion_proof": net.btc.inclusion_proof(w)}})
    assert out["status"] == "WITHDRAWN"


# ---------------------------------------------------------------------------- slashing per delegation
def test_slashed_fp_slashes_active_and_unbonding_delegations_only() -> None:
    net = Net()
    net.register_fp()
    active = StakeFixture("rr-s-act", [FPA], 100_000, 200, V0, funding_label="act")
    unbonding = StakeFixture("rr-s-ub", [FPA], 110_000, 200, V0, funding_label="ub")
    expired = StakeFixture("rr-s-exp", [FPA], 120_000, 10 + UNBONDING_TIME, V0, funding_label="exp")
    withdrawn = StakeFixture("rr-s-wd", [FPA], 130_000, 200, V0, funding_label="wd")
    for s in (active, unbonding, expired, withdrawn):
        net.active(s)
    for s in (unbonding, withdrawn):
        ub = s.signed_unbonding_tx()
        net.mine([ub])
        net.chain.ok(SUBMITTER, REG, {"btc_undelegate": {"staking_tx_hash": s.staking_tx_hash,
                                                         "unbonding_tx": ub.serialize().hex(),
                                                         "inclusion_proof": net.btc.inclusion_proof(ub)}})
    net.mine(n=UNBONDING_TIME + K)
    w = withdrawn.signed_withdraw_tx(after_unbonding=True)
    net.mine([w])
    net.mine(n=K)
    net.chain.ok(SUBMITTER, REG, {"report_withdrawal": {"staking_tx_hash": withdrawn.staking_tx_hash,
                                                        "spend_tx": w.serialize().hex(),
                                                        "inclusion_proof": net.btc.inclusion_proof(w)}})
    before = {n: net.delegation(s)["status"] for n, s in
              (("active", active), ("unbonding", unbonding), ("expired", expired), ("withdrawn", withdrawn))}
    assert before == {"active": "ACTIVE", "unbonding": "UNBONDING", "expired": "EXPIRED", "withdrawn": "WITHDRAWN"}
    slashed = net.chain.ok(SUBMITTER, "slash_trigger", {"slash": {"btc_pk": FPA.hex()}})
    assert sorted(slashed) == sorted([active.staking_tx_hash, unbonding.staking_tx_hash])
    after = {n: (net.delegation(s)["status"], net.delegation(s)["slashed"]) for n, s in
             (("active", active), ("unbonding", unbonding), ("expired", expired), ("withdrawn", withdrawn))}
    assert after == {"active": ("SLASHED", True), "unbonding": ("SLASHED", True), "expired": ("EXPIRED", False),
                     "withdrawn": ("WITHDRAWN", False)}
