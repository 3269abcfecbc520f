"""A throw-away PostgreSQL server for tests: ``initdb`` into a temp dir, ``pg_ctl start`` on a loopback port
(Debian's ``postgresql`` package, installed by ``scripts/setup.sh --daemons``), stopped and removed after.

As root (CI) the cluster is owned by and run as the ``postgres`` user (initdb refuses root)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from btcmesh_testkit.net import closed_port

__all__ = ["find_pg_bin", "PostgresServer"]


def find_pg_bin() -> Path | None:
    """Directory holding ``initdb`` and ``pg_ctl``: Debian's /usr/lib/postgresql/<v>/bin (newest), else $PATH."""
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True):
        if os.access(Path(d) / "initdb", os.X_OK) and os.access(Path(d) / "pg_ctl", os.X_OK):
            return Path(d)
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    return None


class PostgresServer:
    """``with PostgresServer(bin_dir) as pg: pg.url`` → ``postgresql+psycopg://btcmesh@127.0.0.1:PORT/postgres``."""

    def __init__(self, bin_dir: Path, timeout_s: int = 30) -> None:
        self.bin = Path(bin_dir)
        self.timeout_s = timeout_s
        self.port = closed_port()
        self.dir = Path(tempfile.mkdtemp(prefix="btcmesh-pg-"))
        self.data = self.dir / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self.started = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://btcmesh@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(self._as + list(args), check=True, capture_output=True, timeout=self.timeout_s + 30)

    def start(self) -> "PostgresServer":
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "btcmesh", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w",
                  "-t", str(self.timeout_s), "-o", f"-h 127.0.0.1 -p {self.port} -k {self.dir} -F", "start")
        self.started = True
        return self

    def stop(self) -> None:
        try:
            if self.started:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
                self.started = False
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
