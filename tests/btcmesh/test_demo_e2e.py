"""The full ``btcmesh demo`` scenario in-process: exact balances, states, burned amount, virtual stake,
the extracted key, and every Bitcoin spend re-checked by libbitcoinkernel and btclib."""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

import pytest

from btcmesh_testkit.demo_checks import assert_demo_spends_valid
from btcmesh_testkit.oracles import btclib_verify
from btclib.tx.tx import Tx as BTx

from btc_staking.params import mul_f64
from btc_staking.staking import build_slashing_change_info
from btc_staking.tx import Tx
from btcmesh.demo import DemoConfig, DemoResult, format_summary, run_demo
from btcmesh.staker import DEFAULT_WITHDRAW_FEE

CFG = DemoConfig()



@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    lines: list[str] = []
    res = run_demo(CFG, out=lines.append, workdir=tmp_path_factory.mktemp("demo"))
    assert res.ok, "\n".join(lines) + format_summary(res)
    return res


def test_every_step_ran_ok(demo: DemoResult) -> None:
    assert [s.status for s in demo.steps] == ["ok"] * len(demo.steps)
    assert len(demo.steps) >= 15
    summary = format_summary(demo)
    for needle in ("Delegations", "Virtual stake per validator", "SLASHED", "WITHDRAWN", "OK in"):
        assert needle in summary


def test_delegation_states_on_chain_and_in_the_api(demo: DemoResult) -> None:
    a, b = demo.delegations["A"], demo.delegations["B"]
    assert a.status == "SLASHED" and b.status == "WITHDRAWN"
    assert a.status_history[-2:] == ["ACTIVE", "SLASHED"]
    assert b.status_history[-3:] == ["ACTIVE", "UNBONDING", "WITHDRAWN"]
    assert a.status_history[0] in ("PENDING", "VERIFIED") and b.status_history[0] in ("PENDING", "VERIFIED")
    # the API, queried over HTTP, derives the same states
    assert (a.api_state, b.api_state) == ("SLASHED", "WITHDRAWN")
    for who, body in demo.api_answers.items():
        assert body["data"]["staker_btc_pk_hex"] == demo.delegations[who].staker_pk
        assert body["data"]["finality_provider_btc_pks_hex"] == [demo.delegations[who].fp_pk]


def test_btc_burned_at_the_slashing_rate_and_the_rest_returned(demo: DemoResult) -> None:
    p = demo.params
    assert p is not None
    a, b = demo.delegations["A"], demo.delegations["B"]
    # Babylon: slash = MulF64(value, rate); for these values it is exactly floor(value × rate)
    floor = int((Decimal(CFG.value_a) * p.slashing_rate).to_integral_value(ROUND_FLOOR))
    assert a.burned_sat == demo.expected_burned_sat == mul_f64(CFG.value_a, p.slashing_rate) == floor == 100_000
    slash = Tx.parse(demo.spends["slashing tx A"].raw)
    assert demo.chain_slashing_btc_txid == demo.slashing_txid == slash.txid_hex()  # recorded by the registry
    assert slash.outputs[0].script_pubkey == p.slashing_pk_script and slash.outputs[0].value == a.burned_sat
    change = CFG.value_a - a.burned_sat - p.min_slashing_tx_fee_sat
    assert slash.outputs[1].value == change
    assert slash.outputs[1].script_pubkey == build_slashing_change_info(
        bytes.fromhex(a.staker_pk), p.unbonding_time_blocks).pk_script
    assert a.returned_sat == change - DEFAULT_WITHDRAW_FEE
    assert b.burned_sat == 0
    assert b.returned_sat == CFG.value_b - p.unbonding_fee_sat - DEFAULT_WITHDRAW_FEE
    # staker wallets: before − staking tx fee − stake + what came back, to the satoshi
    for who, o in demo.delegations.items():
        rec = demo.spends[f"staking tx {who}"]
        tx = Tx.parse(rec.raw)
        fee = sum(o_.value for o_ in rec.prevouts) - sum(o_.value for o_ in tx.outputs)
        assert o.wallet_after_sat == o.wallet_before_sat - fee - o.staked_sat + o.returned_sat
        assert o.staked_sat == o.burned_sat + o.returned_sat + o.fees_sat


