"""Acceptance: the chain modules that the checkpoint end-to-end tests ``importorskip`` really import.

``test_checkpoint_e2e/_reorg/_restart/_btcd`` skip when ``cosmos_chain.modules.btc_light_client`` or
``.btc_staking`` cannot be imported (they were written before those modules landed). This test makes
a broken import (or a missing dependency behind it) a failure instead of a silently skipped suite."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("name", ["cosmos_chain.modules.btc_light_client", "cosmos_chain.modules.btc_staking"])
def test_chain_modules_behind_importorskip_import(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__name__ == name


def test_checkpoint_e2e_suites_are_collected_not_skipped() -> None:
    """Importing the e2e test modules must not raise pytest's Skipped (what importorskip raises)."""
    for mod in ("test_checkpoint_e2e", "test_checkpoint_reorg", "test_checkpoint_restart", "test_checkpoint_btcd"):
        try:
            importlib.import_module(mod)
        except pytest.skip.Exception as exc:  # pragma: no cover - the failure this test exists for
            pytest.fail(f"{mod} would be skipped: {exc}")
