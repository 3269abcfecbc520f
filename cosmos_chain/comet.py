"""Run :class:`cosmos_chain.app.ChainApp` under CometBFT v0.38: testnet harness and RPC client.

* :class:`CometNetwork` generates a loopback-only N-validator testnet (``cometbft testnet``
  for keys and genesis, then every config value that matters rewritten: listen addresses on
  127.0.0.1, distinct ports, persistent peers, no PEX/seeds, fast blocks), starts one
  in-process :class:`~cosmos_chain.abci.ABCIServer` (own ChainApp and home) and one
  ``cometbft node`` process per validator, waits (bounded) for blocks, stops and restarts.
* :class:`CometClient` talks JSON-RPC to a node: broadcast (``broadcast_tx_sync`` /
  ``_commit``), wait for a tx (``/tx``), ``abci_query``, ``abci_info``, ``block``, ``status``.
* :func:`run_comet_chain` is the CLI entry point.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import datetime as _dt
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx

from cosmos_chain.abci import ABCIServer

__all__ = [
    "CometError",
    "CometRPCError",
    "CometClient",
    "Broadcaster",
    "BroadcastResult",
    "CometNode",
    "CometNetwork",
    "find_cometbft",
    "free_ports",
    "node_id_from_key_file",
    "set_toml_values",
    "tx_hash",
    "wait_until",
    "run_comet_chain",
]

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
DEFAULT_CHAIN_ID = "btcmesh-comet-1"
AppFactory = Callable[[str, Path], Any]
"""``app_factory(chain_id, home) -> app``; ``ChainApp`` itself fits."""


class CometError(RuntimeError):
    """The harness could not bring a node/network into the requested state."""


class CometRPCError(CometError):
    """CometBFT's JSON-RPC answered with an error object."""

    def __init__(self, method: str, error: dict) -> None:
        self.method = method
        self.error = error
        super().__init__(f"{method}: {error.get('message', '')} {error.get('data', '')}".strip())


# --------------------------------------------------------------------------------------------
# small helpers


def find_cometbft() -> Path | None:
    """Locate ``cometbft``: $BTCMESH_TOOLS, ./.tools/bin, $PATH, ~/go/bin (like tests/conftest)."""
    repo = Path(__file__).resolve().parent.parent
    candidates: list[Path] = []
    if os.environ.get("BTCMESH_TOOLS"):
        candidates.append(Path(os.environ["BTCMESH_TOOLS"]) / "cometbft")
    candidates.append(repo / ".tools" / "bin" / "cometbft")
    which = shutil.which("cometbft")
    if which:
        candidates.append(Path(which))
    candidates.append(Path.home() / "go" / "bin" / "cometbft")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_ports(n: int) -> list[int]:
    """``n`` distinct currently-free TCP ports on 127.0.0.1 (all held open while choosing)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns a truthy value; raise :class:`CometError` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except CometRPCError as exc:
            last_exc = exc
        except (httpx.HTTPError, OSError) as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            suffix = f" (last error: {last_exc})" if last_exc else ""
            raise CometError(f"timed out after {timeout:.1f}s waiting for {what}{suffix}")
        time.sleep(interval)


def tx_hash(tx_bytes: bytes) -> str:
    """CometBFT's tx hash: uppercase hex SHA-256 of the raw tx bytes."""
    return hashlib.sha256(tx_bytes).hexdigest().upper()


def node_id_from_key_file(path: Path) -> str:
    """P2P node ID from ``node_key.json``: hex of the first 20 bytes of SHA-256(ed25519 pubkey)."""
    key = base64.b64decode(json.loads(path.read_text())["priv_key"]["value"])
    return hashlib.sha256(key[32:]).hexdigest()[:40]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))


def set_toml_values(path: Path, values: dict[str, dict[str, Any]]) -> None:
    """Rewrite ``key = value`` lines of a CometBFT ``config.toml`` in place.

    ``values`` maps a section name (``""`` for the top level) to ``{key: value}``. Every key
    must already be present in its section (CometBFT writes them all), else :class:`CometError`.
    """
    lines = path.read_text().splitlines()
    section = ""
    missing = {(sec, key) for sec, keys in values.items() for key in keys}
    key_re = re.compile(r"^([A-Za-z0-9_\-]+)\s*=")
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1].strip()
            continue
        match = key_re.match(stripped)
        if match and match.group(1) in values.get(section, {}):
            key = match.group(1)
            lines[i] = f"{key} = {_toml_value(values[section][key])}"
            missing.discard((section, key))
    if missing:
        raise CometError(f"{path}: keys not found: {sorted(missing)}")
    path.write_text("\n".join(lines) + "\n")