def test_virtual_stake_slashed_on_the_cosmos_side(demo: DemoResult) -> None:
    p = demo.params
    assert p is not None
    bad, honest = demo.delegations["A"].validator, demo.delegations["B"].validator
    # price 1, no discount: virtual stake = staked sats
    assert demo.virtual_stake_before == {bad: CFG.value_a, honest: CFG.value_b}
    # the bad FP's validator is tombstoned and its stake slashed and unstaked; the honest one is untouched
    assert demo.virtual_stake_after == {bad: 0, honest: CFG.value_b}
    # collateral mirrors Bitcoin: it is the slashing tx's change output (the burned part and the fee are gone)
    assert demo.mesh_collateral_after["A"] == demo.slashing_change_sat == demo.mesh_btc_left["A"]
    assert demo.slashing_change_sat < CFG.value_a - demo.delegations["A"].burned_sat  # the fee came out too
    assert demo.mesh_collateral_after["B"] == demo.mesh_collateral_before["B"] == CFG.value_b


def test_slash_figures_reported_apart(demo: DemoResult) -> None:
    """Issue 10 §2: virtual stake slashed, virtual stake unbonded from the tombstoned validator and
    BTC left are three separate figures, in the result and in the summary."""
    assert demo.delegations["A"].burned_sat == demo.expected_burned_sat == 100_000
    assert (demo.mesh_virtual_slashed, demo.mesh_virtual_unbonded) == (100_000, 900_000)
    summary = format_summary(demo)
    assert "virtual stake slashed 100000" in summary and "tombstoned validator 900000" in summary
    assert f"BTC left (vault collateral of A) {demo.slashing_change_sat} sat" in summary


def test_consensus_power_follows_btc_stake(demo: DemoResult) -> None:
    """Issue 10 §1 in embedded mode: the valset gives each validator (own bond 10 + virtual stake)
    power units of 100,000; the slashed FP's validator leaves the set, the others keep theirs."""
    bad, honest = demo.delegations["A"].validator, demo.delegations["B"].validator
    assert demo.consensus_power_before == {bad: 20, honest: 15, "demo-val-2": 10, "demo-val-3": 10}
    assert demo.consensus_power_after == {honest: 15, "demo-val-2": 10, "demo-val-3": 10}
    assert "Consensus power" in format_summary(demo)


def test_extracted_key_is_the_fp_secret(demo: DemoResult) -> None:
    assert demo.extracted_sk == demo.bad_fp_secret
    assert demo.extracted_key_matches and demo.slasher_key_matches


def test_every_spend_mined_and_valid_for_both_oracles(demo: DemoResult) -> None:
    # also: the node's chain, undo data and UTXO set agree with libbitcoinkernel's; every
    # non-coinbase coin spent on this chain was spent by one of the demo's txs
    assert_demo_spends_valid(demo)


def test_slashing_tx_checked_by_btclib(demo: DemoResult) -> None:
    """btclib parses the slashing tx on its own: amounts, scripts, and the 3-leaf script-path spend."""
    rec = demo.spends["slashing tx A"]
    btx = BTx.parse(rec.raw)
    assert btx.id.hex() == rec.txid
    assert [o.value for o in btx.vout] == [o.value for o in Tx.parse(rec.raw).outputs]
    assert btx.vout[0].script_pub_key.script == demo.params.slashing_pk_script
    assert btx.vin[0].prev_out.tx_id.hex() == demo.delegations["A"].staking_tx_hash
    witness = btx.vin[0].script_witness.stack
    p = demo.params
    # covenant slots (one per covenant key) + one FP slot + staker sig + leaf script + control block
    assert len(witness) == len(p.covenant_pks) + 1 + 1 + 2
    assert sum(1 for w in witness[: len(p.covenant_pks)] if len(w) == 64) == p.covenant_quorum
    assert len(witness[len(p.covenant_pks)]) == 64  # the FP signature made with the extracted key
    assert btclib_verify(Tx.parse(rec.raw), rec.prevouts, 0)
    bad = bytearray(rec.raw)
    bad[-40] ^= 1  # flip a bit inside the control block / leaf: btclib must refuse it
    assert not btclib_verify(Tx.parse(bytes(bad)), rec.prevouts, 0)


