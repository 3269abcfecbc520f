"""ChainApp under a real CometBFT v0.38 node (1 validator): txs, CheckTx rejections, restart, crash.

Every tx is built and signed by cosmpy (``Transaction`` + ``SigningCfg.direct``), sent with
``broadcast_tx_sync`` and observed through CometBFT's own RPC (``/tx``, ``/abci_query``,
``/block``, ``/abci_info``), so the ABCI socket server, the app and CometBFT are all exercised.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from cosmpy.aerial.client import LedgerClient, NetworkConfig
from cosmpy.aerial.client.utils import prepare_and_broadcast_basic_transaction
from cosmpy.aerial.tx import SigningCfg, Transaction, TxFee
from cosmpy.crypto.address import Address
from cosmpy.protos.cosmos.tx.v1beta1.tx_pb2 import TxRaw
from cosmpy.protos.cosmwasm.wasm.v1.query_pb2 import QuerySmartContractStateRequest

from cosmos_chain.app import ChainApp, TxResult
from cosmos_chain.comet import CometError, CometNetwork, CometRPCError, run_comet_chain, tx_hash
from cosmos_chain.comet_backend import CometBackend
from cosmos_chain.rest import ChainBackend, RestServer
from cmt_helpers import (
    BANK_CONTRACT,
    DENOM,
    FEE,
    GAS_LIMIT,
    GENESIS_AMOUNT,
    MIN_GAS_PRICE,
    Key,
    fee_amount,
    make_genesis,
    msg_bank_execute,
    msg_send,
    query_account,
    query_balance,
    sign_tx,
    signed_send,
)

pytestmark = pytest.mark.timeout(120)

ALICE, BOB, CAROL = Key.from_seed(1), Key.from_seed(2), Key.from_seed(3)
BLOCK_TIME = 0.15


def _network(binary: Path, base: Path) -> CometNetwork:
    return CometNetwork(binary, 1, ChainApp, base, app_genesis=make_genesis([ALICE, BOB]), block_time=BLOCK_TIME)


@pytest.fixture(scope="module")
def net(tool_path, tmp_path_factory) -> Iterator[CometNetwork]:
    """One running 1-validator chain shared by the tx tests of this module."""
    network = _network(tool_path("cometbft"), tmp_path_factory.mktemp("comet1"))
    with network.start(timeout=60):
        yield network


@pytest.fixture
def fresh_net(tool_path, tmp_path) -> Iterator[CometNetwork]:
    """A private 1-validator chain (for restart/crash tests); always stopped."""
    network = _network(tool_path("cometbft"), tmp_path / "chain")
    try:
        yield network
    finally:
        network.stop()


def _chain_id(net: CometNetwork) -> str:
    return net.client.status()["node_info"]["network"]


# --------------------------------------------------------------------------------------------
# transactions


def test_bank_send_and_contract_execute_commit(net: CometNetwork) -> None:
    """A MsgSend and a MsgExecuteContract (bank contract) commit; balances via abci_query match."""
    client, chain_id = net.client, _chain_id(net)
    assert chain_id == net.chain_id
    start_alice, start_bob = query_balance(client, ALICE.address), query_balance(client, BOB.address)
    start_carol = query_balance(client, CAROL.address)

    res = client.broadcast_tx_sync(signed_send(client, chain_id, ALICE, CAROL.address, 1_234))
    assert res.code == 0, res.log
    committed = client.wait_for_tx(res.hash, timeout=20)
    assert int(committed["tx_result"].get("code", 0)) == 0, committed["tx_result"]
    height = int(committed["height"])
    assert query_balance(client, CAROL.address) == start_carol + 1_234
    assert query_balance(client, ALICE.address) == start_alice - 1_234 - fee_amount()

    # the built-in bank contract, through MsgExecuteContract
    acct = query_account(client, BOB.address)
    raw = sign_tx(
        BOB, [msg_bank_execute(BOB, CAROL.address, 5_000)], sequence=acct.sequence,
        account_number=acct.account_number, chain_id=chain_id,
    )  # fmt: skip
    res = client.broadcast_tx_sync(raw)
    assert res.code == 0, res.log
    assert res.hash == tx_hash(raw)
    committed = client.wait_for_tx(res.hash, timeout=20)
    assert int(committed["tx_result"].get("code", 0)) == 0, committed["tx_result"]
    assert int(committed["height"]) > height
    events = {e["type"] for e in committed["tx_result"]["events"]}
    assert {"execute", "transfer"} <= events
    assert query_balance(client, CAROL.address) == start_carol + 1_234 + 5_000
    assert query_balance(client, BOB.address) == start_bob - 5_000 - fee_amount()
    assert query_account(client, BOB.address).sequence == acct.sequence + 1

    # the block carries the exact tx bytes; the header's app hash is the app's hash of the previous block
    tx_height = int(committed["height"])
    client.wait_for_height(tx_height + 1, timeout=20)
    server = net.nodes[0].server
    assert server is not None
    assert client.block_app_hash(tx_height + 1) == server.app_hashes[tx_height]
    assert client.abci_info()[0] >= tx_height
    # a smart query on the bank contract agrees with the proto query
    query = json.dumps({"balance": {"address": CAROL.address, "denom": DENOM}}).encode()
    code, value, log, _ = client.abci_query(f"/smart/{BANK_CONTRACT}", query)
    assert code == 0, log
    assert json.loads(value) == {"denom": DENOM, "amount": str(start_carol + 6_234)}


def test_bad_signature_rejected_in_checktx(net: CometNetwork) -> None:
    """A tx signed by the wrong key (or for another chain) fails CheckTx with code 4 and never lands."""
    client, chain_id = net.client, _chain_id(net)
    acct = query_account(client, ALICE.address)
    before = query_balance(client, ALICE.address)

    # sealed with Alice's pubkey, signed by Bob's key
    tx_obj = _sealed(ALICE, CAROL.address, 7, acct.sequence)
    tx_obj.sign(BOB.wallet.signer(), chain_id, acct.account_number)
    tx_obj.complete()
    res = client.broadcast_tx_sync(tx_obj.tx.SerializeToString())
    assert res.code == 4, res.log
    assert "signature verification failed" in res.log

    # a good signature made for another chain id
    wrong_chain = sign_tx(ALICE, [msg_send(ALICE, CAROL.address, 7)], sequence=acct.sequence,
                          account_number=acct.account_number, chain_id="other-chain")
    res2 = client.broadcast_tx_sync(wrong_chain)
    assert res2.code == 4 and "chain-id" in res2.log, res2.log

    # a flipped signature bit
    good = sign_tx(ALICE, [msg_send(ALICE, CAROL.address, 7)], sequence=acct.sequence,
                   account_number=acct.account_number, chain_id=chain_id)
    raw = TxRaw.FromString(good)
    sig = bytearray(raw.signatures[0])
    sig[5] ^= 1
    raw.signatures[0] = bytes(sig)
    res3 = client.broadcast_tx_sync(raw.SerializeToString())
    assert res3.code == 4, res3.log

    client.wait_for_height(client.latest_height() + 2, timeout=20)
    for r in (res, res2, res3):
        assert client.tx(r.hash) is None
    assert query_balance(client, ALICE.address) == before
    assert query_account(client, ALICE.address).sequence == acct.sequence


def test_wrong_sequence_rejected_in_checktx(net: CometNetwork) -> None:
    """A sequence ahead of (or behind) the account's fails CheckTx with code 32 and a clear log."""
    client, chain_id = net.client, _chain_id(net)
    acct = query_account(client, ALICE.address)
    ahead = sign_tx(ALICE, [msg_send(ALICE, CAROL.address, 9)], sequence=acct.sequence + 5,
                    account_number=acct.account_number, chain_id=chain_id)
    res = client.broadcast_tx_sync(ahead)
    assert res.code == 32, res.log
    expected = f"account sequence mismatch for {ALICE.address}, expected {acct.sequence}, got {acct.sequence + 5}"
    assert expected in res.log
    if acct.sequence > 0:
        behind = sign_tx(ALICE, [msg_send(ALICE, CAROL.address, 9)], sequence=acct.sequence - 1,
                         account_number=acct.account_number, chain_id=chain_id)
        res2 = client.broadcast_tx_sync(behind)
        assert res2.code == 32 and "replayed tx?" in res2.log, res2.log
    assert client.tx(res.hash) is None


