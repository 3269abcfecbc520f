"""Issue 15 on the chain: consumer block rewards flow to BTC delegations through the mesh module,
the FP commission goes to the FP's address, claims only to the PoP-bound address, slashed stakers
stop earning, the commission bound is enforced at registration, and pending rewards survive a
restart. Every change is a cosmpy-signed tx through ``ChainApp.finalize_block``/``commit``."""

from __future__ import annotations

from decimal import Decimal

import pytest

from btc_staking.keys import xonly_from_secret
from chain_helpers import TestChain, fp_secret, make_genesis, pop, small_params, wallet
from cosmos_chain.app import ChainApp
from cosmos_chain.errors import InvalidRequestError
from cosmos_chain.modules.base import Context
from mesh_chain_helpers import Chain, Key, StubRegistry

pytestmark = pytest.mark.timeout(60)

ADMIN, OP_A, OP_B, RELAYER, STAKER_A, STAKER_B, MALLORY = (Key.from_seed(40 + i) for i in range(7))
FP_A = xonly_from_secret((0xA1).to_bytes(32, "big")).hex()
FP_B = xonly_from_secret((0xB2).to_bytes(32, "big")).hex()
REWARD = 1000
GENESIS = {"admin": ADMIN.address, "unbonding_period": 100, "block_reward": REWARD}


class CommissionRegistry(StubRegistry):
    """The stub registry, keeping the FP's registration commission like the real one."""

    def exec_create_finality_provider(self, ctx: Context, sender: str, body: dict, funds: list) -> dict:
        rec = super().exec_create_finality_provider(ctx, sender, body, funds)
        rec["commission"] = body.get("commission", "0")
        self.store(ctx).set("fp/" + rec["btc_pk"], rec)
        return rec


def delegation(n: int, fp: str, value: int, staker: Key) -> dict:
    return {"staking_tx_hash": f"{n:064x}", "staker_btc_pk": f"{n:02x}" * 32, "fp_btc_pk_list": [fp],
            "staking_value": value, "staker_addr": staker.address}


def set_status(chain: Chain, d: dict, status: str) -> None:
    res = chain.execute(RELAYER, "btc_staking", {"set_status": {"delegation": d, "status": status}})
    assert res.code == 0, res.log


def rewards(chain: Chain, msg: dict) -> dict:
    return chain.query("mesh", {"rewards": msg})


def pending(chain: Chain, n: int) -> int:
    return int(rewards(chain, {"delegation": {"staking_tx_hash": f"{n:064x}"}})["pending"])


def mesh_balance(chain: Chain, addr: str) -> int:
    return int(chain.query("mesh", {"balance": {"address": addr, "denom": "ustake"}})["amount"]["amount"])


def start(home=None) -> Chain:
    c = Chain.start([ADMIN, OP_A, OP_B, RELAYER, STAKER_A, STAKER_B, MALLORY], {"mesh": GENESIS},
                    modules=[CommissionRegistry()], home=home)
    c.ok(OP_A, "btc_staking", {"create_finality_provider": {"btc_pk": FP_A, "validator": "valA",
                                                            "commission": "0.1"}})
    c.ok(OP_B, "btc_staking", {"create_finality_provider": {"btc_pk": FP_B, "validator": "valB",
                                                            "commission": "0.05"}})
    return c


def check_reconciliation(chain: Chain) -> dict:
    t = rewards(chain, {"totals": {}})["totals"]
    assert t["balanced"] is True
    paid = int(t["paid_by_consumer"])
    assert paid == sum(int(t[k]) for k in ("claimed", "pending", "commission", "undistributed", "carried"))
    return t


def test_rewards_flow_slash_stops_and_claims():
    chain = start()
    da, db = delegation(1, FP_A, 300_000, STAKER_A), delegation(2, FP_B, 100_000, STAKER_B)
    for st in ("PENDING", "ACTIVE"):
        set_status(chain, da, st)
        set_status(chain, db, st)
    before = (pending(chain, 1), pending(chain, 2))
    for _ in range(4):
        chain.block()
    # 3:1 by power → 750 / 250 a block, minus 10% / 5% commission
    assert (pending(chain, 1) - before[0], pending(chain, 2) - before[1]) == (4 * 675, 4 * 238)
    fp_a = rewards(chain, {"finality_provider": {"fp_btc_pk": FP_A}})
    assert fp_a["commission_rate"] == "0.1" and fp_a["commission_recipient"] == OP_A.address
    assert mesh_balance(chain, OP_A.address) == int(fp_a["commission"]) > 0
    check_reconciliation(chain)

    res = chain.execute(RELAYER, "btc_staking", {"slash": {"btc_pk": FP_A, "height": chain.app.last_height}})
    assert res.code == 0, res.log
    frozen = pending(chain, 1)
    b_before = pending(chain, 2)
    for _ in range(3):
        chain.block()
    assert pending(chain, 1) == frozen  # A stopped earning at the slash
    assert pending(chain, 2) == b_before + 3 * (1000 - 50)  # B gets the whole block reward now

    # claims: only by / to the PoP-bound address
    res = chain.execute(MALLORY, "mesh", {"claim_rewards": {"staking_tx_hash": f"{2:064x}"}})
    assert res.code != 0 and "pays its rewards to" in res.log
    res = chain.execute(STAKER_B, "mesh", {"claim_rewards": {"recipient": MALLORY.address}})
    assert res.code != 0 and "proof of possession" in res.log
    got = chain.ok(STAKER_B, "mesh", {"claim_rewards": {}})
    assert int(got["total"]["amount"]) > 0 and mesh_balance(chain, STAKER_B.address) == int(got["total"]["amount"])
    got_a = chain.ok(STAKER_A, "mesh", {"claim_rewards": {"staking_tx_hash": f"{1:064x}"}})
    assert int(got_a["total"]["amount"]) == frozen  # earned before the slash stays claimable
    staker = rewards(chain, {"address": {"address": STAKER_A.address}})
    assert staker["pending"] == "0" and staker["claimed"] == str(frozen)
    by_pk = rewards(chain, {"staker": {"staker_btc_pk": da["staker_btc_pk"]}})
    assert [d["staking_tx_hash"] for d in by_pk["delegations"]] == [da["staking_tx_hash"]]
    t = check_reconciliation(chain)
    assert int(t["claimed"]) == mesh_balance(chain, STAKER_A.address) + mesh_balance(chain, STAKER_B.address)