def test_a_missing_chain_module_is_reported_not_faked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the staking registry the demo stops at the chain step and says what is missing."""
    from cosmos_chain.modules import base, default_module_classes

    default_module_classes()  # import every built-in module once, then hide the registry
    monkeypatch.delitem(base.MODULE_REGISTRY, "btc_staking", raising=False)
    lines: list[str] = []
    res = run_demo(CFG, out=lines.append)
    assert not res.ok
    assert [s.status for s in res.steps] == ["ok", "not available"]
    assert "btc_staking" in res.steps[1].detail and "btc_staking" in res.error
    assert not res.delegations and not res.spends
    assert "not available" in format_summary(res) and "FAILED" in format_summary(res)


def test_finality_power_and_finalized_height_in_the_summary(demo: DemoResult) -> None:
    """Issue 9: both FPs voted with power (their active sats), the block was finalized, the bad FP
    ends slashed with no power; the summary shows the finalized height and each FP's power and state."""
    assert demo.vote_height > 0 and demo.finalized_height is not None and demo.finalized_height >= demo.vote_height
    bad, honest = demo.fp_finality["bad"], demo.fp_finality["honest"]
    assert (bad["power_at_vote"], honest["power_at_vote"]) == (CFG.value_a, CFG.value_b)
    assert (bad["state"], bad["voting_power"]) == ("slashed", 0)
    assert honest["state"] in ("active", "standby") and honest["state"] != "jailed"
    summary = format_summary(demo)
    assert f"last finalized chain height {demo.finalized_height}" in summary
    assert "slashed" in summary and str(CFG.value_a) in summary


def test_rewards_flow_slash_stops_and_reconcile(demo: DemoResult) -> None:
    """Issue 15: both stakers earn consumer rewards; A nothing after its FP's slash (what it earned
    stays pending); B claims to its own (PoP-bound) address; every unit the consumer paid is
    claimed, pending or FP commission (plus the sub-unit remainder), and the summary says so."""
    a, b = demo.rewards["A"], demo.rewards["B"]
    assert a["earned_at_slash"] > 0 and a["earned_after_slash"] == 0
    assert a["pending"] == a["earned_at_slash"] and a["claimed"] == 0 and a["balance"] == 0
    assert b["earned_after_slash"] > 0 and b["claimed"] == b["claimed_in_step"] == b["balance"] > 0
    t = demo.reward_totals["totals"]
    assert t["balanced"] is True
    assert int(t["paid_by_consumer"]) == sum(int(t[k]) for k in ("claimed", "pending", "commission",
                                                                 "undistributed", "carried"))
    assert int(t["pending"]) >= a["pending"] + b["pending"] and int(t["claimed"]) == b["claimed"]
    by_fp = {v["fp_btc_pk"]: v for v in demo.reward_totals["validators"]}
    for who in ("A", "B"):
        v = by_fp[demo.delegations[who].fp_pk]
        # floor(reward × 0.05) per block: at most 5% of what the validator received, and paid
        assert v["commission_rate"] == "0.05" and 0 < int(v["commission"]) <= int(v["distributed"]) * 5 // 100
    assert "Reconciliation: paid by the consumer" in format_summary(demo)
    assert "OK, to the unit" in format_summary(demo)
