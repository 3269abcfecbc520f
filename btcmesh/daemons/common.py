"""What every operator daemon shares: config, logs, metrics, state files, crash points.

* **Config**: one TOML file per daemon (``--config FILE``), read with :mod:`tomllib`; every key is
  declared in a :data:`Spec` (type and default; ``REQUIRED`` for none). Unknown, missing or
  mistyped keys raise :class:`ConfigError`, whose one-line message names the key. Relative paths
  are relative to the config file's directory. ``init`` writes a commented default (the daemon's
  ``DEFAULT_TOML``), never over an existing file.
* **Logs**: one logfmt line per event on stderr (``ts=… level=info daemon=fp event=vote height=12``).
* **Metrics**: ``prometheus_client`` on 127.0.0.1 (``[daemon] metrics_port``; 0 picks a free port,
  -1 turns it off): chain/BTC heights, lag, submissions, failures, retries, signatures made and refused.
* **Status file**: ``status.json`` in the state directory (pid, heights, last error, metrics port),
  replaced atomically after every round; ``btcmesh devnet status`` reads it.
* **Records**: :class:`SqliteRecords`, the daemon's own SQLite file (WAL, ``synchronous=FULL``), what
  it did, so a restart (kill -9 included) neither repeats nor forgets it.
* **Key files**: 32-byte secrets as hex, created with mode 0600 and refused when group/other can read them.
* **Crash points** (tests and demos only): ``BTCMESH_CRASH_AT=name[,name…]`` makes the process
  SIGKILL itself at the named point, so a test can kill -9 a daemon at an exact step.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import signal
import sqlite3
import stat
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlsplit

__all__ = ["ConfigError", "REQUIRED", "Spec", "Config", "load_config", "write_default_config",
           "EventLog", "Metrics", "StatusFile", "crash_point", "read_key_file", "write_key_file",
           "new_secret", "stop_event", "run_rounds", "run_daemon", "chain_connection", "execute_many",
           "COMMON_SPEC", "BITCOIN_SPEC", "CHAIN_TOML", "BITCOIN_TOML", "SqliteRecords", "loopback_url"]

REQUIRED = object()
#: dotted key -> (type, default); ``REQUIRED`` as default marks a key that must be present.
Spec = Mapping[str, tuple[type, Any]]

#: Keys every daemon accepts.
COMMON_SPEC: dict[str, tuple[type, Any]] = {
    "chain.rest": (str, REQUIRED),
    "daemon.state_dir": (str, "state"),
    "daemon.poll_interval": (float, 1.0),
    "daemon.metrics_port": (int, 0),
}

#: Keys of a daemon that talks to a Bitcoin node.
BITCOIN_SPEC: dict[str, tuple[type, Any]] = {
    "bitcoin.rpc": (str, "http://btcmesh:password@127.0.0.1:18443"),
    "bitcoin.dialect": (str, "bitcoind"),
}

#: The ``[chain]`` and ``[bitcoin]`` sections of a daemon's ``DEFAULT_TOML`` (``@NAME@``: filled by ``init``).
CHAIN_TOML = """\
[chain]
rest = "@CHAIN_REST@"                  # chain REST URL (127.0.0.1 only)
"""
BITCOIN_TOML = """\
[bitcoin]
rpc = "@BTC_RPC@"                      # node JSON-RPC, credentials in the URL (127.0.0.1 only)
dialect = "bitcoind"                   # bitcoind | btcd
"""


class ConfigError(ValueError):
    """A bad config file; the message is one line and names the key."""


@dataclass
class Config:
    """A validated config: ``cfg["fp.moniker"]``; ``cfg.path(key)`` resolves a path key."""

    file: Path
    values: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def path(self, key: str) -> Path:
        p = Path(str(self.values[key])).expanduser()
        return p if p.is_absolute() else (self.file.parent / p)

    @property
    def state_dir(self) -> Path:
        return self.path("daemon.state_dir")


def loopback_url(value: str, key: str) -> str:
    """``value`` if it is an http URL on 127.0.0.1/localhost with a port, else ConfigError naming ``key``."""
    parts = urlsplit(value.removeprefix("rest+"))
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost") or port is None:
        raise ConfigError(f"key {key}: expected a URL like http://127.0.0.1:PORT, got {value!r}")
    return value.removeprefix("rest+")


def _check_type(key: str, want: type, value: Any) -> Any:
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if want is int and isinstance(value, bool) or not isinstance(value, want):
        raise ConfigError(f"key {key}: expected {want.__name__}, got {type(value).__name__} {value!r}")
    return value


def load_config(path: str | Path, spec: Spec) -> Config:
    """Read and validate ``path`` against ``spec`` (ConfigError with the key on any problem)."""
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {file} not found (create one with `init`)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file} is not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}

    def walk(prefix: str, table: Mapping[str, Any]) -> None:
        for k, v in table.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict):
                walk(key + ".", v)
            else:
                flat[key] = v

    walk("", raw)
    for key in flat:
        if key not in spec:
            raise ConfigError(f"unknown key {key} in {file.name}")
    values: dict[str, Any] = {}
    for key, (typ, default) in spec.items():
        if key in flat:
            values[key] = _check_type(key, typ, flat[key])
        elif default is REQUIRED:
            raise ConfigError(f"missing key {key} in {file.name}")
        else:
            values[key] = default
    if "chain.rest" in values:
        values["chain.rest"] = loopback_url(values["chain.rest"], "chain.rest")
    if values.get("bitcoin.rpc"):
        loopback_url(values["bitcoin.rpc"], "bitcoin.rpc")
    if "bitcoin.dialect" in values and values["bitcoin.dialect"] not in ("bitcoind", "btcd"):
        raise ConfigError(f"key bitcoin.dialect: expected 'bitcoind' or 'btcd', got {values['bitcoin.dialect']!r}")
    if "daemon.poll_interval" in values and not 0 < values["daemon.poll_interval"] <= 3600:
        raise ConfigError(f"key daemon.poll_interval: expected seconds in (0, 3600], got {values['daemon.poll_interval']}")
    if "daemon.metrics_port" in values and not -1 <= values["daemon.metrics_port"] <= 65535:
        raise ConfigError(f"key daemon.metrics_port: expected -1 (off), 0 (any) or a port, got "
                          f"{values['daemon.metrics_port']}")
    return Config(file.resolve(), values)


def write_default_config(path: str | Path, text: str, force: bool = False) -> Path:
    """Write the commented default ``text`` to ``path`` (refuses to overwrite unless ``force``)."""
    file = Path(path)
    if file.exists() and not force:
        raise ConfigError(f"{file} already exists (remove it or pass --force)")
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)
    return file


# ------------------------------------------------------------------------------------------ keys
def new_secret() -> bytes:
    """A fresh, even-Y secp256k1 secret (from the OS CSPRNG)."""
    from btc_staking.keys import secret_even_y

    return secret_even_y(os.urandom(32))


def write_key_file(path: str | Path, secret: bytes) -> Path:
    """Create ``path`` with mode 0600 holding ``secret`` as hex; never overwrites."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"key file {file} already exists") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(bytes(secret).hex() + "\n")
    return file


