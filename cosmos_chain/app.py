"""ChainApp: the Cosmos application (ABCI-shaped API, deterministic state, SQLite persistence).

Tx pipeline (Cosmos SDK semantics):

* **decode** (:mod:`cosmos_chain.txcodec`) → malformed bytes: code 2.
* **validate basic** (stateless, before any fee, as the SDK's ``ValidateBasic``): every address is
  bech32 with the chain prefix, coins are non-empty (MsgSend), positive, distinct, with valid denoms,
  and a contract message is a JSON object with one key whose body is an object (code 18 otherwise).
  A bad message so fails in CheckTx and costs no fee. CheckTx also runs each contract's cheap stateful
  ``check_message`` (e.g. the light client's header-reporter allow list) after the ante handler.
* **ante** on a journal: per signer the account must exist, the pubkey must hash to the signer
  address, ``sequence`` must equal the account's (code 32 otherwise, replays included), the
  SIGN_MODE_DIRECT signature must verify for (chain_id, account_number) (code 4); the fee
  (``AuthInfo.fee``) must cover ``gas_limit × min_gas_price`` in ``fee_denom`` (code 13) and is moved
  from the first signer to the ``fee_collector`` module account; sequences are incremented.
  A failing ante leaves **no** trace.
* **messages** on a nested journal: all succeed or none is applied (code of the failing error,
  log ``failed to execute message; message index: i: <reason>``). As in the SDK, fee and sequence
  changes of a tx whose messages fail in a block are kept (so the tx cannot be replayed).

Gas is deterministic: ``TX_BASE_GAS + TX_BYTE_GAS·len(tx) + SIG_GAS·signers + MSG_GAS·msgs`` plus
whatever modules charge through ``ctx.gas``. ``gas_used > gas_limit`` fails with code 11.

State is a flat KV store of canonical JSON (``m/<module>/...``); the app hash is
:func:`cosmos_chain.store.state_hash` (a bucketed Merkle tree over per-key leaf hashes, rehashed per change).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterable

from .errors import (
    ChainError,
    ContractError,
    InsufficientFeeError,
    InvalidRequestError,
    InvalidSequenceError,
    TxInMempoolError,
    UnauthorizedError,
    UnknownAddressError,
)
from .modules import default_module_classes
from .modules.auth import AuthModule, validate_address
from .modules.bank import BankModule
from .modules.base import DEFAULT_PREFIX, Context, GasMeter, Module, module_address
from .modules.hooks import set_default_hooks
from .store import CacheKV, RootKV, canonical_json, state_hash
from .txcodec import MSG_EXECUTE_URL, MSG_SEND_URL, DecodedTx, decode_tx, pubkey_address, tx_hash, tx_to_json, verify_signature

__all__ = [
    "TxResult",
    "ChainApp",
    "TX_BASE_GAS",
    "TX_BYTE_GAS",
    "SIG_GAS",
    "MSG_GAS",
    "FEE_COLLECTOR",
]

TX_BASE_GAS = 30_000
TX_BYTE_GAS = 10
SIG_GAS = 1_000
MSG_GAS = 20_000
FEE_COLLECTOR = "fee_collector"
APP_VERSION = 1


class _NotPlain(Exception):
    """A value that is not plain JSON-like data (dict/list/str/int/float/bool/None)."""


_ATOMS = frozenset({str, int, float, bool, type(None)})


def _plain_copy(obj: Any) -> Any:
    """Copy of plain JSON-like data, equal to what ``dataclasses.asdict`` makes of it (new dicts and
    lists, immutable leaves shared as deepcopy shares them); _NotPlain for anything else."""
    t = type(obj)
    if t in _ATOMS:
        return obj
    if t is list:
        return [_plain_copy(v) for v in obj]
    if t is dict:
        out = {}
        for k, v in obj.items():
            if type(k) not in _ATOMS:
                raise _NotPlain
            out[k] = _plain_copy(v)
        return out
    raise _NotPlain


@dataclass
class TxResult:
    """Result of check/deliver/simulate. ``code`` 0 = ok; otherwise ``log`` says why."""

    code: int
    log: str
    gas_wanted: int = 0
    gas_used: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    data: bytes = b""
    codespace: str = ""

    @property
    def ok(self) -> bool:
        """True iff code == 0."""
        return self.code == 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (data base64)."""
        try:  # what dataclasses.asdict gives for plain JSON-like fields, without its generic deep copy
            if type(self) is not TxResult:
                raise _NotPlain
            d = {
                "code": _plain_copy(self.code),
                "log": _plain_copy(self.log),
                "gas_wanted": _plain_copy(self.gas_wanted),
                "gas_used": _plain_copy(self.gas_used),
                "events": _plain_copy(self.events),
                "data": None,
                "codespace": _plain_copy(self.codespace),
            }
        except _NotPlain:
            d = asdict(self)
        d["data"] = base64.b64encode(self.data).decode()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TxResult":
        """Inverse of to_dict."""
        d = dict(d)
        d["data"] = base64.b64decode(d.get("data", ""))
        return cls(**d)


