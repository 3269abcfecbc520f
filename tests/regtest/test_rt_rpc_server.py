"""RpcServer: the EmbeddedNode in bitcoind's JSON-RPC dialect, driven by python-bitcoinlib's unmodified
``bitcoin.rpc.Proxy`` (plus raw HTTP for JSON-RPC 2.0, batches and auth)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import bitcoin
import bitcoin.rpc
import pytest
from bitcoin.core import COutPoint, CTransaction, b2lx, lx
from bitcoin.core.script import CScript
from bitcoin.wallet import P2WPKHBitcoinAddress
from bitcoinutils.keys import P2trAddress
from bitcoinutils.setup import setup as bu_setup
from rt_helpers import FEE, coinbase_coin, new_key, spend_key_path

from btc_staking.headers import BlockHeader
from btc_staking.keys import pubkey_from_secret
from btc_staking.tx import TxOut, p2wpkh_script
from regtest.embedded import EmbeddedNode
from regtest.mining import build_block
from regtest.rpc_server import RpcServer, address_to_script, script_to_address

pytestmark = pytest.mark.timeout(60)

REGTEST_GENESIS = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
GENESIS_TXID = "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"


@pytest.fixture
def served():
    bitcoin.SelectParams("regtest")
    node = EmbeddedNode()
    server = RpcServer(node, user="alice", password="s3cret").start()
    proxy = bitcoin.rpc.Proxy(server.url, timeout=20)
    yield node, server, proxy
    proxy.close()
    server.stop()
    node.verify_against_kernel()
    node.close()


def taproot_address(spk: bytes) -> str:
    """bech32m address from an independent encoder (bitcoin-utils)."""
    bu_setup("regtest")
    return P2trAddress(witness_program=spk[2:].hex()).to_string()


def post(server: RpcServer, payload: object, auth: str | None = None) -> tuple[int, object]:
    req = urllib.request.Request(server.plain_url, data=json.dumps(payload).encode(), method="POST")
    token = auth if auth is not None else f"{server.user}:{server.password}"
    req.add_header("Authorization", "Basic " + base64.b64encode(token.encode()).decode())
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        body = err.read()
        return err.code, json.loads(body) if body else None


def test_addresses_match_independent_encoders():
    key = new_key()
    addr = taproot_address(key.spk)
    assert address_to_script(addr) == key.spk and script_to_address(key.spk) == addr
    bitcoin.SelectParams("regtest")
    wpkh = p2wpkh_script(pubkey_from_secret(key.secret).format())
    addr0 = str(P2WPKHBitcoinAddress.from_scriptPubKey(CScript(wpkh)))
    assert address_to_script(addr0) == wpkh and script_to_address(wpkh) == addr0
    for bad in (addr[:-1] + ("q" if addr[-1] != "q" else "p"), addr0.replace("bcrt", "tb"), "", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"):
        with pytest.raises(ValueError):
            address_to_script(bad)


def test_mine_send_and_read_with_proxy(served):
    node, server, proxy = served
    key = new_key()
    assert proxy.getblockcount() == 0
    hashes = list(proxy.generatetoaddress(101, taproot_address(key.spk)))
    assert len(hashes) == 101 and proxy.getblockcount() == 101
    assert proxy.getbestblockhash() == hashes[-1] == proxy.getblockhash(101)
    block = proxy.getblock(hashes[0])
    assert block.GetHash() == hashes[0] and block.vtx[0].vout[0].scriptPubKey == CScript(key.spk)
    assert proxy.getblockheader(hashes[0]).GetHash() == hashes[0]
    info = proxy.getblockheader(hashes[0], verbose=True)
    assert info["height"] == 1 and info["confirmations"] == 101 and info["nextblockhash"] == hashes[1]
    with pytest.raises(IndexError):
        proxy.getblockhash(500)

    op, out = coinbase_coin(node, 1)
    tx = spend_key_path(key, [(op, out)], [TxOut(10**8, key.spk), TxOut(out.value - 10**8 - FEE, key.spk)])
    txid = proxy.sendrawtransaction(CTransaction.deserialize(tx.serialize()))
    assert b2lx(txid) == tx.txid_hex()
    assert proxy.getrawmempool() == [txid]
    assert proxy.getrawtransaction(txid).serialize() == tx.serialize()
    txout = proxy.gettxout(COutPoint(txid, 0))
    assert txout["txout"].nValue == 10**8 and txout["confirmations"] == 0
    entry = proxy.call("getmempoolentry", tx.txid_hex())
    assert entry["vsize"] == tx.vsize() and round(entry["fees"]["base"] * 10**8) == FEE

    (mined,) = proxy.generatetoaddress(1, taproot_address(key.spk))
    assert proxy.getrawmempool() == []
    verbose = proxy.getrawtransaction(txid, verbose=True)
    assert verbose["blockhash"] == mined and verbose["confirmations"] == 1
    assert verbose["tx"].GetTxid() == txid
    assert proxy.gettxout(COutPoint(txid, 1))["txout"].nValue == out.value - 10**8 - FEE
    with pytest.raises(IndexError):
        proxy.gettxout(COutPoint(lx(op.txid[::-1].hex()), 0))  # spent

    # getblock in every verbosity bitcoind accepts
    assert proxy.call("getblock", b2lx(mined), 0) == node.get_block(b2lx(mined)).hex()
    v1 = proxy.call("getblock", b2lx(mined), True)
    assert v1["tx"][1] == tx.txid_hex() and v1["height"] == 102 and v1["size"] == len(node.get_block(b2lx(mined)))
    v2 = proxy.call("getblock", b2lx(mined), 2)
    decoded = v2["tx"][1]
    assert decoded["txid"] == tx.txid_hex() and decoded["vin"][0]["txinwitness"] == [tx.inputs[0].witness[0].hex()]
    assert decoded["vout"][0]["scriptPubKey"]["type"] == "witness_v1_taproot"
    assert decoded["vout"][0]["scriptPubKey"]["address"] == taproot_address(key.spk)
    assert str(decoded["vout"][0]["value"]) == "1.00000000"
    assert decoded["fee"] * 10**8 == FEE and "fee" not in v2["tx"][0]
    assert proxy.call("estimatesmartfee", 6)["errors"]  # no estimate on a fresh regtest chain
    assert proxy.call("getmininginfo")["blocks"] == 102
    chain = proxy.call("getblockchaininfo")
    assert chain["chain"] == "regtest" and chain["blocks"] == 102 and chain["bestblockhash"] == b2lx(mined)


def test_rejections_use_bitcoind_codes(served):
    node, _, proxy = served
    key = new_key()
    proxy.generatetoaddress(101, taproot_address(key.spk))
    coin = coinbase_coin(node, 1)
    tx = spend_key_path(key, [coin])
    bad = tx.copy()
    bad.inputs[0].witness = [bytes(64)]
    with pytest.raises(bitcoin.rpc.VerifyRejectedError) as info:  # -26
        proxy.sendrawtransaction(CTransaction.deserialize(bad.serialize()))
    assert info.value.error["message"].startswith("mandatory-script-verify-flag-failed")
    with pytest.raises(bitcoin.rpc.JSONRPCError) as info:
        proxy.call("sendrawtransaction", "00ff")
    assert info.value.error["code"] == -22
    proxy.sendrawtransaction(CTransaction.deserialize(tx.serialize()))
    double = spend_key_path(key, [coin], fee=5_000)
    with pytest.raises(bitcoin.rpc.VerifyRejectedError) as info:
        proxy.sendrawtransaction(CTransaction.deserialize(double.serialize()))
    assert info.value.error["message"] == "txn-mempool-conflict"
    proxy.generatetoaddress(1, taproot_address(key.spk))
    with pytest.raises(bitcoin.rpc.VerifyError) as info:  # -25
        proxy.sendrawtransaction(CTransaction.deserialize(double.serialize()))
    assert info.value.error["message"] == "bad-txns-inputs-missingorspent"
    with pytest.raises(bitcoin.rpc.VerifyAlreadyInChainError):  # -27
        proxy.sendrawtransaction(CTransaction.deserialize(tx.serialize()))
    # bitcoind's default maxfeerate (0.10 BTC/kvB) refuses absurd fees unless lifted
    greedy = spend_key_path(key, [coinbase_coin(node, 2)], fee=10**8)
    with pytest.raises(bitcoin.rpc.VerifyError, match="Fee exceeds maximum"):
        proxy.sendrawtransaction(CTransaction.deserialize(greedy.serialize()))
    assert proxy.call("sendrawtransaction", greedy.serialize().hex(), 0) == greedy.txid_hex()
    c3 = coinbase_coin(node, 3)  # burning 1000 sat in an OP_RETURN needs maxburnamount, as in bitcoind
    burn = spend_key_path(key, [c3], [TxOut(1_000, b"\x6a\x01\x01"), TxOut(c3[1].value - 1_000 - FEE, key.spk)])
    with pytest.raises(bitcoin.rpc.VerifyError, match="maxburnamount"):
        proxy.sendrawtransaction(CTransaction.deserialize(burn.serialize()))
    assert proxy.call("sendrawtransaction", burn.serialize().hex(), 0.1, 0.00001) == burn.txid_hex()
    accept = proxy.call("testmempoolaccept", [double.serialize().hex()])
    assert accept[0]["allowed"] is False and accept[0]["reject-reason"] == "bad-txns-inputs-missingorspent"
    with pytest.raises(bitcoin.rpc.JSONRPCError) as info:
        proxy.call("generatetoaddress", 1, "not-an-address")
    assert info.value.error["code"] == -5
    with pytest.raises(bitcoin.rpc.JSONRPCError) as info:
        proxy.call("getblock", "00" * 32)
    assert info.value.error["code"] == -5
    with pytest.raises(bitcoin.rpc.JSONRPCError) as info:
        proxy.call("nosuchmethod")
    assert info.value.error["code"] == -32601


def test_invalidate_reconsider_and_generateblock(served):
    node, _, proxy = served
    key = new_key()
    addr = taproot_address(key.spk)
    proxy.generatetoaddress(101, addr)
    tx = spend_key_path(key, [coinbase_coin(node, 1)])
    proxy.sendrawtransaction(CTransaction.deserialize(tx.serialize()))
    block = proxy.call("generateblock", addr, [tx.txid_hex()])["hash"]
    assert node.get_tx_height(tx.txid_hex()) == 102 and proxy.getrawmempool() == []
    proxy.call("invalidateblock", block)
    assert proxy.getblockcount() == 101 and [b2lx(t) for t in proxy.getrawmempool()] == [tx.txid_hex()]
    assert proxy.call("getblockheader", block)["confirmations"] == -1
    proxy.call("reconsiderblock", block)
    assert proxy.getblockcount() == 102 and b2lx(proxy.getbestblockhash()) == block
    assert proxy.getrawmempool() == []
    # submitblock: bitcoind's BIP22 answers
    ph = BlockHeader.parse(node.get_block_header(node.get_block_hash(101)))
    _, _, side = build_block(ph.hash(), 102, ph.timestamp + 1, key.spk, [], fees=0, extra_nonce=99)
    assert proxy.call("submitblock", side.hex()) == "inconclusive"  # valid side-chain block, same work
    assert proxy.call("submitblock", side.hex()) == "duplicate"
    _, _, greedy = build_block(ph.hash(), 102, ph.timestamp + 1, key.spk, [], fees=1, extra_nonce=98)
    # an over-paying coinbase on a side branch is only stored (ConnectBlock never runs), as in Core
    assert proxy.call("submitblock", greedy.hex()) == "inconclusive"
    th = BlockHeader.parse(node.get_block_header(node.get_best_block_hash()))
    _, _, bad = build_block(th.hash(), 103, th.timestamp + 1, key.spk, [], fees=1, extra_nonce=97)
    assert proxy.call("submitblock", bad.hex()) == "bad-cb-amount"
    assert proxy.call("submitblock", bad.hex()) == "duplicate-invalid"
    _, _, good = build_block(th.hash(), 103, th.timestamp + 1, key.spk, [], fees=0, extra_nonce=96)
    assert proxy.call("submitblock", good.hex()) is None and proxy.getblockcount() == 103


def test_http_dialect_details(served):
    node, server, _ = served
    status, reply = post(server, {"jsonrpc": "2.0", "id": 7, "method": "getblockcount", "params": []})
    assert (status, reply) == (200, {"jsonrpc": "2.0", "id": 7, "result": 0})
    status, reply = post(server, {"jsonrpc": "2.0", "id": 8, "method": "getblockhash", "params": {"height": 9}})
    assert status == 200 and reply["error"]["code"] == -8 and "result" not in reply
    status, reply = post(server, {"id": 3, "method": "getblock", "params": {"blockhash": REGTEST_GENESIS, "verbosity": 0}})
    assert status == 200 and reply["result"] == node.get_block(REGTEST_GENESIS).hex()
    status, reply = post(server, {"id": 4, "method": "getrawtransaction", "params": {"txid": GENESIS_TXID, "verbosity": 1}})
    assert status == 200 and reply["result"]["txid"] == GENESIS_TXID
    status, reply = post(server, {"id": 1, "method": "nosuch", "params": []})
    assert status == 404 and reply["error"]["code"] == -32601 and reply["result"] is None
    status, reply = post(server, [{"id": 1, "method": "getblockcount"}, {"id": 2, "method": "getbestblockhash"}])
    assert status == 200 and [r["result"] for r in reply] == [0, node.get_best_block_hash()]
    status, _ = post(server, {"id": 1, "method": "getblockcount"}, auth="alice:wrong")
    assert status == 401
    with pytest.raises(ValueError):
        RpcServer(node, host="0.0.0.0")
    keep_alive = bitcoin.rpc.Proxy(server.url, timeout=5)
    assert keep_alive.getblockcount() == 0  # an open keep-alive connection
    status, reply = post(server, {"id": 1, "method": "stop", "params": []})
    assert reply["result"] == "Bitcoin Core stopping"
    assert server.stopped.wait(10)
    with pytest.raises((OSError, bitcoin.rpc.JSONRPCError)):  # closed by the server, refused on reconnect
        keep_alive.getblockcount()
    keep_alive.close()


def test_standalone_process_persists_across_restart(tmp_path):
    """``python -m regtest.rpc_server`` serves a datadir-backed node; the chain survives a restart."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    key = new_key()

    def run_once(mine: int) -> tuple[int, str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "regtest.rpc_server", "--datadir", str(tmp_path), "--port", "0",
             "--password", "pw"],
            stdout=subprocess.PIPE, text=True, cwd=root, env=env,
        )
        try:
            line = proc.stdout.readline()  # bounded by the test timeout
            assert line.startswith("ready "), line
            url = line.split()[1]
            bitcoin.SelectParams("regtest")
            proxy = bitcoin.rpc.Proxy(url, timeout=20)
            if mine:
                proxy.generatetoaddress(mine, taproot_address(key.spk))
            result = (proxy.getblockcount(), b2lx(proxy.getbestblockhash()))
            assert proxy.call("stop") == "Bitcoin Core stopping"
            proxy.close()
            assert proc.wait(timeout=20) == 0
            return result
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    first = run_once(5)
    assert first[0] == 5
    assert run_once(0) == first


def test_concurrent_clients(served):
    """Readers on several connections while another client mines and sends: no errors, one story."""
    import threading

    node, server, proxy = served
    key = new_key()
    proxy.generatetoaddress(101, taproot_address(key.spk))
    errors: list[BaseException] = []
    seen: list[int] = []

    def reader() -> None:
        p = bitcoin.rpc.Proxy(server.url, timeout=20)
        try:
            for _ in range(30):
                h = p.getblockcount()
                assert p.getblockhash(h) is not None
                seen.append(h)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            p.close()

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(1, 6):
        tx = spend_key_path(key, [coinbase_coin(node, i)])
        proxy.sendrawtransaction(CTransaction.deserialize(tx.serialize()))
        proxy.generatetoaddress(1, taproot_address(key.spk))
    for t in threads:
        t.join(timeout=30)
    assert not errors and not any(t.is_alive() for t in threads)
    assert proxy.getblockcount() == 106 and all(101 <= h <= 106 for h in seen)
