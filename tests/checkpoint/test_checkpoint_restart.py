"""Crash and restart on the same SQLite file: nothing lost, nothing submitted twice.

The crash is real in two ways: in-process (an exception escapes the round right after the chain
accepted the tx — before the service's bookkeeping — and the service object is abandoned), and as
a process (``python -m checkpoint.runner`` SIGKILLed while it works, against the EmbeddedNode served
over JSON-RPC and the chain's REST server). Duplicates are counted on the chain itself (its
committed blocks) and with the signer's account sequence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


from cp_e2e_helpers import E2E, K

from checkpoint.chain_client import ChainClient
from checkpoint.store import CheckpointStore, submission_key

REPO = Path(__file__).resolve().parents[2]


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the service catches it."""


class CrashAfterBroadcast(ChainClient):
    """The real client; the first delegation it sends is accepted by the chain, then the 'process dies'."""

    crashed = False

    def submit_delegation(self, delegation, wallet):  # type: ignore[no-untyped-def]
        tx_hash = super().submit_delegation(delegation, wallet)
        if not CrashAfterBroadcast.crashed:
            CrashAfterBroadcast.crashed = True
            raise Crash(tx_hash)
        return tx_hash


class CrashBeforeBroadcast(ChainClient):
    """Dies after the service marked the submission in flight but before anything is sent."""

    def submit_delegation(self, delegation, wallet):  # type: ignore[no-untyped-def]
        raise Crash("before broadcast")


@pytest.fixture
def env(tmp_path):
    e = E2E(tmp_path)
    yield e
    e.close()


def _swap_client(svc, cls: type[ChainClient]) -> None:
    c = svc.chain
    svc.chain = cls(c.ledger, c.contracts, tx_timeout_s=c.tx_timeout_s)


@pytest.mark.parametrize("crash", [CrashAfterBroadcast, CrashBeforeBroadcast])
def test_crash_mid_submission_then_restart(env, crash):
    store = env.tmp / "cp.sqlite"
    svc = env.service(store)
    d = env.lock(svc, f"crash-{crash.__name__}")
    env.mine(1 + K)
    _swap_client(svc, crash)
    key = submission_key("delegation", d.staking_tx_hash)
    with pytest.raises(Crash):
        svc.run_once()
    assert svc.store.submission(key).status == "submitting"      # the in-flight marker survived
    sent_before = len(env.chain_msgs("create_btc_delegation"))
    assert sent_before == (1 if crash is CrashAfterBroadcast else 0)
    svc.store.close()                                              # the dead process's handle

    svc = env.service(store)                                       # restart on the same file
    try:
        rep = env.rounds(svc, lambda r: key in r.submitted or key in r.already_on_chain)
        sub = svc.store.submission(key)
        assert sub.status == "done"
        if crash is CrashAfterBroadcast:
            assert rep[-1].already_on_chain == [key] and sub.last_error == "already on chain"
        else:
            assert rep[-1].submitted == [key]
        msgs = env.chain_msgs("create_btc_delegation")
        assert [m["code"] for m in msgs] == [0]                    # exactly one, and it succeeded
        assert env.delegation(d.staking_tx_hash)["staking_tx_hash"] == d.staking_tx_hash
        # every tx the service's account ever committed: header batches + the one delegation
        relays = [m for m in env.chain_msgs("insert_headers") if m["sender"] == env.cp_address]
        assert env.account_sequence(env.cp_wallet) == len(relays) + 1
        assert all(m["code"] == 0 for m in relays)
        for _ in range(3):
            assert svc.run_once().submitted == []
        assert len(env.chain_msgs("create_btc_delegation")) == 1
    finally:
        svc.close()


def test_restart_keeps_intents_and_resumes_following(env):
    store = env.tmp / "cp.sqlite"
    svc = env.service(store)
    d = env.lock(svc, "resume")
    env.mine(1)
    svc.run_once()                                                 # seen at depth 0
    svc.close()
    env.mine(K + 3)                                                # while the service is down
    svc = env.service(store)
    try:
        assert [i.staker_pk for i in svc.store.intents()] == [d.staker_pk.hex()]
        rep = svc.run_once()
        assert len(rep.connected) == K + 3 and rep.submitted == [submission_key("delegation", d.staking_tx_hash)]
        assert env.light_client_tip() == (env.node.get_block_count(), env.node.get_best_block_hash())
    finally:
        svc.close()


