"""The staking explorer: web pages served by the API service, over read-only JSON routes.

``install_explorer(app, source)`` (called by ``api.app.create_app``) adds the ``/v2/explorer`` JSON
routes (in OpenAPI), the pages under ``/explorer`` and their assets (uPlot vendored, see
``api/static/explorer/vendor/uplot/VERSION.md``); nothing is loaded from the internet.
``explorer_url(base)`` is the URL commands print (``btcmesh demo --serve``, ``btcmesh devnet up``);
``set_btc_tip_source(app, fn)`` tells the overview where the Bitcoin node's tip comes from.

Hand-written: the page script (``explorer.js``, plain DOM code, no framework: the pages are a few
tables filled from JSON, which no maintained package does for us without a build step). Charts
are drawn by uPlot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.explorer.data import ExplorerService
from api.explorer.reader import ChainReader, reader_for
from api.explorer.routes import ASSETS_PATH, STATIC_DIR, pages, router

EXPLORER_PATH = "/explorer"
HISTORY_INTERVAL_S = 0.5


def explorer_url(base: str) -> str:
    """The explorer's address under an API base URL, e.g. ``http://127.0.0.1:8000/explorer``."""
    return base.rstrip("/") + EXPLORER_PATH


def install_explorer(app: FastAPI, source: Any, reader: ChainReader | None = None,
                     btc_tip: Callable[[], int] | None = None) -> ExplorerService:
    """Add the explorer's routes, pages and assets to ``app`` (the API's app over ``source``)."""
    explorer = ExplorerService(app.state.staking_service, reader if reader is not None else reader_for(source),
                               btc_tip)
    app.state.explorer = explorer
    app.mount(ASSETS_PATH, StaticFiles(directory=STATIC_DIR), name="explorer-assets")
    app.include_router(router)
    app.include_router(pages)
    if explorer.recorder is not None:
        recorder = explorer.recorder
        app.router.on_startup.append(lambda: recorder.start(HISTORY_INTERVAL_S))
        app.router.on_shutdown.append(recorder.stop)
    return explorer


def set_btc_tip_source(app: FastAPI, btc_tip: Callable[[], int]) -> None:
    """Show the Bitcoin node's tip (e.g. ``node.get_block_count``) on the overview."""
    app.state.explorer.btc_tip = btc_tip


__all__ = ["EXPLORER_PATH", "ExplorerService", "explorer_url", "install_explorer", "set_btc_tip_source"]
