"""Built-in contracts: the module base class, the execution context and the module registry.

Every module is a CosmWasm-style contract at a fixed bech32 address
(``module_address(name)`` = bech32(prefix, sha256(name)[:20]), the Cosmos SDK module-account rule).
Messages are single-key JSON objects ``{"<action>": {...}}``; the base class routes them to
``exec_<action>(ctx, sender, body, funds)`` and queries to ``query_<action>(ctx, body)``.

Adding a module is one line: decorate the class with ``@register_module`` (picked up by every
``ChainApp`` created after the import), or pass an instance in ``ChainApp(..., modules=[...])`` /
``app.add_module(instance)`` before ``init_chain``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from cosmpy.crypto.address import Address

from ..errors import ContractError, InsufficientFundsError, InvalidRequestError, OutOfGasError, UnknownAddressError
from ..store import CacheKV, JsonStore, RootKV

if TYPE_CHECKING:  # pragma: no cover
    from ..app import ChainApp

__all__ = [
    "DEFAULT_PREFIX",
    "module_address",
    "Coin",
    "GasMeter",
    "Context",
    "Module",
    "register_module",
    "MODULE_REGISTRY",
    "parse_coins",
]

DEFAULT_PREFIX = "bbn"

Coin = dict  # {"denom": str, "amount": str}

MODULE_REGISTRY: dict[str, type["Module"]] = {}


def register_module(cls: type["Module"]) -> type["Module"]:
    """Class decorator: make ``cls`` a default module of every new ChainApp (keyed by ``cls.name``)."""
    if not getattr(cls, "name", None):
        raise ValueError("a module class needs a non-empty `name`")
    MODULE_REGISTRY[cls.name] = cls
    return cls


def module_address(name: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Deterministic contract address of a built-in module: bech32(prefix, sha256(name)[:20])."""
    if type(name) is str and type(prefix) is str:
        return _module_address_cached(name, prefix)
    return _module_address(name, prefix)


def _module_address(name: str, prefix: str) -> str:
    return str(Address(hashlib.sha256(name.encode()).digest()[:20], prefix=prefix))


_module_address_cached = lru_cache(maxsize=1024)(_module_address)  # fee_collector etc.: once per tx


def parse_coins(coins: Any) -> list[tuple[str, int]]:
    """Validate ``[{"denom", "amount"}]`` → [(denom, int amount)] (positive amounts, no duplicate denoms)."""
    if coins is None:
        return []
    if not isinstance(coins, list):
        raise InvalidRequestError("coins must be a list of {denom, amount}")
    out: list[tuple[str, int]] = []
    seen: set[str] = set()
    for c in coins:
        if not isinstance(c, dict) or not isinstance(c.get("denom"), str) or not c["denom"]:
            raise InvalidRequestError(f"invalid coin {c!r}")
        try:
            amount = int(str(c.get("amount")))
        except ValueError as exc:
            raise InvalidRequestError(f"invalid coin amount {c.get('amount')!r}") from exc
        if amount <= 0:
            raise InvalidRequestError(f"coin amount must be positive, got {amount}")
        if c["denom"] in seen:
            raise InvalidRequestError(f"duplicate denom {c['denom']}")
        seen.add(c["denom"])
        out.append((c["denom"], amount))
    return out


class GasMeter:
    """Deterministic gas counter; raises OutOfGasError past ``limit`` (limit 0 = unlimited)."""

    def __init__(self, limit: int = 0) -> None:
        self.limit = limit
        self.used = 0

    def consume(self, amount: int, what: str = "") -> None:
        """Charge gas."""
        self.used += int(amount)
        if self.limit and self.used > self.limit:
            raise OutOfGasError(f"out of gas in {what or 'execution'}: gas used {self.used} > limit {self.limit}")