def _rfc3339_now() -> str:
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}000Z"


def _duration(seconds: float) -> str:
    return f"{int(round(seconds * 1000))}ms"


# --------------------------------------------------------------------------------------------
# RPC client / broadcaster


@dataclass
class BroadcastResult:
    """Outcome of ``broadcast_tx_sync`` (CheckTx) or ``broadcast_tx_commit`` (CheckTx + block)."""

    hash: str
    code: int
    log: str
    codespace: str = ""
    height: int = 0
    tx_result: dict | None = None
    raw: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """CheckTx (and, for commit mode, DeliverTx) succeeded."""
        return self.code == 0 and (self.tx_result is None or int(self.tx_result.get("code", 0)) == 0)


class CometClient:
    """JSON-RPC client for one CometBFT node (``http://127.0.0.1:RPC``); all calls bounded."""

    def __init__(self, rpc_url: str, timeout: float = 15.0) -> None:
        self.rpc_url = rpc_url.rstrip("/")
        self._http = httpx.Client(timeout=timeout)
        self._ids = iter(range(1, 1 << 62))
        self._id_lock = threading.Lock()

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> "CometClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, **params: Any) -> Any:
        """POST a JSON-RPC request; return ``result`` or raise :class:`CometRPCError`."""
        with self._id_lock:
            req_id = next(self._ids)
        body = {"jsonrpc": "2.0", "id": req_id, "method": method, "params": params}
        resp = self._http.post(self.rpc_url + "/", json=body)
        data = resp.json()
        if data.get("error"):
            raise CometRPCError(method, data["error"])
        return data["result"]

    # ---- chain state -----------------------------------------------------------------------

    def status(self) -> dict:
        """``/status``."""
        return self.call("status")

    def latest_height(self) -> int:
        """Latest committed block height known to the node."""
        return int(self.status()["sync_info"]["latest_block_height"])

    def abci_info(self) -> tuple[int, bytes]:
        """``/abci_info``: the app's (last_block_height, last_block_app_hash) as seen by CometBFT."""
        response = self.call("abci_info")["response"]
        app_hash = base64.b64decode(response.get("last_block_app_hash") or "")
        return int(response.get("last_block_height") or 0), app_hash

    def raw_block(self, height: int | None = None) -> dict:
        """``/block``'s result (latest when ``height`` is None)."""
        return self.call("block", height=str(height)) if height else self.call("block")

    def block(self, height: int | None = None) -> dict | None:
        """``/block`` (latest when ``height`` is None); subclasses may return other shapes."""
        return self.raw_block(height)

    def block_app_hash(self, height: int) -> bytes:
        """``app_hash`` in the header of block ``height`` (the app's hash after ``height - 1``)."""
        return binascii.unhexlify(self.raw_block(height)["block"]["header"]["app_hash"])

    def wait_for_height(self, height: int, timeout: float = 30.0) -> int:
        """Block until the node has committed ``height`` - stored it *and* its app has committed it
        (``/status`` counts a block as soon as CometBFT saved it, before FinalizeBlock/Commit ran) -
        and return the latest height."""

        def reached() -> int | None:
            h = self.latest_height()
            return h if h >= height and self.abci_info()[0] >= height else None

        return wait_until(reached, timeout, f"height {height} committed by the node and its app at {self.rpc_url}")

    # ---- transactions ----------------------------------------------------------------------

    def broadcast_tx_sync(self, tx_bytes: bytes) -> BroadcastResult:
        """Submit a tx and return its CheckTx result (mempool admission)."""
        res = self.call("broadcast_tx_sync", tx=base64.b64encode(tx_bytes).decode())
        return BroadcastResult(
            hash=res.get("hash") or tx_hash(tx_bytes),
            code=int(res.get("code", 0)),
            log=res.get("log", ""),
            codespace=res.get("codespace", ""),
            raw=res,
        )

    def broadcast_tx_async(self, tx_bytes: bytes) -> str:
        """Submit a tx without waiting for CheckTx; return its hash."""
        res = self.call("broadcast_tx_async", tx=base64.b64encode(tx_bytes).decode())
        return res.get("hash") or tx_hash(tx_bytes)

    def broadcast_tx_commit(self, tx_bytes: bytes) -> BroadcastResult:
        """Submit a tx and wait (CometBFT's ``timeout_broadcast_tx_commit``) until it is in a block."""
        res = self.call("broadcast_tx_commit", tx=base64.b64encode(tx_bytes).decode())
        check = res.get("check_tx", {})
        return BroadcastResult(
            hash=res.get("hash") or tx_hash(tx_bytes),
            code=int(check.get("code", 0)),
            log=check.get("log", ""),
            codespace=check.get("codespace", ""),
            height=int(res.get("height") or 0),
            tx_result=res.get("tx_result"),
            raw=res,
        )

    def broadcast_tx(self, tx_bytes: bytes, mode: str = "sync") -> BroadcastResult:
        """Broadcast in ``mode`` ``sync``/``commit``/``async`` (async: code 0, hash only)."""
        if mode == "commit":
            return self.broadcast_tx_commit(tx_bytes)
        if mode == "async":
            return BroadcastResult(hash=self.broadcast_tx_async(tx_bytes), code=0, log="")
        return self.broadcast_tx_sync(tx_bytes)

    def tx(self, hash_hex: str) -> dict | None:
        """``/tx``: the indexed tx (``height``, ``index``, ``tx_result``, ``tx``), or None if not found."""
        raw = binascii.unhexlify(hash_hex.removeprefix("0x").removeprefix("0X"))
        try:
            return self.call("tx", hash=base64.b64encode(raw).decode(), prove=False)
        except CometRPCError as exc:
            if "not found" in str(exc):
                return None
            raise

    def wait_for_tx(self, hash_hex: str, timeout: float = 30.0) -> dict:
        """Block until the tx is committed and indexed; return ``/tx``'s result."""
        return wait_until(lambda: self.tx(hash_hex), timeout, f"tx {hash_hex} at {self.rpc_url}", interval=0.2)

    def submit(self, tx_bytes: bytes, timeout: float = 30.0) -> dict:
        """``broadcast_tx_sync`` then wait for inclusion; raise if CheckTx rejects it."""
        res = self.broadcast_tx_sync(tx_bytes)
        if res.code != 0:
            raise CometError(f"CheckTx rejected tx {res.hash}: code {res.code} {res.codespace} {res.log}")
        return self.wait_for_tx(res.hash, timeout)

    # ---- queries ---------------------------------------------------------------------------

    def abci_query(self, path: str, data: bytes = b"", height: int = 0) -> tuple[int, bytes, str, int]:
        """``/abci_query``: (code, value, log, height)."""
        res = self.call("abci_query", path=path, data=data.hex(), height=str(height), prove=False)["response"]
        value = base64.b64decode(res.get("value") or "")
        return int(res.get("code", 0)), value, res.get("log", ""), int(res.get("height") or 0)


