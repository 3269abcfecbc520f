"""Locate the external daemons btcmesh runs (btcd, cometbft) in the tests' search order."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["find_binary"]


def find_binary(name: str) -> Path | None:
    """An external binary: $BTCMESH_TOOLS, ./.tools/bin, $PATH, ~/go/bin (the tests' search order)."""
    candidates = [Path(os.environ["BTCMESH_TOOLS"]) / name] if os.environ.get("BTCMESH_TOOLS") else []
    candidates.append(Path(__file__).resolve().parents[1] / ".tools" / "bin" / name)
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    candidates.append(Path.home() / "go" / "bin" / name)
    return next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)