def read_key_file(path: str | Path, key: str) -> bytes:
    """The 32-byte secret in ``path`` (ConfigError naming ``key`` if missing, malformed or readable by others)."""
    file = Path(path)
    try:
        mode = file.stat().st_mode
        text = file.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"key {key}: cannot read key file {file}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"key {key}: key file {file} is accessible by group/others "
                          f"(mode {stat.S_IMODE(mode):o}); chmod 600 it")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"key {key}: key file {file} must hold 64 hex characters")
    return raw


# ------------------------------------------------------------------------------------------ logs
def _fmt(v: Any) -> str:
    s = v.hex() if isinstance(v, (bytes, bytearray)) else str(v)
    if s == "" or any(c in s for c in ' ="\n'):
        return json.dumps(s)
    return s


class EventLog:
    """logfmt lines on ``stream`` (default stderr); remembers the last error."""

    def __init__(self, daemon: str, stream: Any = None) -> None:
        self.daemon = daemon
        self.stream = stream
        self.last_error = ""
        self._lock = threading.Lock()

    def _emit(self, level: str, event: str, fields: Mapping[str, Any]) -> None:
        ts = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        parts = [f"ts={ts}", f"level={level}", f"daemon={self.daemon}", f"event={event}"]
        parts += [f"{k}={_fmt(v)}" for k, v in fields.items()]
        with self._lock:
            print(" ".join(parts), file=self.stream or sys.stderr, flush=True)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warn(self, event: str, **fields: Any) -> None:
        self._emit("warn", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self.last_error = f"{event}: " + " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
        self._emit("error", event, fields)


# ------------------------------------------------------------------------------------------ metrics
class Metrics:
    """The daemon's Prometheus metrics (own registry; served on 127.0.0.1 by :meth:`serve`)."""

    def __init__(self, daemon: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        d = ["daemon"]
        r = self.registry
        self.chain_height = Gauge("btcmesh_chain_height", "latest Cosmos chain height seen", d, registry=r).labels(daemon)
        self.btc_height = Gauge("btcmesh_btc_height", "latest Bitcoin height seen", d, registry=r).labels(daemon)
        self.processed_height = Gauge("btcmesh_processed_height", "highest height fully processed", d,
                                      registry=r).labels(daemon)
        self.lag = Gauge("btcmesh_lag_blocks", "blocks between the tip and the processed height", d,
                         registry=r).labels(daemon)
        self.submissions = Counter("btcmesh_submissions", "chain txs / Bitcoin txs sent", d, registry=r).labels(daemon)
        self.failures = Counter("btcmesh_failures", "failed rounds or rejected submissions", d, registry=r).labels(daemon)
        self.retries = Counter("btcmesh_retries", "transient failures retried later", d, registry=r).labels(daemon)
        self.signatures = Counter("btcmesh_signatures", "signatures made", d, registry=r).labels(daemon)
        self.signatures_refused = Counter("btcmesh_signatures_refused", "signatures refused (protection or checks)", d,
                                          registry=r).labels(daemon)
        self.port: int | None = None
        self._server: Any = None

    def serve(self, port: int) -> int | None:
        """Serve /metrics on 127.0.0.1:``port`` (0 = any free port, -1 = off); returns the port."""
        if port < 0:
            return None
        from prometheus_client import start_http_server

        server, _ = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        self._server = server
        self.port = int(server.server_port)
        return self.port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@dataclass
class StatusFile:
    """``status.json``: what ``btcmesh devnet status`` prints (replaced atomically)."""

    path: Path
    daemon: str
    data: dict[str, Any] = field(default_factory=dict)

    def update(self, **fields: Any) -> None:
        self.data.update(fields, daemon=self.daemon, pid=os.getpid(), updated=time.time())
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, sort_keys=True))
        os.replace(tmp, self.path)


