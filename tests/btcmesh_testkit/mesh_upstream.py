"""The upstream Mesh Security harness (``conformance/mesh-upstream``, built by ``scripts/setup.sh --daemons``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from btcmesh_testkit.paths import REPO_ROOT
from mesh_adapter.upstream import default_harness_path


def require_upstream_harness() -> Path:
    """The harness binary; when it is not built the test FAILS under ``BTCMESH_REQUIRE_DAEMONS=1`` / CI
    and is skipped elsewhere (with a loud message)."""
    path = default_harness_path(REPO_ROOT)
    if not path.is_file():
        message = (f"*** upstream mesh harness NOT BUILT at {path}: run scripts/setup.sh --daemons "
                   "(needs cargo; see README). ***")
        if os.environ.get("BTCMESH_REQUIRE_DAEMONS") == "1" or os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
