"""``btcmesh demo --serve``: after the scenario every part keeps running, the explorer's URL is printed and
answers; Ctrl-C (SIGINT) stops it cleanly. Runs the README's command in a subprocess (~15 s)."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import httpx

from btcmesh_testkit.paths import REPO_ROOT

START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0


def test_demo_serve_prints_a_working_explorer_url_and_stops_on_ctrl_c() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "btcmesh", "demo", "--serve", "-q"], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    seen: list[str] = []
    try:
        url = None
        deadline = time.monotonic() + START_TIMEOUT_S
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                continue
            seen.append(line)
            m = re.match(r"Explorer: (http://127\.0\.0\.1:\d+/explorer)\s*$", line)
            url = m.group(1) if m else None
        assert url, "no explorer URL printed:\n" + "".join(seen[-40:])
        assert any(line.startswith("OK in") for line in seen), "the demo did not succeed:\n" + "".join(seen[-40:])
        # the parts still run after the scenario: the page and its data answer, the chain keeps producing blocks
        with httpx.Client(timeout=10.0, trust_env=False) as http:
            page = http.get(url)
            assert page.status_code == 200 and "btcmesh explorer" in page.text
            api = url.removesuffix("/explorer")
            first = http.get(f"{api}/v2/explorer/overview").json()["data"]
            assert first["total_delegations"] == 2 and first["chain_height"] > 0
            later = first
            for _ in range(50):  # bounded: the embedded chain makes a block every 0.2 s
                later = http.get(f"{api}/v2/explorer/overview").json()["data"]
                if later["chain_height"] > first["chain_height"]:
                    break
                time.sleep(0.1)
            assert later["chain_height"] > first["chain_height"], "the chain stopped after the scenario"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=STOP_TIMEOUT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
