"""Attestations in bulk: many ``create_btc_delegation`` messages per chain tx, several txs in flight
(locally incremented sequences), with the one-by-one guarantees kept: a batch the chain refuses because
of one bad message is resent one per tx so only that one is dead-lettered, and a crash after a batch was
broadcast loses nothing and attests nothing twice after a restart. Counted on the chain itself."""

from __future__ import annotations

import pytest

from cp_e2e_helpers import E2E, K, STAKING_TIME, VALUE

from checkpoint.chain_client import ChainClient
from checkpoint.errors import InvalidInputError
from checkpoint.store import submission_key

pytestmark = pytest.mark.timeout(180)


class Crash(BaseException):
    """Stands for the process dying (not an Exception: nothing in the service catches it)."""


class CrashAfterFirstBatch(ChainClient):
    """The real client; the first batch of attestations is broadcast, then the 'process dies'."""

    def broadcast_msgs(self, msgs, wallet, sequence=None):  # type: ignore[no-untyped-def]
        out = super().broadcast_msgs(msgs, wallet, sequence)
        if any("create_btc_delegation" in m for _, m in msgs):
            raise Crash(out[0])
        return out


@pytest.fixture
def env(tmp_path):
    e = E2E(tmp_path)
    yield e
    e.close()


def _service_txs(env: E2E) -> int:
    """Txs the service's account committed that are not header relays."""
    relays = [m for m in env.chain_msgs("insert_headers") if m["sender"] == env.cp_address]
    return env.account_sequence(env.cp_wallet) - len(relays)


def test_batch_parameters_are_checked(env):
    for bad in ({"attest_batch": 0}, {"pipeline_depth": 0}, {"attest_batch": 2.5}):
        with pytest.raises(InvalidInputError):
            env.service(env.tmp / f"bad{len(bad)}.sqlite", **bad)


def test_many_locks_go_in_few_pipelined_txs(env):
    svc = env.service(attest_batch=4, pipeline_depth=2)
    try:
        locks = [env.lock(svc, f"bulk-{i}") for i in range(10)]
        env.mine(1 + K)
        rep = svc.run_once()
        keys = [submission_key("delegation", d.staking_tx_hash) for d in locks]
        assert sorted(rep.submitted) == sorted(keys)
        msgs = env.chain_msgs("create_btc_delegation")
        assert len(msgs) == 10 and all(m["code"] == 0 for m in msgs)
        assert _service_txs(env) == 3                                   # ceil(10 / 4) txs
        for d in locks:
            assert env.delegation(d.staking_tx_hash)["staking_tx_hash"] == d.staking_tx_hash
            assert svc.store.submission(submission_key("delegation", d.staking_tx_hash)).status == "done"
        for _ in range(2):                                              # idempotent afterwards
            assert svc.run_once().submitted == []
        assert len(env.chain_msgs("create_btc_delegation")) == 10
    finally:
        svc.close()


def test_one_bad_message_is_dead_lettered_and_the_rest_of_its_batch_lands(env):
    svc = env.service(attest_batch=8, pipeline_depth=2)
    try:
        good = [env.lock(svc, f"good-{i}") for i in range(3)]
        staker = env.staker("bad-sig")
        d = env.new_lock(staker)
        material = env.material(staker, d)
        sig = bytearray.fromhex(material["delegator_slashing_sig"])
        sig[10] ^= 1
        material["delegator_slashing_sig"] = sig.hex()
        svc.register_intent(staker.pk, list(d.fp_pks), STAKING_TIME, VALUE, material)
        env.broadcast(d.staking_tx)
        env.mine(1 + K)
        rep = svc.run_once()
        bad_key = submission_key("delegation", d.staking_tx_hash)
        assert rep.dead_lettered == [bad_key]
        assert sorted(rep.submitted) == sorted(submission_key("delegation", g.staking_tx_hash) for g in good)
        assert env.delegation(d.staking_tx_hash) is None
        assert [x.key for x in svc.dead_letters()] == [bad_key]
        ok = [m for m in env.chain_msgs("create_btc_delegation") if m["code"] == 0]
        assert len(ok) == 3                                             # each good one exactly once
    finally:
        svc.close()


def test_crash_after_a_batch_broadcast_then_restart(env):
    store = env.tmp / "cp.sqlite"
    svc = env.service(store, attest_batch=3, pipeline_depth=2)
    locks = [env.lock(svc, f"crash-{i}") for i in range(5)]
    env.mine(1 + K)
    c = svc.chain
    svc.chain = CrashAfterFirstBatch(c.ledger, c.contracts, tx_timeout_s=c.tx_timeout_s)
    with pytest.raises(Crash):
        svc.run_once()
    keys = [submission_key("delegation", d.staking_tx_hash) for d in locks]
    assert {svc.store.submission(k).status for k in keys} == {"submitting"}   # in-flight markers survived
    svc.store.close()

    svc = env.service(store, attest_batch=3, pipeline_depth=2)                # restart on the same file
    try:
        done: set[str] = set()
        env.rounds(svc, lambda r: done.update(r.submitted + r.already_on_chain) or done >= set(keys))
        assert {svc.store.submission(k).status for k in keys} == {"done"}
        msgs = env.chain_msgs("create_btc_delegation")
        assert sorted(m["body"]["staking_tx"] for m in msgs if m["code"] == 0) == sorted(
            d.staking_tx.serialize().hex() for d in locks)                   # each exactly once
        assert all(m["code"] == 0 for m in msgs)
    finally:
        svc.close()
