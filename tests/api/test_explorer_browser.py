"""The explorer in a real browser (headless Debian Chromium through selenium), during a demo scenario.

``run_demo(hold=...)`` keeps the node, chain, checkpoint service and API up after the scenario; the
test then opens each page, compares what the page shows with the API's JSON and the demo's own
measurements, and saves a screenshot of each page under its temp dir (checked not blank). Without
chromium/chromedriver/selenium the test skips locally and FAILS in CI (``BTCMESH_REQUIRE_DAEMONS=1``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

WAIT_S = 20.0


def _require(what: str) -> None:
    message = f"*** {what} NOT FOUND: run `scripts/setup.sh --daemons` (installs chromium, chromium-driver, selenium) ***"
    if os.environ.get("BTCMESH_REQUIRE_DAEMONS") == "1" or os.environ.get("CI") == "true":  # tests/conftest.py rule
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def browser(tool_path: Callable[[str], Path]):
    """A headless Chromium driven by chromedriver (both from Debian's packages)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _require("the selenium Python package")
    chromium = tool_path("chromium")
    driver_bin = tool_path("chromedriver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(chromium)
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000",
              "--hide-scrollbars", "--force-device-scale-factor=1", "--no-first-run", "--disable-extensions",
              "--proxy-server=direct://", "--proxy-bypass-list=*"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # network requests, to check none leaves
    driver = webdriver.Chrome(service=Service(str(driver_bin)), options=opts)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, cond: Callable[[Any], Any], what: str) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(cond)
    except TimeoutException:
        body = _text(driver, "body")[:800]
        raise AssertionError(f"timed out waiting for {what}; page shows:\n{body}") from None


# The pages re-render on every refresh, so elements are read inside one script (never a stale reference).
def _text(driver: Any, css: str) -> str:
    return driver.execute_script("const e = document.querySelector(arguments[0]);"
                                 " return e ? e.innerText.trim() : '';", css)


def _attrs(driver: Any, css: str, attr: str) -> list[str | None]:
    return driver.execute_script("return [...document.querySelectorAll(arguments[0])]"
                                 ".map(e => e.getAttribute(arguments[1]));", css, attr)


def _timeline(driver: Any) -> dict[str, dict[str, Any]]:
    """step → {class, txids} of the delegation page's timeline."""
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#timeline li')].map(li => [li.dataset.step,"
        " {cls: li.className, txids: [...li.querySelectorAll('code')].map(c => c.dataset.full)}]));")


def _fmt(n: int) -> str:
    return f"{n:,}"


def _screenshot(driver: Any, shots: Path, name: str) -> Path:
    """Save a PNG of the page and check it is not blank (many colours, not one flat fill)."""
    from PIL import Image, ImageStat

    path = shots / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"screenshot of {name} failed"
    with Image.open(path) as img:
        rgb = img.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20)
        stddev = ImageStat.Stat(rgb).stddev
    assert colours is None or len(colours) > 50, f"{name} screenshot has only {len(colours)} colours (blank?)"
    assert max(stddev) > 8, f"{name} screenshot is flat (stddev {stddev}): blank page?"
    return path