# ---------------------------------------------------------------------------- a real process, SIGKILLed
def _start_runner(env: E2E, rpc, store: Path, keyfile: Path, log: Path) -> subprocess.Popen:
    assert env.chain is not None
    cmd = [sys.executable, "-m", "checkpoint.runner", "--btc-rpc", rpc.plain_url, "--btc-user", rpc.user,
           "--btc-dialect", "bitcoind", "--chain-rest", env.chain.url, "--store", str(store),
           "--private-key-file", str(keyfile), "--poll", "0.02", "--gas-price", str(env.gas_price),
           "--denom", env.denom, "--attest-batch", "1"]  # one tx per delegation: kills land between them
    envvars = dict(os.environ, BTCMESH_BTC_RPC_PASSWORD=rpc.password, PYTHONPATH=str(REPO))
    return subprocess.Popen(cmd, cwd=REPO, env=envvars, stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_sigkill_and_restart_of_the_runner_process(env):
    from regtest.rpc_server import RpcServer

    store = env.tmp / "cp-proc.sqlite"
    keyfile = env.tmp / "signer.key"
    keyfile.write_text(env.cp_wallet.signer().private_key_hex)
    os.chmod(keyfile, 0o600)
    log = env.tmp / "runner.log"
    rpc = RpcServer(env.node).start()
    procs: list[subprocess.Popen] = []
    try:
        # the intent is registered in the store the process will open (same SQLite file)
        svc = env.service(store)
        locks = [env.lock(svc, f"proc-{i}") for i in range(3)]
        svc.close()
        env.mine(1 + K)

        def creates() -> int:
            return len(env.chain_msgs("create_btc_delegation"))

        def relays() -> int:
            return len([m for m in env.chain_msgs("insert_headers") if m["sender"] == env.cp_address])

        # SIGKILL it the moment the chain shows progress (its bookkeeping may or may not have
        # happened), three times: after the first header batch, after the 1st and the 2nd delegation
        for what, reached in (("a header batch", lambda: relays() >= 1), ("1 delegation", lambda: creates() >= 1),
                              ("2 delegations", lambda: creates() >= 2)):
            procs.append(_start_runner(env, rpc, store, keyfile, log))
            _wait(reached, 60, f"{what} on chain")
            procs[-1].send_signal(signal.SIGKILL)
            procs[-1].wait(10)
        started = log.read_text(errors="replace").count("node_info")
        procs.append(_start_runner(env, rpc, store, keyfile, log))
        # the last process is past its start-up (signal handlers installed) before it gets SIGTERM below
        _wait(lambda: log.read_text(errors="replace").count("node_info") > started, 60, "the last runner to start")

        def all_done() -> bool:
            with CheckpointStore(store) as s:
                return all(s.submission(submission_key("delegation", d.staking_tx_hash)).status == "done"
                           for d in locks)

        _wait(all_done, 60, "every delegation done in the last process's store")
        procs[-1].send_signal(signal.SIGTERM)
        assert procs[-1].wait(10) == 0, log.read_text()[-2000:]
        msgs = env.chain_msgs("create_btc_delegation")
        assert sorted(m["body"]["staking_tx"] for m in msgs if m["code"] == 0) == sorted(
            d.staking_tx.serialize().hex() for d in locks)
        # every kill came after the chain committed what it was waiting for; a restarted process asks
        # the chain before sending, so no duplicate (not even a rejected one) exists
        assert len(msgs) == 3, [(m["height"], m["code"]) for m in msgs]
        for d in locks:
            assert env.delegation(d.staking_tx_hash) is not None
        # nothing lost either: the light client has every header, the signer sent only these txs
        assert env.light_client_tip() == (env.node.get_block_count(), env.node.get_best_block_hash())
        assert env.account_sequence(env.cp_wallet) == relays() + 3
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        rpc.stop()