class SqliteRecords:
    """A daemon's records in SQLite: autocommit, WAL, ``synchronous=FULL`` (a row is on disk before the
    daemon goes on); the tables are created from the subclass's :attr:`SCHEMA`."""

    SCHEMA: tuple[str, ...] = ()

    def __init__(self, path: str | Path) -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        for statement in self.SCHEMA:
            self.db.execute(statement)

    def close(self) -> None:
        self.db.close()


def crash_point(name: str, log: EventLog | None = None) -> None:
    """SIGKILL this process here if ``BTCMESH_CRASH_AT`` lists ``name`` (tests: kill -9 at a chosen point)."""
    if name in os.environ.get("BTCMESH_CRASH_AT", "").split(","):
        if log is not None:
            log.warn("crash_point", point=name)
        os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------------------------------ loop
def stop_event() -> threading.Event:
    """An event set by SIGINT / SIGTERM."""
    ev = threading.Event()
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: ev.set())
    return ev


def run_rounds(step: Callable[[], None], stop: threading.Event, poll: float, log: EventLog,
               metrics: Metrics, status: StatusFile, max_rounds: int | None = None) -> int:
    """Call ``step()`` every ``poll`` s until ``stop`` (a failing round is logged, counted and retried)."""
    rounds = 0
    while not stop.is_set() and (max_rounds is None or rounds < max_rounds):
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - a round must never kill the daemon
            metrics.failures.inc()
            log.error("round_failed", error=f"{type(exc).__name__}: {exc}")
        status.update(last_error=log.last_error)
        rounds += 1
        stop.wait(poll)
    return rounds


