"""Deterministic key/value state: a committed root store, cache overlays (journals) and JSON views.

Keys are ``str``; values are canonical JSON strings (sorted keys, no spaces), so two nodes that apply
the same txs hold byte-identical state. A tx runs on a :class:`CacheKV` over the block state and is
``write()``-n into it only on success, so a failing tx never leaves half-written state.

App hash (:func:`state_hash`): a fixed-shape Merkle tree whose cost per block is proportional to the keys
the block changed, not to the size of the state (as IAVL does for a Cosmos SDK chain). Each key goes to one
of 65,536 buckets by ``sha256(key)[:2]``; a bucket's hash is sha256 over its keys' leaf hashes
(``sha256(len(key)||key||len(value)||value)``) in key order (32 zero bytes when empty); 256 group hashes
cover 256 buckets each, and the app hash is sha256 over the 256 group hashes. The tree depends only on the
set of (key, value) pairs, so every validator, a restarted node and a node fed the same blocks in another
way agree; only touched buckets and their groups are rehashed. Hand-written: no maintained Python library
offers an incremental, persistence-agnostic authenticated map (IAVL has no Python port).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Iterator, Protocol

from sortedcontainers import SortedList

__all__ = ["canonical_json", "KVReader", "RootKV", "CacheKV", "JsonStore", "state_hash"]

_DELETED = object()


def canonical_json(obj: Any) -> str:
    """Sorted-key, compact JSON (the only encoding written to state)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class KVReader(Protocol):
    """Read interface shared by the root store and cache overlays."""

    def get(self, key: str) -> str | None: ...

    def iter_prefix(self, prefix: str) -> Iterator[tuple[str, str]]: ...

    def iter_range(self, lo: str, hi: str) -> Iterator[tuple[str, str]]: ...


def _leaf(key: str, value: str) -> bytes:
    kb, vb = key.encode(), value.encode()
    return hashlib.sha256(len(kb).to_bytes(4, "big") + kb + len(vb).to_bytes(4, "big") + vb).digest()


_BUCKET_BITS = 16
_GROUP_BITS = 8
_ZERO = bytes(32)


def _bucket(key: str) -> int:
    """Bucket of a key: the first 16 bits of sha256(key)."""
    d = hashlib.sha256(key.encode()).digest()
    return (d[0] << 8) | d[1]


def _bucket_digest(entries: dict[str, bytes]) -> bytes:
    """sha256 over the bucket's leaf hashes in key order (zero hash when empty)."""
    if not entries:
        return _ZERO
    return hashlib.sha256(b"".join(entries[k] for k in sorted(entries))).digest()


_PER_GROUP = 1 << (_BUCKET_BITS - _GROUP_BITS)
_EMPTY_GROUP = hashlib.sha256(_ZERO * _PER_GROUP).digest()


class _HashTree:
    """The bucketed Merkle tree of a :class:`RootKV` (see the module docstring)."""

    def __init__(self, data: dict[str, str]) -> None:
        self.buckets: dict[int, dict[str, bytes]] = {}
        self.bucket_hash: list[bytes] = [_ZERO] * (1 << _BUCKET_BITS)
        self.group_hash: list[bytes] = [_EMPTY_GROUP] * (1 << _GROUP_BITS)
        self.dirty: set[int] = set()
        for k, v in data.items():
            self.put(k, _leaf(k, v))
        self.root = b""
        self.refresh()

    def put(self, key: str, leaf: bytes | None) -> None:
        """Set (or, with None, remove) a key's leaf hash; hashes are recomputed by ``refresh``."""
        b = _bucket(key)
        entries = self.buckets.get(b)
        if leaf is None:
            if entries is None or key not in entries:
                return
            del entries[key]
        else:
            if entries is None:
                entries = self.buckets[b] = {}
            entries[key] = leaf
        self.dirty.add(b)

    def group_digest(self, g: int, override: dict[int, bytes]) -> bytes:
        lo = g * _PER_GROUP
        hs = self.bucket_hash[lo:lo + _PER_GROUP]
        for b, h in override.items():
            if lo <= b < lo + _PER_GROUP:
                hs[b - lo] = h
        return hashlib.sha256(b"".join(hs)).digest()

    def refresh(self) -> bytes:
        """Rehash the dirty buckets, their groups and the root; returns the root."""
        if self.dirty or not self.root:
            groups = set()
            for b in self.dirty:
                self.bucket_hash[b] = _bucket_digest(self.buckets.get(b) or {})
                groups.add(b >> (_BUCKET_BITS - _GROUP_BITS))
            for g in groups:
                self.group_hash[g] = self.group_digest(g, {})
            self.dirty.clear()
            self.root = hashlib.sha256(b"".join(self.group_hash)).digest()
        return self.root

    def root_with(self, changes: dict[str, bytes | None]) -> bytes:
        """The root if ``changes`` (key → leaf hash, None = deleted) were applied; the tree is unchanged."""
        self.refresh()
        by_bucket: dict[int, dict[str, bytes | None]] = {}
        for k, leaf in changes.items():
            by_bucket.setdefault(_bucket(k), {})[k] = leaf
        new_buckets: dict[int, bytes] = {}
        for b, ch in by_bucket.items():
            entries = dict(self.buckets.get(b) or {})
            for k, leaf in ch.items():
                if leaf is None:
                    entries.pop(k, None)
                else:
                    entries[k] = leaf
            new_buckets[b] = _bucket_digest(entries)
        if not new_buckets:
            return self.root
        groups = list(self.group_hash)
        for g in {b >> (_BUCKET_BITS - _GROUP_BITS) for b in new_buckets}:
            groups[g] = self.group_digest(g, new_buckets)
        return hashlib.sha256(b"".join(groups)).digest()


