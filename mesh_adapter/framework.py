"""CosmWasm-style contract plumbing: execution context, responses, and an in-process router.

Every contract in this package has the shape the chain expects of a built-in contract::

    contract.execute(ctx: ExecCtx, sender: str, msg: dict) -> Response
    contract.query(msg: dict) -> dict
    contract.to_state() -> dict          # JSON-serialisable, deterministic
    Contract.from_state(state) -> Contract

Messages are externally tagged JSON enums exactly as upstream (serde ``snake_case``):
``{"bond": {}}``, ``{"unbond": {"amount": {"denom": "sat", "amount": "100"}}}``.
A contract never mutates its state unless the whole message succeeds: ``execute``
works on a deep copy of its small state and a rollback frame of each per-account
:class:`~mesh_adapter.storage.Map` (``Contract.maps``), and keeps them only on success.

``MeshApp`` is a small multitest-like host (bank + router + block clock) used by the
tests and by the adapter when no chain is present. It executes response messages
depth-first like wasmd and rolls every contract and the bank back when any
sub-message fails, so a failed transaction leaves no half-written state.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

from .errors import InvalidMessage, InsufficientBalance, PaymentError, UnknownContract
from .numeric import coin, parse_coin
from .storage import Map, MapBackend

Querier = Callable[[str, dict], dict]


@dataclass
class BlockInfo:
    """The block the message executes in (``env.block``); time in unix seconds."""

    height: int = 1
    time: int = 0
    chain_id: str = "btcmesh-local"


@dataclass
class ExecCtx:
    """``ExecCtx``: who calls, with which funds, in which block, and a querier."""

    sender: str
    contract: str
    block: BlockInfo
    funds: list[dict] = field(default_factory=list)
    querier: Querier | None = None

    def query(self, contract: str, msg: dict) -> dict:
        """Smart-query another contract."""
        if self.querier is None:
            raise UnknownContract(f"no querier available to reach {contract}")
        return self.querier(contract, msg)


@dataclass
class Response:
    """A contract response: messages to dispatch, attributes, events and data."""

    messages: list[dict] = field(default_factory=list)
    attributes: list[tuple[str, str]] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    data: Any = None

    def add_attribute(self, key: str, value: Any) -> "Response":
        self.attributes.append((key, str(value)))
        return self

    def add_message(self, msg: dict) -> "Response":
        self.messages.append(msg)
        return self

    def attr(self, key: str) -> str | None:
        """First attribute value for ``key`` (or None)."""
        for k, v in self.attributes:
            if k == key:
                return v
        return None

    def to_dict(self) -> dict:
        return {
            "messages": self.messages,
            "attributes": [{"key": k, "value": v} for k, v in self.attributes],
            "events": self.events,
            "data": self.data,
        }


def wasm_execute(contract: str, msg: dict, funds: list[dict] | None = None) -> dict:
    """A ``WasmMsg::Execute`` (msg kept as JSON, not base64, for readability)."""
    return {"wasm": {"execute": {"contract_addr": contract, "msg": msg, "funds": list(funds or [])}}}


def bank_send(to: str, amount: list[dict]) -> dict:
    """A ``BankMsg::Send``."""
    return {"bank": {"send": {"to_address": to, "amount": amount}}}


def to_binary(obj: Any) -> str:
    """``to_json_binary``: JSON then base64, as the vault's ``msg: Binary`` fields carry."""
    return base64.b64encode(json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()).decode()


def from_binary(value: Any, field_name: str = "msg") -> dict:
    """Decode a ``Binary`` JSON payload; a plain dict is accepted as already decoded."""
    if isinstance(value, dict):
        return value
    if not isinstance(value, str):
        raise InvalidMessage(f"{field_name}: expected base64 JSON, got {value!r}")
    try:
        out = json.loads(base64.b64decode(value, validate=True))
    except ValueError as exc:
        raise InvalidMessage(f"{field_name}: invalid base64 JSON: {exc}") from exc
    if not isinstance(out, dict):
        raise InvalidMessage(f"{field_name}: expected a JSON object")
    return out


