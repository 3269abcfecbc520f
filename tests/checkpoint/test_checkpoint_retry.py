"""Retry policy: transient chain failures back off exponentially (bounded) and finally dead-letter.

The chain side is a real cosmpy LedgerClient pointed at a closed 127.0.0.1 port,
so the failures are genuine connection errors, classified by ChainClient.
"""

from __future__ import annotations

import threading

from bitcoin.core import CTransaction
from cp_memchain import MemChain
from cosmpy.aerial.client import LedgerClient, NetworkConfig
from cosmpy.aerial.wallet import LocalWallet

from btcmesh_testkit.net import closed_port

from btc_staking.keys import generate_secret, xonly_from_secret
from btc_staking.params import regtest_default_params
from btc_staking.staking import build_staking_tx
from btc_staking.tx import OutPoint, TxIn
from checkpoint.chain_client import ChainClient, ChainContracts
from checkpoint.errors import ChainError
from checkpoint.service import CheckpointService
from checkpoint.store import submission_key

PARAMS = regtest_default_params()


def _dead_chain() -> ChainClient:
    cfg = NetworkConfig(chain_id="btcmesh-test", fee_minimum_gas_price=0, fee_denomination="stake",
                        staking_denomination="stake", url=f"rest+http://127.0.0.1:{closed_port()}")
    return ChainClient(LedgerClient(cfg), ChainContracts("bbn1lightclient", "bbn1staking"), tx_timeout_s=1.0)


def test_connection_errors_are_transient():
    chain = _dead_chain()
    wallet = LocalWallet.generate(prefix="bbn")
    for call in (lambda: chain.light_client_tip(), lambda: chain.is_registered("00" * 32),
                 lambda: chain.insert_headers([b"\x00" * 80], wallet)):
        try:
            call()
        except ChainError as exc:
            assert exc.transient, exc
        else:  # pragma: no cover
            raise AssertionError("expected a ChainError")


def test_backoff_then_dead_letter(tmp_path):
    now = [1000.0]
    btc = MemChain()
    svc = CheckpointService(btc, _dead_chain(), tmp_path / "s.sqlite", PARAMS, 2,
                            LocalWallet.generate(prefix="bbn"), 0.01, retry_base_s=2.0, retry_max_s=5.0,
                            max_attempts=4, clock=lambda: now[0])
    staker, fp = xonly_from_secret(generate_secret()), xonly_from_secret(generate_secret())
    svc.register_intent(staker, [fp], 150, 50_000, {})
    stx = build_staking_tx(staker, fp, PARAMS, 150, 50_000, with_op_return=False)
    stx.inputs.append(TxIn(OutPoint(b"\x01" * 32, 0)))
    btc.mine(1, [CTransaction.deserialize(stx.serialize())])
    key = submission_key("delegation", stx.txid_hex())

    rep = svc.run_once()
    assert rep.relay_error and rep.retried == [] and svc.store.submission(key).attempts == 0  # depth 0 < k
    btc.mine(1)
    assert svc.run_once().retried == [] and svc.store.submission(key).attempts == 0  # depth 1 < k
    btc.mine(1)
    delays = []
    for _ in range(3):
        rep = svc.run_once()
        assert rep.retried == [key]
        sub = svc.store.submission(key)
        delays.append(sub.next_attempt_at - now[0])
        assert svc.run_once().retried == []          # backoff not elapsed: nothing sent
        now[0] = sub.next_attempt_at
    # exponential (2, 4, 8 capped at retry_max_s 5), each jittered into [step/2, step]
    assert [lo <= d <= hi for d, (lo, hi) in zip(delays, [(1.0, 2.0), (2.0, 4.0), (2.5, 5.0)])] == [True] * 3, delays
    rep = svc.run_once()
    assert rep.dead_lettered == [key]
    (dl,) = svc.dead_letters()
    assert dl.key == key and "gave up after 4 attempts" in dl.reason
    assert svc.store.submission(key).status == "dead"


def test_run_forever_is_bounded_and_stops(tmp_path):
    svc = CheckpointService(MemChain(), _dead_chain(), tmp_path / "s.sqlite", PARAMS, 2,
                            LocalWallet.generate(prefix="bbn"), 0.01)
    stop = threading.Event()
    assert svc.run_forever(stop, max_rounds=3) == 3
    stop.set()
    assert svc.run_forever(stop) == 0


def test_query_failures_are_classified():
    from checkpoint.chain_client import _query_failure

    body = '{"code": 3, "message": "`x` must be an integer ≥ 1, it\'s \\"bad\\""}'.encode()
    answered = RuntimeError(f"Error when sending a GET request.\n Response: 400, {body!r}")
    assert _query_failure(answered) == (400, '`x` must be an integer ≥ 1, it\'s "bad"')
    assert _query_failure(RuntimeError("Error ...\n Response: 502, b'<html>bad gateway</html>'")) == (
        502, "<html>bad gateway</html>")
    assert _query_failure(ConnectionRefusedError("refused")) == (None, "refused")
