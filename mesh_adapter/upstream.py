"""Client for the upstream-contract harness (``conformance/mesh-upstream``).

The harness is a Rust program that runs the pinned upstream Mesh Security contracts
(vault, external-staking, converter, virtual-staking) in cw-multi-test; it reads one JSON
operation per line on stdin and answers one JSON line per operation on stdout
(``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``). See that crate's
``src/main.rs`` for the operations. Subprocess plumbing is hand-written: it is a pipe of JSON
lines, which needs nothing beyond the standard library.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import tempfile
from pathlib import Path
from typing import Any

HARNESS_NAME = "mesh-upstream-harness"


class HarnessError(ValueError):
    """The harness rejected an operation (upstream contract error or bad op)."""


class HarnessUnavailable(RuntimeError):
    """The harness binary is missing, died, or did not answer in time."""


def default_harness_path(repo_root: Path) -> Path:
    """``$CARGO_TARGET_DIR`` (if set) else ``conformance/mesh-upstream/target``, debug profile."""
    target = os.environ.get("BTCMESH_HARNESS_TARGET_DIR") or str(repo_root / "conformance" / "mesh-upstream" / "target")
    return Path(target) / "debug" / HARNESS_NAME


class UpstreamHarness:
    """One harness process; ``call(op)`` sends an op and returns its reply (bounded wait)."""

    def __init__(self, binary: Path | str, timeout: float = 60.0) -> None:
        binary = Path(binary)
        if not binary.is_file():
            raise HarnessUnavailable(f"harness binary not found: {binary}")
        self.timeout = timeout
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True, bufsize=1)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)

    def call(self, op: dict) -> dict:
        """Send ``op``; return the full reply dict (``ok`` plus ``result`` or ``error``)."""
        if self.proc.poll() is not None:
            raise HarnessUnavailable(f"harness exited with {self.proc.returncode}: {self.stderr_tail()}")
        self.proc.stdin.write(json.dumps(op) + "\n")
        self.proc.stdin.flush()
        if not self._sel.select(self.timeout):
            self.close()
            raise HarnessUnavailable(f"harness did not answer within {self.timeout}s: {op!r}")
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=10)
            raise HarnessUnavailable(f"harness closed its output (exit {self.proc.poll()}): {self.stderr_tail()}")
        return json.loads(line)

    def run(self, op: dict) -> Any:
        """``call`` that returns ``result`` or raises :class:`HarnessError`."""
        reply = self.call(op)
        if not reply.get("ok"):
            raise HarnessError(reply.get("error", "harness error"))
        return reply["result"]

    def stderr_tail(self, chars: int = 2000) -> str:
        """The end of what the harness wrote to stderr (a panic message, usually)."""
        self._stderr.seek(0)
        return self._stderr.read()[-chars:]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._sel.close()
        self._stderr.close()

    def __enter__(self) -> "UpstreamHarness":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