def run_daemon(daemon: Any, max_rounds: int | None, log_fields: Mapping[str, Any] | None = None,
               status_fields: Mapping[str, Any] | None = None) -> int:
    """The ``run`` command of a round-based daemon (``cfg``, ``log``, ``metrics``, ``status``, ``conn``,
    ``step()``, ``close()``): serve metrics, log ``started`` (with ``log_fields``), call ``step`` every
    ``daemon.poll_interval`` s until SIGINT/SIGTERM or ``max_rounds``, then close everything."""
    try:
        port = daemon.metrics.serve(daemon.cfg["daemon.metrics_port"])
        daemon.status.update(metrics_port=port, height=0, last_error="", **(status_fields or {}))
        daemon.log.info("started", **(log_fields or {}), chain_id=daemon.conn.chain_id, metrics_port=port)
        run_rounds(daemon.step, stop_event(), daemon.cfg["daemon.poll_interval"], daemon.log, daemon.metrics,
                   daemon.status, max_rounds=max_rounds)
        daemon.log.info("stopped")
    finally:
        daemon.metrics.close()
        daemon.close()
    return 0


# ------------------------------------------------------------------------------------------ chain
@dataclass
class ChainConnection:
    """A cosmpy-backed ChainClient, the signer wallet and module addresses."""

    client: Any  # checkpoint.chain_client.ChainClient
    wallet: Any  # cosmpy LocalWallet (None for read-only daemons)
    chain_id: str
    addresses: dict[str, str]

    def height(self) -> int:
        return int(self.client.ledger.query_height())

    def query(self, module: str, msg: dict) -> Any:
        return self.client.query(self.addresses[module], msg)

    def execute(self, module: str, msg: dict) -> str:
        return self.client.execute(self.addresses[module], msg, self.wallet)


def chain_connection(rest: str, cosmos_secret: bytes | None = None, tx_timeout_s: float = 30.0) -> ChainConnection:
    """Connect to the chain's REST server (chain id read from it)."""
    from checkpoint.runner import connect, make_wallet, query_chain_id
    from cosmos_chain.modules.base import module_address

    chain_id = query_chain_id(rest)
    client = connect(rest, chain_id=chain_id, tx_timeout_s=tx_timeout_s)
    client.poll_interval_s = 0.05
    wallet = make_wallet(private_key=cosmos_secret) if cosmos_secret is not None else None
    names = ("btc_light_client", "btc_staking", "finality", "mesh")
    return ChainConnection(client, wallet, chain_id, {n: module_address(n) for n in names})