def test_replayed_tx_rejected(net: CometNetwork) -> None:
    """Re-broadcasting a committed tx is refused (CometBFT's cache, then the app's replay check)."""
    client, chain_id = net.client, _chain_id(net)
    raw = signed_send(client, chain_id, ALICE, CAROL.address, 11, memo="replay-me")
    committed = client.submit(raw, timeout=20)
    assert int(committed["tx_result"].get("code", 0)) == 0
    carol = query_balance(client, CAROL.address)
    with pytest.raises(CometRPCError, match="already exists in cache"):
        client.broadcast_tx_sync(raw)
    # the app itself refuses it too (what a node without that cache entry would get)
    server = net.nodes[0].server
    assert server is not None
    result = server.call(server.app.check_tx, raw)
    assert result.code == 19 and "replay" in result.log, result.log
    client.wait_for_height(client.latest_height() + 2, timeout=20)
    assert query_balance(client, CAROL.address) == carol


def test_in_flight_sequences_from_one_account(net: CometNetwork) -> None:
    """Five txs with consecutive sequences, broadcast without waiting, all pass CheckTx and commit in order."""
    client, chain_id = net.client, _chain_id(net)
    acct = query_account(client, BOB.address)
    dest = Key.from_seed(77).address
    before_bob, before_dest = query_balance(client, BOB.address), query_balance(client, dest)
    raws = [
        sign_tx(BOB, [msg_send(BOB, dest, 10 + i)], sequence=acct.sequence + i,
                account_number=acct.account_number, chain_id=chain_id)
        for i in range(5)
    ]  # fmt: skip
    results = [client.broadcast_tx_sync(raw) for raw in raws]
    assert [r.code for r in results] == [0] * 5, [r.log for r in results]
    committed = [client.wait_for_tx(r.hash, timeout=30) for r in results]
    assert all(int(c["tx_result"].get("code", 0)) == 0 for c in committed)
    order = [(int(c["height"]), int(c["index"])) for c in committed]
    assert order == sorted(order)  # the mempool keeps them in sequence order
    assert query_balance(client, dest) == before_dest + sum(10 + i for i in range(5))
    assert query_balance(client, BOB.address) == before_bob - sum(10 + i for i in range(5)) - 5 * fee_amount()
    assert query_account(client, BOB.address).sequence == acct.sequence + 5


