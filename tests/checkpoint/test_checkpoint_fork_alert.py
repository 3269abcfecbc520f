"""Checkpoint backoff and the fork alert (issue 12).

The hijack found from outside: on a permissionless light client an outsider relays a heavier made-up
header chain. The service used to re-send its own headers every round (51 fee-paying relay txs in
20 s). Now it relays once, sees the chain prefer the fork, stops relaying and submitting, raises one
alert (ERROR log, gauge, ``status()``), and resumes by itself once its node's chain is heavier.
Failures back off exponentially with jitter."""

from __future__ import annotations

import logging
import random

import pytest
from btcmesh_testkit.btc import mine_header
from cp_e2e_helpers import E2E
from cp_memchain import MemChain
from test_checkpoint_retry import PARAMS, _dead_chain
from cosmpy.aerial.wallet import LocalWallet

from btc_staking.headers import BlockHeader
from checkpoint.backoff import Backoff
from checkpoint.service import CheckpointService

pytestmark = pytest.mark.timeout(180)


def _fake_branch(base_header: bytes, n: int) -> list[bytes]:
    """``n`` made-up regtest headers on ``base_header`` (valid PoW, no transactions behind them)."""
    prev = BlockHeader.parse(base_header)
    out = []
    for i in range(n):
        h = mine_header(bytes.fromhex(prev.hash_hex())[::-1], bytes([i + 1]) * 32, prev.timestamp + 1)
        out.append(h.serialize())
        prev = h
    return out


def test_hijacked_light_client_gets_one_relay_one_alert_then_recovers(tmp_path, caplog) -> None:
    e = E2E(tmp_path)
    try:
        svc = e.service()
        e.mine(2)
        e.rounds(svc, lambda r: e.light_client_tip()[1] == e.node.get_best_block_hash())
        # an outsider (not the service's account) relays a longer made-up branch off the base
        base_h = e.base["base"]["height"]
        fake = _fake_branch(bytes.fromhex(e.base["base"]["header"]), e.node.get_block_count() - base_h + 6)
        e.client.insert_headers(fake, e.admin_wallet)
        assert e.light_client_tip()[1] == BlockHeader.parse(fake[-1]).hash_hex()
        e.mine(2)  # the real chain moves on, still lighter than the fake one
        before = len([m for m in e.chain_msgs("insert_headers") if m["sender"] == e.cp_address])
        caplog.set_level(logging.WARNING, logger="checkpoint")
        reports = [svc.run_once() for _ in range(25)]
        sent = len([m for m in e.chain_msgs("insert_headers") if m["sender"] == e.cp_address]) - before
        assert sent <= 1, f"{sent} fee-paying relay txs on a fork the chain prefers"
        assert all(r.fork_alert for r in reports[-20:]) and not any(r.submitted for r in reports)
        forks = [r for r in caplog.records if r.levelno == logging.ERROR and "FORK" in r.getMessage()]
        assert len(forks) == 1, [r.getMessage() for r in caplog.records]
        assert svc.health.registry.get_sample_value("btcmesh_checkpoint_fork_alert") == 1.0
        assert "prefers a fork" in svc.status()["fork_alert"]
        server, port = svc.health.serve_metrics(0)  # what `btcmesh checkpoint --metrics-port` serves
        try:
            import httpx

            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5, trust_env=False).text
            assert "btcmesh_checkpoint_fork_alert 1.0" in text and "btcmesh_checkpoint_relay_txs_total" in text
        finally:
            server.shutdown()
        # the node's real chain becomes the heavier one: relay resumes, the alert clears
        e.mine(8)
        e.rounds(svc, lambda r: r.fork_alert is None and e.light_client_tip()[1] == e.node.get_best_block_hash(),
                 max_rounds=60)
        assert svc.status()["fork_alert"] is None
        assert svc.health.registry.get_sample_value("btcmesh_checkpoint_fork_alert") == 0.0
        svc.close()
    finally:
        e.close()


def test_backoff_is_exponential_jittered_capped_and_resets() -> None:
    now = [0.0]
    b = Backoff(1.0, 10.0, clock=lambda: now[0], rng=random.Random(7))
    delays = [b.failure() for _ in range(6)]
    for d, step in zip(delays, [1, 2, 4, 8, 10, 10]):
        assert step / 2 <= d <= step
    assert not b.ready() and b.remaining() == pytest.approx(delays[-1])
    now[0] += delays[-1]
    assert b.ready()
    b.success()
    assert 0.5 <= b.failure() <= 1.0


def test_relay_backs_off_while_the_chain_is_down(tmp_path) -> None:
    """RPC down: the first round fails the relay; rounds inside the backoff window do not even try."""
    now = [1000.0]
    btc = MemChain()
    btc.mine(3)
    svc = CheckpointService(btc, _dead_chain(), tmp_path / "s.sqlite", PARAMS, 2, LocalWallet.generate(prefix="bbn"),
                            0.01, retry_base_s=2.0, retry_max_s=30.0, clock=lambda: now[0])
    failures = []
    for _ in range(5):
        rep = svc.run_once()
        assert rep.relay_error
        failures.append(svc.status()["relay_failures"])
        wait = svc.status()["relay_backoff_s"]
        rep = svc.run_once()
        assert rep.relay_deferred and rep.relay_error is None  # inside the window: nothing sent, nothing asked
        now[0] += wait + 0.001
    assert failures == [1, 2, 3, 4, 5]
    # rounds that raise (node down) wait exponentially longer, and a good round resets to poll_interval
    delays = [svc.next_round_delay(False) for _ in range(6)]
    assert delays[0] == pytest.approx(0.01) and 0.16 <= delays[5] <= 0.32 and delays == sorted(delays)
    assert svc.next_round_delay(True) == 0.01
    svc.close()
