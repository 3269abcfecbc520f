"""`BtcdProcess`: run a throw-away btcd (v0.26) regtest node on 127.0.0.1.

    with BtcdProcess("~/go/bin/btcd", tmp / "btcd", mining_address) as node:
        backend = node.backend()
        backend.mine_blocks(101, node.mining_script)

btcd runs with ``--regtest --notls --txindex --addrindex --nolisten`` and its RPC server on a free
loopback port. On btcd regtest CSV, segwit and taproot are active from genesis
(``getblockchaininfo`` reports them ``active`` since 0; `BtcdProcess.check_softforks` checks it).

btcd deletes its regtest block database whenever it starts ("Removing regression test
database"), so stopping and starting a `BtcdProcess` again gives a fresh chain at height 0.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

from .backend import BackendError
from .rpc import RpcBackend, RpcError

__all__ = ["BtcdProcess", "BtcdError", "free_port", "address_to_script"]


class BtcdError(BackendError):
    """btcd could not be started, did not answer in time, or misbehaved."""


# Linux: a fresh interpreter sets PR_SET_PDEATHSIG (the kernel SIGTERMs btcd if the Python process that
# started it dies) and execs btcd. Not a ``preexec_fn``: running Python between fork and exec in a process
# that has loaded gRPC (cosmpy) can abort the child in gRPC's fork handlers.
_DIE_WITH_PARENT_EXEC = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "    ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGTERM)\n"
    "except (OSError, AttributeError):\n"
    "    pass\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


def _launcher(argv: list[str]) -> list[str]:
    """``argv`` run so that btcd dies with its parent where the platform allows it."""
    if sys.platform.startswith("linux"):
        return [sys.executable, "-c", _DIE_WITH_PARENT_EXEC, *argv]
    return argv


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def address_to_script(address: str) -> bytes:
    """scriptPubKey of a regtest segwit address (the forms `regtest.rpc.script_to_address` writes)."""
    from .wallet import decode_segwit_address

    version, program = decode_segwit_address(address, "bcrt")
    return (bytes([0x50 + version]) if version else b"\x00") + bytes([len(program)]) + program


class BtcdProcess:
    """A btcd regtest process with its own datadir; stop() (or the context manager) ends it."""

    def __init__(
        self,
        binary: str | os.PathLike[str],
        datadir: str | os.PathLike[str],
        mining_address: str,
        rpc_port: int | None = None,
        *,
        start_timeout: float = 30.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.binary = Path(binary).expanduser()
        if not self.binary.is_file():
            raise BtcdError(f"btcd binary not found at {self.binary}")
        self.datadir = Path(datadir)
        self.mining_address = mining_address
        self.mining_script = address_to_script(mining_address)
        self.rpc_port = rpc_port or free_port()
        self.rpc_user = "btcmesh"
        self.rpc_password = secrets.token_hex(16)
        self.start_timeout = start_timeout
        self.extra_args = tuple(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self._backends: list[RpcBackend] = []

    @property
    def url(self) -> str:
        """RPC URL (loopback only)."""
        return f"http://127.0.0.1:{self.rpc_port}"

    def args(self) -> list[str]:
        """The btcd command line."""
        return [
            str(self.binary),
            "--regtest",
            "--notls",
            "--txindex",
            "--addrindex",
            "--nolisten",
            "--nodnsseed",
            f"--rpclisten=127.0.0.1:{self.rpc_port}",
            f"--rpcuser={self.rpc_user}",
            f"--rpcpass={self.rpc_password}",
            f"--miningaddr={self.mining_address}",
            f"--datadir={self.datadir / 'data'}",
            f"--logdir={self.datadir / 'logs'}",
            "--debuglevel=info",
            *self.extra_args,
        ]

    def start(self) -> "BtcdProcess":
        """Start btcd and wait (bounded) until its RPC server answers."""
        if self.proc is not None:
            raise BtcdError("btcd already started")
        self.datadir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.datadir / "stdout.log", "ab")
        self.proc = subprocess.Popen(
            _launcher(self.args()),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.start_timeout
        last: Exception | None = None
        probe = RpcBackend(
            self.url, self.rpc_user, self.rpc_password, dialect="btcd", timeout=min(5.0, self.start_timeout)
        )
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise BtcdError(f"btcd exited with code {self.proc.returncode} during start:\n{self.log_tail()}")
                try:
                    probe.get_block_count()
                    return self
                except BackendError as exc:
                    last = exc
                    time.sleep(0.1)
        finally:
            probe.close()
        self.stop()
        raise BtcdError(f"btcd RPC did not answer within {self.start_timeout}s ({last}):\n{self.log_tail()}")

    def log_tail(self, n: int = 20) -> str:
        """Last lines of btcd's stdout log (for error messages)."""
        try:
            lines = (self.datadir / "stdout.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def backend(self, timeout: float = 30.0) -> RpcBackend:
        """A new `RpcBackend` (btcd dialect) bound to this node; closed by stop()."""
        if self.proc is None or self.proc.poll() is not None:
            raise BtcdError("btcd is not running")
        b = RpcBackend(
            self.url, self.rpc_user, self.rpc_password, dialect="btcd", timeout=timeout, mining_script=self.mining_script
        )
        self._backends.append(b)
        return b

    def check_softforks(self) -> dict[str, str]:
        """Status of csv/segwit/taproot from getblockchaininfo; BtcdError unless all are active."""
        b = RpcBackend(self.url, self.rpc_user, self.rpc_password, dialect="btcd", timeout=10)
        try:
            forks = b.call("getblockchaininfo").get("bip9_softforks", {})
        finally:
            b.close()
        status = {name: forks.get(name, {}).get("status", "missing") for name in ("csv", "segwit", "taproot")}
        if any(s != "active" for s in status.values()):
            raise BtcdError(f"btcd regtest soft forks not all active: {status}")
        return status

    def stop(self, timeout: float = 15.0) -> None:
        """RPC ``stop``, then terminate, then kill — each with a bounded wait. Idempotent."""
        for b in self._backends:
            b.close()
        self._backends.clear()
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            b = RpcBackend(self.url, self.rpc_user, self.rpc_password, dialect="btcd", timeout=5)
            try:
                b.call("stop")
            except (BackendError, RpcError):
                pass
            finally:
                b.close()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self._log.close()

    def __enter__(self) -> "BtcdProcess":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"BtcdProcess(port={self.rpc_port}, running={self.proc is not None and self.proc.poll() is None})"
