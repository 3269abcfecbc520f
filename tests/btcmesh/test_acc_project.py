"""Acceptance (project skeleton): pinned lower bounds, the btclib oracle pin, cosmpy's protobuf<6, and
``.ci/run`` running exactly the README's test command."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REQUIRED = ["python-bitcoinlib", "bitcoin-utils", "cosmpy", "fastapi", "pytest", "coincurve", "py-bitcoinkernel"]


def _requirements() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for extra in project.get("optional-dependencies", {}).values()
                                             for r in extra]
    out = {}
    for req in reqs:
        m = re.match(r"^([A-Za-z0-9_.-]+)\s*(.*)$", req)
        assert m, req
        out[m.group(1).lower()] = m.group(2).replace(" ", "")
    return out


def test_required_packages_have_pinned_lower_bounds() -> None:
    reqs = _requirements()
    for name in REQUIRED:
        assert name in reqs, f"{name} missing from pyproject.toml"
        assert re.search(r"(>=|==)\d", reqs[name]), f"{name} has no lower bound: {reqs[name]!r}"
    assert reqs["btclib"] == "==2023.7.12"
    assert "<6" in reqs["protobuf"].split(",")
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"] == ">=3.11"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    assert len(blocks) >= 2 and "btcmesh demo" in blocks[0], blocks[:2]  # 1: install + main job
    test_command = blocks[1].strip()                                       # 2: install + tests
    ci = (REPO / ".ci" / "run").read_text()
    commands = [ln.strip() for ln in ci.splitlines() if ln.strip() and not ln.lstrip().startswith(("#", "set ", "cd "))]
    assert commands == [f"exec {test_command}"], (commands, test_command)
    for script in (".ci/run", "scripts/test.sh", "scripts/setup.sh"):
        assert os.access(REPO / script, os.X_OK), f"{script} is not executable"
    test_sh = (REPO / "scripts" / "test.sh").read_text()
    # the test command installs the daemons and makes a missing daemon a failure, not a skip
    assert "scripts/setup.sh --daemons" in test_sh and "BTCMESH_REQUIRE_DAEMONS=1" in test_sh
    assert re.search(r"pytest", test_sh)
