"""``btcmesh demo --mesh upstream``: the demo's mesh events on the upstream contracts (harness).

The BTC delegation adapter drives the upstream vault / external-staking / converter /
virtual-staking (cw-multi-test, ``conformance/mesh-upstream``) through ``UpstreamMeshHost`` and
reaches the model's outcomes; the one documented difference (no lien cap at the BTC left, so
the slashing tx fee stays in upstream's collateral) is named.
"""

from __future__ import annotations

import pytest

from btcmesh.cli import build_parser
from btcmesh.demo import DemoConfig, format_summary, run_demo
from btcmesh_testkit.mesh_upstream import require_upstream_harness


@pytest.fixture(scope="module")
def harness_built() -> None:
    require_upstream_harness()


def test_demo_mesh_upstream_reaches_the_model_outcomes(harness_built, tmp_path):
    res = run_demo(DemoConfig(mesh="upstream", with_api=False), workdir=tmp_path)
    assert res.ok, res.error
    step = res.step("mesh: the same events on the upstream contracts (harness)")
    assert step is not None and step.status == "ok"
    m, u = res.mesh_upstream["model"], res.mesh_upstream["upstream"]
    # same virtual stake per validator before and after the slash, same slash figures
    assert m["virtual_stake_before"] == u["virtual_stake_before"] == res.virtual_stake_before
    assert m["virtual_stake_after"] == u["virtual_stake_after"]
    assert (m["virtual_slashed"], m["virtual_unbonded"]) == (u["virtual_slashed"], u["virtual_unbonded"]) \
        == (100_000, 900_000)
    a, b = res.delegations["A"].staking_tx_hash, res.delegations["B"].staking_tx_hash
    # the model replay agrees with the chain; upstream keeps the slashing tx fee (named)
    assert m["collateral_after"][a] == res.mesh_collateral_after["A"]
    assert u["collateral_after"][a] == 900_000 and u["collateral_after"][b] == m["collateral_after"][b]
    # the replay continues to the demo's end (B unbonds and withdraws): the chain's records equal the
    # model replay's; upstream's differ from them only by the slashing tx fee (named), also settled
    assert m["final"] == res.mesh_upstream["chain_final"]
    assert (m["final"][b]["status"], u["final"][b]["status"]) == ("WITHDRAWING", "WITHDRAWING")
    assert (m["settled"][b]["status"], u["settled"][b]["status"]) == ("WITHDRAWN", "WITHDRAWN")
    assert m["settled"][b] == u["settled"][b] and m["settled"][a]["collateral_sat"] == res.mesh_collateral_after["A"]
    assert [(d["what"].split("[")[0], d["named"]) for d in res.mesh_upstream["differences"]] == [
        ("collateral_after", "collateral_left"), ("final", "collateral_left"), ("settled", "collateral_left")]
    text = format_summary(res)
    assert "Mesh on the upstream contracts" in text and "chain records = the model replay's" in text


def test_cli_mesh_flag():
    args = build_parser().parse_args(["demo", "--mesh", "upstream"])
    assert args.mesh == "upstream"
    assert build_parser().parse_args(["demo"]).mesh == "model"
    with pytest.raises(ValueError):
        DemoConfig(mesh="wasm")


def test_missing_harness_is_one_line_up_front(tmp_path, monkeypatch, capsys):
    from btcmesh.cli import main

    monkeypatch.setenv("BTCMESH_HARNESS_TARGET_DIR", str(tmp_path / "no-target"))  # nothing built there
    assert main(["demo", "--mesh", "upstream", "--no-api"]) == 1
    out, err = capsys.readouterr()
    assert out == ""  # no step ran
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("btcmesh demo: error: the upstream-contract harness is not built")
    assert err.rstrip().endswith("build it with scripts/setup.sh --daemons")
    # run_demo on its own also stops before the first step, with the same reason and no traceback
    res = run_demo(DemoConfig(mesh="upstream", with_api=False), workdir=tmp_path)
    assert not res.ok and res.steps == []
    assert "build it with scripts/setup.sh --daemons" in res.error and "Traceback" not in res.error