class RootKV:
    """The committed state: a dict, a sorted key index (prefix/range reads proportional to what they return),
    the app-hash tree (built on first use, then kept up to date per write) and the keys changed since the
    last persist."""

    def __init__(self, data: dict[str, str] | None = None) -> None:
        self.data: dict[str, str] = dict(data or {})
        self.dirty: set[str] = set()
        self._sorted: SortedList | None = None
        self._tree: _HashTree | None = None

    def get(self, key: str) -> str | None:
        """Value or None."""
        return self.data.get(key)

    def set(self, key: str, value: str) -> None:
        """Set a value."""
        if self._sorted is not None and key not in self.data:
            self._sorted.add(key)
        self.data[key] = value
        self.dirty.add(key)
        if self._tree is not None:
            self._tree.put(key, _leaf(key, value))

    def delete(self, key: str) -> None:
        """Delete a key (no-op if absent)."""
        if key in self.data:
            del self.data[key]
            if self._sorted is not None:
                self._sorted.remove(key)
            if self._tree is not None:
                self._tree.put(key, None)
        self.dirty.add(key)

    def _keys(self) -> SortedList:
        if self._sorted is None:
            self._sorted = SortedList(self.data)
        return self._sorted

    def iter_range(self, lo: str, hi: str) -> Iterator[tuple[str, str]]:
        """(key, value) pairs with lo <= key < hi, sorted by key (keys read before the first yield)."""
        for k in list(self._keys().irange(lo, hi, inclusive=(True, False))):
            v = self.data.get(k)
            if v is not None:
                yield k, v

    def iter_prefix(self, prefix: str) -> Iterator[tuple[str, str]]:
        """(key, value) pairs with this prefix, sorted by key."""
        if not prefix:
            yield from ((k, self.data[k]) for k in list(self._keys()) if k in self.data)
            return
        keys = []
        for k in self._keys().irange(minimum=prefix):
            if not k.startswith(prefix):
                break
            keys.append(k)
        for k in keys:
            v = self.data.get(k)
            if v is not None:
                yield k, v

    def tree(self) -> _HashTree:
        """The app-hash tree (built from all keys on first use, e.g. after a restart)."""
        if self._tree is None:
            self._tree = _HashTree(self.data)
        return self._tree

    def leaf_hash(self, key: str) -> bytes:
        """sha256(len(key)||key||len(value)||value)."""
        return _leaf(key, self.data[key])


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
        return self._merged(self.parent.iter_prefix(prefix), lambda k: k.startswith(prefix))

    def iter_range(self, lo: str, hi: str) -> Iterator[tuple[str, str]]:
        """Merged, sorted (key, value) pairs with lo <= key < hi."""
        return self._merged(self.parent.iter_range(lo, hi), lambda k: lo <= k < hi)

    def _merged(self, below: Iterator[tuple[str, str]], inside: Callable[[str], bool]) -> Iterator[tuple[str, str]]:
        """The parent's pairs overlaid with this journal's writes and deletes of keys ``inside`` selects."""
        merged: dict[str, str] = dict(below)
        for k, v in self.writes.items():
            if inside(k):
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
    """App hash of the store with every overlay's pending writes applied (see the module docstring);
    costs what the overlay changed, the root's tree is not modified."""
    if isinstance(store, RootKV):
        return store.tree().refresh()
    chain: list[CacheKV] = []
    p: RootKV | CacheKV = store
    while isinstance(p, CacheKV):
        chain.append(p)
        p = p.parent
    overlay: dict[str, Any] = {}
    for c in reversed(chain):  # deepest overlay last: its writes win
        overlay.update(c.writes)
    changes = {k: (None if v is _DELETED else _leaf(k, v)) for k, v in overlay.items()}
    return p.tree().root_with(changes)


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

    def items_range(self, lo: str, hi: str) -> Iterator[tuple[str, Any]]:
        """(key without module prefix, decoded value) for lo <= key < hi (module-relative), sorted by key."""
        n = len(self.prefix)
        for k, v in self.kv.iter_range(self.prefix + lo, self.prefix + hi):
            yield k[n:], json.loads(v)
