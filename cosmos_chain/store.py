"""Deterministic key/value state: a committed root store, cache overlays (journals) and JSON views.

Keys are ``str``; values are canonical JSON strings (sorted keys, no spaces), so two nodes that apply
the same txs hold byte-identical state. A tx runs on a :class:`CacheKV` over the block state and is
``write()``-n into it only on success, so a failing tx never leaves half-written state.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterator, Protocol

__all__ = ["canonical_json", "KVReader", "RootKV", "CacheKV", "JsonStore", "state_hash"]

_DELETED = object()


def canonical_json(obj: Any) -> str:
    """Sorted-key, compact JSON (the only encoding written to state)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class KVReader(Protocol):
    """Read interface shared by the root store and cache overlays."""

    def get(self, key: str) -> str | None: ...

    def iter_prefix(self, prefix: str) -> Iterator[tuple[str, str]]: ...


class RootKV:
    """The committed state: a dict plus the set of keys changed since the last persist."""

    def __init__(self, data: dict[str, str] | None = None) -> None:
        self.data: dict[str, str] = dict(data or {})
        self.dirty: set[str] = set()
        self._leaf: dict[str, bytes] = {}

    def get(self, key: str) -> str | None:
        """Value or None."""
        return self.data.get(key)

    def set(self, key: str, value: str) -> None:
        """Set a value."""
        self.data[key] = value
        self.dirty.add(key)
        self._leaf.pop(key, None)

    def delete(self, key: str) -> None:
        """Delete a key (no-op if absent)."""
        if key in self.data:
            del self.data[key]
        self.dirty.add(key)
        self._leaf.pop(key, None)

    def iter_prefix(self, prefix: str) -> Iterator[tuple[str, str]]:
        """(key, value) pairs with this prefix, sorted by key."""
        for k in sorted(k for k in self.data if k.startswith(prefix)):
            yield k, self.data[k]

    def leaf_hash(self, key: str) -> bytes:
        """Cached sha256(len(key)||key||len(value)||value)."""
        h = self._leaf.get(key)
        if h is None:
            h = _leaf(key, self.data[key])
            self._leaf[key] = h
        return h


def _leaf(key: str, value: str) -> bytes:
    kb, vb = key.encode(), value.encode()
    return hashlib.sha256(len(kb).to_bytes(4, "big") + kb + len(vb).to_bytes(4, "big") + vb).digest()


class CacheKV:
    """A write journal over a parent store; ``write()`` applies it, dropping the object discards it."""

    def __init__(self, parent: "RootKV | CacheKV") -> None:
        self.parent = parent
        self.writes: dict[str, Any] = {}

    def get(self, key: str) -> str | None:
        """Value or None (own writes first)."""
        if key in self.writes:
            v = self.writes[key]
            return None if v is _DELETED else v
        return self.parent.get(key)

    def set(self, key: str, value: str) -> None:
        """Journal a write."""
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("store keys and values must be str")
        self.writes[key] = value

    def delete(self, key: str) -> None:
        """Journal a delete."""
        self.writes[key] = _DELETED

    def iter_prefix(self, prefix: str) -> Iterator[tuple[str, str]]:
        """Merged, sorted (key, value) pairs with this prefix."""
        merged: dict[str, str] = dict(self.parent.iter_prefix(prefix))
        for k, v in self.writes.items():
            if k.startswith(prefix):
                if v is _DELETED:
                    merged.pop(k, None)
                else:
                    merged[k] = v
        for k in sorted(merged):
            yield k, merged[k]

    def write(self) -> None:
        """Apply the journal to the parent and clear it."""
        for k, v in self.writes.items():
            if v is _DELETED:
                self.parent.delete(k)
            else:
                self.parent.set(k, v)
        self.writes = {}

    def root(self) -> RootKV:
        """The committed store under this overlay."""
        p = self.parent
        while isinstance(p, CacheKV):
            p = p.parent
        return p


def state_hash(store: RootKV | CacheKV) -> bytes:
    """App hash: sha256 over the sorted per-key leaf hashes of the full state (empty state → sha256(b''))."""
    if isinstance(store, RootKV):
        root, overlay = store, {}
    else:
        # flatten the overlay chain (deepest first) into one dict of pending writes
        chain: list[CacheKV] = []
        p: RootKV | CacheKV = store
        while isinstance(p, CacheKV):
            chain.append(p)
            p = p.parent
        root = p
        overlay = {}
        for c in reversed(chain):
            overlay.update(c.writes)
    keys = set(root.data)
    for k, v in overlay.items():
        if v is _DELETED:
            keys.discard(k)
        else:
            keys.add(k)
    h = hashlib.sha256()
    for k in sorted(keys):
        if k in overlay:
            h.update(_leaf(k, overlay[k]))
        else:
            h.update(root.leaf_hash(k))
    return h.digest()


class JsonStore:
    """A prefixed JSON view over a store (one per module): ``get/set/delete/items``."""

    def __init__(self, kv: "RootKV | CacheKV", prefix: str) -> None:
        self.kv = kv
        self.prefix = prefix.rstrip("/") + "/"

    def get(self, key: str, default: Any = None) -> Any:
        """Decoded value or ``default``."""
        raw = self.kv.get(self.prefix + key)
        return default if raw is None else json.loads(raw)

    def has(self, key: str) -> bool:
        """Whether the key exists."""
        return self.kv.get(self.prefix + key) is not None

    def set(self, key: str, value: Any) -> None:
        """Store a JSON-able value (canonical encoding)."""
        if not hasattr(self.kv, "set"):
            raise PermissionError("read-only store")
        self.kv.set(self.prefix + key, canonical_json(value))

    def delete(self, key: str) -> None:
        """Delete a key."""
        self.kv.delete(self.prefix + key)

    def items(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """(key without module prefix, decoded value), sorted by key."""
        n = len(self.prefix)
        for k, v in self.kv.iter_prefix(self.prefix + prefix):
            yield k[n:], json.loads(v)
