"""Per-key contract storage: a dict-like :class:`Map` (like cw-storage-plus ``Map`` upstream).

A contract keeps each per-account map (vault users and liens, external-staking stakes, the BTC
adapter's delegation records) in a :class:`Map`. On its own a ``Map`` is an in-memory dict of
JSON values. Given a :class:`MapBackend` (the chain's mesh module passes a view over its KV
store), it loads a key only when it is read, and :meth:`Map.changes` lists only the keys read or
written, so a host writes back exactly what a message touched: the cost of a message follows what
it touches, not how many accounts exist.

Rollback: :meth:`Map.savepoint` opens a frame; the first time a key is handed out or written
inside the frame its prior value is copied into the frame; :meth:`Map.rollback` puts those values
back, :meth:`Map.release` folds the frame into the one below. Frames nest (a message inside a
transaction inside a block). Values handed out must be changed only inside the frame they were
read in (``savepoint(touch_loaded=True)`` also covers values read before it).

Hand-written: cw-storage-plus has no Python port, and the rollback frames are particular to
this host. Imports nothing but the standard library (``mesh_adapter`` imports nothing of ours).
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any, Iterable, Iterator, Protocol

__all__ = ["Map", "MapBackend", "encode_value"]

_ABSENT: Any = object()
_MISSING: Any = object()


def encode_value(value: Any) -> str:
    """Canonical JSON (sorted keys, compact): what a backend stores and compares."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _copy(obj: Any) -> Any:
    t = type(obj)
    if t is dict:
        return {k: _copy(v) for k, v in obj.items()}
    if t is list:
        return [_copy(v) for v in obj]
    return obj


class MapBackend(Protocol):
    """Where a :class:`Map` loads its keys from (read-only: the host writes :meth:`Map.changes` back)."""

    def get_raw(self, key: str) -> str | None:
        """The stored canonical JSON of ``key``, or None."""
        ...

    def keys(self) -> Iterable[str]:
        """Every stored key."""
        ...


class Map(MutableMapping):
    """A dict of JSON values, loaded lazily from an optional backend, with rollback frames."""

    def __init__(self, data: dict | None = None, backend: MapBackend | None = None) -> None:
        self._backend = backend
        self._orig: dict[str, str | None] = {}
        self._cache: dict[str, Any] = dict(data or {})
        self._frames: list[dict[str, Any]] = []

    # --- loading --------------------------------------------------------
    def _load(self, key: str) -> Any:
        if key in self._cache:
            return self._cache[key]
        if self._backend is None:
            return _ABSENT
        raw = self._backend.get_raw(key)
        self._orig[key] = raw
        value = _ABSENT if raw is None else json.loads(raw)
        self._cache[key] = value
        return value

    def _touch(self, key: str) -> Any:
        if not isinstance(key, str):
            raise TypeError(f"Map keys are str, got {key!r}")
        value = self._load(key)
        if self._frames and key not in self._frames[-1]:
            self._frames[-1][key] = _copy(value)
        return value

    # --- dict interface ---------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        value = self._touch(key)
        if value is _ABSENT:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self._touch(key)
        return default if value is _ABSENT else value

    def __setitem__(self, key: str, value: Any) -> None:
        self._touch(key)
        self._cache[key] = value

    def __delitem__(self, key: str) -> None:
        if self._touch(key) is _ABSENT:
            raise KeyError(key)
        self._cache[key] = _ABSENT

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        value = self._touch(key)
        if value is _ABSENT:
            if default is _MISSING:
                raise KeyError(key)
            return default
        self._cache[key] = _ABSENT
        return value

    def setdefault(self, key: str, default: Any = None) -> Any:
        value = self._touch(key)
        if value is _ABSENT:
            self._cache[key] = value = default
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._load(key) is not _ABSENT

    def __iter__(self) -> Iterator[str]:
        """Keys in sorted order (a snapshot: changing the map while iterating is safe)."""
        keys = set(self._backend.keys()) if self._backend is not None else set()
        for k, v in self._cache.items():
            if v is _ABSENT:
                keys.discard(k)
            else:
                keys.add(k)
        return iter(sorted(keys))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"Map({self.to_dict()!r})"

    def to_dict(self) -> dict:
        """Every entry (loads them all), deep-copied, in key order."""
        return {k: _copy(self[k]) for k in self}

    # --- rollback frames ---------------------------------------------------
    def savepoint(self, touch_loaded: bool = False) -> int:
        """Open a frame (``touch_loaded``: also save every value already loaded); returns its depth."""
        frame: dict[str, Any] = {}
        if touch_loaded:
            frame = {k: _copy(v) for k, v in self._cache.items()}
        self._frames.append(frame)
        return len(self._frames)

    def rollback(self, depth: int) -> None:
        """Undo everything since the frame ``depth`` was opened, and close it."""
        while len(self._frames) >= depth:
            for k, v in self._frames.pop().items():
                self._cache[k] = v

    def release(self, depth: int) -> None:
        """Keep the changes since frame ``depth`` and close it (the frame below can still undo them)."""
        while len(self._frames) >= depth:
            frame = self._frames.pop()
            if self._frames:
                below = self._frames[-1]
                for k, v in frame.items():
                    below.setdefault(k, v)

    # --- write-back --------------------------------------------------------
    def changes(self) -> Iterator[tuple[str, Any, Any]]:
        """``(key, value when loaded, value now)`` for every key read or written (None = absent),
        in key order; without a backend every entry counts as new."""
        for k in sorted(self._cache):
            raw = self._orig.get(k)
            old = None if raw is None else json.loads(raw)
            new = self._cache[k]
            yield k, old, (None if new is _ABSENT else new)

    def dirty(self) -> Iterator[tuple[str, str | None]]:
        """``(key, canonical JSON or None = delete)`` for the keys whose value differs from the stored one."""
        for k in sorted(self._cache):
            new = self._cache[k]
            enc = None if new is _ABSENT else encode_value(new)
            if enc != self._orig.get(k):
                yield k, enc