@dataclass
class Context:
    """Everything a module sees while executing (or querying: then ``readonly`` is True)."""

    app: "ChainApp"
    kv: "CacheKV | RootKV"
    height: int
    time_unix: float
    chain_id: str
    gas: GasMeter = field(default_factory=GasMeter)
    events: list[dict[str, Any]] = field(default_factory=list)
    readonly: bool = False
    tx_hash: str = ""

    def store(self, module_name: str) -> JsonStore:
        """The JSON store of a module (modules should use only their own)."""
        return JsonStore(self.kv, "m/" + module_name)

    def emit(self, type_: str, **attrs: Any) -> None:
        """Append an event; attribute values are stringified (JSON for dicts/lists)."""
        self.events.append(
            {
                "type": type_,
                "attributes": [
                    {"key": k, "value": v if isinstance(v, str) else json.dumps(v, sort_keys=True)}
                    for k, v in attrs.items()
                ],
            }
        )

    # --- bank helpers ---------------------------------------------------------------
    def balance(self, address: str, denom: str) -> int:
        """Balance of ``address`` in ``denom``."""
        return self.app.bank.balance(self, address, denom)

    def send(self, from_addr: str, to_addr: str, coins: list[tuple[str, int]] | list[Coin]) -> None:
        """Transfer coins (raises InsufficientFundsError)."""
        self.app.bank.transfer(self, from_addr, to_addr, coins)

    # --- cross-module calls -----------------------------------------------------------
    def call(self, contract: str, sender: str, msg: dict[str, Any], funds: list[Coin] | None = None) -> Any:
        """Execute another built-in contract as ``sender`` (same tx journal; failure aborts the tx)."""
        if self.readonly:
            raise InvalidRequestError("cannot execute from a query")
        return self.app.execute_contract(self, sender, contract, msg, funds or [])

    def query(self, contract: str, msg: dict[str, Any]) -> Any:
        """Smart-query another built-in contract (name or address)."""
        return self.app.query_contract(self, contract, msg)

    def module(self, name: str) -> "Module":
        """The module instance with this name."""
        return self.app.module(name)


def _single_key(msg: Any, kind: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(msg, dict) or len(msg) != 1:
        raise InvalidRequestError(f"{kind} message must be a JSON object with exactly one key, got {msg!r:.200}")
    (action, body), = msg.items()
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InvalidRequestError(f"{kind} `{action}` body must be a JSON object")
    return action, body


class Module:
    """Base class of a built-in contract. Subclasses set ``name`` and define ``exec_*`` / ``query_*``."""

    name: ClassVar[str] = ""

    def __init__(self) -> None:
        self.address: str = ""

    def bind(self, prefix: str) -> None:
        """Called by ChainApp: fixes the contract address for this prefix."""
        self.address = module_address(self.name, prefix)

    def init_genesis(self, ctx: Context, genesis: dict[str, Any]) -> None:
        """Load this module's genesis section (``genesis[self.name]``, ``{}`` if absent)."""

    def begin_block(self, ctx: Context) -> None:
        """Hook run at the start of every block (default: nothing)."""

    def end_block(self, ctx: Context) -> None:
        """Hook run at the end of every block (default: nothing)."""

    def check_message(self, ctx: Context, sender: str, msg: Any) -> None:
        """Cheap stateful checks of an execute message in CheckTx, before the mempool (default: none);
        raise a ValueError to refuse the tx there, so it costs no fee."""

    def execute(self, ctx: Context, sender: str, msg: dict[str, Any], funds: list[Coin]) -> Any:
        """Route ``{"action": body}`` to ``exec_action(ctx, sender, body, funds)``; returns JSON-able data."""
        action, body = _single_key(msg, "execute")
        fn: Callable[..., Any] | None = getattr(self, "exec_" + action, None)
        if fn is None:
            raise ContractError(f"{self.name}: unknown execute message `{action}`")
        return fn(ctx, sender, body, funds)

    def query(self, ctx: Context, msg: dict[str, Any]) -> Any:
        """Route ``{"action": body}`` to ``query_action(ctx, body)``; returns JSON-able data."""
        action, body = _single_key(msg, "query")
        fn: Callable[..., Any] | None = getattr(self, "query_" + action, None)
        if fn is None:
            raise ContractError(f"{self.name}: unknown query `{action}`")
        return fn(ctx, body)

    def store(self, ctx: Context) -> JsonStore:
        """This module's own store."""
        return ctx.store(self.name)


def require(cond: bool, message: str, exc: type[Exception] = ContractError) -> None:
    """Raise ``exc(message)`` unless ``cond``."""
    if not cond:
        raise exc(message)


__all__ += ["require", "InsufficientFundsError", "UnknownAddressError"]
