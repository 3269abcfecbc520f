"""The explorer's JSON routes, pages and assets without a browser (fast): OpenAPI, local assets only,
figures equal to the /v2 routes, empty states and errors, the virtual-stake recorder.

The browser test over a running demo is ``test_explorer_browser.py``.
"""

from __future__ import annotations

import re
import threading

import pytest
from api_fixtures import A_RECORDS, BTC_TIP, STAKER_B, FP_GAMMA, make_source

from api import create_app
from api.explorer import explorer_url
from api.explorer.history import VirtualStakeRecorder
from api.explorer.routes import STATIC_DIR, UPLOT_VERSION
from api.memory import InMemorySource
from api.server import app_for_url
from btcmesh_testkit.net import closed_port

EXPLORER_ROUTES = ["/v2/explorer/overview", "/v2/explorer/finality-providers", "/v2/explorer/finality-providers/{btc_pk}",
                   "/v2/explorer/delegations", "/v2/explorer/delegations/{staking_tx_hash}",
                   "/v2/explorer/mesh/virtual-stake-history", "/v2/explorer/mesh"]
PAGES = ["/explorer", "/explorer/providers", f"/explorer/providers/{FP_GAMMA}", "/explorer/delegations",
         f"/explorer/delegations/{A_RECORDS['SLASHED'].staking_tx_hash_hex}", "/explorer/mesh"]


def test_every_explorer_route_is_in_openapi(client) -> None:
    spec = client.get("/openapi.json").json()
    for route in EXPLORER_ROUTES:
        op = spec["paths"][route]["get"]
        assert op["tags"] == ["explorer"] and op["summary"] and op["description"], route
        assert "200" in op["responses"] and "503" in op["responses"], route
    assert not any(p.startswith("/explorer") for p in spec["paths"]), "pages are not API routes"


@pytest.mark.parametrize("page", PAGES)
def test_pages_load_only_assets_served_by_the_service(client, page: str) -> None:
    resp = client.get(page)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    html = resp.text
    assert '<meta name="viewport"' in html  # phone-sized screens
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs, html
    for ref in refs:
        assert not re.match(r"^(https?:)?//", ref), f"{page} loads {ref} from outside the service"
        if ref.startswith("/explorer/assets/"):
            asset = client.get(ref)
            assert asset.status_code == 200 and asset.content, ref
    assert "/docs" not in refs  # the pages link the raw OpenAPI (/docs is tested in test_api_server.py)
    assert "/explorer/assets/vendor/uplot/uPlot.iife.min.js" in refs
    assert "/explorer/assets/explorer.js" in refs


def test_vendored_uplot_has_its_license_and_version() -> None:
    vendor = STATIC_DIR / "vendor" / "uplot"
    assert "MIT License" in (vendor / "LICENSE").read_text()
    assert f"uPlot {UPLOT_VERSION}" in (vendor / "VERSION.md").read_text()
    assert f"(v{UPLOT_VERSION})" in (vendor / "uPlot.iife.min.js").read_text()[:200]
    js = (STATIC_DIR / "explorer.js").read_text()
    assert not re.search(r"https?://", js), "explorer.js must not reach outside the service"


def test_page_argument_is_escaped(client) -> None:
    resp = client.get('/explorer/delegations/"><img src=x onerror=alert(1)>')
    assert resp.status_code == 200
    assert "<img src=x" not in resp.text and "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in resp.text


