"""Shared pytest fixtures: conformance data and external daemon binaries."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from btcmesh_testkit.paths import REPO_ROOT, SHARED_DIR, VECTORS_PATH, VENDORED_VECTORS_PATH  # noqa: F401


def find_tool(name: str) -> Path | None:
    """Locate an external binary (btcd, cometbft): $BTCMESH_TOOLS, .tools/bin, $PATH, ~/go/bin."""
    candidates = []
    if os.environ.get("BTCMESH_TOOLS"):
        candidates.append(Path(os.environ["BTCMESH_TOOLS"]) / name)
    candidates.append(REPO_ROOT / ".tools" / "bin" / name)
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    candidates.append(Path.home() / "go" / "bin" / name)
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def daemons_required() -> bool:
    """In CI (and scripts/test.sh) a missing daemon is a failure, never a skip."""
    return os.environ.get("BTCMESH_REQUIRE_DAEMONS") == "1" or os.environ.get("CI") == "true"


@pytest.fixture(scope="session")
def tool_path():
    """Return a function name -> Path of an external binary; fails loudly in CI when missing."""

    def lookup(name: str) -> Path:
        path = find_tool(name)
        if path is None:
            message = (
                f"*** {name} binary NOT FOUND: build it with `scripts/setup.sh --daemons` "
                f"(Go: go install). Tests that need {name} cannot run. ***"
            )
            if daemons_required():
                pytest.fail(message)
            pytest.skip(message)
        return path

    return lookup


@pytest.fixture(scope="session")
def vectors_path() -> Path:
    """Babylon's official staking test vectors: ../shared/conformance, else the vendored copy."""
    override = os.environ.get("BTCMESH_VECTORS")
    for path in ([Path(override)] if override else []) + [VECTORS_PATH, VENDORED_VECTORS_PATH]:
        if path.is_file():
            return path
    pytest.fail(f"conformance vectors missing at {VECTORS_PATH} and {VENDORED_VECTORS_PATH}")