# --------------------------------------------------------------------------------------------
# persistence


def test_restart_resumes_from_persisted_state(fresh_net: CometNetwork) -> None:
    """Stop + start with the same homes: Info reports the committed height/hash, no replay from genesis."""
    net = fresh_net
    net.start(timeout=60)
    client, chain_id = net.client, _chain_id(net)
    committed = client.submit(signed_send(client, chain_id, ALICE, CAROL.address, 4_321, memo="before restart"))
    client.wait_for_height(int(committed["height"]) + 2, timeout=20)
    carol, alice = query_balance(client, CAROL.address), query_balance(client, ALICE.address)
    server = net.nodes[0].server
    assert server is not None and server.request_counts.get("init_chain") == 1
    net.stop()

    # what the app has on disk is exactly what it committed
    app_home = net.nodes[0].app_home
    height, app_hash = _db_head(app_home)
    assert height == server.committed_height and app_hash == server.last_app_hash == server.app_hashes[height]

    net.start(timeout=60)
    server2 = net.nodes[0].server
    assert server2 is not None and server2 is not server
    assert server2.info_responses[0].height == height
    assert server2.info_responses[0].app_hash == app_hash
    assert "init_chain" not in server2.request_counts  # no replay from genesis
    client = net.client
    client.wait_for_height(height + 3, timeout=20)
    assert min(server2.committed_hashes()) == height + 1  # the first block the new app saw is the next one
    assert client.block_app_hash(height + 1) == app_hash
    assert client.abci_info()[0] >= height + 3
    assert query_balance(client, CAROL.address) == carol
    assert query_balance(client, ALICE.address) == alice
    # the replay protection survived the restart: this node's mempool cache is empty, the app refuses
    res = client.broadcast_tx_sync(_b64tx(committed))
    assert res.code != 0 and "replay" in res.log, res.log
    # and the chain still takes new txs with the persisted sequence
    again = client.submit(signed_send(client, chain_id, ALICE, CAROL.address, 1, memo="after restart"))
    assert int(again["tx_result"].get("code", 0)) == 0 and int(again["height"]) > height
    assert query_balance(client, CAROL.address) == carol + 1


