"""``VirtualStakeRecorder``: virtual stake per validator over chain heights, sampled by the API service.

The chain keeps only its latest state (no queries at past heights), so the history the mesh chart
draws is recorded here: a daemon thread samples ``(chain height, validator → virtual stake)`` every
``interval`` seconds (and on each history request) and keeps one point per new height, at most
``max_points`` (the oldest are dropped). It knows the heights since the service started; the route
says from which height (``recorded_since_height``).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from api.explorer.models import StakePoint

log = logging.getLogger(__name__)

Sample = Callable[[], tuple[int, dict[str, int]]]


class VirtualStakeRecorder:
    """Thread-safe, bounded record of sampled virtual stake."""

    def __init__(self, sample: Sample, max_points: int = 5000) -> None:
        self._sample = sample
        self._points: deque[StakePoint] = deque(maxlen=max_points)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self) -> StakePoint | None:
        """Take one sample; store it if its height is new (or its stakes changed at the same height)."""
        height, stakes = self._sample()
        point = StakePoint(height=height, stakes=dict(stakes))
        with self._lock:
            last = self._points[-1] if self._points else None
            if last is not None and height < last.height:
                return None  # a lagging replica answered; keep heights ascending
            if last is not None and height == last.height:
                if last.stakes == point.stakes:
                    return None
                self._points[-1] = point
                return point
            self._points.append(point)
        return point

    def points(self) -> list[StakePoint]:
        """The recorded points, ascending heights."""
        with self._lock:
            return list(self._points)

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.record()
            except Exception as exc:  # noqa: BLE001 - a chain hiccup must not end the recorder
                log.debug("virtual-stake sample failed: %s", exc)

    def start(self, interval: float = 0.5) -> None:
        """Sample in a daemon thread until ``stop`` (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        try:
            self.record()
        except Exception as exc:  # noqa: BLE001
            log.debug("first virtual-stake sample failed: %s", exc)
        self._thread = threading.Thread(target=self._run, args=(interval,), name="explorer-history", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the sampling thread (bounded wait)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


class StatusLog:
    """The first chain height at which each delegation was seen in each registry status.

    Fed from the registry's change feed (``delegations_updated``: each changed delegation with the chain
    height of its change), so a status seen while the service runs gets the exact height of the change
    that made it; for changes before the service started only the latest one's height is known."""

    def __init__(self) -> None:
        self._seen: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()
        self.synced_height = 0

    def observe(self, staking_tx_hash: str, status: str, height: int) -> None:
        """Record ``status`` at ``height`` unless an earlier height is known for it."""
        with self._lock:
            by_status = self._seen.setdefault(staking_tx_hash, {})
            if status not in by_status or height < by_status[status]:
                by_status[status] = height
            self.synced_height = max(self.synced_height, height)

    def heights(self, staking_tx_hash: str) -> dict[str, int]:
        """status → first chain height seen, for one delegation."""
        with self._lock:
            return dict(self._seen.get(staking_tx_hash, {}))
