"""Acceptance (issue 12): the docs name only cosmpy methods that exist in the pinned cosmpy (0.12.2 has
no ``LedgerClient.query_contract_smart``; smart queries go through ``LedgerClient.wasm.SmartContractState``)."""

from __future__ import annotations

import re
from pathlib import Path

from cosmpy.aerial.client import LedgerClient

REPO = Path(__file__).resolve().parents[2]


def _docs() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_docs_name_only_existing_ledger_client_methods() -> None:
    missing = []
    for doc in _docs():
        text = doc.read_text()
        for name in re.findall(r"LedgerClient\.(\w+)", text):
            if not hasattr(LedgerClient, name) and name != "wasm":  # wasm is set per instance (REST or gRPC)
                missing.append(f"{doc.name}: LedgerClient.{name}")
        if "query_contract_smart" in text:
            missing.append(f"{doc.name}: query_contract_smart")
    assert missing == []