def test_crash_and_replay_of_missing_blocks(fresh_net: CometNetwork) -> None:
    """kill -9 with the app's store behind CometBFT's: the handshake replays the missing blocks.

    The app's database is rolled back to a snapshot taken a few blocks earlier (as if its
    last writes were lost in the crash); CometBFT must replay exactly the missing blocks
    through FinalizeBlock and the app must reach the same app hashes it had before.
    """
    net = fresh_net
    net.start(timeout=60)
    client, chain_id = net.client, _chain_id(net)
    client.submit(signed_send(client, chain_id, ALICE, CAROL.address, 100, memo="pre-snapshot"))
    node = net.nodes[0]
    server = node.server
    assert server is not None
    snapshot = node.home.parent / "app-snapshot"
    with server.lock:  # no block can commit while we copy: a consistent on-disk state
        snap_height = server.committed_height
        _copy_db(node.app_home, snapshot)
    # more blocks (one with a tx) after the snapshot
    late = client.submit(signed_send(client, chain_id, ALICE, CAROL.address, 200, memo="lost by the app"))
    # waits until the *app* committed late + 2 too (CometBFT's RPC height counts a block before the
    # app executed it; killing in that window would leave crash_height one short)
    client.wait_for_height(int(late["height"]) + 2, timeout=20)
    carol = query_balance(client, CAROL.address)
    node.kill()
    hashes = server.committed_hashes()  # under its lock: a Commit still running finishes first
    crash_height = max(hashes)
    assert crash_height >= snap_height + 3

    shutil.rmtree(node.app_home)
    shutil.copytree(snapshot, node.app_home)
    assert _db_head(node.app_home)[0] == snap_height

    net.start(timeout=60, min_height=crash_height + 2)
    server2 = node.server
    assert server2 is not None
    assert server2.info_responses[0].height == snap_height
    assert "init_chain" not in server2.request_counts
    seen = server2.committed_hashes()
    replayed = [h for h in seen if h <= crash_height]
    assert replayed == list(range(snap_height + 1, crash_height + 1))  # exactly the missing blocks, in order
    for h in replayed:
        assert seen[h] == hashes[h], f"app hash differs at replayed height {h}"
    assert net.client.block_app_hash(crash_height + 1) == hashes[crash_height]
    assert query_balance(net.client, CAROL.address) == carol
    assert net.client.tx(late["hash"]) is not None


def test_kill_and_restart_continues(fresh_net: CometNetwork) -> None:
    """A plain kill -9 of cometbft and the app: restart converges on the same app hash and continues."""
    net = fresh_net
    net.start(timeout=60)
    client = net.client
    client.wait_for_height(3, timeout=20)
    node = net.nodes[0]
    server = node.server
    assert server is not None
    node.kill()
    hashes = server.committed_hashes()  # under its lock: a Commit still running finishes first
    net.start(timeout=60)
    server2 = node.server
    assert server2 is not None
    info = server2.info_responses[0]
    assert info.app_hash == hashes[info.height]
    net.client.wait_for_height(max(hashes) + 2, timeout=20)
    seen = server2.committed_hashes()
    for h in set(hashes) & set(seen):
        assert seen[h] == hashes[h]
    assert net.client.block_app_hash(max(hashes) + 1) == hashes[max(hashes)]


def test_node_that_dies_fails_fast(tool_path, tmp_path: Path) -> None:
    """If ``cometbft node`` exits, start() raises CometError with the exit status (no long wait) and cleans up."""
    real = tool_path("cometbft")
    wrapper = tmp_path / "cometbft"
    wrapper.write_text(
        f'#!/bin/sh\nif [ "$1" = node ]; then echo "boom: refusing to start"; exit 3; fi\nexec "{real}" "$@"\n'
    )
    wrapper.chmod(0o755)
    network = CometNetwork(wrapper, 1, ChainApp, tmp_path / "x", app_genesis=make_genesis([ALICE]))
    with pytest.raises(CometError, match="exited with 3"):
        network.start(timeout=30)
    assert network.nodes and all(not n.running and n.server is None for n in network.nodes)


# --------------------------------------------------------------------------------------------
# helpers


def _sealed(key: Key, to: str, amount: int, sequence: int) -> Transaction:
    """A MsgSend sealed (not signed) for ``key``."""
    tx = Transaction()
    tx.add_message(msg_send(key, to, amount))
    tx.seal(SigningCfg.direct(key.wallet.public_key(), sequence), fee=TxFee(amount=FEE, gas_limit=GAS_LIMIT))
    return tx


def _b64tx(committed: dict) -> bytes:
    """Raw bytes of a ``/tx`` result."""
    return base64.b64decode(committed["tx"])


def _copy_db(app_home: Path, dest: Path) -> None:
    """Copy the app's SQLite files (db + WAL) while no writer is active."""
    dest.mkdir(parents=True)
    for name in ("chain.db", "chain.db-wal"):
        src = app_home / name
        if src.exists():
            shutil.copy2(src, dest / name)