def split_msg(msg: Any) -> tuple[str, dict]:
    """Split an externally tagged enum ``{"variant": {...}}`` into (variant, body)."""
    if not isinstance(msg, dict) or len(msg) != 1:
        raise InvalidMessage(f"message must be an object with exactly one variant, got {msg!r}")
    (name, body), = msg.items()
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InvalidMessage(f"{name}: body must be an object")
    return name, body


def require(body: dict, key: str, kind: type | tuple[type, ...] = str) -> Any:
    """Fetch a required field with a type check."""
    if key not in body or body[key] is None:
        raise InvalidMessage(f"missing field `{key}`")
    value = body[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise InvalidMessage(f"field `{key}` has wrong type: {value!r}")
    return value


def optional(body: dict, key: str, kind: type | tuple[type, ...] = str) -> Any:
    """Fetch an optional field with a type check."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise InvalidMessage(f"field `{key}` has wrong type: {value!r}")
    return value


def nonpayable(ctx: ExecCtx) -> None:
    """``cw_utils::nonpayable``."""
    if any(int(c["amount"]) > 0 for c in ctx.funds):
        raise PaymentError("this message does no accept funds")


def must_pay(ctx: ExecCtx, denom: str) -> int:
    """``cw_utils::must_pay``: exactly one coin, of ``denom``, non-zero."""
    funds = [c for c in ctx.funds if int(c["amount"]) > 0]
    if not funds:
        raise PaymentError("no funds sent")
    if len(funds) > 1:
        raise PaymentError("sent more than one denomination")
    amount, got = parse_coin(funds[0], "funds")
    if got != denom:
        raise PaymentError(f"must send reserve token '{denom}'")
    return amount


def clamp_page_limit(limit: Any, default: int = 10, maximum: int = 30) -> int:
    """Pagination limit: default 10, at most 30."""
    if limit is None:
        return default
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise InvalidMessage(f"invalid limit {limit!r}")
    return min(limit, maximum)


_JSON_ATOMS = frozenset({str, int, float, bool, type(None)})


def json_copy(obj: Any) -> Any:
    """Deep copy of JSON-like data (dicts, lists, str/int/float/bool/None), about 3x faster than
    ``copy.deepcopy`` (no memo: contract state is JSON, so nothing in it is shared); anything else is
    handed to ``copy.deepcopy``."""
    t = type(obj)
    if t is dict:
        return {k: json_copy(v) for k, v in obj.items()}
    if t is list:
        return [json_copy(v) for v in obj]
    if t in _JSON_ATOMS:
        return obj
    return copy.deepcopy(obj)


class Contract:
    """Base class: message dispatch to ``exec_<variant>`` / ``query_<variant>`` methods.

    Subclasses keep all state in ``self.state`` (a JSON-serialisable dict); the entries named in
    ``maps`` are per-account :class:`~mesh_adapter.storage.Map` s (loaded per key when a host
    backs them with its store). ``execute`` runs the handler on a copy of the rest and a rollback
    frame of each map, and keeps them only when the handler succeeds.
    """

    kind = "contract"
    #: state entries kept as per-key :class:`Map` s
    maps: tuple[str, ...] = ()

    def __init__(self, address: str, state: dict) -> None:
        self.address = address
        self.state = state
        for name in self.maps:
            if not isinstance(state.get(name), Map):
                state[name] = Map(state.get(name) or {})

    # --- rollback -----------------------------------------------------------
    def savepoint(self) -> tuple[dict, list[tuple[Map, int]]]:
        """The current state and a rollback frame in each map."""
        return self.state, [(m, m.savepoint()) for m in self._map_values()]

    def rollback(self, point: tuple[dict, list[tuple[Map, int]]]) -> None:
        """Back to ``point`` (its frames are closed)."""
        state, frames = point
        self.state = state
        for m, depth in frames:
            m.rollback(depth)

    def release(self, point: tuple[dict, list[tuple[Map, int]]]) -> None:
        """Keep what changed since ``point`` (its frames are closed)."""
        for m, depth in point[1]:
            m.release(depth)

    def _map_values(self) -> list[Map]:
        return [self.state[n] for n in self.maps if isinstance(self.state.get(n), Map)]

    def attach_maps(self, backends: dict[str, MapBackend]) -> None:
        """Back the named maps with a host store (loaded per key, see :mod:`mesh_adapter.storage`)."""
        for name, backend in backends.items():
            if name not in self.maps:
                raise InvalidMessage(f"{self.kind} has no map `{name}`")
            self.state[name] = Map(backend=backend)

    # --- chain-facing API -------------------------------------------------
    def execute(self, ctx: ExecCtx, sender: str, msg: dict) -> Response:
        """Run one execute message; state is untouched if it raises."""
        name, body = split_msg(msg)
        handler = getattr(self, f"exec_{name}", None)
        if handler is None:
            raise InvalidMessage(f"{self.kind}: unknown execute message `{name}`")
        if ctx.sender != sender:
            ctx = copy.copy(ctx)
            ctx.sender = sender
        point = self.savepoint()
        self.state = {k: (v if isinstance(v, Map) else json_copy(v)) for k, v in point[0].items()}
        try:
            resp = handler(ctx, body)
        except Exception:
            self.rollback(point)
            raise
        self.release(point)
        return resp

    def query(self, msg: dict) -> dict:
        """Run one smart query (read-only)."""
        name, body = split_msg(msg)
        handler = getattr(self, f"query_{name}", None)
        if handler is None:
            raise InvalidMessage(f"{self.kind}: unknown query `{name}`")
        return handler(body)

    def to_state(self, with_maps: bool = True) -> dict:
        """Deterministic JSON-serialisable state (sorted keys when dumped); ``with_maps=False``
        leaves the per-key maps out (a host that stores them per key)."""
        state = {k: (v.to_dict() if isinstance(v, Map) else json_copy(v)) for k, v in self.state.items()
                 if with_maps or not isinstance(v, Map)}
        return {"kind": self.kind, "address": self.address, "state": state}

    @classmethod
    def from_state(cls, data: dict) -> "Contract":
        """Rebuild a contract from ``to_state`` output."""
        if data.get("kind") != cls.kind:
            raise InvalidMessage(f"state kind {data.get('kind')!r} is not {cls.kind!r}")
        obj = cls.__new__(cls)
        Contract.__init__(obj, data["address"], json_copy(data["state"]))
        return obj


class MeshHost(Protocol):
    """What the adapter needs from its host (``MeshApp`` or the chain)."""

    def execute(self, sender: str, contract: str, msg: dict, funds: list[dict] | None = None) -> Response: ...

    def query(self, contract: str, msg: dict) -> dict: ...

    def mint(self, address: str, coins: list[dict]) -> None: ...

    def burn(self, address: str, coins: list[dict]) -> None: ...

    def block(self) -> BlockInfo: ...


class MeshApp:
    """In-process host: bank balances, contract router and block clock (like cw-multi-test)."""

    MAX_DEPTH = 32

    def __init__(self, block: BlockInfo | None = None) -> None:
        self.contracts: dict[str, Contract] = {}
        self.balances: dict[str, dict[str, int]] = {}
        self._block = block or BlockInfo()

    # --- setup ----------------------------------------------------------
    def add_contract(self, contract: Contract) -> Contract:
        if contract.address in self.contracts:
            raise InvalidMessage(f"contract {contract.address} already exists")
        self.contracts[contract.address] = contract
        return contract

    def instantiate(self, cls: type, address: str, msg: dict, sender: str = "owner") -> Any:
        """Instantiate ``cls`` at ``address`` (``cls.instantiate(ctx, msg)``) and register it."""
        if address in self.contracts:
            raise InvalidMessage(f"contract {address} already exists")
        ctx = ExecCtx(sender=sender, contract=address, block=self.block(), funds=[], querier=self.query)
        return self.add_contract(cls.instantiate(ctx, msg))

    def block(self) -> BlockInfo:
        return BlockInfo(self._block.height, self._block.time, self._block.chain_id)

    def advance(self, seconds: int, blocks: int = 1) -> None:
        """Move the clock forward (``update_block``)."""
        if seconds < 0 or blocks < 0:
            raise InvalidMessage("time only moves forward")
        self._block.time += seconds
        self._block.height += blocks

    # --- bank -----------------------------------------------------------
    def balance(self, address: str, denom: str) -> int:
        return self.balances.get(address, {}).get(denom, 0)

    def mint(self, address: str, coins: list[dict]) -> None:
        for c in coins:
            amount, denom = parse_coin(c, "mint")
            acct = self.balances.setdefault(address, {})
            acct[denom] = acct.get(denom, 0) + amount

    def burn(self, address: str, coins: list[dict]) -> None:
        for c in coins:
            amount, denom = parse_coin(c, "burn")
            have = self.balance(address, denom)
            if have < amount:
                raise InsufficientBalance(f"{address} has {have}{denom}, cannot burn {amount}")
        for c in coins:
            amount, denom = parse_coin(c, "burn")
            self.balances[address][denom] -= amount

    def _transfer(self, src: str, dst: str, coins: list[dict]) -> None:
        for c in coins:
            amount, denom = parse_coin(c, "funds")
            have = self.balance(src, denom)
            if have < amount:
                raise InsufficientBalance(f"{src} has {have}{denom}, cannot send {amount}")
            self.balances[src][denom] = have - amount
            acct = self.balances.setdefault(dst, {})
            acct[denom] = acct.get(denom, 0) + amount

    # --- routing --------------------------------------------------------
    def _snapshot(self) -> tuple[dict, dict]:
        return ({a: c.savepoint() for a, c in self.contracts.items()}, json_copy(self.balances))

    def _restore(self, snap: tuple[dict, dict]) -> None:
        points, balances = snap
        for addr, point in points.items():
            self.contracts[addr].rollback(point)
        self.balances = balances

    def _release(self, snap: tuple[dict, dict]) -> None:
        for addr, point in snap[0].items():
            self.contracts[addr].release(point)

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """Group several ``execute``/``mint``/``burn`` calls: all or nothing."""
        snap = self._snapshot()
        try:
            yield
        except BaseException:
            self._restore(snap)
            raise
        self._release(snap)

    def query(self, contract: str, msg: dict) -> dict:
        target = self.contracts.get(contract)
        if target is None:
            raise UnknownContract(f"no contract at {contract}")
        return target.query(msg)

    def execute(self, sender: str, contract: str, msg: dict, funds: list[dict] | None = None) -> Response:
        """Execute a message and all its sub-messages atomically; returns the top response."""
        snap = self._snapshot()
        try:
            resp = self._execute(sender, contract, msg, list(funds or []), 0)
        except Exception:
            self._restore(snap)
            raise
        self._release(snap)
        return resp

    def _execute(self, sender: str, contract: str, msg: dict, funds: list[dict], depth: int) -> Response:
        if depth > self.MAX_DEPTH:
            raise InvalidMessage("sub-message recursion too deep")
        target = self.contracts.get(contract)
        if target is None:
            raise UnknownContract(f"no contract at {contract}")
        funds = [coin(*parse_coin(c, "funds")) for c in funds]
        if funds:
            self._transfer(sender, contract, funds)
        ctx = ExecCtx(sender=sender, contract=contract, block=self.block(), funds=funds, querier=self.query)
        resp = target.execute(ctx, sender, msg)
        for sub in resp.messages:
            self._dispatch(contract, sub, depth + 1)
        return resp

    def _dispatch(self, sender: str, sub: dict, depth: int) -> None:
        if "wasm" in sub:
            ex = sub["wasm"]["execute"]
            self._execute(sender, ex["contract_addr"], ex["msg"], list(ex.get("funds") or []), depth)
        elif "bank" in sub and "send" in sub["bank"]:
            send = sub["bank"]["send"]
            self._transfer(sender, send["to_address"], send["amount"])
        elif "bank" in sub and "burn" in sub["bank"]:
            self.burn(sender, sub["bank"]["burn"]["amount"])
        else:
            raise InvalidMessage(f"unsupported sub-message {sub!r}")

    def iter_contracts(self) -> Iterator[Contract]:
        return iter(self.contracts.values())

    def to_state(self) -> dict:
        """Whole-app state (contracts + bank + block) as JSON-serialisable data."""
        return {
            "block": {"height": self._block.height, "time": self._block.time, "chain_id": self._block.chain_id},
            "balances": {a: {d: str(v) for d, v in sorted(b.items())} for a, b in sorted(self.balances.items())},
            "contracts": [c.to_state() for _, c in sorted(self.contracts.items())],
        }
