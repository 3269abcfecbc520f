"""Where the tests find repository data (importable from any test module, unlike ``conftest``,
whose module name several test directories share)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = REPO_ROOT.parent / "shared"
VECTORS_PATH = SHARED_DIR / "conformance" / "babylon_btcstaking_vectors.json"
# A byte-identical copy for checkouts that do not sit next to ../shared (test_bs_vectors checks they match).
VENDORED_VECTORS_PATH = REPO_ROOT / "tests" / "data" / "babylon_btcstaking_vectors.json"