def _db_head(app_home: Path) -> tuple[int, bytes]:
    """(height, app hash) stored in an app home's SQLite meta table."""
    db = sqlite3.connect(str(app_home / "chain.db"))
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    finally:
        db.close()
    return int(meta["height"]), bytes.fromhex(meta["app_hash"])


# --------------------------------------------------------------------------------------------
# CometBackend: the REST layer's view of a CometBFT-hosted chain


def test_comet_backend_agrees_with_the_app(net: CometNetwork) -> None:
    """Every CometBackend answer (from CometBFT's RPC) equals what the app itself recorded."""
    backend = CometBackend(net.nodes[0].rpc_url)
    server = net.nodes[0].server
    assert server is not None
    app = server.app
    try:
        assert backend.chain_id == net.chain_id
        raw = signed_send(backend, net.chain_id, BOB, CAROL.address, 321, memo="via backend")
        sim = backend.simulate(raw)
        assert sim.code == 0 and sim.gas_used > 0, sim.log
        res = backend.broadcast_tx(raw, mode="commit", timeout=20)
        assert res.ok and res.height > 0, res.log
        assert res.gas_used == sim.gas_used  # deterministic gas: simulation predicted it exactly
        again = backend.broadcast_tx(raw)
        assert again.code == 19 and "already" in again.log  # replay, answered as a code not an exception

        rec, mine = backend.get_tx(res.hash), server.call(app.get_tx, res.hash)
        assert rec is not None and mine is not None
        for key in ("hash", "height", "index", "tx"):
            assert rec[key] == mine[key], key
        assert abs(rec["time"] - mine["time"]) < 1e-5
        ours, theirs = TxResult.from_dict(rec["result"]), TxResult.from_dict(mine["result"])
        assert (ours.code, ours.gas_wanted, ours.gas_used, ours.data, ours.events) == (
            theirs.code, theirs.gas_wanted, theirs.gas_used, theirs.data, theirs.events
        )
        assert backend.get_tx("00" * 32) is None and backend.get_tx("nothex") is None

        block, app_block = backend.get_block(rec["height"]), server.call(app.get_block, rec["height"])
        assert block is not None and app_block is not None
        assert block["tx_hashes"] == app_block["tx_hashes"] and res.hash in block["tx_hashes"]
        assert abs(block["time"] - app_block["time"]) < 1e-5
        assert bytes.fromhex(block["app_hash"]) == server.app_hashes[rec["height"] - 1]
        assert backend.get_block(10**9) is None
        latest = backend.latest_block()
        assert latest is not None and latest["height"] >= rec["height"]

        assert backend.account(BOB.address) == server.call(app.account, BOB.address)
        assert backend.account(Key.from_seed(99).address) is None
        assert backend.balance(CAROL.address, DENOM) == server.call(app.balance, CAROL.address, DENOM)
        assert backend.balances(CAROL.address) == server.call(app.balances, CAROL.address)
        assert backend.contract_addresses()["bank"] == BANK_CONTRACT
        code, _, log = backend.query("/no/such/path")
        assert code != 0 and "unknown query path" in log
        with pytest.raises(ValueError):
            backend.broadcast_tx(raw, mode="block")
    finally:
        backend.close()


def test_run_comet_chain_context_manager_and_resume(tool_path, tmp_path: Path) -> None:
    """The CLI entry: ``with run_comet_chain(home, n, genesis)`` runs a chain, stops it, and resumes it."""
    home = tmp_path / "cli-home"
    genesis = make_genesis([ALICE])
    with run_comet_chain(home, 1, genesis, binary=tool_path("cometbft"), block_time=BLOCK_TIME) as net:
        assert net.rpc_urls == [net.nodes[0].rpc_url] and all(n.running for n in net.nodes)
        backend = CometBackend(net.rpc_urls[0])
        try:
            assert backend.balance(ALICE.address, DENOM) == GENESIS_AMOUNT
            rec = backend.submit(signed_send(backend, net.chain_id, ALICE, CAROL.address, 55))
            assert rec["result"]["code"] == 0
        finally:
            backend.close()
        stopped_at = net.client.abci_info()[0]  # what the app had committed (and persisted) by then
    assert all(not n.running and n.server is None for n in net.nodes)
    with pytest.raises(ValueError, match="once"):
        run_comet_chain(home, 1, genesis, app_genesis={"other": 1})
    # same home again: resumes at the stored height (the genesis argument is not re-applied)
    with run_comet_chain(home, 1, make_genesis([BOB]), binary=tool_path("cometbft"), block_time=BLOCK_TIME) as net2:
        assert net2.nodes[0].start_height >= stopped_at
        assert query_balance(net2.client, CAROL.address) == 55
        assert query_balance(net2.client, BOB.address) == 0


