"""The ``btcmesh demo`` scenario on the real parts: a btcd v0.26 regtest process as Bitcoin and a
3-validator CometBFT v0.38 chain (cosmpy → ``RestServer(CometBackend)`` → validator 0).

Same outcomes as ``test_demo_e2e.py`` (states, burned amount, balances, virtual stake, extracted key,
every spend valid for libbitcoinkernel and btclib), plus: btcd's whole chain re-validated by
libbitcoinkernel, every validator reporting the same app hash at the final height, and every
process stopped afterwards. Needs btcd and cometbft (``tool_path``: a skip locally, a failure in CI).
"""

from __future__ import annotations

import socket
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from btcmesh_testkit.demo_checks import assert_demo_spends_valid

from btc_staking.params import mul_f64
from btc_staking.staking import build_slashing_change_info
from btc_staking.tx import Tx
from btcmesh.cli import build_parser
from btcmesh.demo import DemoConfig, DemoResult, format_summary, run_demo
from btcmesh.staker import DEFAULT_WITHDRAW_FEE

pytestmark = pytest.mark.timeout(180)

N_VALIDATORS = 3


def _cfg(tool_path) -> DemoConfig:
    # k = 3, unbonding time 4 blocks, CometBFT timeout_commit 0.3 s: the run takes ~15 s
    return DemoConfig(btc_backend="btcd", comet=N_VALIDATORS, comet_block_time=0.3,
                      btcd_binary=str(tool_path("btcd")), cometbft_binary=str(tool_path("cometbft")))


@pytest.fixture(scope="module")
def real(tool_path, tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoConfig, DemoResult]:
    """One full run; run_demo stops btcd, the validators, REST and API before it returns."""
    cfg = _cfg(tool_path)
    lines: list[str] = []
    res = run_demo(cfg, out=lines.append, workdir=tmp_path_factory.mktemp("real-parts"))
    assert res.ok, "\n".join(lines) + format_summary(res)
    return cfg, res