def test_unbonding_stops_earning():
    chain = start()
    d = delegation(3, FP_B, 50_000, STAKER_B)
    for st in ("PENDING", "ACTIVE"):
        set_status(chain, d, st)
    chain.block()
    set_status(chain, d, "UNBONDING")
    frozen = pending(chain, 3)
    assert frozen > 0
    for _ in range(3):
        chain.block()
    assert pending(chain, 3) == frozen
    check_reconciliation(chain)


def test_pending_rewards_survive_restart(tmp_path):
    chain = start(home=tmp_path / "node")
    d = delegation(4, FP_A, 70_000, STAKER_A)
    for st in ("PENDING", "ACTIVE"):
        set_status(chain, d, st)
    chain.block()
    want = rewards(chain, {"delegation": {"staking_tx_hash": f"{4:064x}"}})
    totals = rewards(chain, {"totals": {}})
    chain.app = ChainApp(chain.app.chain_id, tmp_path / "node", modules=[CommissionRegistry()])
    assert rewards(chain, {"delegation": {"staking_tx_hash": f"{4:064x}"}}) == want
    assert rewards(chain, {"totals": {}}) == totals
    chain.block()  # and it goes on earning after the restart
    assert pending(chain, 4) == int(want["pending"]) + 900


def test_reward_queries_reject_bad_input():
    chain = start()
    with pytest.raises(Exception, match="unknown delegation"):
        rewards(chain, {"delegation": {"staking_tx_hash": "ab" * 32}})
    with pytest.raises(Exception, match="staker_btc_pk"):
        rewards(chain, {"staker": {"staker_btc_pk": "nope"}})
    with pytest.raises(Exception, match="unknown rewards query"):
        rewards(chain, {"bogus": {}})
    res = chain.execute(MALLORY, "mesh", {"claim_rewards": {}})
    assert res.code != 0 and "no delegation pays" in res.log


def test_commission_bound_enforced_at_registration():
    op = wallet("commission-op")
    genesis = make_genesis([op], None, [small_params()])
    genesis["btc_staking"].update({"min_commission_rate": "0.03", "max_commission_rate": "0.2"})
    chain = TestChain(genesis)

    def register(label: str, rate: str):
        sk = fp_secret(label)
        return chain.execute(op, "btc_staking", {"create_finality_provider": {
            "btc_pk": xonly_from_secret(sk).hex(), "pop": pop(sk, str(op.address())),
            "description": {"moniker": label}, "commission": rate, "validator": f"val-{label}"}})

    for label, rate in (("low", "0.02"), ("high", "0.25")):
        res = register(label, rate)
        assert res.code != 0 and "outside the chain's bounds" in res.log
    assert register("ok", "0.2").code == 0
    q = chain.query("btc_staking", {"params": {}})
    assert (q["min_commission_rate"], q["max_commission_rate"]) == ("0.03", "0.2")
    bad = make_genesis([op], None, [small_params()])
    bad["btc_staking"]["min_commission_rate"] = "0.5"
    bad["btc_staking"]["max_commission_rate"] = "0.4"
    with pytest.raises(InvalidRequestError, match="min_commission_rate above"):
        ChainApp("bad-1").init_chain(bad)


def test_fees_paid_to_the_consumer_flow_with_the_next_block():
    chain = start()
    d = delegation(5, FP_B, 40_000, STAKER_B)
    for st in ("PENDING", "ACTIVE"):
        set_status(chain, d, st)
    chain.block()
    got = int(chain.ok(STAKER_B, "mesh", {"claim_rewards": {}})["total"]["amount"])
    assert got > 0
    res = chain.execute(STAKER_B, "mesh", {"pay_consumer_fees": {"amount": str(got + 1)}})
    assert res.code != 0 and "cannot send" in res.log  # only what the mesh balance holds
    paid = int(rewards(chain, {"totals": {}})["totals"]["paid_by_consumer"])
    chain.ok(STAKER_B, "mesh", {"pay_consumer_fees": {"amount": "300"}})  # its block pays reward + fees
    t = rewards(chain, {"totals": {}})
    assert int(t["totals"]["paid_by_consumer"]) == paid + REWARD + 300 and t["consumer"]["fees"] == "300"
    assert mesh_balance(chain, STAKER_B.address) == got - 300
    check_reconciliation(chain)


def test_commission_in_any_decimal_form_the_registry_accepts():
    chain = Chain.start([ADMIN, OP_A, RELAYER, STAKER_A], {"mesh": GENESIS}, modules=[CommissionRegistry()])
    chain.ok(OP_A, "btc_staking", {"create_finality_provider": {"btc_pk": FP_A, "validator": "valA",
                                                                "commission": "5E-2"}})
    for st in ("PENDING", "ACTIVE"):
        set_status(chain, delegation(6, FP_A, 10_000, STAKER_A), st)
    chain.block()
    fp = rewards(chain, {"finality_provider": {"fp_btc_pk": FP_A}})
    assert Decimal(fp["commission_rate"]) == Decimal("0.05") and int(fp["commission"]) == 2 * 50