def test_ledger_client_over_rest_on_comet_chain(net: CometNetwork) -> None:
    """An unmodified cosmpy LedgerClient (REST → RestServer(CometBackend)) sends tokens on the CometBFT chain."""
    backend = CometBackend(net.nodes[0].rpc_url)
    assert isinstance(backend, ChainBackend)
    server = RestServer(backend).start()
    try:
        cfg = NetworkConfig(chain_id=net.chain_id, url=server.cosmpy_url, fee_minimum_gas_price=float(MIN_GAS_PRICE),
                            fee_denomination=DENOM, staking_denomination=DENOM)
        ledger = LedgerClient(cfg, query_interval_secs=0.1, query_timeout_secs=30)  # type: ignore[arg-type]
        dest = Key.from_seed(42).address
        before = ledger.query_bank_balance(ALICE.wallet.address(), DENOM)
        assert before == query_balance(net.client, ALICE.address)
        seq = ledger.query_account(ALICE.wallet.address()).sequence
        assert seq == query_account(net.client, ALICE.address).sequence

        submitted = ledger.send_tokens(Address(dest), 12_345, DENOM, ALICE.wallet)
        result = submitted.wait_to_complete().response
        assert result is not None and result.code == 0, result
        assert result.hash == submitted.tx_hash
        assert result.height > 0

        committed = net.client.tx(submitted.tx_hash)  # CometBFT itself has the tx in that block
        assert committed is not None and int(committed["height"]) == result.height
        assert query_balance(net.client, dest) == 12_345
        assert ledger.query_bank_balance(Address(dest), DENOM) == 12_345
        fee = before - 12_345 - ledger.query_bank_balance(ALICE.wallet.address(), DENOM)
        assert fee > 0 and result.gas_used > 0
        assert ledger.query_account(ALICE.wallet.address()).sequence == seq + 1
        assert ledger.query_height() >= result.height

        # a MsgExecuteContract through cosmpy's own helper, and a wasm smart query over REST
        tx = Transaction()
        tx.add_message(msg_bank_execute(ALICE, dest, 655))
        executed = prepare_and_broadcast_basic_transaction(ledger, tx, ALICE.wallet).wait_to_complete().response
        assert executed is not None and executed.code == 0, executed
        assert net.client.tx(executed.hash) is not None
        query = {"balance": {"address": dest, "denom": DENOM}}
        reply = ledger.wasm.SmartContractState(
            QuerySmartContractStateRequest(address=BANK_CONTRACT, query_data=json.dumps(query).encode())
        )
        assert json.loads(reply.data) == {"denom": DENOM, "amount": str(12_345 + 655)}
        assert query_balance(net.client, dest) == 12_345 + 655
    finally:
        server.stop()
        backend.close()


SERVE_SCRIPT = """
import json, sys
from pathlib import Path
from cosmos_chain.comet import run_comet_chain
def report(n):
    print(json.dumps({"rpc": n.rpc_urls, "pids": [x.process.pid for x in n.nodes]}), flush=True)
net = run_comet_chain(Path(sys.argv[1]), 1, json.loads(sys.argv[2]), binary=sys.argv[3], block_time=0.15,
                      serve=True, on_started=report)
print("stopped", flush=True)
"""


def test_run_comet_chain_serve_stops_everything_on_sigterm(tool_path, tmp_path: Path) -> None:
    """``serve=True`` (the CLI's mode) runs until SIGTERM, then stops cometbft and exits cleanly."""
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT, str(tmp_path / "served"), json.dumps(make_genesis([ALICE])),
         str(tool_path("cometbft"))],
        cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "run_comet_chain did not report readiness within 60s"
        line = proc.stdout.readline()  # type: ignore[union-attr]
        started = json.loads(line)
        client = CometBackend(started["rpc"][0])
        try:
            client.wait_for_height(2, timeout=20)
            assert client.balance(ALICE.address, DENOM) == GENESIS_AMOUNT
        finally:
            client.close()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert "stopped" in out
        for pid in started["pids"]:  # the cometbft child is gone too
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