#: Cosmos SDK coin denom rule (``[a-zA-Z][a-zA-Z0-9/:._-]{2,127}``).
_DENOM_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9/:._-]{2,127}")


def _err_result(exc: BaseException, gas_wanted: int = 0, gas_used: int = 0, prefix: str = "") -> TxResult:
    if isinstance(exc, ChainError):
        code, space = exc.code, exc.codespace
    elif isinstance(exc, ValueError):  # btc_staking errors and other typed input errors
        code, space = ContractError.code, ContractError.codespace
    else:
        code, space = 1, "internal"
    msg = str(exc) or type(exc).__name__
    if not isinstance(exc, ValueError):
        msg = f"internal error ({type(exc).__name__}): {msg}"
    return TxResult(code, prefix + msg, gas_wanted, gas_used, [], b"", space)


class ChainIdMismatchError(ValueError):
    """``home`` holds a chain with another chain id (``stored``) than the one asked for (``wanted``)."""

    def __init__(self, home: Path | None, stored: str, wanted: str) -> None:
        super().__init__(f"home {home} holds chain {stored!r}, not {wanted!r}")
        self.home, self.stored, self.wanted = home, stored, wanted


class ChainApp:
    """The application. ``home=None`` keeps everything in memory; otherwise ``home/chain.db`` (SQLite)."""

    def __init__(
        self,
        chain_id: str,
        home: Path | str | None = None,
        *,
        modules: Iterable[Module] | None = None,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self.chain_id = chain_id
        self.prefix = prefix
        self.home = Path(home) if home is not None else None
        self._lock = threading.RLock()
        self._modules: dict[str, Module] = {}
        self._by_address: dict[str, Module] = {}
        for cls in default_module_classes():
            self.add_module(cls())
        for m in modules or []:
            self.add_module(m)
        self.root = RootKV()
        self.last_height = 0
        self.last_app_hash = b""
        self.genesis_time = 0.0
        self._deliver: CacheKV | None = None
        self._pending: dict[str, Any] | None = None
        self._check = CacheKV(self.root)
        self._blocks: dict[int, dict[str, Any]] = {}
        self._txs: dict[str, dict[str, Any]] = {}
        self._db: sqlite3.Connection | None = None
        if self.home is not None:
            self.home.mkdir(parents=True, exist_ok=True)
            self._open_db()

    # ------------------------------------------------------------------ modules
    def add_module(self, module: Module) -> None:
        """Register a built-in contract (replaces one with the same name); do it before init_chain."""
        module.bind(self.prefix)
        old = self._modules.get(module.name)
        if old is not None:
            self._by_address.pop(old.address, None)
        self._modules[module.name] = module
        self._by_address[module.address] = module
        set_default_hooks(self)

    def module(self, name_or_address: str) -> Module:
        """Module by name or contract address (UnknownAddressError if none)."""
        m = self._modules.get(name_or_address) or self._by_address.get(name_or_address)
        if m is None:
            raise UnknownAddressError(f"no contract at {name_or_address!r}")
        return m

    @property
    def modules(self) -> dict[str, Module]:
        """name → module, in registration order."""
        return dict(self._modules)

    def module_address(self, name: str) -> str:
        """Contract address of a module (or of any module-account name such as ``fee_collector``)."""
        return module_address(name, self.prefix)

    def contract_addresses(self) -> dict[str, str]:
        """name → contract address for every registered module."""
        return {n: m.address for n, m in self._modules.items()}

    @property
    def auth(self) -> AuthModule:
        """The auth module."""
        return self._modules["auth"]  # type: ignore[return-value]

    @property
    def bank(self) -> BankModule:
        """The bank module."""
        return self._modules["bank"]  # type: ignore[return-value]

    # ------------------------------------------------------------------ persistence
    def _open_db(self) -> None:
        assert self.home is not None
        db = sqlite3.connect(str(self.home / "chain.db"), check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS blocks (height INTEGER PRIMARY KEY, data TEXT NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS txs (hash TEXT PRIMARY KEY, height INTEGER, idx INTEGER, data TEXT)")
        self._db = db
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("chain_id") and meta["chain_id"] != self.chain_id:
            db.close()
            self._db = None
            raise ChainIdMismatchError(self.home, meta["chain_id"], self.chain_id)
        self.root = RootKV(dict(db.execute("SELECT key, value FROM kv").fetchall()))
        self.last_height = int(meta.get("height", 0))
        self.last_app_hash = bytes.fromhex(meta.get("app_hash", ""))
        self.genesis_time = float(meta.get("genesis_time", 0.0))
        self._check = CacheKV(self.root)

    def _persist(self, block: dict[str, Any] | None, txs: list[dict[str, Any]]) -> None:
        """Write dirty keys, meta, block and txs in one SQLite transaction (atomic per block)."""
        if self._db is None:
            self.root.dirty.clear()
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for k in sorted(self.root.dirty):
                v = self.root.data.get(k)
                if v is None:
                    db.execute("DELETE FROM kv WHERE key = ?", (k,))
                else:
                    db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (k, v))
            for k, v in (
                ("chain_id", self.chain_id),
                ("height", str(self.last_height)),
                ("app_hash", self.last_app_hash.hex()),
                ("genesis_time", repr(self.genesis_time)),
            ):
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (k, v))
            if block is not None:
                db.execute(
                    "INSERT OR REPLACE INTO blocks (height, data) VALUES (?, ?)", (block["height"], canonical_json(block))
                )
            for t in txs:
                db.execute(
                    "INSERT OR REPLACE INTO txs (hash, height, idx, data) VALUES (?, ?, ?, ?)",
                    (t["hash"], t["height"], t["index"], canonical_json(t)),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.root.dirty.clear()

    def close(self) -> None:
        """Close the database (the app must not be used afterwards)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # ------------------------------------------------------------------ ABCI-shaped API
    def info(self) -> tuple[int, bytes]:
        """(last committed height, its app hash); (0, b"") for a fresh chain."""
        with self._lock:
            return self.last_height, self.last_app_hash

    def _ctx(self, kv: CacheKV | RootKV, height: int, time_unix: float, readonly: bool = False, gas: GasMeter | None = None) -> Context:
        return Context(self, kv, height, time_unix, self.chain_id, gas or GasMeter(), [], readonly)

    def init_chain(self, genesis: dict[str, Any]) -> bytes:
        """Apply genesis (each module gets ``genesis[module.name]``); returns the genesis app hash.

        Genesis is persisted with the first commit (Cosmos semantics: CometBFT re-sends InitChain
        if the app restarts at height 0). Top-level keys: ``genesis_time`` (unix seconds, optional),
        ``auth``/``bank``/``fees``/... module sections. ``fees``: ``{"denom", "min_gas_price"}``.
        """
        with self._lock:
            if self.last_height != 0 or self.root.data:
                raise InvalidRequestError("chain already initialised (height %d)" % self.last_height)
            if not isinstance(genesis, dict):
                raise InvalidRequestError("genesis must be a JSON object")
            gid = genesis.get("chain_id")
            if gid is not None and gid != self.chain_id:
                raise InvalidRequestError(f"genesis chain_id {gid!r} != app chain_id {self.chain_id!r}")
            self.genesis_time = float(genesis.get("genesis_time", 0.0))
            kv = CacheKV(self.root)
            ctx = self._ctx(kv, 0, self.genesis_time)
            fees = genesis.get("fees", {}) or {}
            try:
                price = Decimal(str(fees.get("min_gas_price", "0")))
            except InvalidOperation as exc:
                raise InvalidRequestError(f"bad fees.min_gas_price {fees.get('min_gas_price')!r}") from exc
            if not price.is_finite() or price < 0:
                raise InvalidRequestError("fees.min_gas_price must be a non-negative decimal")
            ctx.store("app").set("fees", {"denom": str(fees.get("denom", "ubbn")), "min_gas_price": str(price)})
            ctx.store("app").set("contracts", self.contract_addresses())
            for m in self._modules.values():
                section = genesis.get(m.name, {}) or {}
                if not isinstance(section, dict):
                    raise InvalidRequestError(f"genesis section {m.name!r} must be an object")
                m.init_genesis(ctx, section)
            kv.write()
            self._check = CacheKV(self.root)
            return state_hash(self.root)

    def fee_params(self, kv: CacheKV | RootKV | None = None) -> tuple[str, Decimal]:
        """(fee denom, min gas price)."""
        d = self._ctx(kv or self.root, 0, 0.0).store("app").get("fees") or {"denom": "ubbn", "min_gas_price": "0"}
        return d["denom"], Decimal(d["min_gas_price"])

    def check_tx(self, tx_bytes: bytes) -> TxResult:
        """Mempool check: decode, signatures, sequences and fee against the check state (msgs not run)."""
        with self._lock:
            h = tx_hash(tx_bytes) if isinstance(tx_bytes, (bytes, bytearray)) else ""
            rec = self.get_tx(h) if h else None
            if rec is not None:
                e = TxInMempoolError(f"tx {h} already committed in block {rec['height']} (replay)")
                return _err_result(e)
            return self._run_tx(self._check, bytes(tx_bytes) if h else tx_bytes, "check", self.last_height + 1, 0.0)

    def simulate(self, tx_bytes: bytes) -> TxResult:
        """Run a tx (signatures not verified, fee not required, as the SDK simulates) on a throwaway copy of the latest state."""
        with self._lock:
            return self._run_tx(CacheKV(self.root), tx_bytes, "simulate", self.last_height + 1, 0.0)

    def finalize_block(self, height: int, time_unix: float, txs: list[bytes]) -> tuple[list[TxResult], bytes]:
        """Deliver ``txs`` in order on a block journal; returns per-tx results and the new app hash."""
        with self._lock:
            if height != self.last_height + 1:
                raise ValueError(f"finalize_block: expected height {self.last_height + 1}, got {height}")
            kv = CacheKV(self.root)
            bctx = self._ctx(kv, height, time_unix)
            for m in self._modules.values():
                m.begin_block(bctx)
            results: list[TxResult] = []
            for raw in txs:
                results.append(self._run_tx(kv, raw, "deliver", height, time_unix))
            ectx = self._ctx(kv, height, time_unix)
            for m in self._modules.values():
                m.end_block(ectx)
            valset = self._modules.get("valset")
            self._validator_updates = list(getattr(valset, "pending_updates", None) or [])
            app_hash = state_hash(kv)
            prev = self._blocks.get(self.last_height) or self.get_block(self.last_height) or {}
            hashes = [tx_hash(t) if isinstance(t, (bytes, bytearray)) else "" for t in txs]
            header = {
                "chain_id": self.chain_id,
                "height": height,
                "time": time_unix,
                "last_block_hash": prev.get("hash", ""),
                "app_hash": self.last_app_hash.hex(),  # CometBFT: header carries the previous app hash
                "data_hash": hashlib.sha256("".join(hashes).encode()).hexdigest(),
            }
            block = dict(header)
            block["hash"] = hashlib.sha256(canonical_json(header).encode()).hexdigest().upper()
            block["result_app_hash"] = app_hash.hex()
            block["txs"] = [base64.b64encode(bytes(t)).decode() if isinstance(t, (bytes, bytearray)) else "" for t in txs]
            block["tx_hashes"] = hashes
            block["events"] = bctx.events + ectx.events
            tx_records = [
                {"hash": hashes[i], "height": height, "index": i, "tx": block["txs"][i], "time": time_unix,
                 "result": results[i].to_dict()}
                for i in range(len(txs))
                if hashes[i]
            ]
            self._deliver = kv
            self._pending = {"height": height, "app_hash": app_hash, "block": block, "txs": tx_records}
            return results, app_hash

    def validator_updates(self) -> list[dict[str, Any]]:
        """Consensus power changes of the last ``finalize_block``: ``[{operator, pub_key (base64
        ed25519), power}]`` (power 0 removes); see :mod:`cosmos_chain.modules.valset`."""
        return list(getattr(self, "_validator_updates", []))

    def genesis_validators(self) -> list[dict[str, Any]]:
        """The initial validator set of the ``valset`` genesis section (empty: keep CometBFT's)."""
        with self._lock:
            valset = self._modules.get("valset")
            if valset is None or not hasattr(valset, "genesis_validators"):
                return []
            return valset.genesis_validators(self._ctx(CacheKV(self.root), 0, self.genesis_time, readonly=True))

    def commit(self) -> None:
        """Persist the last finalized block (atomic) and reset the check state."""
        with self._lock:
            if self._deliver is None or self._pending is None:
                raise ValueError("commit without finalize_block")
            self._deliver.write()
            p = self._pending
            self.last_height = p["height"]
            self.last_app_hash = p["app_hash"]
            self._blocks[p["height"]] = p["block"]
            for t in p["txs"]:
                self._txs[t["hash"]] = t
            self._persist(p["block"], p["txs"])
            if self._db is not None:  # keep memory small: the DB is the source of truth
                self._blocks = {p["height"]: p["block"]}
                self._txs = {}
            self._deliver = None
            self._pending = None
            self._check = CacheKV(self.root)

    # ------------------------------------------------------------------ tx execution
    def _run_tx(self, parent: CacheKV | RootKV, tx_bytes: bytes, mode: str, height: int, time_unix: float) -> TxResult:
        gas = GasMeter(0)
        try:
            dtx = decode_tx(tx_bytes)
        except ChainError as exc:
            return _err_result(exc)
        except Exception as exc:  # noqa: BLE001 - never let bad bytes crash the node
            return _err_result(InvalidRequestError(f"tx parse error: {exc}"))
        gas_wanted = dtx.gas_limit
        if mode != "simulate":
            gas.limit = dtx.gas_limit
        ante_kv = CacheKV(parent)
        ctx = self._ctx(ante_kv, height, time_unix, gas=gas)
        ctx.tx_hash = dtx.hash
        try:
            if mode != "simulate" and dtx.gas_limit <= 0:
                raise InsufficientFeeError("gas limit must be positive (simulate the tx to estimate gas)")
            if dtx.timeout_height and height > dtx.timeout_height:
                raise InvalidRequestError(f"tx timeout height {dtx.timeout_height} < block height {height}")
            self._validate_basic(dtx)
            gas.consume(TX_BASE_GAS + TX_BYTE_GAS * len(dtx.raw), "tx size")
            self._ante(ctx, dtx, mode)
        except Exception as exc:  # noqa: BLE001
            return _err_result(exc, gas_wanted, gas.used)
        if mode == "check":
            try:
                self._check_messages(ctx, dtx)
            except Exception as exc:  # noqa: BLE001 - refused before the mempool: no fee, no sequence
                return _err_result(exc, gas_wanted, gas.used)
            ante_kv.write()
            return TxResult(0, "", gas_wanted, gas.used, ctx.events, b"")
        ante_events = list(ctx.events)
        msg_kv = CacheKV(ante_kv)
        mctx = self._ctx(msg_kv, height, time_unix, gas=gas)
        mctx.tx_hash = dtx.hash
        datas: list[Any] = []
        for i, m in enumerate(dtx.msgs):
            try:
                gas.consume(MSG_GAS, "message")
                mctx.emit("message", action=m.type_url, sender=m.signer, msg_index=str(i))
                datas.append(self._exec_msg(mctx, m))
            except Exception as exc:  # noqa: BLE001
                ante_kv.write()  # fee and sequence stay spent (SDK semantics); message writes dropped
                return _err_result(exc, gas_wanted, gas.used, f"failed to execute message; message index: {i}: ")
        msg_kv.write()
        ante_kv.write()
        data = canonical_json(datas).encode()
        return TxResult(0, "", gas_wanted, gas.used, ante_events + mctx.events, data)

    def _validate_basic(self, dtx: DecodedTx) -> None:
        """Stateless message checks (see module docstring); raises InvalidRequestError."""
        for i, m in enumerate(dtx.msgs):
            where = f"message {i}"
            validate_address(m.signer, self.prefix)
            if m.type_url == MSG_SEND_URL:
                validate_address(m.proto.to_address, self.prefix)
                if not m.funds:
                    raise InvalidRequestError(f"{where}: MsgSend amount must be non-empty")
            elif m.type_url == MSG_EXECUTE_URL:
                try:
                    validate_address(m.contract, self.prefix)
                except InvalidRequestError as exc:
                    raise InvalidRequestError(f"{where}: contract: {exc}") from exc
                msg = m.msg_json
                if not isinstance(msg, dict) or len(msg) != 1 or not isinstance(next(iter(msg.values())),
                                                                                 (dict, type(None))):
                    raise InvalidRequestError(
                        f"{where}: contract message must be a JSON object {{action: {{...}}}}, got {msg!r:.120}")
            seen: set[str] = set()
            for c in m.funds:
                if not _DENOM_RE.fullmatch(c["denom"]):
                    raise InvalidRequestError(f"{where}: invalid denom {c['denom']!r:.80}")
                if int(c["amount"]) <= 0:
                    raise InvalidRequestError(f"{where}: coin amount must be positive, got {c['amount']}{c['denom']}")
                if c["denom"] in seen:
                    raise InvalidRequestError(f"{where}: duplicate denom {c['denom']}")
                seen.add(c["denom"])

    def _check_messages(self, ctx: Context, dtx: DecodedTx) -> None:
        """CheckTx only: each contract's cheap stateful checks (``Module.check_message``)."""
        for m in dtx.msgs:
            if m.type_url == MSG_EXECUTE_URL:
                module = self._by_address.get(m.contract)
                if module is not None:
                    module.check_message(ctx, m.signer, m.msg_json)

    def _ante(self, ctx: Context, dtx: DecodedTx, mode: str) -> None:
        """Signatures, sequences, fee (see module docstring)."""
        for addr in dtx.signers:
            validate_address(addr, self.prefix)
        for i, addr in enumerate(dtx.signers):
            info = dtx.signer_infos[i]
            acct = self.auth.get_account(ctx, addr)
            if acct is None:
                raise UnknownAddressError(f"account {addr} not found (it has never received funds)")
            pk_hex = acct.get("pub_key")
            pk = info.pubkey if info.pubkey is not None else (bytes.fromhex(pk_hex) if pk_hex else None)
            if pk is None:
                raise UnauthorizedError(f"no public key for {addr}: the first tx of an account must carry it")
            if pk_hex and pk.hex() != pk_hex:
                raise UnauthorizedError(f"public key does not match the one registered for {addr}")
            derived = pubkey_address(pk, self.prefix)
            if derived != addr:
                raise UnauthorizedError(f"pubkey address {derived} does not match signer {addr}")
            if info.sequence != acct["sequence"]:
                why = " (already used: replayed tx?)" if info.sequence < acct["sequence"] else ""
                raise InvalidSequenceError(
                    f"account sequence mismatch for {addr}, expected {acct['sequence']}, got {info.sequence}{why}"
                )
            ctx.gas.consume(SIG_GAS, "signature")
            if mode != "simulate":  # as in the SDK, simulation does not verify signatures
                verify_signature(dtx, i, pk, self.chain_id, acct["account_number"])
            acct["sequence"] += 1
            acct["pub_key"] = pk.hex()
            self.auth.set_account(ctx, acct)
            ctx.emit("tx", acc_seq=f"{addr}/{info.sequence}", signature=base64.b64encode(info.signature).decode())
        denom, price = self.fee_params(ctx.kv)
        if mode != "simulate" and price > 0:
            need = math.ceil(Decimal(dtx.gas_limit) * price)
            got = sum(a for d, a in dtx.fee if d == denom)
            if got < need:
                raise InsufficientFeeError(
                    f"insufficient fee; got: {got}{denom} required: {need}{denom} "
                    f"(gas_limit {dtx.gas_limit} × min gas price {price}{denom})"
                )
        payer = dtx.auth_info.fee.payer or dtx.signers[0]
        if payer not in dtx.signers:
            raise UnauthorizedError(f"fee payer {payer} is not a signer")
        if dtx.auth_info.fee.granter:
            raise UnauthorizedError("fee grants are not supported")
        if dtx.fee:
            self.bank.transfer(ctx, payer, self.module_address(FEE_COLLECTOR), dtx.fee)
            ctx.emit("tx", fee=",".join(f"{a}{d}" for d, a in dtx.fee), fee_payer=payer)

    def _exec_msg(self, ctx: Context, m: Any) -> Any:
        if m.type_url == MSG_SEND_URL:
            to = validate_address(m.proto.to_address, self.prefix)
            if not m.funds or any(int(c["amount"]) <= 0 for c in m.funds):
                raise InvalidRequestError("MsgSend amount must be non-empty and positive")
            self.bank.transfer(ctx, m.signer, to, m.funds)
            return {}
        if m.type_url == MSG_EXECUTE_URL:
            return self.execute_contract(ctx, m.signer, m.contract, m.msg_json, m.funds)
        raise InvalidRequestError(f"unsupported message {m.type_url}")

    def execute_contract(self, ctx: Context, sender: str, contract: str, msg: Any, funds: list[dict[str, str]]) -> Any:
        """Execute a built-in contract (funds are moved to the contract first, like wasmd)."""
        module = self._by_address.get(contract)
        if module is None:
            if contract in self._modules:
                raise UnknownAddressError(
                    f"{contract!r} is a module name; use its contract address {self._modules[contract].address}"
                )
            raise UnknownAddressError(f"no contract at address {contract!r}")
        if funds:
            self.bank.transfer(ctx, sender, module.address, [c for c in funds if int(c["amount"]) > 0])
        ctx.emit("execute", _contract_address=module.address)
        try:
            return module.execute(ctx, sender, msg, funds)
        except ChainError:
            raise
        except ValueError as exc:
            raise ContractError(f"{module.name}: {exc}") from exc

    def query_contract(self, ctx: Context, contract: str, msg: Any) -> Any:
        """Smart query on a context (modules use this through ``ctx.query``)."""
        module = self.module(contract)
        try:
            return module.query(ctx, msg)
        except ChainError:
            raise
        except ValueError as exc:
            raise ContractError(f"{module.name}: {exc}") from exc

    # ------------------------------------------------------------------ queries / accessors
    def query_context(self) -> Context:
        """A read-only context over the latest committed state (writes are discarded)."""
        return self._ctx(CacheKV(self.root), self.last_height, 0.0, readonly=True)

    def smart_query(self, contract: str, msg: dict[str, Any]) -> Any:
        """Smart query (contract = address or module name) against committed state → decoded JSON."""
        with self._lock:
            return self.query_contract(self.query_context(), contract, msg)

    def account(self, address: str) -> dict[str, Any] | None:
        """{address, account_number, sequence, pub_key} or None."""
        with self._lock:
            return self.auth.get_account(self.query_context(), address)

    def balance(self, address: str, denom: str) -> int:
        """Committed balance."""
        with self._lock:
            return self.bank.balance(self.query_context(), address, denom)

    def balances(self, address: str) -> dict[str, int]:
        """Committed balances (denom → amount)."""
        with self._lock:
            return self.bank.balances(self.query_context(), address)

    def get_tx(self, hash_hex: str) -> dict[str, Any] | None:
        """Committed tx record {hash, height, index, tx (b64), time, result} or None."""
        h = hash_hex.upper().removeprefix("0X")
        with self._lock:
            if h in self._txs:
                return self._txs[h]
            if self._db is not None:
                row = self._db.execute("SELECT data FROM txs WHERE hash = ?", (h,)).fetchone()
                if row:
                    return json.loads(row[0])
        return None

    def decoded_tx(self, hash_hex: str) -> tuple[dict[str, Any], DecodedTx] | None:
        """(record, decoded tx) for a committed tx."""
        rec = self.get_tx(hash_hex)
        if rec is None:
            return None
        return rec, decode_tx(base64.b64decode(rec["tx"]))

    def tx_json(self, tx_bytes: bytes) -> dict[str, Any]:
        """REST JSON of a tx."""
        return tx_to_json(decode_tx(tx_bytes))

    def get_block(self, height: int) -> dict[str, Any] | None:
        """Committed block record or None."""
        with self._lock:
            if height in self._blocks:
                return self._blocks[height]
            if self._db is not None:
                row = self._db.execute("SELECT data FROM blocks WHERE height = ?", (height,)).fetchone()
                if row:
                    return json.loads(row[0])
        return None

    def latest_block(self) -> dict[str, Any] | None:
        """The last committed block (None before the first commit)."""
        return self.get_block(self.last_height)

    def query(self, path: str, data: bytes, height: int = 0) -> tuple[int, bytes, str]:
        """ABCI query → (code, value, log). Paths:

        * ``/cosmwasm.wasm.v1.Query/SmartContractState`` (proto request/response),
        * ``/cosmos.auth.v1beta1.Query/Account``, ``/cosmos.bank.v1beta1.Query/Balance``,
          ``/cosmos.bank.v1beta1.Query/AllBalances`` (proto),
        * ``/cosmos.tx.v1beta1.Service/Simulate`` (proto), ``/app/simulate`` (raw tx → TxResult JSON),
        * ``/smart/<contract address or module name>`` (data = JSON query → JSON reply),
        * ``/app/contracts`` (→ JSON name → address).
        """
        from . import queries  # local import: protobuf glue

        with self._lock:
            if height not in (0, self.last_height):
                return 26, b"", f"only the latest committed height {self.last_height} can be queried (got {height})"
            try:
                return 0, queries.dispatch(self, path, data), ""
            except ChainError as exc:
                return exc.code, b"", str(exc)
            except ValueError as exc:
                return 5, b"", str(exc)
            except Exception as exc:  # noqa: BLE001
                return 1, b"", f"internal error ({type(exc).__name__}): {exc}"
