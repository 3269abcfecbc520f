"""The ``btcmesh`` command: help, argument errors, and ``btcmesh node`` answering python-bitcoinlib."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import bitcoin
import bitcoin.rpc
import pytest

from btcmesh.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ("demo", "node", "chain", "checkpoint", "api")


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m btcmesh ARGS`` in a subprocess (bounded)."""
    return subprocess.run([sys.executable, "-m", "btcmesh", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_top_level_help_lists_every_command() -> None:
    r = run_cli("--help")
    assert r.returncode == 0, r.stderr
    for cmd in COMMANDS:
        assert re.search(rf"^\s+{cmd}\s", r.stdout, re.M), f"{cmd} missing from --help:\n{r.stdout}"
    assert "127.0.0.1" in r.stdout


@pytest.mark.parametrize("cmd", COMMANDS)
def test_subcommand_help(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([cmd, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: btcmesh {cmd}")
    assert len(out.splitlines()) > 5


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: <command>"),
    (["fly"], "invalid choice: 'fly'"),
    (["node", "--port", "99999"], "port must be in 0..65535"),
    (["node", "--port", "abc"], "port must be an integer, got 'abc'"),
    (["node", "--backend", "bitcoind"], "invalid choice: 'bitcoind'"),
    (["chain", "--comet", "0"], "expected a positive integer, got 0"),
    (["checkpoint", "--btc-dialect", "btcd", "--chain-rest", "http://127.0.0.1:1317"],
     "the following arguments are required: --btc-rpc"),
    (["checkpoint", "--btc-rpc", "http://10.1.2.3:18443", "--btc-dialect", "btcd", "--chain-rest",
      "http://127.0.0.1:1317"], "only 127.0.0.1 is allowed, got host '10.1.2.3'"),
    (["api", "--chain-rest", "127.0.0.1:1317"], "expected a URL like http://127.0.0.1:PORT"),
    (["api", "--chain-rest", "http://127.0.0.1"], "the URL needs an explicit port"),
    (["demo", "-k", "zero"], "expected a positive integer, got 'zero'"),
    (["node", "--mine", "-1"], "expected a non-negative integer, got -1"),
])
def test_argument_errors_are_clear(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.startswith("usage: btcmesh")


def test_runtime_error_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    # nothing listens on port 1: the command fails with status 1 and says what it could not reach
    rc = main(["checkpoint", "--btc-rpc", "http://127.0.0.1:1", "--btc-dialect", "btcd",
               "--chain-rest", "http://127.0.0.1:1"])
    assert rc == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("btcmesh checkpoint: error: chain REST server at http://127.0.0.1:1 did not answer")
    assert "Traceback" not in err


def test_parser_defaults_are_loopback() -> None:
    args = build_parser().parse_args(["api", "--chain-rest", "http://localhost:1317"])
    assert args.port == 8000 and args.chain_rest == "http://localhost:1317"


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    """First stdout line of ``proc`` within ``timeout`` seconds ('' if none)."""
    q: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: q.put(proc.stdout.readline()), daemon=True).start()
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        return ""


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def test_node_answers_bitcoinlib_then_stops() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "btcmesh", "node", "--port", "0", "--mine", "5"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        line = _read_line(proc, 60)
        m = re.match(r"ready (http://\S+:\S+@127\.0\.0\.1:(\d+)) height=5 backend=embedded", line)
        assert m, f"unexpected first line {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        bitcoin.SelectParams("regtest")
        proxy = bitcoin.rpc.Proxy(service_url=m.group(1), timeout=20)
        assert proxy.getblockcount() == 5
        assert proxy.call("getblockchaininfo")["chain"] == "regtest"
        proxy.call("stop")  # the node shuts down on the RPC, like bitcoind
        assert proc.wait(timeout=20) == 0
        assert "stopped" in proc.stdout.read()
    finally:
        _stop(proc)


def test_node_stops_on_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "btcmesh", "node", "--port", "0"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert _read_line(proc, 60).startswith("ready http://")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        _stop(proc)


def _start(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "btcmesh", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    line = _read_line(proc, 60)
    if not line:
        _stop(proc)
        pytest.fail(f"btcmesh {args[0]} printed nothing; stderr: {proc.stderr.read()}")
    return proc, line


def test_node_chain_checkpoint_api_work_together(tmp_path: Path) -> None:
    """The separate commands wired by URL: node → chain (light-client base = node tip) → checkpoint → api."""
    import httpx

    procs: list[subprocess.Popen] = []
    try:
        node, line = _start("node", "--port", "0", "--mine", "101")
        procs.append(node)
        btc_url = line.split()[1]
        chain, line = _start("chain", "--port", "0", "--btc-rpc", btc_url, "--block-interval", "0.2", "-k", "2")
        procs.append(chain)
        m = re.match(r"ready (http://127\.0\.0\.1:\d+) chain_id=(\S+) light_client_base=101", line)
        assert m, line
        rest = m.group(1)
        bitcoin.SelectParams("regtest")
        proxy = bitcoin.rpc.Proxy(service_url=btc_url, timeout=20)
        proxy.call("generatetoaddress", 3, "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080")
        r = run_cli("checkpoint", "--btc-rpc", btc_url, "--btc-dialect", "bitcoind", "--chain-rest", rest,
                    "--store", str(tmp_path / "cp.sqlite"), "--once")
        assert r.returncode == 0, r.stderr
        report = json.loads(r.stdout.splitlines()[-1])
        assert report["headers_relayed"] == 3 and report["dead_lettered"] == []
        api, line = _start("api", "--chain-rest", rest, "--port", "0")
        procs.append(api)
        # uvicorn logs its bound port on stderr
        port = None
        for _ in range(40):
            err = api.stderr.readline()
            mm = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", err)
            if mm:
                port = int(mm.group(1))
                break
        assert port, "uvicorn did not report its port"
        info = httpx.get(f"http://127.0.0.1:{port}/v2/network-info", timeout=10, trust_env=False).json()
        assert info["data"]["params"]["btc"][0]["btc_confirmation_depth"] == 2
        assert info["data"]["btc_tip_height"] == 104  # base 101 + the 3 headers the checkpoint relayed
    finally:
        for p in reversed(procs):
            _stop(p)


def test_node_btcd_backend(tool_path) -> None:
    """``btcmesh node --backend btcd`` starts btcd v0.26 on 127.0.0.1, mines, answers RPC, stops on SIGTERM."""
    from regtest.rpc import RpcBackend

    btcd = tool_path("btcd")
    proc, line = _start("node", "--backend", "btcd", "--btcd", str(btcd), "--port", "0", "--mine", "3")
    try:
        m = re.match(r"ready (http://\S+@127\.0\.0\.1:\d+) height=3 backend=btcd dialect=btcd", line)
        assert m, line
        with RpcBackend(m.group(1), dialect="btcd", timeout=20) as rpc:
            assert rpc.get_block_count() == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        _stop(proc)


def test_chain_under_cometbft(tool_path) -> None:
    """``btcmesh chain --comet 1``: the app under a CometBFT v0.38 validator, served to LedgerClient over REST."""
    import httpx

    cometbft = tool_path("cometbft")
    env_tools = {"BTCMESH_TOOLS": str(cometbft.parent)}
    proc = subprocess.Popen([sys.executable, "-m", "btcmesh", "chain", "--comet", "1", "--port", "0",
                             "--block-interval", "0.3"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO), **env_tools})
    try:
        line = _read_line(proc, 90)
        m = re.match(r"ready (http://127\.0\.0\.1:\d+) chain_id=btcmesh-devnet-1 .* validators=1 comet_rpc=", line)
        assert m, f"{line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        with httpx.Client(base_url=m.group(1), timeout=10, trust_env=False) as http:
            first = int(http.get("/cosmos/base/tendermint/v1beta1/blocks/latest").json()["block"]["header"]["height"])
            deadline = time.monotonic() + 30
            while True:  # CometBFT keeps committing blocks
                h = int(http.get("/cosmos/base/tendermint/v1beta1/blocks/latest").json()["block"]["header"]["height"])
                if h > first:
                    break
                assert time.monotonic() < deadline, "no new block within 30 s"
                time.sleep(0.2)
            info = http.get("/cosmos/base/tendermint/v1beta1/node_info").json()
            assert info["default_node_info"]["network"] == "btcmesh-devnet-1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        _stop(proc)


def test_demo_command_json() -> None:
    """``btcmesh demo --json`` (what the README runs, machine-readable): exit 0 and the expected outcome."""
    r = run_cli("demo", "--json", "--no-api", "-k", "2", timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(r.stdout)
    assert res["ok"] is True and res["error"] == ""
    assert {w: d["status"] for w, d in res["delegations"].items()} == {"A": "SLASHED", "B": "WITHDRAWN"}
    assert res["params"]["confirmation_depth"] == 2
    assert res["delegations"]["A"]["burned_sat"] == res["expected_burned_sat"] == 100_000
    assert res["extracted_key_matches"] is True
    assert res["api_url"] == "" and all(d["api_state"] == "" for d in res["delegations"].values())


def test_fp_register_with_an_unfunded_account_says_fund_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from btc_staking.params import regtest_default_params
    from btcmesh.cli import REGTEST_GENESIS_HEADER
    from btcmesh.demo import chain_genesis
    from cosmos_chain.app import ChainApp
    from cosmos_chain.genesis import deterministic_wallet
    from cosmos_chain.node import EmbeddedChain
    from cosmos_chain.rest import RestServer

    admin = str(deterministic_wallet("unfunded-test/admin").address())
    genesis = chain_genesis(regtest_default_params(), 0, REGTEST_GENESIS_HEADER, [admin], admin)
    node = EmbeddedChain(ChainApp("btcmesh-test-1"), block_interval=0.2, genesis=genesis)
    try:
        with RestServer(node) as rest:
            cfg = tmp_path / "fp.toml"
            assert main(["fp", "init", "--config", str(cfg), "--chain-rest", rest.url]) == 0  # a new, unfunded key
            capsys.readouterr()
            assert main(["fp", "register", "--config", str(cfg)]) == 1
            err = capsys.readouterr().err
    finally:
        node.stop()
    assert re.fullmatch(r"btcmesh fp: error: account bbn1\w+ not found on chain: fund it first\n", err), err


@pytest.mark.parametrize("argv, usage", [
    (["fp", "run", "--bogus"], "usage: btcmesh fp run"),
    (["demo", "--bogus"], "usage: btcmesh demo"),
    (["devnet", "status", "--bogus"], "usage: btcmesh devnet"),
    (["stake", "unbond", "--bogus", "x"], "usage: btcmesh stake unbond"),
])
def test_unknown_option_shows_the_subcommands_usage(argv: list[str], usage: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage) and "unrecognized arguments: --bogus" in err, err


@pytest.mark.parametrize("argv, needle", [
    (["fp", "--help"], "finality-provider daemon and eotsd"),
    (["covenant", "--help"], "covenant emulator"),
    (["slasher", "--help"], "vigilante's slasher"),
    (["fp", "init", "--help"], "the FP's name shown on the chain"),
    (["fp", "sign", "--help"], "block height the app hash belongs to"),
])
def test_daemon_help_has_descriptions(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert needle in " ".join(capsys.readouterr().out.split())


def test_api_port_in_use_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["api", "--chain-rest", "http://127.0.0.1:1", "--port", str(port)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == f"btcmesh api: error: cannot bind 127.0.0.1:{port}: Address already in use\n"


def test_demo_step_shows_the_chains_reason_for_a_refused_claim() -> None:
    from btcmesh.demo import refusal_reason

    h, a, b = "ab" * 32, "bbn1" + "q" * 38, "bbn1" + "z" * 38
    raw = f"code 4: failed to execute message; message index: 0: mesh: delegation {h} pays its rewards to {a}, not {b}"
    assert refusal_reason(raw) == "delegation abababab… pays its rewards to bbn1qqqqqq…, not bbn1zzzzzz…"
    assert refusal_reason("code 4: unauthorized") == "code 4: unauthorized"  # no known prefix: kept whole