def _explore(driver: Any, res: Any, shots: Path) -> dict[str, Any]:
    """Drive every page while the demo's parts still run; return what was checked (for the report)."""
    from selenium.webdriver.common.by import By

    base = res.api_url
    api = httpx.Client(base_url=base, timeout=WAIT_S, trust_env=False)
    get = lambda path: api.get(path).json()["data"]  # noqa: E731
    seen: dict[str, Any] = {}

    # ---- overview: every number equals the API's
    before = get("/v2/explorer/overview")
    driver.get(f"{base}/explorer")
    _wait(driver, lambda d: d.execute_script("return (window.btcmeshExplorer||{}).refreshes") >= 1, "overview data")
    ov = get("/v2/explorer/overview")
    stats = get("/v2/stats")
    assert ov["light_client_tip_height"] == stats["btc_tip_height"]
    expect = {
        "#ov-lc-tip": _fmt(ov["light_client_tip_height"]),
        "#ov-btc-tip": _fmt(ov["btc_tip_height"]),
        "#ov-active-tvl": f"{_fmt(stats['active_tvl'])} sat",
        "#ov-stakers": _fmt(stats["total_stakers"]),
        "#ov-delegations": _fmt(stats["total_delegations"]),
        "#ov-providers": _fmt(stats["total_finality_providers"]),
        "#ov-virtual-stake": _fmt(ov["total_virtual_stake"]),
    }
    for css, want in expect.items():
        assert _text(driver, css) == want, f"overview {css}: page {_text(driver, css)!r}, API {want!r}"
    page_height = int(_text(driver, "#ov-chain-height").replace(",", ""))
    assert before["chain_height"] <= page_height <= get("/v2/explorer/overview")["chain_height"]
    for row in ov["tvl_by_state"]:
        cell = _attrs(driver, f'#tvl-by-state tr[data-state="{row["state"]}"] .tvl-sat', "data-sat")
        assert cell == [str(row["sat"])], row
    # the demo's own outcome: A slashed, B withdrawn, nothing ACTIVE any more
    by_state = {r["state"]: r for r in ov["tvl_by_state"]}
    assert by_state["SLASHED"]["sat"] == res.delegations["A"].staked_sat
    assert by_state["WITHDRAWN"]["sat"] == res.delegations["B"].staked_sat
    seen["overview"] = {k: _text(driver, k) for k in expect}
    _screenshot(driver, shots, "overview")
    # live: the chain keeps making blocks and the page follows without a reload
    shown = _text(driver, "#ov-chain-height")
    _wait(driver, lambda d: _text(d, "#ov-chain-height") not in ("", shown), "the chain height to refresh live")

    # ---- providers table and the double-signer's page (double vote marked)
    driver.get(f"{base}/explorer/providers")
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#providers tbody tr"), "providers table")
    assert set(_attrs(driver, "#providers tbody tr", "data-pk")) == {res.bad_fp_pk, res.delegations["B"].fp_pk}
    _screenshot(driver, shots, "providers")
    driver.get(f"{base}/explorer/providers/{res.bad_fp_pk}")
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#votes tr.double"), "the double vote row")
    assert "slashed" in _text(driver, "h1").lower()
    _screenshot(driver, shots, "provider")

    # ---- delegations: filter by state, search by staker key
    driver.get(f"{base}/explorer/delegations?state=SLASHED")
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#delegations tbody tr"), "slashed delegations")
    assert _attrs(driver, "#delegations tbody tr", "data-hash") == [res.delegations["A"].staking_tx_hash]
    driver.get(f"{base}/explorer/delegations?q={res.delegations['B'].staker_pk}")
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#delegations tbody tr"), "search by staker key")
    assert _attrs(driver, "#delegations tbody tr", "data-hash") == [res.delegations["B"].staking_tx_hash]
    _screenshot(driver, shots, "delegations")

    # ---- the slashed delegation's page shows the burned amount (the demo measured it on Bitcoin)
    a = res.delegations["A"]
    driver.get(f"{base}/explorer/delegations/{a.staking_tx_hash}")
    _wait(driver, lambda d: _text(d, "#burned-sat"), "the burned amount")
    assert _text(driver, "#burned-sat") == f"{_fmt(a.burned_sat)} sat"
    assert a.burned_sat == res.expected_burned_sat > 0
    steps = {step: v["cls"] for step, v in _timeline(driver).items()}
    assert steps.get("slashed") == "done" and steps.get("slashing_tx") == "done", steps
    assert _attrs(driver, "#slashing-txid code", "data-full") == [res.slashing_txid]
    seen["burned"] = _text(driver, "#burned-sat")
    # figures other routes add (mesh slash, rewards): the page shows the API's, or "—" where a route has none
    q = f"?staking_tx_hash_hex={a.staking_tx_hash}"
    for css, path, key in (("#virtual-slashed", "/v2/mesh/slash" + q, "virtual_slashed"),
                           ("#virtual-unbonded", "/v2/mesh/slash" + q, "virtual_unbonded"),
                           ("#rewards-pending", "/v2/rewards/delegation" + q, "pending"),
                           ("#rewards-claimed", "/v2/rewards/delegation" + q, "claimed")):
        def shows_the_api(d: Any, css: str = css, path: str = path, key: str = key) -> bool:
            r = api.get(path)
            want = f"{int(r.json()['data'][key]):,}" if r.status_code == 200 else "—"
            return _text(d, css).split(" ")[0] == want
        _wait(driver, shows_the_api, f"{css} to show {path}'s {key}")
    _screenshot(driver, shots, "delegation-slashed")

    # ---- the withdrawn delegation's timeline: unbonding and withdrawal with their Bitcoin tx ids
    b = res.delegations["B"]
    driver.get(f"{base}/explorer/delegations/{b.staking_tx_hash}")
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, '#timeline li[data-step="withdrawn"].done'),
          "B's withdrawn step")
    txids = {step: v["txids"] for step, v in _timeline(driver).items()}
    assert txids["locked"] == [b.staking_tx_hash]
    assert txids["unbonding"] == [res.spends["unbonding tx B"].txid]
    assert txids["withdrawn"] == [res.spends["withdrawal B"].txid]
    assert not driver.find_elements(By.CSS_SELECTOR, "#burned-sat")  # not slashed: no slashing figures
    # each step's chain height: from the chain's records and the registry's change feed (the API ran from the start)
    chain_h = {st["step"]: st["chain_height"] for st in get(f"/v2/explorer/delegations/{b.staking_tx_hash}")["timeline"]}
    assert chain_h["attested"] <= chain_h["covenant_signed"] <= chain_h["active"] < chain_h["withdrawn"], chain_h
    if chain_h["unbonding"] is not None:  # a status held between two samples (~0.5 s) is not seen by the feed
        assert chain_h["active"] < chain_h["unbonding"] < chain_h["withdrawn"], chain_h
    _screenshot(driver, shots, "delegation-withdrawn")

    # ---- mesh: the chart has a point for each validator; the slash shows in the series and as an event
    driver.get(f"{base}/explorer/mesh")
    _wait(driver, lambda d: d.execute_script("return !!(window.btcmeshExplorer||{}).chart"), "the chart")
    chart = driver.execute_script(
        "const e = window.btcmeshExplorer; return {labels: e.chart.series.slice(1).map(s => s.label),"
        " data: e.chart.data, validators: e.history.validators.map(v => v.validator), events: e.history.events};")
    validators = set(res.virtual_stake_after)
    now = {v["validator"]: v["virtual_stake"] for v in get("/v2/explorer/mesh")["validators"]}
    assert set(chart["validators"]) == validators
    assert len(chart["data"]) == 1 + len(validators)
    for i, v in enumerate(chart["validators"]):
        points = [y for y in chart["data"][1 + i] if y is not None]
        assert points, f"no point for validator {v}"
        assert max(points) == res.virtual_stake_before[v], (v, points)  # ACTIVE stake, before the slash
        assert res.virtual_stake_after[v] in points, (v, points)  # right after the slash (B still bonded)
        assert points[-1] == now[v], (v, points)  # and what it is now (B unbonded, withdrawn)
    bad_validator = res.delegations["A"].validator
    assert any(e["validator"] == bad_validator for e in chart["events"]), chart["events"]
    assert driver.find_elements(By.CSS_SELECTOR, "#accounts tbody tr"), "no vault account rows"
    seen["chart"] = chart["labels"]
    _screenshot(driver, shots, "mesh")

    # ---- an unknown tx hash gets its message (not a blank page)
    unknown = "00" * 31 + "01"
    driver.get(f"{base}/explorer/delegations/{unknown}")
    _wait(driver, lambda d: _text(d, "#error-message"), "the unknown-tx message")
    assert f"No delegation with staking tx hash {unknown}" in _text(driver, "#error-message")
    _screenshot(driver, shots, "delegation-unknown")

    # ---- phone-sized screen: no sideways scrolling of the page itself
    driver.set_window_size(390, 844)
    driver.get(f"{base}/explorer")
    _wait(driver, lambda d: d.execute_script("return (window.btcmeshExplorer||{}).refreshes") >= 1, "phone overview")
    overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the overview is {overflow}px wider than a phone screen"
    _screenshot(driver, shots, "overview-phone")
    driver.get(f"{base}/explorer/mesh")
    _wait(driver, lambda d: d.execute_script("return !!(window.btcmeshExplorer||{}).chart"), "the chart on a phone")
    overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the mesh page is {overflow}px wider than a phone screen"
    _screenshot(driver, shots, "mesh-phone")
    driver.set_window_size(1280, 1000)
    # every request the pages made went to the service itself (no internet needed)
    urls = [m["params"]["request"]["url"] for m in
            (json.loads(e["message"])["message"] for e in driver.get_log("performance"))
            if m.get("method") == "Network.requestWillBeSent"]
    assert urls and all(u.startswith(base + "/") or u.startswith("data:") for u in urls), \
        sorted({u for u in urls if not u.startswith(base)})
    seen["requests"] = len(urls)
    return seen