def execute_many(conn: ChainConnection, module: str, msgs: Sequence[dict]) -> str:
    """One tx with several ``MsgExecuteContract`` to ``module`` (e.g. votes on several heights)."""
    from cosmpy.aerial.tx import SigningCfg, Transaction, TxFee
    from cosmpy.protos.cosmos.tx.v1beta1.service_pb2 import BroadcastMode, BroadcastTxRequest
    from cosmpy.protos.cosmwasm.wasm.v1.tx_pb2 import MsgExecuteContract

    from checkpoint.chain_client import query_account
    from checkpoint.errors import ChainError

    if len(msgs) == 1:
        return conn.execute(module, msgs[0])
    client, wallet = conn.client, conn.wallet
    tx = Transaction()
    for m in msgs:
        tx.add_message(MsgExecuteContract(sender=str(wallet.address()), contract=conn.addresses[module],
                                          msg=json.dumps(m, sort_keys=True).encode()))
    gas = client.gas_limit * len(msgs)
    try:
        account = query_account(client.ledger, wallet.address())
        amount = client.ledger.estimate_fee_from_gas(gas)
        tx.seal(SigningCfg.direct(wallet.public_key(), account.sequence), fee=TxFee(amount=amount, gas_limit=gas))
        tx.sign(wallet.signer(), conn.chain_id, account.number)
        tx.complete()
        resp = client.ledger.txs.BroadcastTx(BroadcastTxRequest(tx_bytes=tx.tx.SerializeToString(),
                                                                mode=BroadcastMode.BROADCAST_MODE_SYNC))
    except ChainError:
        raise
    except Exception as exc:  # noqa: BLE001 - transport problems: retried by the caller
        raise ChainError(f"chain unreachable while broadcasting: {exc}", transient=True) from exc
    first = client.ledger._parse_tx_response(resp.tx_response)
    if first.code != 0:
        raise client._rejection(first.code, first.raw_log)
    return client._wait(first.hash)



# ------------------------------------------------------------------------------------------ init
def devnet_cosmos_secret(seed: str, role: str) -> bytes:
    """The secret of ``cosmos_chain.genesis.deterministic_wallet(f"{seed}/{role}")`` (funded by ``btcmesh chain``)."""
    import hashlib

    return hashlib.sha256(b"btcmesh-test-key/" + f"{seed}/{role}".encode()).digest()


def init_daemon(config_path: str | Path, template: str, substitutions: Mapping[str, str],
                key_files: Mapping[str, bytes], force: bool = False) -> list[Path]:
    """Write the commented default config (``@NAME@`` placeholders filled) and the 0600 key files
    (named relative to the config's directory). Refuses to overwrite anything unless ``force``."""
    file = Path(config_path)
    subs = {"STATE_DIR": "state", **substitutions}  # callers name the daemon's own state_dir (``init``: state/<daemon>)
    text = "".join(_fill_line(line, subs) for line in template.splitlines(keepends=True))
    keys = [(file.parent / name, secret) for name, secret in key_files.items()]
    for path, _ in keys:
        if path.exists() and not force:
            raise ConfigError(f"key file {path} already exists")
    written = [write_default_config(file, text, force)]
    for path, secret in keys:
        if path.exists():
            path.unlink()
        written.append(write_key_file(path, secret))
    state = Path(subs["STATE_DIR"]).expanduser()
    (state if state.is_absolute() else file.parent / state).mkdir(parents=True, exist_ok=True)
    return written


def _fill_line(line: str, substitutions: Mapping[str, str]) -> str:
    """One template line with its ``@NAME@`` placeholders filled and its ``# comment`` kept in the template's
    column (or moved to the line above when the value has grown past that column)."""

    def fill(text: str) -> str:
        for k, v in substitutions.items():
            text = text.replace(f"@{k}@", v)
        return text

    at = line.find("  # ")
    if "@" not in line or at < 0 or line.lstrip().startswith("#"):
        return fill(line)
    value, comment, column = fill(line[:at].rstrip()), line[at + 2:], at + 2
    if len(value) < column:
        return value.ljust(column) + comment
    indent = value[:len(value) - len(value.lstrip())]
    return f"{indent}{comment}{value}" + ("\n" if comment.endswith("\n") else "")