def _port_closed(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((parts.hostname or "", parts.port or 0)) != 0


def test_ran_on_btcd_and_cometbft_then_stopped(real: tuple[DemoConfig, DemoResult]) -> None:
    cfg, demo = real
    assert [s.status for s in demo.steps] == ["ok"] * len(demo.steps)
    assert demo.steps[0].name.startswith("start btcd") and "3 CometBFT validators" in demo.steps[1].name
    assert (demo.btc_backend, demo.comet_validators) == ("btcd", N_VALIDATORS)
    urls = [demo.btc_rpc_url, demo.rest_url, demo.api_url, *demo.comet_rpc_urls]
    assert len(demo.comet_rpc_urls) == N_VALIDATORS and all(u.startswith("http://127.0.0.1:") for u in urls)
    assert all(_port_closed(u) for u in urls), "a process or server is still listening after the demo"
    summary = format_summary(demo)
    for needle in ("btcd node", "CometBFT: 3 validators", "identical on every validator", "SLASHED", "WITHDRAWN"):
        assert needle in summary


def test_every_validator_reports_the_same_app_hash(real: tuple[DemoConfig, DemoResult]) -> None:
    _, demo = real
    names = {f"node{i}" for i in range(N_VALIDATORS)}
    # each validator's RPC (header of height + 1) and each validator's own app (its Commit at height)
    assert set(demo.validator_app_hashes) == set(demo.validator_local_app_hashes) == names
    hashes = set(demo.validator_app_hashes.values()) | set(demo.validator_local_app_hashes.values())
    assert len(hashes) == 1 and len(bytes.fromhex(hashes.pop())) == 32
    assert demo.app_hash_height >= demo.chain_height > 0


def test_delegation_states_on_chain_and_in_the_api(real: tuple[DemoConfig, DemoResult]) -> None:
    _, demo = real
    a, b = demo.delegations["A"], demo.delegations["B"]
    assert (a.status, b.status) == ("SLASHED", "WITHDRAWN")
    assert a.status_history[-2:] == ["ACTIVE", "SLASHED"]
    assert b.status_history[-3:] == ["ACTIVE", "UNBONDING", "WITHDRAWN"]
    assert (a.api_state, b.api_state) == ("SLASHED", "WITHDRAWN")
    for who, body in demo.api_answers.items():
        assert body["data"]["staker_btc_pk_hex"] == demo.delegations[who].staker_pk
        assert body["data"]["finality_provider_btc_pks_hex"] == [demo.delegations[who].fp_pk]
    assert demo.withdrawal_reported_by == "the checkpoint service"


def test_btc_burned_at_the_slashing_rate_and_the_rest_returned(real: tuple[DemoConfig, DemoResult]) -> None:
    cfg, demo = real
    p = demo.params
    assert p is not None
    a, b = demo.delegations["A"], demo.delegations["B"]
    floor = int((Decimal(cfg.value_a) * p.slashing_rate).to_integral_value(ROUND_FLOOR))
    assert a.burned_sat == demo.expected_burned_sat == mul_f64(cfg.value_a, p.slashing_rate) == floor == 100_000
    slash = Tx.parse(demo.spends["slashing tx A"].raw)
    assert demo.chain_slashing_btc_txid == demo.slashing_txid == slash.txid_hex()
    assert slash.outputs[0].script_pubkey == p.slashing_pk_script and slash.outputs[0].value == a.burned_sat
    change = cfg.value_a - a.burned_sat - p.min_slashing_tx_fee_sat
    assert slash.outputs[1].value == change
    assert slash.outputs[1].script_pubkey == build_slashing_change_info(
        bytes.fromhex(a.staker_pk), p.unbonding_time_blocks).pk_script
    assert a.returned_sat == change - DEFAULT_WITHDRAW_FEE
    assert b.burned_sat == 0 and b.returned_sat == cfg.value_b - p.unbonding_fee_sat - DEFAULT_WITHDRAW_FEE
    for who, o in demo.delegations.items():  # the stakers' wallets on btcd, to the satoshi
        rec = demo.spends[f"staking tx {who}"]
        tx = Tx.parse(rec.raw)
        fee = sum(o_.value for o_ in rec.prevouts) - sum(o_.value for o_ in tx.outputs)
        assert o.wallet_after_sat == o.wallet_before_sat - fee - o.staked_sat + o.returned_sat
        assert o.staked_sat == o.burned_sat + o.returned_sat + o.fees_sat


def test_virtual_stake_slashed_on_the_cosmos_side(real: tuple[DemoConfig, DemoResult]) -> None:
    cfg, demo = real
    bad, honest = demo.delegations["A"].validator, demo.delegations["B"].validator
    assert demo.virtual_stake_before == {bad: cfg.value_a, honest: cfg.value_b}
    assert demo.virtual_stake_after == {bad: 0, honest: cfg.value_b}
    # collateral = the slashing tx's change output (slash and fee gone); three figures apart (issue 10 §2)
    assert demo.mesh_collateral_after["A"] == demo.slashing_change_sat == demo.mesh_btc_left["A"]
    assert (demo.mesh_virtual_slashed, demo.mesh_virtual_unbonded) == (cfg.value_a // 10, cfg.value_a - cfg.value_a // 10)
    assert demo.mesh_collateral_after["B"] == demo.mesh_collateral_before["B"] == cfg.value_b
    # CometBFT consensus power (issue 10 §1): own bond 10 + virtual stake; the slashed FP's validator leaves
    assert demo.consensus_power_before == {bad: 20, honest: 15, "demo-val-2": 10}
    assert demo.consensus_power_after == {honest: 15, "demo-val-2": 10}


def test_extracted_key_is_the_fp_secret(real: tuple[DemoConfig, DemoResult]) -> None:
    _, demo = real
    assert demo.extracted_sk == demo.bad_fp_secret != ""
    assert demo.extracted_key_matches and demo.slasher_key_matches


def test_every_btcd_spend_valid_for_both_oracles_and_the_chain_for_the_kernel(
        real: tuple[DemoConfig, DemoResult]) -> None:
    _, demo = real
    # also: btcd's active chain, replayed block by block into libbitcoinkernel: same tip, and every
    # non-coinbase coin spent on it was spent by one of the demo's txs
    assert_demo_spends_valid(demo)


def test_bad_backend_choices_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="btc_backend must be one of"):
        DemoConfig(btc_backend="bitcoind")
    with pytest.raises(ValueError, match="comet must be a non-negative int"):
        DemoConfig(comet=-1)
    res = run_demo(DemoConfig(btc_backend="btcd", btcd_binary=str(tmp_path / "no-btcd")), workdir=tmp_path)
    assert not res.ok and [s.status for s in res.steps] == ["not available"]
    assert "btcd binary not found" in res.error and not res.spends
    args = build_parser().parse_args(["demo", "--btc-backend", "btcd", "--comet", "3"])
    assert (args.btc_backend, args.comet) == ("btcd", 3)
    assert (build_parser().parse_args(["demo"]).btc_backend, build_parser().parse_args(["demo"]).comet) == \
        ("embedded", 0)
    for bad in (["--comet", "-1"], ["--btc-backend", "bitcoind"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["demo", *bad])