def test_overview_equals_the_v2_figures(client) -> None:
    ov = client.get("/v2/explorer/overview").json()["data"]
    stats = client.get("/v2/stats").json()["data"]
    assert ov["light_client_tip_height"] == stats["btc_tip_height"] == BTC_TIP
    assert ov["active_tvl"] == stats["active_tvl"]
    assert ov["total_delegations"] == stats["total_delegations"]
    assert ov["total_stakers"] == stats["total_stakers"] and ov["active_stakers"] == stats["active_stakers"]
    assert ov["total_finality_providers"] == stats["total_finality_providers"]
    by_state = {row["state"]: row for row in ov["tvl_by_state"]}
    assert by_state["ACTIVE"]["sat"] == stats["active_tvl"]
    assert by_state["ACTIVE"]["delegations"] == stats["active_delegations"]
    assert sum(r["delegations"] for r in ov["tvl_by_state"]) == stats["total_delegations"]
    # no chain behind an in-memory source: chain-only figures are unknown (null → "—"), never invented
    assert ov["chain_height"] is None and ov["last_finalized_height"] is None and ov["btc_tip_height"] is None


def test_delegations_filter_by_state_and_search(client) -> None:
    rows = client.get("/v2/explorer/delegations", params={"state": "slashed"}).json()["data"]
    assert [r["staking_tx_hash_hex"] for r in rows] == [A_RECORDS["SLASHED"].staking_tx_hash_hex]
    rows = client.get("/v2/explorer/delegations", params={"search": STAKER_B}).json()["data"]
    assert len(rows) == 25 and {r["staker_btc_pk_hex"] for r in rows} == {STAKER_B}
    one = A_RECORDS["WITHDRAWN"].staking_tx_hash_hex
    rows = client.get("/v2/explorer/delegations", params={"search": one.upper()}).json()["data"]
    assert [r["staking_tx_hash_hex"] for r in rows] == [one]
    assert client.get("/v2/explorer/delegations", params={"search": "00" * 32}).json()["data"] == []
    assert client.get("/v2/explorer/delegations", params={"state": "NOPE"}).status_code == 400


def test_delegation_page_data_and_unknown_hash(client) -> None:
    d = client.get(f"/v2/explorer/delegations/{A_RECORDS['WITHDRAWN'].staking_tx_hash_hex}").json()["data"]
    assert d["delegation"]["state"] == "WITHDRAWN"
    steps = {s["step"]: s for s in d["timeline"]}
    assert steps["locked"]["done"] and steps["locked"]["btc_height"] == 300
    assert steps["withdrawn"]["done"]
    unknown = client.get("/v2/explorer/delegations/" + "ab" * 32)
    assert unknown.status_code == 404 and "not found" in unknown.json()["message"]
    bad = client.get("/v2/explorer/delegations/xyz")
    assert bad.status_code == 400 and "staking_tx_hash" in bad.json()["message"]


def test_providers_table_and_unknown_provider(client) -> None:
    rows = client.get("/v2/explorer/finality-providers").json()["data"]
    v2 = client.get("/v2/finality-providers").json()["data"]
    assert [r["btc_pk"] for r in rows] == [f["btc_pk"] for f in v2]
    gamma = next(r for r in rows if r["btc_pk"] == FP_GAMMA)
    assert gamma["state"] == "slashed" and gamma["delegations"] == 1
    assert gamma["voting_power"] is None and gamma["virtual_stake"] is None  # not reported: "—"
    detail = client.get(f"/v2/explorer/finality-providers/{FP_GAMMA}").json()["data"]
    assert [d["state"] for d in detail["delegations"]] == ["SLASHED"]
    assert client.get("/v2/explorer/finality-providers/" + "11" * 32).status_code in (400, 404)


def test_no_delegations_yet_is_an_empty_list_not_an_error() -> None:
    from fastapi.testclient import TestClient

    client = TestClient(create_app(InMemorySource()))
    assert client.get("/v2/explorer/delegations").json()["data"] == []
    ov = client.get("/v2/explorer/overview").json()["data"]
    assert ov["total_delegations"] == 0 and all(r["sat"] == 0 for r in ov["tvl_by_state"])


def test_mesh_without_a_chain_says_so(client) -> None:
    for route in ("/v2/explorer/mesh", "/v2/explorer/mesh/virtual-stake-history"):
        resp = client.get(route)
        assert resp.status_code == 503 and "chain connection" in resp.json()["message"]


