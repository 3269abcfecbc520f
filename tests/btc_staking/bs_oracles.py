"""Independent script-verification oracles for btc_staking tests (kept for existing imports;
the code lives in :mod:`btcmesh_testkit.oracles`)."""

from __future__ import annotations

from btcmesh_testkit.oracles import both_accept, btclib_verify, kernel_verify

__all__ = ["both_accept", "btclib_verify", "kernel_verify"]
