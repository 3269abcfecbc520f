"""Acceptance: the chain's servers and the CometBFT testnet configs listen on loopback only."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from cosmos_chain.comet import CometNetwork
from cosmos_chain.grpc_server import GrpcServer
from cosmos_chain.rest import RestServer

NON_LOOPBACK = ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1"]


@pytest.mark.parametrize("host", NON_LOOPBACK)
def test_rest_and_grpc_servers_refuse_non_loopback(host: str) -> None:
    """Both refuse before binding anything (no node is needed to get there)."""
    with pytest.raises(ValueError, match="loopback"):
        RestServer(None, host=host)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="loopback"):
        GrpcServer(None, host=host)  # type: ignore[arg-type]


def _listen_values(cfg: dict) -> list[tuple[str, str]]:
    """Every ``*laddr`` / ``*listen_addr`` / ``proxy_app`` / ``external_address`` value, flattened."""
    out: list[tuple[str, str]] = []
    for section, body in cfg.items():
        items = body.items() if isinstance(body, dict) else [(section, body)]
        for key, value in items:
            if isinstance(value, str) and (key.endswith("laddr") or key.endswith("listen_addr")
                                           or key in ("proxy_app", "external_address")):
                out.append((f"{section}.{key}", value))
    return out


def test_cometbft_testnet_configs_are_loopback_only(tool_path, tmp_path: Path) -> None:
    """``CometNetwork.init`` (``cometbft testnet`` + our config rewrite) leaves no non-loopback address."""
    net = CometNetwork(tool_path("cometbft"), 2, lambda home: None, tmp_path / "net")
    net.init()
    assert len(net.nodes) == 2
    for node in net.nodes:
        cfg = tomllib.loads((node.home / "config" / "config.toml").read_text())
        values = dict(_listen_values(cfg))
        # the listeners that must exist, each on 127.0.0.1
        for key in ("proxy_app.proxy_app", "rpc.laddr", "p2p.laddr", "p2p.external_address"):
            assert "127.0.0.1" in values[key], (key, values[key])
        for key, value in values.items():
            assert value == "" or "127.0.0.1" in value, f"{node.home}: {key} = {value!r} is not loopback"
        peers = [p for p in cfg["p2p"]["persistent_peers"].split(",") if p]
        assert len(peers) == 1 and all("@127.0.0.1:" in p for p in peers)
