"""Acceptance: btcd is started on loopback only: its command line, and the sockets it really listens on."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from btc_staking.keys import generate_secret
from regtest.btcd import BtcdProcess
from regtest.wallet import Wallet

LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


def _listening_addresses(pid: int) -> list[tuple[str, int]]:
    """(ip, port) of every TCP socket in LISTEN state owned by ``pid`` (Linux /proc, stdlib only)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state != LISTEN or inode not in inodes:
                continue
            hex_ip, hex_port = local.split(":")
            raw = bytes.fromhex(hex_ip)
            if width == 8:
                ip = ".".join(str(b) for b in raw[::-1])
            else:  # four little-endian 32-bit words
                words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
                ip = b"".join(words).hex()
            out.append((ip, int(hex_port, 16)))
    return out


def test_btcd_command_line_listens_on_loopback_only(tool_path, tmp_path: Path) -> None:
    w = Wallet(None, generate_secret())  # type: ignore[arg-type]
    node = BtcdProcess(tool_path("btcd"), tmp_path / "n", w.address)
    args = node.args()
    assert "--nolisten" in args and "--regtest" in args
    listen = [a for a in args if "listen" in a.split("=")[0] and a != "--nolisten"]
    assert listen == [f"--rpclisten=127.0.0.1:{node.rpc_port}"]
    assert node.url == f"http://127.0.0.1:{node.rpc_port}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_running_btcd_listens_only_on_127_0_0_1(tool_path, tmp_path: Path) -> None:
    """Started by the harness, btcd's only listening socket is its RPC port on 127.0.0.1 (no P2P)."""
    w = Wallet(None, generate_secret())  # type: ignore[arg-type]
    with BtcdProcess(tool_path("btcd"), tmp_path / "n", w.address) as node:
        assert node.backend().get_block_count() == 0  # up and answering
        assert node.proc is not None
        listening = _listening_addresses(node.proc.pid)
        assert listening, "btcd has no listening socket at all?"
        assert set(listening) == {("127.0.0.1", node.rpc_port)}, listening