def _empty_states(driver: Any, shots: Path) -> None:
    """An unreachable chain and a chain without delegations each get their message, not a blank page."""
    from api.app import BackgroundServer
    from api.memory import InMemorySource
    from api.server import app_for_url
    from btcmesh_testkit.net import closed_port

    with BackgroundServer(app_for_url(f"http://127.0.0.1:{closed_port()}", timeout=1.0)) as down:
        driver.get(f"{down.url}/explorer")
        _wait(driver, lambda d: _text(d, "#chain-unreachable"), "the chain-unreachable message")
        assert "cannot be reached" in _text(driver, "#chain-unreachable")
        assert "cannot be reached" in _text(driver, "#banner")
        _screenshot(driver, shots, "chain-unreachable")
    with BackgroundServer(InMemorySource()) as empty:
        driver.get(f"{empty.url}/explorer/delegations")
        _wait(driver, lambda d: _text(d, "#no-delegations"), "the no-delegations message")
        assert "No delegations yet" in _text(driver, "#no-delegations")
        _screenshot(driver, shots, "no-delegations")
        driver.get(f"{empty.url}/explorer")  # no chain behind it: chain-only figures are "—", the rest shows
        _wait(driver, lambda d: _text(d, "#no-delegations"), "the overview's no-delegations message")
        assert _text(driver, "#ov-delegations") == "0" and _text(driver, "#ov-chain-height") == "—"
        assert _text(driver, "#banner") == ""


def test_explorer_in_a_browser_during_the_demo(browser: Any, tmp_path: Path) -> None:
    from btcmesh.demo import DemoConfig, run_demo

    shots = Path(os.environ.get("BTCMESH_EXPLORER_SHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    checked: dict[str, Any] = {}

    def hold(res: Any) -> None:
        assert res.ok, f"demo failed: {res.error}"
        checked.update(_explore(browser, res, shots))

    result = run_demo(DemoConfig(), workdir=tmp_path / "demo", hold=hold)
    assert result.ok, result.error
    assert {"overview", "burned", "chart"} <= set(checked)
    _empty_states(browser, shots)
    assert sorted(p.name for p in shots.glob("*.png")) == sorted(
        f"{n}.png" for n in ("overview", "providers", "provider", "delegations", "delegation-slashed",
                             "delegation-withdrawn", "mesh",
                             "delegation-unknown", "overview-phone", "mesh-phone", "chain-unreachable",
                             "no-delegations"))