Broadcaster = CometClient
"""The broadcaster a REST server is pointed at (``broadcast_tx``/``submit``/``tx``)."""


# --------------------------------------------------------------------------------------------
# nodes and networks


class CometNode:
    """One validator: a ``cometbft node`` process plus its in-process ABCI server and app."""

    def __init__(
        self, index: int, home: Path, app_home: Path, p2p_port: int, rpc_port: int, binary: Path, chain_id: str
    ) -> None:
        self.index = index
        self.home = home
        self.app_home = app_home
        self.p2p_port = p2p_port
        self.rpc_port = rpc_port
        self.binary = binary
        self.chain_id = chain_id
        self.node_id = node_id_from_key_file(home / "config" / "node_key.json")
        self.app: Any = None
        self.start_height = 0
        self.server: ABCIServer | None = None
        self.process: subprocess.Popen | None = None
        self.log_path = home / "cometbft.log"
        self._client: CometClient | None = None

    @property
    def rpc_url(self) -> str:
        """``http://127.0.0.1:RPC``."""
        return f"http://{LOOPBACK}:{self.rpc_port}"

    @property
    def p2p_address(self) -> str:
        """``ID@127.0.0.1:P2P`` for persistent_peers."""
        return f"{self.node_id}@{LOOPBACK}:{self.p2p_port}"

    @property
    def client(self) -> CometClient:
        """A cached :class:`CometClient` for this node's RPC."""
        if self._client is None:
            self._client = CometClient(self.rpc_url)
        return self._client

    @property
    def running(self) -> bool:
        """The cometbft process is alive."""
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the cometbft log (for error messages)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def start(self, app_factory: AppFactory, log_level: str = "error") -> None:
        """Create the app, start its ABCI server, point ``proxy_app`` at it, start cometbft."""
        if self.running:
            return
        self.app_home.mkdir(parents=True, exist_ok=True)
        self.app = app_factory(self.chain_id, self.app_home)
        self.start_height = int(self.app.info()[0])
        self.server = ABCIServer(self.app, LOOPBACK, 0).start()
        set_toml_values(self.home / "config" / "config.toml", {"": {"proxy_app": self.server.address}})
        log_file = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                [str(self.binary), "node", "--home", str(self.home), "--log_level", log_level],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log_file.close()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM cometbft (SIGKILL after ``timeout``), then stop the ABCI server and close the app."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(5)
            self.process = None
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.app is not None:
            close = getattr(self.app, "close", None)
            if callable(close):
                close()
            self.app = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def kill(self) -> None:
        """Crash the node: SIGKILL cometbft, then drop the ABCI server and app without a clean close."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(10)
            self.process = None
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.app = None
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def app_height(self) -> int:
        """Last height the in-process app committed (0 when not started)."""
        return self.server.committed_height if self.server is not None else 0

    def check_alive(self) -> None:
        """Raise :class:`CometError` with the log tail if cometbft exited."""
        if self.process is not None and self.process.poll() is not None:
            raise CometError(
                f"cometbft node{self.index} exited with {self.process.returncode}:\n{self.log_tail()}"
            )


_LIVE_NETWORKS: "weakref.WeakSet[CometNetwork]" = weakref.WeakSet()


@atexit.register
def _stop_live_networks() -> None:
    for network in list(_LIVE_NETWORKS):
        try:
            network.stop()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


class CometNetwork:
    """A loopback CometBFT testnet of ``n_validators`` nodes, each driving its own app.

    ``CometNetwork(binary, n_validators, app_factory, base_dir)`` lays out
    ``base_dir/node{i}`` (CometBFT home) and ``base_dir/node{i}/app`` (app home).
    ``start()`` initialises on first use (kept on disk, so ``stop()``/``start()`` is a restart).
    Use as a context manager to always stop the processes.
    """

    def __init__(
        self,
        binary: Path | str,
        n_validators: int,
        app_factory: AppFactory,
        base_dir: Path | str,
        *,
        chain_id: str = DEFAULT_CHAIN_ID,
        app_genesis: dict | Callable[[list[str]], dict] | None = None,
        block_time: float = 0.3,
        create_empty_blocks: bool = True,
        empty_blocks_interval: float = 0.0,
        vote_extensions_height: int = 0,
        log_level: str = "error",
    ) -> None:
        if n_validators < 1:
            raise ValueError("need at least one validator")
        self.binary = Path(binary)
        self.n_validators = n_validators
        self.app_factory = app_factory
        self.base_dir = Path(base_dir)
        self.chain_id = chain_id
        self.app_genesis = app_genesis or {}
        self.block_time = block_time
        self.create_empty_blocks = create_empty_blocks
        self.empty_blocks_interval = empty_blocks_interval
        self.vote_extensions_height = vote_extensions_height
        self.log_level = log_level
        self.nodes: list[CometNode] = []

    # ---- layout --------------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        """The testnet directory exists (keys, genesis, configs)."""
        return (self.base_dir / "network.json").is_file()

    def init(self) -> None:
        """Generate keys/genesis with ``cometbft testnet`` and write loopback configs (idempotent)."""
        if self.initialized:
            self._load_nodes()
            return
        self.base_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                str(self.binary), "testnet", "--v", str(self.n_validators), "--o", str(self.base_dir),
                "--starting-ip-address", LOOPBACK, "--populate-persistent-peers=false",
            ],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        ports = free_ports(2 * self.n_validators)
        layout = [{"p2p": ports[2 * i], "rpc": ports[2 * i + 1]} for i in range(self.n_validators)]
        genesis = json.loads((self.base_dir / "node0" / "config" / "genesis.json").read_text())
        genesis["chain_id"] = self.chain_id
        genesis["genesis_time"] = _rfc3339_now()
        genesis["initial_height"] = "1"
        genesis["app_state"] = self.app_genesis
        genesis["consensus_params"]["abci"]["vote_extensions_enable_height"] = str(self.vote_extensions_height)
        if callable(self.app_genesis):  # the app genesis names the generated consensus keys
            genesis["app_state"] = self.app_genesis(self.consensus_pub_keys())
        genesis_text = json.dumps(genesis, indent=2)
        self.nodes = [self._make_node(i, layout[i]) for i in range(self.n_validators)]
        for node in self.nodes:
            (node.home / "config" / "genesis.json").write_text(genesis_text)
            peers = ",".join(other.p2p_address for other in self.nodes if other is not node)
            self._write_config(node, peers)
        (self.base_dir / "network.json").write_text(
            json.dumps({"chain_id": self.chain_id, "nodes": layout}, indent=2)
        )

    def consensus_pub_keys(self) -> list[str]:
        """Base64 ed25519 consensus key of every node (``cometbft testnet``'s), in node order."""
        keys = []
        for i in range(self.n_validators):
            data = json.loads((self.base_dir / f"node{i}" / "config" / "priv_validator_key.json").read_text())
            keys.append(data["pub_key"]["value"])
        return keys

    def _make_node(self, i: int, ports: dict) -> CometNode:
        home = self.base_dir / f"node{i}"
        return CometNode(i, home, home / "app", ports["p2p"], ports["rpc"], self.binary, self.chain_id)

    def _load_nodes(self) -> None:
        meta = json.loads((self.base_dir / "network.json").read_text())
        if meta["chain_id"] != self.chain_id or len(meta["nodes"]) != self.n_validators:
            raise CometError(f"{self.base_dir} holds a different network: {meta}")
        if not self.nodes:
            self.nodes = [self._make_node(i, ports) for i, ports in enumerate(meta["nodes"])]

    def _write_config(self, node: CometNode, peers: str) -> None:
        step = _duration(min(1.0, max(0.1, self.block_time)))
        set_toml_values(
            node.home / "config" / "config.toml",
            {
                "": {
                    "moniker": f"node{node.index}",
                    "proxy_app": f"tcp://{LOOPBACK}:26658",  # replaced by the ABCI server's port at start
                    "abci": "socket",
                    "log_level": self.log_level,
                    "priv_validator_laddr": "",
                },
                "rpc": {
                    "laddr": f"tcp://{LOOPBACK}:{node.rpc_port}",
                    "grpc_laddr": "",
                    "pprof_laddr": "",
                    "timeout_broadcast_tx_commit": "30s",
                },
                "p2p": {
                    "laddr": f"tcp://{LOOPBACK}:{node.p2p_port}",
                    "external_address": f"{LOOPBACK}:{node.p2p_port}",
                    "seeds": "",
                    "persistent_peers": peers,
                    "pex": False,
                    "addr_book_strict": False,
                    "allow_duplicate_ip": True,
                    "flush_throttle_timeout": "10ms",
                },
                "consensus": {
                    "timeout_propose": _duration(max(1.0, 3 * self.block_time)),
                    "timeout_prevote": step,
                    "timeout_precommit": step,
                    "timeout_commit": _duration(self.block_time),
                    "create_empty_blocks": self.create_empty_blocks,
                    "create_empty_blocks_interval": f"{int(self.empty_blocks_interval)}s",
                    "peer_gossip_sleep_duration": "20ms",
                },
                "tx_index": {"indexer": "kv"},
                "instrumentation": {"prometheus": False, "prometheus_listen_addr": f"{LOOPBACK}:26660"},
            },
        )

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self, wait: bool = True, timeout: float = 60.0, min_height: int | None = None) -> "CometNetwork":
        """Init if needed, start every node; with ``wait``, block until all reach ``min_height``.

        ``min_height`` defaults to one block past the height stored on disk (so a restart waits
        for the chain to *continue*). Everything is stopped again if starting fails.
        """
        self.init()
        _LIVE_NETWORKS.add(self)
        try:
            for node in self.nodes:
                node.start(self.app_factory, self.log_level)
            if wait:
                if min_height is None:
                    min_height = max(node.start_height for node in self.nodes) + 1
                self.wait_for_height(max(1, min_height), timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node (cometbft processes first, then ABCI servers and apps)."""
        errors: list[BaseException] = []
        for node in self.nodes:
            try:
                node.stop()
            except Exception as exc:  # noqa: BLE001 - stop the others anyway
                errors.append(exc)
        _LIVE_NETWORKS.discard(self)
        if errors:
            raise CometError(f"errors while stopping: {errors}")

    def restart(self, wait: bool = True, timeout: float = 60.0) -> "CometNetwork":
        """Stop everything and start again from the on-disk state (fresh app objects)."""
        self.stop()
        return self.start(wait=wait, timeout=timeout)

    def __enter__(self) -> "CometNetwork":
        return self.start() if not self.nodes or not self.nodes[0].running else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- observation ---------------------------------------------------------------------

    @property
    def rpc_urls(self) -> list[str]:
        """``http://127.0.0.1:PORT`` of every node's RPC, in node order."""
        return [node.rpc_url for node in self.nodes]

    @property
    def client(self) -> CometClient:
        """RPC client of node 0 (the default broadcaster)."""
        return self.nodes[0].client

    def broadcaster(self, index: int = 0) -> CometClient:
        """A broadcaster bound to node ``index``'s RPC."""
        return self.nodes[index].client

    def check_alive(self) -> None:
        """Raise if any cometbft process died."""
        for node in self.nodes:
            node.check_alive()

    def heights(self) -> list[int]:
        """Latest committed height of every node."""
        return [node.client.latest_height() for node in self.nodes]

    def wait_for_height(self, height: int, timeout: float = 30.0) -> list[int]:
        """Block until every node has committed ``height`` - CometBFT stored the block and the
        node's app committed it (the RPC height runs ahead while the app executes the block) -
        and return the nodes' RPC heights. Fails fast if a node died."""

        def reached() -> list[int] | None:
            self.check_alive()
            heights = self.heights()
            apps = [node.app_height for node in self.nodes]
            return heights if min(heights) >= height and min(apps) >= height else None

        return wait_until(reached, timeout, f"all {len(self.nodes)} nodes at height {height}", interval=0.2)

    def iter_nodes(self) -> Iterator[CometNode]:
        """The nodes."""
        return iter(self.nodes)


# --------------------------------------------------------------------------------------------
# CLI entry


def run_comet_chain(
    home: Path | str,
    n_validators: int = 1,
    genesis: dict | None = None,
    *,
    chain_id: str = DEFAULT_CHAIN_ID,
    app_genesis: dict | None = None,
    binary: Path | str | None = None,
    app_factory: AppFactory | None = None,
    block_time: float = 0.5,
    timeout: float = 60.0,
    serve: bool = False,
    on_started: Callable[[CometNetwork], None] | None = None,
    log_level: str = "error",
) -> CometNetwork:
    """Start (or resume, if ``home`` holds one) a CometBFT-backed chain of ``n_validators``.

    ``genesis`` (alias ``app_genesis``) is the ChainApp genesis (CometBFT's ``app_state``); it is
    only used when ``home`` is new. Returns the running :class:`CometNetwork` — also a context
    manager, so ``with run_comet_chain(home, 3, genesis) as net: net.rpc_urls`` stops it on exit —
    or with ``serve=True`` runs until SIGINT/SIGTERM, stops everything and returns the stopped
    network. ``app_factory`` defaults to ``cosmos_chain.app.ChainApp``.
    """
    if genesis is not None and app_genesis is not None and genesis != app_genesis:
        raise ValueError("pass the app genesis once: genesis or app_genesis")
    app_genesis = genesis if genesis is not None else app_genesis
    if binary is None:
        binary = find_cometbft()
        if binary is None:
            raise CometError("cometbft not found: run `scripts/setup.sh --daemons` (or set BTCMESH_TOOLS)")
    if app_factory is None:
        from cosmos_chain.app import ChainApp

        app_factory = ChainApp
    network = CometNetwork(
        binary, n_validators, app_factory, Path(home), chain_id=chain_id, app_genesis=app_genesis,
        block_time=block_time, log_level=log_level,
    )  # fmt: skip
    network.start(timeout=timeout)
    try:
        if on_started is not None:
            on_started(network)
        if not serve:
            return network
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not stop.wait(1.0):
                network.check_alive()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    except BaseException:
        network.stop()
        raise
    network.stop()
    return network
