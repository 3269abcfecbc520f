"""Exponential backoff with jitter, and the fork alert of the checkpoint service.

:class:`Backoff` spaces out retries after failures: the n-th consecutive failure waits a random time
in ``[d/2, d]`` with ``d = min(cap, base · 2^(n-1))`` ("equal jitter": never less than half the
exponential step, so retries stay spread; never more than the cap). A success resets it.

:class:`ServiceHealth` is what the service reports about itself: the fork alert (the chain's light
client prefers a fork over the service's node's chain; relaying stops until that changes), the
backoff state, and Prometheus metrics (its own ``CollectorRegistry``, so several services in one
process do not collide).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["Backoff", "ForkAlert", "ServiceHealth"]


class Backoff:
    """Consecutive-failure counter that says how long to wait (see module docstring)."""

    def __init__(self, base_s: float, cap_s: float, *, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        if base_s <= 0 or cap_s < base_s:
            raise ValueError(f"need 0 < base_s <= cap_s, got {base_s}, {cap_s}")
        self.base_s = base_s
        self.cap_s = cap_s
        self.clock = clock
        self.rng = rng if rng is not None else random.Random()
        self.failures = 0
        self.not_before = 0.0
        self.last_delay = 0.0

    def failure(self) -> float:
        """Record a failure; returns the delay before the next try (also stored in ``not_before``)."""
        self.failures += 1
        step = min(self.cap_s, self.base_s * 2 ** min(self.failures - 1, 60))
        self.last_delay = self.rng.uniform(step / 2, step)
        self.not_before = self.clock() + self.last_delay
        return self.last_delay

    def success(self) -> None:
        """Record a success: the next failure starts from ``base_s`` again."""
        self.failures = 0
        self.not_before = 0.0
        self.last_delay = 0.0

    def ready(self) -> bool:
        """Whether the wait after the last failure is over."""
        return self.clock() >= self.not_before

    def remaining(self) -> float:
        """Seconds left to wait (0 when ready)."""
        return max(0.0, self.not_before - self.clock())


@dataclass(frozen=True)
class ForkAlert:
    """The chain's light client follows a branch the service's node does not (and prefers it)."""

    chain_tip_height: int
    chain_tip_hash: str
    node_tip_height: int
    node_tip_hash: str
    since: float

    def message(self) -> str:
        """The one alert line."""
        return (f"FORK: the chain's BTC light client prefers a fork (tip {self.chain_tip_height} "
                f"{self.chain_tip_hash}) over this node's best chain (tip {self.node_tip_height} "
                f"{self.node_tip_hash}); header relay stopped until the node's chain is heavier or the "
                f"light client follows it again. Check the node and who reports headers "
                f"(insert_headers_allow_list).")


@dataclass
class ServiceHealth:
    """Alert, backoff and metrics of one checkpoint service (``CheckpointService.status()``)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    fork_alert: ForkAlert | None = None

    def __post_init__(self) -> None:
        r = self.registry
        self.fork_gauge = Gauge("btcmesh_checkpoint_fork_alert",
                                "1 while the chain's light client prefers a fork over the node's chain", registry=r)
        self.relay_failures = Counter("btcmesh_checkpoint_relay_failures",
                                      "header relays that failed (RPC, chain rejection)", registry=r)
        self.round_failures = Counter("btcmesh_checkpoint_round_failures", "rounds that raised", registry=r)
        self.relay_txs = Counter("btcmesh_checkpoint_relay_txs", "insert_headers txs sent", registry=r)
        self.backoff_seconds = Gauge("btcmesh_checkpoint_backoff_seconds",
                                     "current wait before the next relay or round after failures", registry=r)

    def serve_metrics(self, port: int = 0) -> tuple[Any, int]:
        """Expose the metrics on ``127.0.0.1:port`` (0: any free port); returns (server, bound port)."""
        from prometheus_client import start_http_server

        server, _ = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        return server, int(server.server_address[1])

    def as_dict(self, **extra: Any) -> dict[str, Any]:
        """JSON-friendly status."""
        alert = self.fork_alert
        return {"fork_alert": None if alert is None else alert.message(),
                "relay_failures": int(self.relay_failures._value.get()),
                "round_failures": int(self.round_failures._value.get()),
                "relay_txs": int(self.relay_txs._value.get()), **extra}
