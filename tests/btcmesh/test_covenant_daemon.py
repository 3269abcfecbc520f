"""Issue 11: the covenant daemon's decisions, without a chain process: a good PENDING delegation is
signed and submitted once (also by a restarted daemon on the same records); one whose slashing tx
breaks the params, one of an unknown params version, and one for params that do not list this
member are refused with the reason recorded and nothing submitted. The chain is a stub answering
the registry's ``params`` and ``delegations`` queries; the delegations are real (Staker-built)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from btc_staking.keys import secret_even_y, xonly_from_secret
from btc_staking.params import covenant_secret, regtest_default_params
from btc_staking.tx import OutPoint, Tx, TxIn, TxOut
from btcmesh.daemons.common import EventLog, Metrics, load_config, write_key_file
from btcmesh.daemons.covenant import SPEC, CovenantDaemon
from btcmesh.staker import Staker


class StubChain:
    def __init__(self, params: Any, delegations: list[dict]) -> None:
        self.params = params
        self.delegations = delegations
        self.sent: list[dict] = []

    def height(self) -> int:
        return 7

    def query(self, module: str, msg: dict) -> Any:
        (name, body), = msg.items()
        if name == "params":
            return {"params_versions": [{"version": 0, **self.params.to_dict()}]}
        if name == "delegations":
            assert body["status"] == "PENDING"
            return {"delegations": self.delegations, "next_key": None}
        raise AssertionError(name)

    def execute(self, module: str, msg: dict) -> str:
        self.sent.append(msg)
        return f"TX{len(self.sent)}"


def _delegation(params: Any, seed: int, **changes: Any) -> dict:
    staker = Staker(secret_even_y(bytes([seed]) * 32), params)
    fp = xonly_from_secret(secret_even_y(bytes([0x70]) * 32))
    fund = Tx(2, [], [], 0)
    fund.outputs = staker.staking_outputs(fp, 150, 300_000)
    fund.inputs = [TxIn(OutPoint(bytes([seed]) * 32, 0))]
    d = staker.delegation(fund, [fp], 150)
    body = d.create_msg(pop=b"\x00" * 64)
    body.update(staking_tx_hash=d.staking_tx_hash, status="PENDING", params_version=0, covenant_sigs=[])
    body.update(changes)
    return body


@pytest.fixture()
def cfg(tmp_path: Path):
    write_key_file(tmp_path / "covenant-btc.key", covenant_secret(0))
    write_key_file(tmp_path / "covenant-cosmos.key", bytes([9]) * 32)
    (tmp_path / "covenant.toml").write_text('[chain]\nrest = "http://127.0.0.1:1"\n[daemon]\nmetrics_port = -1\n')
    return load_config(tmp_path / "covenant.toml", SPEC)


def test_signs_once_and_refuses_what_breaks_the_rules(cfg, capsys) -> None:
    params = regtest_default_params(confirmation_depth=3, unbonding_time_blocks=4)
    good = _delegation(params, 1)
    bad_slash = _delegation(params, 2)
    tx = Tx.parse(bytes.fromhex(bad_slash["slashing_tx"]))
    tx.outputs[0] = TxOut(tx.outputs[0].value - 1, tx.outputs[0].script_pubkey)  # burns less than the rate
    bad_slash["slashing_tx"] = tx.serialize().hex()
    unknown_version = _delegation(params, 3, params_version=5)
    chain = StubChain(params, [good, bad_slash, unknown_version])
    metrics = Metrics("covenant")
    daemon = CovenantDaemon(cfg, EventLog("covenant"), metrics, conn=chain)
    daemon.step()
    assert [m["add_covenant_sigs"]["staking_tx_hash"] for m in chain.sent] == [good["staking_tx_hash"]]
    assert chain.sent[0]["add_covenant_sigs"]["pk"] == xonly_from_secret(covenant_secret(0)).hex()
    rows = {h: (state, reason, n) for h, state, reason, n in daemon.records.rows()}
    assert rows[good["staking_tx_hash"]][0] == "submitted" and rows[good["staking_tx_hash"]][2] == 1
    assert rows[bad_slash["staking_tx_hash"]][0] == "refused" and "slashing" in rows[bad_slash["staking_tx_hash"]][1]
    assert rows[unknown_version["staking_tx_hash"]][:2] == ("refused", "unknown params version 5")
    assert metrics.signatures_refused._value.get() == 2 and metrics.signatures._value.get() == 1
    daemon.step()  # still PENDING on the chain (no quorum yet): nothing sent again
    assert len(chain.sent) == 1
    daemon.close()
    again = CovenantDaemon(cfg, EventLog("covenant"), Metrics("covenant"), conn=chain)  # a restart
    again.step()
    assert len(chain.sent) == 1
    again.close()
    assert capsys.readouterr().err.count("event=covenant_sigs_submitted") == 1


def test_a_member_the_params_do_not_list_refuses(cfg, tmp_path: Path) -> None:
    params = regtest_default_params(confirmation_depth=3, unbonding_time_blocks=4)
    other = Path(tmp_path / "other")
    other.mkdir()
    write_key_file(other / "covenant-btc.key", secret_even_y(bytes([0x55]) * 32))
    write_key_file(other / "covenant-cosmos.key", bytes([9]) * 32)
    (other / "covenant.toml").write_text('[chain]\nrest = "http://127.0.0.1:1"\n[daemon]\nmetrics_port = -1\n')
    chain = StubChain(params, [_delegation(params, 4)])
    daemon = CovenantDaemon(load_config(other / "covenant.toml", SPEC), EventLog("covenant"), conn=chain)
    daemon.step()
    assert chain.sent == []
    (_, state, reason, _), = daemon.records.rows()
    assert state == "refused" and "not a covenant key" in reason
    daemon.close()