def test_unreachable_chain_is_a_503_with_the_reason() -> None:
    from fastapi.testclient import TestClient

    client = TestClient(app_for_url(f"http://127.0.0.1:{closed_port()}", timeout=1.0))
    for route in ("/v2/explorer/overview", "/v2/explorer/delegations", "/v2/explorer/mesh"):
        resp = client.get(route)
        assert resp.status_code == 503, route
        assert "unreachable" in resp.json()["message"], resp.json()
    assert client.get("/explorer").status_code == 200  # the page itself still loads and shows the message


def test_recorder_keeps_ascending_heights_bounded() -> None:
    samples = iter([(5, {"v": 1}), (5, {"v": 2}), (4, {"v": 9}), (6, {"v": 2}), (7, {"v": 3}), (8, {"v": 3})])
    rec = VirtualStakeRecorder(lambda: next(samples), max_points=3)
    for _ in range(6):
        rec.record()
    points = [(p.height, p.stakes["v"]) for p in rec.points()]
    assert points == [(6, 2), (7, 3), (8, 3)]  # same height replaced, lagging height ignored, oldest dropped


def test_recorder_thread_starts_and_stops() -> None:
    calls = threading.Event()
    heights = iter(range(1, 10_000))

    def sample() -> tuple[int, dict[str, int]]:
        calls.set()
        return next(heights), {}

    rec = VirtualStakeRecorder(sample)
    rec.start(interval=0.01)
    assert calls.wait(5)
    rec.stop()
    n = len(rec.points())
    assert n >= 1 and len(rec.points()) == n  # stopped: no more samples


def test_explorer_url() -> None:
    assert explorer_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000/explorer"
    assert explorer_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/explorer"


def test_demo_serve_needs_the_api(capsys) -> None:
    from btcmesh.cli import main

    assert main(["demo", "--serve", "--no-api"]) == 1
    assert "--serve" in capsys.readouterr().err


@pytest.fixture
def source() -> InMemorySource:  # the fixture tests/api/conftest.py provides, named here for clarity
    return make_source()


def test_devnet_up_prints_the_explorer_url(monkeypatch, capsys, tmp_path) -> None:
    """`btcmesh devnet up` prints the explorer's URL (the devnet itself is faked here: its own test runs it)."""
    import argparse

    from btcmesh.daemons import devnet

    info = {"dir": str(tmp_path), "chain_rest": "http://127.0.0.1:1", "btc_rpc": "http://127.0.0.1:2",
            "api": "http://127.0.0.1:8123"}
    monkeypatch.setattr(devnet, "up", lambda d, **kw: info)
    monkeypatch.setattr(devnet, "status", lambda d: ["api alive"])
    args = argparse.Namespace(dir=str(tmp_path), action="up", comet=0, seed="s", k=3, unbonding_time=4,
                              block_interval=0.3)
    assert not devnet.cmd_devnet(args)
    assert "explorer http://127.0.0.1:8123/explorer" in capsys.readouterr().out.splitlines()


class _FakeChain:
    """Answers the finality/mesh/registry smart queries the explorer sends, from fixed records."""

    def __init__(self, height: int) -> None:
        from api.explorer.reader import ChainReader

        self.height = height
        self.reader = ChainReader(self.query, lambda: self.height)
        self.asked: list[int] = []
        self.by_addr = {addr: name for name, addr in self.reader.addresses.items()}

    def query(self, addr: str, msg: dict) -> dict:
        module, ((name, body),) = self.by_addr[addr], msg.items()
        if (module, name) == ("finality", "pub_rand_commits"):
            return {"commits": [{"start_height": 10, "num_pub_rand": 100}]}
        if (module, name) == ("finality", "evidence"):
            return {"evidence": [{"block_height": 12, "canonical_app_hash": "aa" * 32, "fork_app_hash": "bb" * 32}]}
        if (module, name) == ("finality", "vote"):
            self.asked.append(body["height"])
            h = body["height"]
            return {"vote": {"app_hash": f"{h:064x}"} if h % 2 == 0 or h == 12 else None}
        raise ValueError(f"unknown query {module} {name}")


