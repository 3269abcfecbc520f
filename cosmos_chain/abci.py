"""ABCI 2.0 socket server (CometBFT v0.38) in front of a :class:`cosmos_chain.app.ChainApp`.

CometBFT opens four connections to the app (consensus, mempool, query, snapshot). On each one
it writes ``tendermint.abci.Request`` messages framed with an unsigned-varint length prefix
(``libs/protoio`` ``binary.PutUvarint``) and reads ``Response`` messages framed the same way, in
the same order. Every request is answered; requests of all connections are serialised by one
application lock, like CometBFT's own Go socket server.

Failure policy (mirrors CometBFT's): an error inside a *consensus* call (InitChain,
FinalizeBlock, Commit, ...) is returned as ``Response.exception``, which makes CometBFT halt
the node rather than continue on a diverged state. Errors in CheckTx and Query are turned into
a non-zero ``code`` so that one bad transaction or query never stops the node. Errors never
kill the server itself.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

from cosmpy.protos.tendermint.abci import types_pb2 as abci
from cosmpy.protos.tendermint.crypto.keys_pb2 import PublicKey

__all__ = [
    "ABCIApplication",
    "ABCIServer",
    "ABCIClient",
    "LockedApp",
    "MAX_MESSAGE_SIZE",
    "encode_uvarint",
    "decode_uvarint",
    "frame",
    "events_to_proto",
    "proto_size_of_txs",
    "validator_updates_to_proto",
]

log = logging.getLogger(__name__)

MAX_MESSAGE_SIZE = 256 * 1024 * 1024
"""Largest message accepted (CometBFT allows MaxInt32; blocks are at most ~100 MB)."""

APP_VERSION = 0
"""``app_version`` reported in Info (0: the genesis consensus params' default)."""

CODE_INTERNAL_ERROR = 1
"""ABCI code returned for CheckTx/Query calls that raised inside the app."""


class ABCIApplication(Protocol):
    """The subset of ``ChainApp`` the ABCI server drives (see docs/CONTRACTS.md). Optional too:
    ``genesis_validators()`` (the InitChain set) and ``validator_updates()`` (after each
    ``finalize_block``), both ``[{pub_key: base64 ed25519, power}]``."""

    def info(self) -> tuple[int, bytes]: ...

    def init_chain(self, genesis: dict) -> bytes: ...

    def check_tx(self, tx_bytes: bytes) -> Any: ...

    def finalize_block(self, height: int, time_unix: float, txs: list[bytes]) -> tuple[list[Any], bytes]: ...

    def commit(self) -> None: ...

    def query(self, path: str, data: bytes, height: int = 0) -> tuple[int, bytes, str]: ...


# --------------------------------------------------------------------------------------------
# framing


def encode_uvarint(value: int) -> bytes:
    """Encode a non-negative int as a protobuf/Go unsigned varint."""
    if value < 0:
        raise ValueError("uvarint must be non-negative")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_uvarint(buf: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int] | None:
    """Decode a uvarint at ``pos``: ``(value, next_pos)``, or None if ``buf`` ends mid-varint."""
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            return None
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            raise ValueError("uvarint overflows 64 bits")


def frame(message: Any) -> bytes:
    """Serialise a protobuf message with its uvarint length prefix."""
    body = message.SerializeToString()
    return encode_uvarint(len(body)) + body


def proto_size_of_txs(txs: Iterable[bytes]) -> int:
    """Size of ``tendermint.types.Data{txs}`` as CometBFT's ``ComputeProtoSizeForTxs`` counts it."""
    return sum(1 + len(encode_uvarint(len(tx))) + len(tx) for tx in txs)


# --------------------------------------------------------------------------------------------
# result conversion


def _as_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _as_str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _attributes(attrs: Any) -> list[abci.EventAttribute]:
    out: list[abci.EventAttribute] = []
    if attrs is None:
        return out
    if isinstance(attrs, dict):
        attrs = list(attrs.items())
    for attr in attrs:
        if isinstance(attr, abci.EventAttribute):
            out.append(attr)
        elif isinstance(attr, dict):
            out.append(
                abci.EventAttribute(
                    key=_as_str(attr.get("key")), value=_as_str(attr.get("value")), index=bool(attr.get("index", True))
                )
            )
        elif isinstance(attr, (tuple, list)):
            out.append(abci.EventAttribute(key=_as_str(attr[0]), value=_as_str(attr[1]), index=True))
        else:
            out.append(
                abci.EventAttribute(
                    key=_as_str(getattr(attr, "key", "")),
                    value=_as_str(getattr(attr, "value", "")),
                    index=bool(getattr(attr, "index", True)),
                )
            )
    return out


def events_to_proto(events: Any) -> list[abci.Event]:
    """Convert app events to ABCI ``Event``s.

    Accepts ``abci.Event``, ``{"type", "attributes"}`` dicts (attributes as a list of
    ``{"key","value"}`` dicts / ``(key, value)`` pairs, or a mapping), ``(type, attributes)``
    pairs and objects with ``type``/``attributes``.
    """
    out: list[abci.Event] = []
    for event in events or []:
        if isinstance(event, abci.Event):
            out.append(event)
        elif isinstance(event, dict):
            out.append(abci.Event(type=_as_str(event.get("type")), attributes=_attributes(event.get("attributes"))))
        elif isinstance(event, (tuple, list)):
            out.append(abci.Event(type=_as_str(event[0]), attributes=_attributes(event[1])))
        else:
            out.append(
                abci.Event(type=_as_str(getattr(event, "type", "")), attributes=_attributes(getattr(event, "attributes", [])))
            )
    return out


def _result_fields(result: Any) -> dict[str, Any]:
    """Fields common to ``ResponseCheckTx`` and ``ExecTxResult`` from an app ``TxResult``."""
    get = (lambda k, d=None: result.get(k, d)) if isinstance(result, dict) else (lambda k, d=None: getattr(result, k, d))
    return {
        "code": int(get("code", 0) or 0),
        "data": _as_bytes(get("data")),
        "log": _as_str(get("log")),
        "info": _as_str(get("info")),
        "gas_wanted": int(get("gas_wanted", 0) or 0),
        "gas_used": int(get("gas_used", 0) or 0),
        "events": events_to_proto(get("events")),
        "codespace": _as_str(get("codespace")),
    }


def validator_updates_to_proto(updates: Iterable[dict[str, Any]]) -> list[abci.ValidatorUpdate]:
    """``[{pub_key: base64 ed25519, power}]`` → ABCI ``ValidatorUpdate``s (power 0 removes)."""
    out = []
    for u in updates:
        key = base64.b64decode(u["pub_key"])
        if len(key) != 32:
            raise ValueError(f"validator update: ed25519 key of {len(key)} bytes")
        out.append(abci.ValidatorUpdate(pub_key=PublicKey(ed25519=key), power=int(u["power"])))
    return out


def _app_list(app: Any, method: str) -> list[dict[str, Any]]:
    """``app.<method>()`` if the app has it (optional part of the ABCIApplication protocol), else []."""
    fn = getattr(app, method, None)
    return list(fn()) if callable(fn) else []


# --------------------------------------------------------------------------------------------
# server


@dataclass
class InfoRecord:
    """What an Info request was answered with (used to check the restart handshake)."""

    height: int
    app_hash: bytes
    at: float


class ABCIServer:
    """Serve one application to CometBFT over TCP (``proxy_app = tcp://127.0.0.1:PORT``).

    ``ABCIServer(app, host="127.0.0.1", port=0)``; ``start()`` binds (port 0: ephemeral, read
    ``.port``) and accepts connections in background threads; ``stop()`` closes everything.
    ``lock`` serialises every call into ``app``; other in-process users of the same app (a
    REST server) should hold it too, or use :meth:`call`.
    """

    def __init__(self, app: ABCIApplication, host: str = "127.0.0.1", port: int = 0, *, keep_hashes: int = 10_000) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the ABCI server only listens on loopback")
        self.app = app
        self.host = host
        self.port = port
        self.lock = threading.RLock()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._conns: dict[int, socket.socket] = {}
        self._threads: list[threading.Thread] = []
        self._conns_lock = threading.Lock()
        self._stopping = threading.Event()
        self._keep_hashes = keep_hashes
        # observable history
        self.info_responses: list[InfoRecord] = []
        self.app_hashes: OrderedDict[int, bytes] = OrderedDict()
        self.committed_height = 0
        self.last_app_hash = b""
        self.errors: list[str] = []
        self.request_counts: dict[str, int] = {}
        self._pending: tuple[int, bytes] | None = None

    # ---- lifecycle -----------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``tcp://host:port`` for CometBFT's ``proxy_app``."""
        return f"tcp://{self.host}:{self.port}"

    def start(self) -> "ABCIServer":
        """Bind and start accepting connections."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stopping.clear()
        self._accept_thread = threading.Thread(target=self._accept_loop, name=f"abci-accept-{self.port}", daemon=True)
        self._accept_thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every connection; join the threads (bounded)."""
        self._stopping.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        with self._conns_lock:
            conns = list(self._conns.values())
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        deadline = time.monotonic() + timeout
        for thread in [self._accept_thread, *self._threads]:
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()

    def __enter__(self) -> "ABCIServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def committed_hashes(self) -> dict[int, bytes]:
        """A copy of ``app_hashes`` (height → app hash of every block committed through this
        server) taken under the lock, so no Commit lands while it is read."""
        with self.lock:
            return dict(self.app_hashes)

    def locked_app(self) -> LockedApp:
        """The app behind a proxy that holds this server's lock for every method call."""
        return LockedApp(self.app, self.lock)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` under the application lock (for other in-process users of the app)."""
        with self.lock:
            return fn(*args, **kwargs)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._conns_lock:
                self._conns[conn.fileno()] = conn
            thread = threading.Thread(target=self._serve_conn, args=(conn,), name=f"abci-conn-{self.port}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve_conn(self, conn: socket.socket) -> None:
        """Read framed requests, answer each in order; write out after each read batch."""
        key = conn.fileno()
        buf = bytearray()
        try:
            while not self._stopping.is_set():
                chunk = conn.recv(1 << 16)
                if not chunk:
                    return
                buf += chunk
                out = bytearray()
                pos = 0
                while True:
                    decoded = decode_uvarint(buf, pos)
                    if decoded is None:
                        break
                    length, start = decoded
                    if length > MAX_MESSAGE_SIZE:
                        raise ValueError(f"ABCI message of {length} bytes exceeds the limit")
                    if len(buf) - start < length:
                        break
                    body = bytes(buf[start : start + length])
                    pos = start + length
                    out += frame(self.handle_bytes(body))
                if pos:
                    del buf[:pos]
                if out:
                    conn.sendall(out)
        except (OSError, ValueError) as exc:
            if not self._stopping.is_set():
                log.info("ABCI connection closed: %s", exc)
        finally:
            with self._conns_lock:
                self._conns.pop(key, None)
            try:
                conn.close()
            except OSError:
                pass

    # ---- dispatch ------------------------------------------------------------------------

    def handle_bytes(self, body: bytes) -> abci.Response:
        """Decode one request and answer it; never raises."""
        try:
            request = abci.Request.FromString(body)
        except Exception as exc:  # noqa: BLE001 - malformed input must not kill the server
            return self._exception(f"cannot decode request: {exc}")
        return self.handle(request)

    def handle(self, request: abci.Request) -> abci.Response:
        """Answer one decoded request; never raises (errors become exception/code responses)."""
        kind = request.WhichOneof("value")
        handler = getattr(self, f"_on_{kind}", None) if kind else None
        if handler is None:
            return self._exception(f"unknown ABCI request {kind!r}")
        try:
            with self.lock:
                self.request_counts[kind] = self.request_counts.get(kind, 0) + 1
                return handler(getattr(request, kind))
        except Exception as exc:  # noqa: BLE001 - reported to CometBFT, server keeps running
            detail = f"{kind}: {type(exc).__name__}: {exc}"
            log.error("ABCI %s failed\n%s", kind, traceback.format_exc())
            self.errors.append(detail)
            if kind == "check_tx":
                return abci.Response(check_tx=abci.ResponseCheckTx(code=CODE_INTERNAL_ERROR, log=detail))
            if kind == "query":
                return abci.Response(query=abci.ResponseQuery(code=CODE_INTERNAL_ERROR, log=detail))
            return self._exception(detail)

    @staticmethod
    def _exception(message: str) -> abci.Response:
        return abci.Response(exception=abci.ResponseException(error=message))

    def _on_echo(self, req: abci.RequestEcho) -> abci.Response:
        return abci.Response(echo=abci.ResponseEcho(message=req.message))

    def _on_flush(self, req: abci.RequestFlush) -> abci.Response:
        return abci.Response(flush=abci.ResponseFlush())

    def _on_info(self, req: abci.RequestInfo) -> abci.Response:
        height, app_hash = self.app.info()
        height = int(height)
        app_hash = bytes(app_hash or b"") if height > 0 else b""
        self.committed_height, self.last_app_hash = height, app_hash
        self.info_responses.append(InfoRecord(height, app_hash, time.time()))
        return abci.Response(
            info=abci.ResponseInfo(
                data="btcmesh",
                version="btcmesh/0.1.0",
                app_version=APP_VERSION,
                last_block_height=height,
                last_block_app_hash=app_hash,
            )
        )

    def _on_init_chain(self, req: abci.RequestInitChain) -> abci.Response:
        chain_id = getattr(self.app, "chain_id", None)
        if chain_id is not None and chain_id != req.chain_id:
            raise ValueError(f"genesis chain_id {req.chain_id!r} != app chain_id {chain_id!r}")
        genesis = json.loads(req.app_state_bytes) if req.app_state_bytes else {}
        app_hash = bytes(self.app.init_chain(genesis) or b"")
        self.last_app_hash = app_hash
        # a non-empty set from the app replaces genesis.json's validators (ABCI InitChain rule)
        validators = validator_updates_to_proto(_app_list(self.app, "genesis_validators"))
        return abci.Response(init_chain=abci.ResponseInitChain(app_hash=app_hash, validators=validators))

    def _on_check_tx(self, req: abci.RequestCheckTx) -> abci.Response:
        result = self.app.check_tx(bytes(req.tx))
        return abci.Response(check_tx=abci.ResponseCheckTx(**_result_fields(result)))

    def _on_query(self, req: abci.RequestQuery) -> abci.Response:
        code, value, log_text = self.app.query(req.path, bytes(req.data), int(req.height))
        return abci.Response(
            query=abci.ResponseQuery(
                code=int(code),
                value=bytes(value or b""),
                log=_as_str(log_text),
                height=int(req.height) or self.committed_height,
            )
        )

    def _on_prepare_proposal(self, req: abci.RequestPrepareProposal) -> abci.Response:
        chosen: list[bytes] = []
        size = 0
        limit = int(req.max_tx_bytes)
        for tx in req.txs:
            tx_size = proto_size_of_txs([tx])
            if size + tx_size > limit:
                continue
            chosen.append(bytes(tx))
            size += tx_size
        return abci.Response(prepare_proposal=abci.ResponsePrepareProposal(txs=chosen))

    def _on_process_proposal(self, req: abci.RequestProcessProposal) -> abci.Response:
        status = abci.ResponseProcessProposal.ProposalStatus.ACCEPT
        return abci.Response(process_proposal=abci.ResponseProcessProposal(status=status))

    def _on_extend_vote(self, req: abci.RequestExtendVote) -> abci.Response:
        return abci.Response(extend_vote=abci.ResponseExtendVote(vote_extension=b""))

    def _on_verify_vote_extension(self, req: abci.RequestVerifyVoteExtension) -> abci.Response:
        status = abci.ResponseVerifyVoteExtension.VerifyStatus.ACCEPT
        return abci.Response(verify_vote_extension=abci.ResponseVerifyVoteExtension(status=status))

    def _on_finalize_block(self, req: abci.RequestFinalizeBlock) -> abci.Response:
        time_unix = req.time.seconds + req.time.nanos / 1e9
        txs = [bytes(tx) for tx in req.txs]
        results, app_hash = self.app.finalize_block(int(req.height), time_unix, txs)
        results = list(results)
        if len(results) != len(txs):
            raise ValueError(f"app returned {len(results)} results for {len(txs)} txs")
        app_hash = bytes(app_hash)
        self._pending = (int(req.height), app_hash)
        return abci.Response(
            finalize_block=abci.ResponseFinalizeBlock(
                tx_results=[abci.ExecTxResult(**_result_fields(r)) for r in results],
                validator_updates=validator_updates_to_proto(_app_list(self.app, "validator_updates")),
                app_hash=app_hash,
            )
        )

    def _on_commit(self, req: abci.RequestCommit) -> abci.Response:
        self.app.commit()
        if self._pending is not None:
            height, app_hash = self._pending
            self.committed_height, self.last_app_hash = height, app_hash
            self.app_hashes[height] = app_hash
            while len(self.app_hashes) > self._keep_hashes:
                self.app_hashes.popitem(last=False)
            self._pending = None
        return abci.Response(commit=abci.ResponseCommit(retain_height=0))

    def _on_list_snapshots(self, req: abci.RequestListSnapshots) -> abci.Response:
        return abci.Response(list_snapshots=abci.ResponseListSnapshots())

    def _on_offer_snapshot(self, req: abci.RequestOfferSnapshot) -> abci.Response:
        result = abci.ResponseOfferSnapshot.Result.REJECT
        return abci.Response(offer_snapshot=abci.ResponseOfferSnapshot(result=result))

    def _on_load_snapshot_chunk(self, req: abci.RequestLoadSnapshotChunk) -> abci.Response:
        return abci.Response(load_snapshot_chunk=abci.ResponseLoadSnapshotChunk())

    def _on_apply_snapshot_chunk(self, req: abci.RequestApplySnapshotChunk) -> abci.Response:
        result = abci.ResponseApplySnapshotChunk.Result.ABORT
        return abci.Response(apply_snapshot_chunk=abci.ResponseApplySnapshotChunk(result=result))


class LockedApp:
    """Proxy that runs every method of ``app`` under ``lock`` (share an app with a REST server)."""

    def __init__(self, app: Any, lock: Any) -> None:
        object.__setattr__(self, "_app", app)
        object.__setattr__(self, "_lock", lock)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._app, name)
        if not callable(attr):
            return attr
        lock = self._lock

        def locked(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return attr(*args, **kwargs)

        return locked


# --------------------------------------------------------------------------------------------
# client (tests, diagnostics)


class ABCIClient:
    """Minimal blocking ABCI socket client speaking the same framing as CometBFT."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()

    def __enter__(self) -> "ABCIClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, *requests: abci.Request) -> None:
        """Write requests (pipelined) followed by nothing else."""
        self.sock.sendall(b"".join(frame(r) for r in requests))

    def recv(self) -> abci.Response:
        """Read one framed response (bounded by the socket timeout)."""
        while True:
            decoded = decode_uvarint(self._buf)
            if decoded is not None:
                length, start = decoded
                if len(self._buf) - start >= length:
                    body = bytes(self._buf[start : start + length])
                    del self._buf[: start + length]
                    return abci.Response.FromString(body)
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("ABCI server closed the connection")
            self._buf += chunk

    def request(self, **kwargs: Any) -> abci.Response:
        """Send ``Request(**kwargs)`` plus a Flush, return the matching response."""
        self.send(abci.Request(**kwargs), abci.Request(flush=abci.RequestFlush()))
        response = self.recv()
        flush = self.recv()
        if flush.WhichOneof("value") != "flush":
            raise ConnectionError(f"expected flush response, got {flush.WhichOneof('value')}")
        return response
