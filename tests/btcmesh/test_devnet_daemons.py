"""Issue 11: a devnet made only of separate OS processes, driven through the commands' own interfaces.

``btcmesh devnet up`` starts node, chain, checkpoint, 3 covenant signers, 2 FPs, slasher and API.
Then: ``btcmesh stake stake`` (pre-approval flow; staker-2 through ``--psbt`` / ``--psbt-signed`` with
embit as the outside signer) → covenant signatures → ``devnet mine`` → the
checkpoint service adds the proof → ACTIVE → fp-1 votes → ``btcmesh devnet double-sign`` → the
slasher daemon broadcasts the BTC slashing tx, it is mined, the mesh stake is slashed. Every
non-coinbase tx on the node is checked by both oracles (libbitcoinkernel, btclib).

kill -9 at chosen points (``BTCMESH_CRASH_AT``, the process SIGKILLs itself there) and restart:

* covenant-1 right after submitting its signatures (alone, before the quorum): the restart finds its
  signature on the chain and submits nothing; the chain holds it once;
* fp-1 right after recording its first vote, before sending it: ``btcmesh fp sign`` then refuses a
  second app hash at that height, and the restarted daemon sends the recorded vote (same app hash);
* the slasher right after broadcasting: the restart sees the tx in the mempool and does not send
  it again; exactly one slashing tx, mined, recorded once.

The same test runs once with ``--comet 3`` (needs cometbft: a skip locally, a failure in CI).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from btcmesh_testkit.oracles import btclib_verify, kernel_verify

from btc_staking.keys import xonly_from_secret
from btc_staking.tx import Tx
from btcmesh.daemons.devnet import process_alive, start_process, stop_process
from btcmesh.demo import demo_secret

pytestmark = pytest.mark.timeout(300)

SEED = "btcmesh-devnet"
VALUE = 1_000_000
VALUE_2 = 500_000


def _cli(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k != "BTCMESH_CRASH_AT"}
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "btcmesh", *args], capture_output=True, text=True, timeout=timeout,
                          env=e)


def _ok(*args: str, timeout: float = 120) -> str:
    r = _cli(*args, timeout=timeout)
    assert r.returncode == 0, f"btcmesh {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


def _wait(pred: Callable[[], Any], what: str, timeout: float = 60.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Devnet:
    """Read-only views of a running devnet (RPC / REST), for the assertions."""

    def __init__(self, d: Path) -> None:
        self.d = d
        self.info = json.loads((d / "devnet.json").read_text())
        from btcmesh.daemons.common import chain_connection
        from regtest.rpc import RpcBackend

        self.btc = RpcBackend(self.info["btc_rpc"], dialect="bitcoind")
        self.chain = chain_connection(self.info["chain_rest"])

    def close(self) -> None:
        self.btc.close()

    def log(self, name: str) -> str:
        return (self.d / name / f"{name}.log").read_text(errors="replace")

    def delegation(self, h: str) -> dict:
        return self.chain.client.delegation(h) or {}

    def restart(self, name: str, crash_at: str | None = None) -> None:
        before = self.started(name)
        stop_process(self.d, name)
        start_process(self.d, name, {"BTCMESH_CRASH_AT": crash_at} if crash_at else None)
        _wait(lambda: self.started(name) > before and process_alive(self.d / name / "pid"), f"{name} restarted", 60)

    def started(self, name: str) -> int:
        return self.log(name).count("event=started")

    def mine(self, n: int) -> None:
        _ok("devnet", "mine", "--dir", str(self.d), "-n", str(n))

    def wait_dead(self, name: str, timeout: float = 90) -> None:
        _wait(lambda: process_alive(self.d / name / "pid") is None, f"{name} to kill -9 itself", timeout)
        assert "event=crash_point" in self.log(name)


def _fp_pk(i: int) -> str:
    return xonly_from_secret(demo_secret(SEED, f"fp/{i}")).hex()


def _psbt_stake(d: Path, net: Devnet) -> str:
    """``stake --psbt DIR`` → sign the three PSBTs with embit (the outside wallet) → ``stake --psbt-signed DIR``."""
    from embit import ec
    from embit.psbt import PSBT

    cfg = str(d / "staker-2" / "staker.toml")
    pdir = d / "staker-2" / "psbt"
    out = json.loads(_ok("stake", "stake", "--config", cfg, "--fp", _fp_pk(2), "--value", str(VALUE_2), "--time",
                         "150", "--psbt", str(pdir)))
    assert len(out["psbts"]) == 3 and not net.chain.client.delegation(out["staking_tx_hash"])  # nothing sent yet
    key = ec.PrivateKey(demo_secret(SEED, "staker/2"))
    for path in out["psbts"]:
        ps = PSBT.from_string(Path(path).read_text().strip())
        assert ps.sign_with(key) >= 1
        Path(path).write_text(ps.to_string() + "\n")
    done = json.loads(_ok("stake", "stake", "--config", cfg, "--psbt-signed", str(pdir)))
    assert done["staking_tx_hash"] == out["staking_tx_hash"] and done["status"] in ("VERIFIED", "ACTIVE")
    return str(done["staking_tx_hash"])


def _all_spends_valid(net: Devnet, base: int) -> int:
    """Every non-coinbase tx mined above ``base``: each input accepted by libbitcoinkernel and btclib."""
    from regtest.wallet import parse_block

    checked = 0
    for height in range(base + 1, net.btc.get_block_count() + 1):
        _, txs = parse_block(net.btc.get_block(net.btc.get_block_hash(height)))
        for tx in txs[1:]:
            prevouts = [Tx.parse(net.btc.get_raw_transaction(i.prevout.txid[::-1].hex())).outputs[i.prevout.vout]
                        for i in tx.inputs]
            for n in range(len(tx.inputs)):
                assert kernel_verify(tx, prevouts, n), f"{tx.txid_hex()} input {n}: libbitcoinkernel refuses it"
                assert btclib_verify(tx, prevouts, n), f"{tx.txid_hex()} input {n}: btclib refuses it"
            checked += 1
    return checked


def _scenario(d: Path, comet: int) -> int:  # noqa: C901 - one story, step by step
    """The whole devnet story; returns the Bitcoin height it left (nothing mines while the devnet is down)."""
    t0 = time.monotonic()

    def phase(name: str) -> None:  # shown with -s / on failure: where the time goes
        print(f"[{time.monotonic() - t0:6.1f} s] {name}", flush=True)

    up = ["devnet", "up", "--dir", str(d)]  # 1 s blocks: votes are due within 3 blocks (finality_sig_timeout)
    if comet:
        up += ["--comet", str(comet)]
    out = _ok(*up, timeout=240)
    assert "devnet up in" in out
    net: Devnet | None = None
    try:
        net = Devnet(d)
        status = _ok("devnet", "status", "--dir", str(d)).splitlines()
        assert [line.split()[0] for line in status] == ["node", "chain", "checkpoint", "covenant-1", "covenant-2",
                                                          "covenant-3", "fp-1", "fp-2", "slasher", "api"]
        assert all(" alive " in line for line in status), status
        pids = {line.split()[0]: int(re.search(r"pid=(\d+)", line).group(1)) for line in status}
        assert len(set(pids.values())) == 10  # ten separate OS processes
        base = int(re.search(r"height=(\d+)", status[0]).group(1))

        phase("covenant-1 alone")
        # -------- covenant-1 alone sees the delegation and is killed right after submitting
        for name in ("covenant-2", "covenant-3"):
            stop_process(d, name)
        net.restart("covenant-1", crash_at="covenant-after-submit")
        net.restart("fp-1", crash_at="fp-after-record")
        staker_cfg = str(d / "staker-1" / "staker.toml")
        stake = subprocess.Popen([sys.executable, "-m", "btcmesh", "stake", "stake", "--config", staker_cfg,
                                  "--fp", _fp_pk(1), "--value", str(VALUE), "--time", "150"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        net.wait_dead("covenant-1")
        h = _wait(lambda: json.loads((d / "staker-1" / "state" / "wallet.json").read_text())["delegations"],
                  "the staker's wallet record")[0]["staking_tx_hash"]
        assert net.delegation(h)["status"] == "PENDING"  # 1 of 2 covenant signatures
        cov1_pk = json.loads((d / "covenant-1" / "state" / "status.json").read_text())["covenant_pk"]
        net.restart("covenant-1")
        _wait(lambda: "event=already_signed" in net.log("covenant-1"), "covenant-1 to find its signature on chain")
        for name in ("covenant-2", "covenant-3"):
            start_process(d, name)
        stdout, stderr = stake.communicate(timeout=120)
        assert stake.returncode == 0, stderr
        assert json.loads(stdout)["status"] in ("VERIFIED", "ACTIVE")
        cov_pks = [c["pk"] for c in net.delegation(h)["covenant_sigs"]]
        assert cov_pks.count(cov1_pk) == 1 and len(cov_pks) == len(set(cov_pks)) >= 2
        assert net.log("covenant-1").count(f"event=covenant_sigs_submitted staking_tx_hash={h}") == 1
        assert "registered" in stderr and "flow=pre-approval" in stderr  # no inclusion proof at registration

        phase("staker-2 stakes")
        # -------- staker-2 stakes to fp-2 through PSBTs signed by an outside wallet (embit)
        h2 = _psbt_stake(d, net)

        phase("k deep")
        # -------- k deep → the checkpoint service adds the proofs → ACTIVE
        net.mine(net.info["k"] + 1)
        _wait(lambda: net.delegation(h).get("status") == "ACTIVE", "delegation ACTIVE", 60)
        _wait(lambda: net.delegation(h2).get("status") == "ACTIVE", "delegation 2 (PSBT) ACTIVE", 60)
        rows = [json.loads(line) for line in _ok("stake", "status", "--config", staker_cfg).splitlines()]
        assert rows[0]["status"] == "ACTIVE" and rows[0]["staking_tx_hash"] == h
        assert isinstance(json.loads(_ok("stake", "rewards", "--config", staker_cfg)), dict)

        phase("fp-1 dies")
        # -------- fp-1 dies right after recording its first vote; protection survives the kill -9
        net.wait_dead("fp-1")
        db = sqlite3.connect(str(d / "fp-1" / "state" / "fp.sqlite"))
        height, recorded = db.execute("SELECT height, app_hash FROM signed WHERE state = 'signing'").fetchone()
        db.close()
        other = bytes.fromhex(recorded)[::-1].hex()
        r = _cli("fp", "sign", "--config", str(d / "fp-1" / "fp.toml"), "--height", str(height), "--app-hash", other)
        assert r.returncode == 1 and "refused" in r.stdout, (r.stdout, r.stderr)
        assert "event=double_sign_refused" in r.stderr
        r = _cli("fp", "sign", "--config", str(d / "fp-1" / "fp.toml"), "--height", str(height), "--app-hash", recorded)
        assert r.returncode == 0 and len(r.stdout.strip()) == 64  # the same app hash may be signed again
        net.restart("fp-1")
        fin = net.chain.addresses["finality"]
        vote = _wait(lambda: net.chain.client.query(fin, {"vote": {"fp_btc_pk": _fp_pk(1), "height": height}})["vote"],
                     "fp-1's recorded vote on chain")
        assert vote["app_hash"] == recorded
        _wait(lambda: re.search(r"event=voted heights=", net.log("fp-1").split("event=started")[-1]),
              "fp-1 voting again after the restart")

        phase("the slasher dies")
        # -------- the slasher dies right after broadcasting; the double sign
        net.restart("slasher", crash_at="slasher-after-broadcast")
        ds = json.loads(_ok("devnet", "double-sign", "--dir", str(d)))
        assert ds["slashed"]["slashed"] is True
        net.wait_dead("slasher")
        net.restart("slasher")
        slash_txid = re.search(rf"event=slashing_broadcast staking_tx_hash={h} \S+ txid=(\w+)",
                               net.log("slasher")).group(1)
        net.mine(1)
        _wait(lambda: f"event=slashing_confirmed staking_tx_hash={h}" in net.log("slasher"), "slashing confirmed")
        assert net.log("slasher").count(f"event=slashing_broadcast staking_tx_hash={h}") == 1
        rec = sqlite3.connect(str(d / "slasher" / "state" / "slasher.sqlite")).execute(
            "SELECT txid, state, broadcasts, path FROM slashings WHERE staking_tx_hash = ?", (h,)).fetchone()
        assert rec == (slash_txid, "confirmed", 1, "staking")  # recorded before the send, never re-sent after
        slash = Tx.parse(net.btc.get_raw_transaction(slash_txid))
        assert slash.inputs[0].prevout.txid[::-1].hex() == h

        phase("the chain: FP slashed")
        # -------- the chain: FP slashed, delegation SLASHED, mesh stake slashed, BTC slashing reported
        assert net.delegation(h)["status"] == "SLASHED"
        r = _cli("devnet", "double-sign", "--dir", str(d))  # again: refused, under this command's name
        assert r.returncode == 1 and "btcmesh fp:" not in r.stderr, r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith("btcmesh devnet: error:"), r.stderr
        r = _cli("stake", "unbond", "--config", staker_cfg, "--staking-tx", h)  # checked before any tx is built
        assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith(
            f"btcmesh stake: error: delegation {h} is SLASHED; nothing to unbond"), r.stderr
        fps = net.chain.query("btc_staking", {"finality_providers": {}})["finality_providers"]
        validator = next(f["validator"] for f in fps if f["btc_pk"] == _fp_pk(1))
        vs = net.chain.query("mesh", {"adapter": {"validator_virtual_stake": {"validator": validator}}})
        assert int(vs["virtual_stake"]) == 0
        honest = next(f["validator"] for f in fps if f["btc_pk"] == _fp_pk(2))
        vs2 = net.chain.query("mesh", {"adapter": {"validator_virtual_stake": {"validator": honest}}})
        assert int(vs2["virtual_stake"]) == VALUE_2 and net.delegation(h2)["status"] == "ACTIVE"
        net.mine(net.info["k"])
        _wait(lambda: net.delegation(h).get("slashing_btc_txid") == slash_txid, "report_btc_slashing", 60)
        assert not net.chain.query("finality", {"is_slashed": {"fp_btc_pk": _fp_pk(2)}})["slashed"]
        st1 = json.loads(_ok("fp", "status", "--config", str(d / "fp-1" / "fp.toml")))
        st2 = json.loads(_ok("fp", "status", "--config", str(d / "fp-2" / "fp.toml")))
        assert st1["slashed"] is True and st1["state"] == "slashed"
        assert st2["state"] == "active" and st2["voting_power"] > 0 and st2["last_voted_height"] > height
        r = _cli("fp", "unjail", "--config", str(d / "fp-2" / "fp.toml"))  # the chain's answer, one line
        assert r.returncode == 1 and "is not jailed" in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert len(net.chain.query("finality", {"evidence": {"fp_btc_pk": _fp_pk(1)}})["evidence"]) == 1

        phase("staker-2 unbonds")
        # -------- staker-2 unbonds and withdraws, staker-1 takes back its slashing change (btcmesh stake)
        cfg2, cfg1 = str(d / "staker-2" / "staker.toml"), str(d / "staker-1" / "staker.toml")
        unbond_txid = _ok("stake", "unbond", "--config", cfg2).strip()
        net.mine(net.info["k"] + 1)
        _wait(lambda: net.delegation(h2).get("status") == "UNBONDING", "delegation 2 UNBONDING", 60)
        phase("UNBONDING")
        net.mine(net.info["unbonding_time"])
        withdraw2 = _ok("stake", "withdraw", "--config", cfg2).strip()
        withdraw1 = _ok("stake", "withdraw", "--config", cfg1).strip()
        net.mine(1)
        spent = {i.prevout.txid[::-1].hex() for t in (withdraw1, withdraw2)
                 for i in Tx.parse(net.btc.get_raw_transaction(t)).inputs}
        assert spent == {unbond_txid, slash_txid}  # the unbonding output and the slashing change
        rows = {r["staking_tx_hash"]: r for r in map(json.loads, _ok("stake", "status", "--config", cfg2).splitlines())}
        assert rows[h2]["unbonding_tx"] == unbond_txid and rows[h2]["withdraw_tx"] == withdraw2

        phase("every spend")
        # -------- every spend on the node, both oracles
        # 2 staking txs (one PSBT-signed), the slashing tx, the unbonding tx and 2 withdrawals
        assert _all_spends_valid(net, base) >= 6

        phase("metrics")
        # -------- metrics on 127.0.0.1 (prometheus_client)
        import httpx

        port = json.loads((d / "slasher" / "state" / "status.json").read_text())["metrics_port"]
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5, trust_env=False).text
        assert 'btcmesh_btc_height{daemon="slasher"}' in text and "btcmesh_submissions_total" in text
        status = _ok("devnet", "status", "--dir", str(d)).splitlines()
        assert all(" alive " in line for line in status), status
        # the API process was given the node: the explorer overview shows the BTC tip
        tip = net.btc.get_block_count()
        _wait(lambda: httpx.get(f"{net.info['api']}/v2/explorer/overview", timeout=10,
                                trust_env=False).json()["data"].get("btc_tip_height") == tip, "API shows the BTC tip", 30)
        final_height = net.btc.get_block_count()
    finally:
        if net is not None:
            net.close()
        stopped = _ok("devnet", "down", "--dir", str(d))
        assert "node" in stopped
    for name in ("node", "chain", "checkpoint", "fp-1", "slasher", "api"):
        assert process_alive(d / name / "pid") is None
    status = _ok("devnet", "status", "--dir", str(d)).splitlines()
    assert all(line.split()[1] == "stopped" for line in status), status  # a clean `down`, not "dead"
    return final_height


def test_devnet_stake_double_sign_slash_with_kill_9(tmp_path: Path) -> None:
    d = tmp_path / "devnet"
    height = _scenario(d, comet=0)
    # up again on the same directory: same ports and configs, the state kept (Bitcoin, chain, records)
    _ok("devnet", "up", "--dir", str(d), timeout=240)
    try:
        status = _ok("devnet", "status", "--dir", str(d)).splitlines()
        assert len(status) == 10 and all(" alive " in line for line in status), status
        # the node kept its chain, and `up` did not fund the stakers again (no 103 more blocks)
        assert int(re.search(r"height=(\d+)", status[0]).group(1)) == height >= 103
        assert json.loads(_ok("fp", "status", "--config", str(d / "fp-1" / "fp.toml")))["slashed"] is True
    finally:
        _ok("devnet", "down", "--dir", str(d))


def test_devnet_on_comet_3(tmp_path: Path, tool_path) -> None:
    cometbft = tool_path("cometbft")
    os.environ.setdefault("BTCMESH_TOOLS", str(cometbft.parent))
    _scenario(tmp_path / "devnet", comet=3)


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "fp.toml"
    r = _cli("fp", "init", "--config", str(cfg), "--chain-rest", "http://127.0.0.1:1")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "fp-btc.key").stat().st_mode & 0o777 == 0o600
    text = cfg.read_text()
    assert text.count("#") > 5  # commented default
    cases = [
        (text.replace("pub_rand_batch = 100", 'pub_rand_batch = "many"'), "key fp.pub_rand_batch"),
        (text + "\n[extra]\nfoo = 1\n", "unknown key extra.foo"),
        (text.replace('rest = "http://127.0.0.1:1"', 'rest = "http://10.0.0.1:1317"'), "key chain.rest"),
        (text.replace("[chain]\n", "[chain\n"), "not valid TOML"),
        (text.replace('commission = "0.05"', 'commission = "5"'), "key fp.commission: expected a rate in [0, 1]"),
        (text.replace('commission = "0.05"', 'commission = "five"'), "key fp.commission: expected a decimal"),
    ]
    for body, needle in cases:
        cfg.write_text(body)
        r = _cli("fp", "run", "--config", str(cfg))
        assert r.returncode == 1 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    cfg.write_text(text)
    os.chmod(tmp_path / "fp-btc.key", 0o644)
    r = _cli("fp", "run", "--config", str(cfg))
    assert r.returncode == 1 and "key fp.btc_key_file" in r.stderr and "chmod 600" in r.stderr


def test_down_never_signals_a_recycled_pid(tmp_path: Path) -> None:
    """A PID file names the process by PID *and* start time: a different process with that PID is not ours."""
    from btcmesh.daemons.devnet import _start_time, down

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        (tmp_path / "api").mkdir()
        (tmp_path / "api" / "pid").write_text(f"{proc.pid} {int(_start_time(proc.pid)) + 1}\n")  # not this one
        assert process_alive(tmp_path / "api" / "pid") is None
        assert down(tmp_path) == [] and proc.poll() is None  # left alone
        (tmp_path / "api" / "pid").write_text(f"{proc.pid} {_start_time(proc.pid)}\n")
        assert process_alive(tmp_path / "api" / "pid") == proc.pid
        assert down(tmp_path) == ["api"]
        assert proc.wait(timeout=20) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_status_tells_a_clean_down_from_a_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from btcmesh.daemons.devnet import _start_time, down, status

    (tmp_path / "devnet.json").write_text(json.dumps({"argv": {"checkpoint": [], "api": []}}))
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
             for _ in range(2)]
    try:
        for name, proc in zip(("checkpoint", "api"), procs):
            (tmp_path / name).mkdir()
            (tmp_path / name / "pid").write_text(f"{proc.pid} {_start_time(proc.pid)}\n")
        assert [line.split()[1] for line in status(tmp_path)] == ["alive", "alive"]
        procs[0].kill()  # checkpoint dies on its own
        procs[0].wait(timeout=20)
        assert [line.split()[1] for line in status(tmp_path)] == ["dead", "alive"]
        assert down(tmp_path) == ["api"]
        assert [line.split()[1] for line in status(tmp_path)] == ["stopped", "stopped"]
        assert down(tmp_path) == []  # nothing left to stop
        from btcmesh.cli import main

        for action in ("mine", "status"):  # no devnet there: one line, not a raw Errno
            assert main(["devnet", action, "--dir", str(tmp_path / "missing")]) == 1
            assert capsys.readouterr().err == (f"btcmesh devnet: error: no devnet in {tmp_path / 'missing'} "
                                               "(devnet.json missing)\n")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_init_config_one_state_dir_per_daemon_and_aligned_comments(tmp_path: Path) -> None:
    """fp, covenant, slasher and a staker initialised in one folder never share a state directory."""
    import importlib

    from btcmesh.cli import main
    from btcmesh.daemons.common import load_config

    mods = {"fp": "fp", "covenant": "covenant", "slasher": "slasher", "stake": "staker"}
    state_dirs = set()
    for cmd, mod in mods.items():
        cfg = tmp_path / f"{mod}.toml"
        assert main([cmd, "init", "--config", str(cfg)]) == 0
        spec = importlib.import_module(f"btcmesh.daemons.{mod}").SPEC
        loaded = load_config(cfg, spec)
        assert loaded.state_dir == tmp_path / "state" / mod and loaded.state_dir.is_dir()
        state_dirs.add(loaded.state_dir)
        # without the key the default is still the daemon's own directory
        bare = tmp_path / f"bare-{mod}.toml"
        bare.write_text("\n".join(line for line in cfg.read_text().splitlines() if not line.startswith("state_dir")))
        assert load_config(bare, spec).state_dir == tmp_path / "state" / mod
        # every trailing comment in one column; a value too long for it gets its comment on the line above
        lines = cfg.read_text().splitlines()
        columns = {line.index("  # ") + 2 for line in lines if "  # " in line and not line.startswith("#")}
        assert len(columns) == 1, (mod, columns)
        for i, line in enumerate(lines):
            if line.startswith("rpc = "):
                assert "#" not in line and lines[i - 1].startswith("# node JSON-RPC"), lines[i - 1:i + 1]
    assert len(state_dirs) == 4


@pytest.mark.parametrize("action, status, reason", [
    ("unbond", "SLASHED", "nothing to unbond"), ("unbond", "WITHDRAWN", "nothing to unbond"),
    ("unbond", "UNBONDING", "already on Bitcoin"), ("unbond", "PENDING", "nothing to unbond"),
    ("withdraw", "WITHDRAWN", "nothing left to withdraw"),
])
def test_stake_unbond_withdraw_check_the_status_first_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str], action: str,
                                                             status: str, reason: str) -> None:
    """The staker's chain status is read before any tx is built (nothing is sent to the node)."""
    from btcmesh.cli import main
    from btcmesh.daemons.staker import StakerTool

    cfg = tmp_path / "staker.toml"
    assert main(["stake", "init", "--config", str(cfg), "--btc-rpc", "http://u:p@127.0.0.1:1"]) == 0
    h = "ab" * 32
    (tmp_path / "state" / "staker" / "wallet.json").write_text(json.dumps({"delegations": [{"staking_tx_hash": h}]}))
    asked: list[str] = []
    monkeypatch.setattr(StakerTool, "chain_delegation", lambda self, x: asked.append(x) or {"status": status})
    monkeypatch.setattr(StakerTool, "params", lambda self: pytest.fail("went past the status check"))
    capsys.readouterr()
    assert main(["stake", action, "--config", str(cfg)]) == 1
    assert asked == [h]
    err = capsys.readouterr().err
    assert err.startswith(f"btcmesh stake: error: delegation {h} is {status}; ") and reason in err
    assert err.count("\n") == 1
