"""Acceptance: ``btcmesh demo`` (the README's main job, text mode) shows progress, then the summary tables.

``test_cli.test_demo_command_json`` checks the outcome through ``--json`` (which is quiet); this runs
the plain command once and checks what a person sees: numbered progress lines as steps run, then the
Steps / Delegations / Virtual stake tables with the final states and the burned amount."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_text_output_shows_progress_then_summary_tables() -> None:
    r = subprocess.run([sys.executable, "-m", "btcmesh", "demo", "--no-api", "-k", "2"], cwd=REPO,
                       capture_output=True, text=True, timeout=240, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert out.startswith("btcmesh demo: ") and "127.0.0.1" in out.splitlines()[0]
    # progress: "[ n] step ..." then an indented "ok (x.y s)" line for every step, in order
    starts = re.findall(r"^\[\s*(\d+)\] (.+) \.\.\.$", out, re.M)
    assert len(starts) >= 15 and [int(n) for n, _ in starts] == list(range(1, len(starts) + 1))
    assert len(re.findall(r"^     ok(?: — .*)? \(\d+\.\d s\)$", out, re.M)) == len(starts)
    # the summary comes after the progress, with every step listed as ok
    summary = out[out.index("\nSteps\n"):]
    assert out.index("\nSteps\n") > out.rindex("...\n")
    for n, name in starts:
        assert re.search(rf"^\W*{n}\W+{re.escape(name)}\W+ok\W", summary, re.M), (n, name)
    assert "Delegations (BTC amounts in sat)" in summary and "Virtual stake per validator (mesh)" in summary
    rows = {line.split()[0]: line.split() for line in summary.splitlines() if re.match(r"^[AB]\s", line)}
    assert rows["A"][3] == "SLASHED" and rows["B"][3] == "WITHDRAWN", rows
    for cells in rows.values():  # staked = burned + returned + fees, to the sat
        staked, burned, returned, fees = map(int, cells[-4:])
        assert staked == burned + returned + fees and staked > 0
    assert int(rows["B"][-3]) == 0  # the honest staker lost nothing to slashing
    m = re.search(r"burned (\d+) sat \(expected floor\(value × [\d.]+\) = (\d+)\)", summary)
    assert m and m.group(1) == m.group(2) == rows["A"][-3] and int(m.group(1)) > 0
    assert "extracted key matches the FP secret: yes" in summary
    assert re.search(r"^OK in \d+\.\d s$", summary.rstrip().splitlines()[-1])
