"""``btcmesh chain`` hardening (issue 12): it serves gRPC as the README says; a restart on the same --home
with a different -k, --unbonding-time or --chain-id stops with one line naming the flag and the stored
value (no traceback, no silent ignore); after a restart the banner shows the light client's stored base,
not the node's current tip."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from regtest.embedded import EmbeddedNode
from regtest.rpc_server import RpcServer

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]
SPK = bytes.fromhex("5120" + "11" * 32)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "btcmesh", "chain", "--port", "0", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})


def _serve_once(*args: str) -> str:
    """Start ``btcmesh chain``, read its ready line, check gRPC with cosmpy, stop it (SIGTERM); the line."""
    from cosmpy.aerial.client import LedgerClient
    from cosmpy.aerial.config import NetworkConfig

    proc = subprocess.Popen([sys.executable, "-m", "btcmesh", "chain", "--port", "0", "--block-interval", "0.2",
                             *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        line = proc.stdout.readline()  # bounded by the test timeout
        assert line.startswith("ready "), (line, proc.stderr.read() if proc.poll() is not None else "")
        grpc_url = re.search(r" grpc=(\S+)", line).group(1)
        chain_id = re.search(r" chain_id=(\S+)", line).group(1)
        client = LedgerClient(NetworkConfig(chain_id=chain_id, url=grpc_url, fee_minimum_gas_price=0.01,
                                            fee_denomination="ubbn", staking_denomination="ubbn"))
        checkpoint = next(x for x in iter(proc.stdout.readline, "") if "account  checkpoint" in x).split()[-1]
        assert client.query_bank_balance(checkpoint, "ubbn") > 0  # over gRPC
        for _ in range(100):  # one block committed: genesis is on disk
            try:
                if client.query_height() >= 1:
                    break
            except Exception:  # noqa: BLE001 - NotFound before the first block
                time.sleep(0.1)
        else:
            pytest.fail("no block committed")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        return line
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_grpc_restart_flags_and_banner_base(tmp_path: Path) -> None:
    node = EmbeddedNode()
    server = RpcServer(node, user="u", password="p").start()
    try:
        node.mine_blocks(3, SPK)
        common = ["--home", str(tmp_path / "chain"), "--btc-rpc", server.url, "--chain-id", "restart-1"]
        first = _serve_once(*common, "-k", "4", "--unbonding-time", "7")
        assert " light_client_base=3 " in first
        node.mine_blocks(2, SPK)  # the node moved on; the chain's light-client base did not
        again = _serve_once(*common, "-k", "4", "--unbonding-time", "7")
        assert " light_client_base=3 " in again, again
        for flags, needle in ((["-k", "5", "--unbonding-time", "7"], "-k/--confirmations 5 differs "
                                                                      "from the value stored in .*: 4"),
                              (["-k", "4", "--unbonding-time", "9"], "--unbonding-time 9 differs "
                                                                     "from the value stored in .*: 7")):
            r = _run(*common, *flags)
            assert r.returncode != 0 and r.stdout == ""
            assert re.fullmatch(rf"btcmesh chain: error: {needle} .*\n", r.stderr), r.stderr
        r = _run("--home", str(tmp_path / "chain"), "--btc-rpc", server.url, "--chain-id", "other-2",
                 "-k", "4", "--unbonding-time", "7")
        assert r.returncode != 0 and "Traceback" not in r.stderr
        assert re.fullmatch(r"btcmesh chain: error: --chain-id other-2 differs from the chain stored in .*: "
                            r"restart-1 .*\n", r.stderr), r.stderr
    finally:
        server.stop()
        node.close()


def test_comet_restart_with_changed_flags_is_one_line(tmp_path: Path, tool_path) -> None:
    """The same checks for ``--comet``: the stored CometBFT genesis is compared before anything starts."""
    cometbft = tool_path("cometbft")
    env = {**os.environ, "PYTHONPATH": str(REPO), "BTCMESH_TOOLS": str(cometbft.parent)}
    home = str(tmp_path / "comet")
    args = ["--comet", "1", "--home", home, "--chain-id", "comet-restart-1", "-k", "4", "--block-interval", "0.3"]
    proc = subprocess.Popen([sys.executable, "-m", "btcmesh", "chain", "--port", "0", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()  # bounded by the test timeout
        assert line.startswith("ready ") and " grpc=" in line, (line, proc.stderr.read() if proc.poll() else "")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def run(*flags: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "btcmesh", "chain", "--port", "0", *flags], cwd=REPO,
                              capture_output=True, text=True, timeout=60, env=env)

    r = run(*[a if a != "4" else "5" for a in args])
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert re.fullmatch(r"btcmesh chain: error: -k/--confirmations 5 differs from the value stored in .*: 4 .*\n",
                        r.stderr), r.stderr
    r = run(*[a if a != "comet-restart-1" else "comet-other-2" for a in args])
    assert re.fullmatch(r"btcmesh chain: error: --chain-id comet-other-2 differs from the chain stored in .*: "
                        r"comet-restart-1 .*\n", r.stderr), r.stderr
