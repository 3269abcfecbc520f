"""checkpoint.runner: configuration from the chain, signer keys, loopback-only URLs, the process entry point."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cosmpy.aerial.wallet import LocalWallet

from btcmesh_testkit.net import closed_port

from btc_staking.headers import BlockHeader
from checkpoint.errors import ChainError, InvalidInputError
from checkpoint.runner import (build_service, light_client_base_height, light_client_genesis, make_wallet,
                               query_chain_id, rest_base, run)
from cosmos_chain.genesis import build_genesis, deterministic_wallet
from cosmos_chain.rest import LocalChain
from regtest.embedded import EmbeddedNode

REPO = Path(__file__).resolve().parents[2]
MNEMONIC = ("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon "
            "about")


def test_rest_url_must_be_loopback_http():
    assert rest_base("rest+http://127.0.0.1:1317/") == "http://127.0.0.1:1317"
    assert rest_base("http://localhost:1317") == "http://localhost:1317"
    with pytest.raises(InvalidInputError, match="loopback"):
        rest_base("http://10.0.0.1:1317")
    with pytest.raises(InvalidInputError, match="http"):
        rest_base("grpc+127.0.0.1:9090")


def test_signer_from_mnemonic_or_key():
    a = make_wallet(mnemonic=MNEMONIC)
    b = make_wallet(mnemonic=f"  {MNEMONIC}\n")
    assert str(a.address()) == str(b.address()) and str(a.address()).startswith("bbn1")
    assert str(a.address()) == str(LocalWallet.from_mnemonic(MNEMONIC, prefix="bbn").address())
    w = deterministic_wallet("runner-test")
    k = make_wallet(private_key=w.signer().private_key_hex)
    assert str(k.address()) == str(w.address())
    assert str(make_wallet(private_key=bytes.fromhex(w.signer().private_key_hex)).address()) == str(w.address())
    for bad in ({}, {"mnemonic": MNEMONIC, "private_key": "11" * 32}):
        with pytest.raises(InvalidInputError, match="exactly one"):
            make_wallet(**bad)
    with pytest.raises(InvalidInputError, match="32 bytes"):
        make_wallet(private_key="11" * 31)
    with pytest.raises(InvalidInputError, match="hex"):
        make_wallet(private_key="zz" * 32)
    with pytest.raises(InvalidInputError, match="invalid mnemonic"):
        make_wallet(mnemonic="not a real mnemonic at all")


def test_light_client_genesis_from_the_backend():
    node = EmbeddedNode()
    try:
        node.mine_blocks(7, bytes([0x51, 0x20]) + b"\x01" * 32)
        g = light_client_genesis(node)
        assert g["base"]["height"] == 7
        assert BlockHeader.parse(bytes.fromhex(g["base"]["header"])).hash_hex() == node.get_best_block_hash()
        assert light_client_genesis(node, 0)["base"]["header"] == node.get_block_header(node.get_block_hash(0)).hex()
        with pytest.raises(InvalidInputError, match="not on the backend"):
            light_client_genesis(node, 8)
    finally:
        node.close()


class _LightClientView:
    """The two light-client queries the base search uses, over a contiguous main chain [base, tip]."""

    def __init__(self, base: int, tip: int) -> None:
        self.base, self.tip, self.calls = base, tip, 0

    def light_client_tip(self):
        return self.tip, "ab" * 32

    def light_client_hash_at(self, height):
        self.calls += 1
        return "cd" * 32 if self.base <= height <= self.tip else None


@pytest.mark.parametrize("base,tip", [(0, 0), (0, 500), (57, 200), (200, 200), (1, 2)])
def test_light_client_base_found_by_binary_search(base, tip):
    view = _LightClientView(base, tip)
    assert light_client_base_height(view) == base  # type: ignore[arg-type]
    assert view.calls <= max(tip, 1).bit_length() + 1


def test_build_service_needs_the_registry_and_a_reachable_chain(tmp_path):
    node = EmbeddedNode()
    try:
        with pytest.raises(ChainError, match="node_info") as info:
            build_service(node, f"http://127.0.0.1:{closed_port()}", tmp_path / "s.sqlite", mnemonic=MNEMONIC)
        assert info.value.transient
        w = deterministic_wallet("runner-test")
        with LocalChain("runner-test-1", build_genesis({str(w.address()): 10**9}), block_interval=0.05) as chain:
            assert query_chain_id(chain.url) == "runner-test-1"
            if "btc_staking" not in chain.app.modules:
                with pytest.raises(ChainError):
                    build_service(node, chain.url, tmp_path / "s.sqlite", wallet=w)
            with pytest.raises(InvalidInputError, match="not both"):
                build_service(node, chain.url, tmp_path / "s.sqlite", wallet=w, mnemonic=MNEMONIC)
    finally:
        node.close()


def test_run_is_bounded_and_stops():
    class _Svc:
        rounds = 0

        def run_forever(self, stop, max_rounds=None):
            n = 0
            while not stop.is_set() and (max_rounds is None or n < max_rounds):
                n += 1
            return n

    stop = threading.Event()
    assert run(_Svc(), stop, 5) == 5  # type: ignore[arg-type]
    stop.set()
    assert run(_Svc(), stop) == 0  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        run(_Svc(), stop, -1)  # type: ignore[arg-type]


def _runner(tmp_path, btc_rpc: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), BTCMESH_CHECKPOINT_KEY="11" * 32,
               BTCMESH_BTC_RPC_PASSWORD="secret-pw")
    return subprocess.run([sys.executable, "-m", "checkpoint.runner", "--btc-rpc", btc_rpc, "--btc-user", "u",
                           "--chain-rest", f"http://127.0.0.1:{closed_port()}", "--store", str(tmp_path / "s.sqlite")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_process_entry_point_reports_unreachable_services(tmp_path):
    from regtest.rpc_server import RpcServer

    out = _runner(tmp_path, f"http://127.0.0.1:{closed_port()}")
    assert out.returncode == 2 and "Bitcoin RPC did not answer" in out.stderr
    node = EmbeddedNode()
    rpc = RpcServer(node, user="u", password="secret-pw").start()
    try:
        out = _runner(tmp_path, rpc.plain_url)                # Bitcoin answers, the chain does not
        assert out.returncode == 2 and "did not answer node_info" in out.stderr, out.stderr
    finally:
        rpc.stop()
        node.close()
    for secret in ("11" * 32, "secret-pw"):                  # secrets are never echoed
        assert secret not in out.stderr + out.stdout
