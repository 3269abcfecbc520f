"""`RpcBackend` and `BtcdProcess` against a real btcd v0.26 (and the bitcoind dialect, when served)."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from rt_backends import Chain, assert_oracles_accept, btcd_chain  # noqa: F401  (fixture)

from btc_staking.headers import BlockHeader, verify_header_chain
from btc_staking.keys import generate_secret
from btc_staking.tx import Tx, TxOut, hash256
from regtest.backend import BackendError, BitcoinBackend, TxRejected
from regtest.btcd import BtcdError, BtcdProcess, address_to_script, free_port
from regtest.rpc import RpcBackend, RpcError, script_to_address
from regtest.wallet import Wallet, WalletError, decode_segwit_address, parse_block


# ------------------------------------------------------------------------------ addresses
@pytest.mark.parametrize(
    "script_hex, network, address",
    [
        # BIP-173 / BIP-350 test vectors
        ("0014751e76e8199196d454941c45d1b3a323f1433bd6", "mainnet", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"),
        (
            "5120" + "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
            "mainnet",
            "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
        ),
        ("0014751e76e8199196d454941c45d1b3a323f1433bd6", "regtest", "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"),
        # base58: the well-known P2PKH for hash160 of 0x00*20 on mainnet
        ("76a914" + "00" * 20 + "88ac", "mainnet", "1111111111111111111114oLvT2"),
    ],
)
def test_script_to_address_vectors(script_hex: str, network: str, address: str) -> None:
    assert script_to_address(bytes.fromhex(script_hex), network) == address


def test_segwit_address_round_trip_and_errors() -> None:
    w = Wallet(None, generate_secret())  # type: ignore[arg-type]
    version, program = decode_segwit_address(w.address, "bcrt")
    assert (version, program) == (1, w.output_key)
    assert address_to_script(w.address) == w.script_pubkey
    bad = w.address[:-1] + ("q" if w.address[-1] != "q" else "p")
    with pytest.raises(WalletError, match="checksum"):
        decode_segwit_address(bad, "bcrt")
    with pytest.raises(WalletError):
        decode_segwit_address(w.address, "bc")
    with pytest.raises(ValueError, match="no address form"):
        script_to_address(b"\x6a\x01\x00")


def test_constructor_refuses_non_loopback_and_bad_dialect() -> None:
    with pytest.raises(ValueError, match="loopback"):
        RpcBackend("http://10.0.0.1:8332", "u", "p", dialect="btcd")
    with pytest.raises(ValueError, match="dialect"):
        RpcBackend("http://127.0.0.1:8332", "u", "p", dialect="electrum")
    with pytest.raises(ValueError, match="url"):
        RpcBackend("127.0.0.1:8332", "u", "p", dialect="btcd")


def test_connection_refused_is_a_backend_error() -> None:
    b = RpcBackend(f"http://127.0.0.1:{free_port()}", "u", "p", dialect="btcd", timeout=2)
    with pytest.raises(BackendError, match="failed"):
        b.get_block_count()


# --------------------------------------------------------------------------------- btcd
def test_btcd_protocol_methods(btcd_chain: Chain) -> None:
    b = btcd_chain.backend
    assert isinstance(b, BitcoinBackend) and isinstance(b, RpcBackend)
    auto = RpcBackend(b.url, "btcmesh", btcd_chain.node.rpc_password, dialect="auto")
    assert auto.dialect == "btcd"
    auto.close()
    assert b.get_block_count() == 101
    tip = b.get_best_block_hash()
    assert b.get_block_hash(101) == tip
    headers = [b.get_block_header(b.get_block_hash(h)) for h in range(1, 102)]
    verify_header_chain([BlockHeader.parse(h) for h in headers], parent=b.get_block_header(b.get_block_hash(0)))
    raw = b.get_block(tip)
    assert raw[:80] == headers[-1] and hash256(raw[:80])[::-1].hex() == tip
    header, txs = parse_block(raw)
    assert BlockHeader.parse(header).merkle_root == _merkle([t.txid() for t in txs])
    coinbase = txs[0]
    assert b.get_raw_transaction(coinbase.txid_hex()) == coinbase.serialize()
    assert coinbase.outputs[0].script_pubkey == btcd_chain.wallet.script_pubkey
    assert b.get_mempool() == []


def _merkle(hashes: list[bytes]) -> bytes:
    level = list(hashes)
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [hash256(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def test_btcd_errors_map_to_typed_exceptions(btcd_chain: Chain) -> None:
    b = btcd_chain.backend
    with pytest.raises(RpcError) as info:
        b.get_block("00" * 32)
    assert info.value.code == -5 and "not found" in info.value.message.lower()
    with pytest.raises(RpcError) as info:
        b.get_block_hash(10_000)
    assert "out of range" in info.value.message
    with pytest.raises(ValueError):
        b.get_block("abc")
    with pytest.raises(RpcError) as info:
        b.get_raw_transaction("11" * 32)
    assert info.value.code == -5
    with pytest.raises(TxRejected) as rej:
        b.send_raw_transaction(b"\x02\x00\x00\x00\x00")
    assert "decode" in rej.value.reason.lower()
    wrong = RpcBackend(b.url, "btcmesh", "wrong-password", dialect="btcd", timeout=5)
    with pytest.raises(BackendError, match="401|auth"):
        wrong.get_block_count()
    wrong.close()


def test_btcd_mines_to_any_script_via_block_templates(btcd_chain: Chain) -> None:
    b, w = btcd_chain.backend, btcd_chain.wallet
    other = bytes.fromhex("0014" + "11" * 20)
    op_true = b"\x51"  # anyone-can-spend, no address form
    # a segwit tx in the mempool: the template block must carry it and a valid witness commitment
    txid = w.send([TxOut(70_000, other)], 2)
    hashes = b.mine_blocks(2, other)
    assert b.get_block_count() == 103 and b.get_best_block_hash() == hashes[-1]
    _, txs = parse_block(b.get_block(hashes[0]))
    assert [t.txid_hex() for t in txs[1:]] == [txid] and b.get_mempool() == []
    sent = Tx.parse(b.get_raw_transaction(txid))
    fee = 50 * 10**8 * len(sent.inputs) - sum(o.value for o in sent.outputs)  # wallet coins are coinbases
    assert fee > 0 and txs[0].outputs[0] == TxOut(50 * 10**8 + fee, other)
    assert txs[0].outputs[1].script_pubkey[:6] == bytes.fromhex("6a24aa21a9ed")
    (h,) = b.mine_blocks(1, op_true)
    _, txs = parse_block(b.get_block(h))
    assert txs[0].outputs[0] == TxOut(50 * 10**8, op_true)
    # the node's own miner still serves the mining address; a backend without it builds templates
    blind = RpcBackend(b.url, "btcmesh", btcd_chain.node.rpc_password, dialect="btcd")
    assert blind.mining_script is None
    (h,) = blind.mine_blocks(1, w.script_pubkey)
    w.scan()
    assert w.height == 105
    # 101 coinbases - 1 spent + 1 change + the block-105 coinbase
    assert len(w.utxos()) == 102 and any(u.height == 105 and u.coinbase for u in w.utxos())
    blind.close()


def test_btcd_invalidate_and_reconsider(btcd_chain: Chain) -> None:
    b = btcd_chain.backend
    tip = b.get_best_block_hash()
    b.invalidate_block(tip)
    assert b.get_block_count() == 100
    b.reconsider_block(tip)
    assert b.get_best_block_hash() == tip


def test_btcd_process_lifecycle(tool_path, tmp_path) -> None:
    w = Wallet(None, generate_secret())  # type: ignore[arg-type]
    node = BtcdProcess(tool_path("btcd"), tmp_path / "n", w.address)
    with node:
        assert node.check_softforks() == {"csv": "active", "segwit": "active", "taproot": "active"}
        port = node.rpc_port
        b = node.backend()
        assert b.get_block_count() == 0
        assert b.mine_blocks(1, w.script_pubkey)
    assert node.proc is None
    node.stop()  # idempotent
    # nothing listens on the RPC port after stop
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))
    with pytest.raises(BtcdError, match="not running"):
        node.backend()
    with pytest.raises(BtcdError, match="not found"):
        BtcdProcess(tmp_path / "no-such-btcd", tmp_path / "x", w.address)


def test_btcd_start_failure_is_reported(tool_path, tmp_path) -> None:
    w = Wallet(None, generate_secret())  # type: ignore[arg-type]
    with socket.socket() as s:  # occupy the RPC port: btcd cannot listen
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        node = BtcdProcess(tool_path("btcd"), tmp_path / "n", w.address, rpc_port=port, start_timeout=2)
        with pytest.raises(BtcdError):
            node.start()
    assert node.proc is None


# --------------------------------------------------------------------------- bitcoind dialect
class _FakeBitcoind(BaseHTTPRequestHandler):
    """Answers like bitcoind for the calls whose parameter shapes differ from btcd's."""

    calls: list = []

    def do_POST(self) -> None:  # noqa: N802
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.calls.append((req["method"], req["params"]))
        result, error = None, None
        if req["method"] == "getnetworkinfo":
            result = {"version": 270000, "subversion": "/Satoshi:27.0.0/"}
        elif req["method"] in ("generatetoaddress", "generatetodescriptor"):
            result = ["00" * 32] * req["params"][0]
        elif req["method"] == "getrawtransaction":
            result = "00"
        elif req["method"] == "sendrawtransaction":
            error = {"code": -26, "message": "non-BIP68-final"}
        else:
            error = {"code": -32601, "message": "Method not found"}
        body = json.dumps({"result": result, "error": error, "id": req["id"]}).encode()
        self.send_response(500 if error else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_bitcoind_dialect_parameter_shapes() -> None:
    """The bitcoind-dialect calls a recording endpoint sees (shapes only; semantics are tested
    against real nodes above and against the embedded node's RPC server)."""
    server = HTTPServer(("127.0.0.1", 0), _FakeBitcoind)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        _FakeBitcoind.calls = []
        b = RpcBackend(f"http://127.0.0.1:{server.server_port}", "u", "p", dialect="auto", timeout=5)
        assert b.dialect == "bitcoind"
        spk = bytes.fromhex("5120" + hashlib.sha256(b"k").hexdigest())
        assert len(b.mine_blocks(2, spk)) == 2
        assert len(b.mine_blocks(1, b"\x51")) == 1  # OP_TRUE has no address: raw() descriptor
        b.get_raw_transaction("ab" * 32)
        with pytest.raises(TxRejected) as rej:
            b.send_raw_transaction(Tx(2, [], [TxOut(1, b"\x51")], 0).serialize())
        assert rej.value.reason == "non-BIP68-final"
        with pytest.raises(RpcError) as err:
            b.call("nosuchmethod")
        assert err.value.code == -32601
        b.close()
        assert ("generatetoaddress", [2, script_to_address(spk)]) in _FakeBitcoind.calls
        assert ("generatetodescriptor", [1, "raw(51)"]) in _FakeBitcoind.calls
        assert ("getrawtransaction", ["ab" * 32, False]) in _FakeBitcoind.calls
    finally:
        server.shutdown()
        server.server_close()


def test_bitcoind_dialect_against_the_embedded_rpc_server() -> None:
    """RpcBackend over RpcServer answers exactly what the EmbeddedNode answers directly."""
    from regtest.embedded import EmbeddedNode
    from regtest.rpc_server import RpcServer

    node = EmbeddedNode()
    server = RpcServer(node).start()
    b = RpcBackend(server.plain_url, server.user, server.password, dialect="auto", timeout=10)
    try:
        assert b.dialect == "bitcoind" and isinstance(b, BitcoinBackend)
        w = Wallet(b, generate_secret(), verify=assert_oracles_accept)
        assert len(b.mine_blocks(101, w.script_pubkey)) == 101
        w.scan()
        txid = w.send([TxOut(25_000, bytes.fromhex("0014" + "33" * 20))], 2)
        assert b.get_mempool() == node.get_mempool() == [txid]
        assert b.get_raw_transaction(txid) == node.get_raw_transaction(txid)
        (h,) = b.mine_blocks(1, w.script_pubkey)
        assert b.get_block_count() == node.get_block_count() == 102
        assert b.get_best_block_hash() == node.get_best_block_hash() == h
        for height in (0, 1, 101, 102):
            bh = b.get_block_hash(height)
            assert bh == node.get_block_hash(height)
            assert b.get_block(bh) == node.get_block(bh)
            assert b.get_block_header(bh) == node.get_block_header(bh)
        with pytest.raises(RpcError) as err:
            b.get_block("00" * 32)
        assert err.value.code == -5
        with pytest.raises(TxRejected) as rej:
            b.send_raw_transaction(b"\x02\x00\x00\x00\x00")
        assert "decode" in rej.value.reason.lower()
        sent = Tx.parse(b.get_raw_transaction(txid))
        with pytest.raises(TxRejected) as rej:  # already confirmed
            b.send_raw_transaction(sent.serialize())
        assert rej.value.txid == txid
        b.invalidate_block(h)
        assert node.get_block_count() == 101 and txid in b.get_mempool()
        b.reconsider_block(h)
        assert b.get_best_block_hash() == h
        wrong = RpcBackend(server.plain_url, server.user, "nope", dialect="bitcoind", timeout=5)
        with pytest.raises(BackendError, match="401|auth"):
            wrong.get_block_count()
        wrong.close()
    finally:
        b.close()
        server.stop()
        node.close()


def test_btcd_search_raw_transactions_finds_a_staking_output(btcd_chain: Chain) -> None:
    from rt_backends import make_parties, stake

    b = btcd_chain.backend
    s = stake(btcd_chain, make_parties(), staking_time=10, confirm=False)
    assert [Tx.parse(t).txid_hex() for t in b.search_raw_transactions(s.info.pk_script)] == [s.tx.txid_hex()]
    btcd_chain.mine(1)  # still found once confirmed (address index)
    assert [Tx.parse(t) for t in b.search_raw_transactions(s.info.pk_script)] == [s.tx]
    assert len(b.search_raw_transactions(btcd_chain.wallet.script_pubkey, count=5)) == 5
    assert b.search_raw_transactions(bytes.fromhex("0014" + "55" * 20)) == []


def test_btcd_restart_starts_a_fresh_regtest_chain(tool_path, tmp_path) -> None:
    """btcd deletes its regtest block database at every start ("Removing regression test
    database"): a restarted BtcdProcess is a new chain, unlike the embedded node with a datadir."""
    w = Wallet(None, generate_secret())  # type: ignore[arg-type]
    node = BtcdProcess(tool_path("btcd"), tmp_path / "n", w.address)
    with node:
        node.backend().mine_blocks(5, w.script_pubkey)
    with node:  # same datadir, same port and credentials
        b = node.backend()
        assert b.get_block_count() == 0
        assert "Removing regression test database" in (tmp_path / "n" / "stdout.log").read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_btcd_dies_with_the_process_that_started_it(tool_path, tmp_path) -> None:
    """A Python process starts btcd and is SIGKILLed: the kernel stops btcd too (no orphan daemon)."""
    mining_address = Wallet(None, generate_secret()).address  # type: ignore[arg-type]
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from regtest.btcd import BtcdProcess\n"
        f"node = BtcdProcess(Path({str(tool_path('btcd'))!r}), Path({str(tmp_path / 'n')!r}), {mining_address!r})\n"
        "node.start()\n"
        "print(node.proc.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=str(Path(__file__).resolve().parents[2]))
    try:
        line = parent.stdout.readline() if parent.stdout else ""
        assert line.strip().isdigit(), f"parent did not start btcd: {line!r}"
        btcd_pid = int(line)
        assert Path(f"/proc/{btcd_pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"btcd")
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 20
        while Path(f"/proc/{btcd_pid}").exists() and _state(btcd_pid) != "Z":
            assert time.monotonic() < deadline, "btcd outlived its parent"
            time.sleep(0.1)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"