def test_votes_scan_the_committed_heights_newest_first_with_double_votes() -> None:
    from api.explorer.data import ExplorerService
    from api.service import StakingService

    chain = _FakeChain(height=60)
    svc = ExplorerService(StakingService(make_source()), chain.reader)
    votes, lo, hi = svc._votes("ab" * 32, before=None, limit=5)
    assert (lo, hi) == (56, 60)  # the newest 5 committed heights up to the chain height
    assert [v.height for v in votes] == [60, 58, 56, 12]  # odd heights: no vote; 12: evidence, always included
    assert [v.double_vote for v in votes] == [False, False, False, True]
    assert votes[-1].fork_app_hash == "bb" * 32
    votes, lo, hi = svc._votes("ab" * 32, before=12, limit=100)  # paging below a height
    assert (lo, hi) == (10, 11) and [v.height for v in votes] == [12, 10]
    chain.height = 500  # beyond the committed range: only committed heights are asked
    chain.asked.clear()
    svc._votes("ab" * 32, before=None, limit=500)
    assert max(chain.asked) == 109 and min(chain.asked) == 10 and len(chain.asked) == 100


def test_btcmesh_api_can_show_the_bitcoin_tip() -> None:
    """`btcmesh api --btc-rpc URL` hands the node's block count to the explorer's overview."""
    from btcmesh.cli import build_parser
    from api.server import uvicorn_config

    args = build_parser().parse_args(["api", "--chain-rest", "http://127.0.0.1:1317",
                                      "--btc-rpc", "http://u:p@127.0.0.1:18443", "--btc-dialect", "btcd"])
    assert (args.btc_rpc, args.btc_dialect) == ("http://u:p@127.0.0.1:18443", "btcd")
    config = uvicorn_config(f"http://127.0.0.1:{closed_port()}", btc_tip=lambda: 321)
    app = config.app
    while not hasattr(app, "state"):  # under the Host-check middleware
        app = app.app
    assert app.state.explorer.btc_tip() == 321


def test_status_feed_gives_the_timeline_its_chain_heights() -> None:
    """The registry's change feed (paged) records the first chain height of each status."""
    from api.explorer.data import ExplorerService
    from api.explorer.reader import ChainReader
    from api.service import StakingService

    h = A_RECORDS["WITHDRAWN"].staking_tx_hash_hex
    feed = [  # (updated_height, status) as the registry reports the delegation's changes over time
        [(7, "PENDING")], [(9, "ACTIVE")], [(12, "ACTIVE")], [(15, "UNBONDING")], [(20, "WITHDRAWN")]]
    calls: list[dict] = []

    def query(addr: str, msg: dict) -> dict:
        (name, body), = msg.items()
        assert name == "delegations_updated"
        calls.append(body)
        if "start_after" not in body:  # first page: one change and a cursor to a second, empty page
            changes = feed[0] if feed else []
            return {"delegations": [{"staking_tx_hash": h, "status": s, "updated_height": u} for u, s in changes],
                    "next": {"height": 1, "staking_tx_hash": h} if changes else None}
        feed.pop(0)
        return {"delegations": [], "next": None}

    svc = ExplorerService(StakingService(make_source()), ChainReader(query, lambda: 30))
    for _ in range(5):
        svc.sync_statuses()
    assert svc.status_log.heights(h) == {"PENDING": 7, "ACTIVE": 9, "UNBONDING": 15, "WITHDRAWN": 20}
    assert [c["after_height"] for c in calls if "start_after" not in c] == [0, 7, 9, 12, 15]
    steps = {s.step: s for s in svc._timeline(svc.staking.get_delegation(h), {}, {}, 3, 2, None)}
    assert (steps["active"].chain_height, steps["covenant_signed"].chain_height) == (9, 9)
    assert steps["withdrawn"].chain_height == 20
