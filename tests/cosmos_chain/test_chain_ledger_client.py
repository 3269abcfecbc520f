"""An unmodified cosmpy ``LedgerClient`` against the embedded chain over REST (``rest+http://``)."""

from __future__ import annotations

import base64
import http.client
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import grpc
import pytest
import requests
from cosmpy.aerial.client import LedgerClient, NetworkConfig
from cosmpy.aerial.client.utils import prepare_and_broadcast_basic_transaction
from cosmpy.aerial.contract import LedgerContract
from cosmpy.aerial.exceptions import BroadcastError, NotFoundError
from cosmpy.aerial.tx import SigningCfg, Transaction, TxFee
from cosmpy.crypto.address import Address
from cosmpy.protos.cosmos.tx.v1beta1.service_pb2 import BroadcastMode, BroadcastTxRequest, GetTxRequest
from cosmpy.protos.cosmos.tx.v1beta1.tx_pb2 import TxRaw
from cosmpy.protos.cosmwasm.wasm.v1.tx_pb2 import MsgExecuteContract

from cn_helpers import CHAIN_ID, DENOM, FUNDS, MIN_GAS_PRICE, genesis_for, msg_execute, msg_send, sign, wallets
from cosmos_chain.app import ChainApp
from cosmos_chain.node import EmbeddedChain
from cosmos_chain.rest import RestServer
from cosmos_chain.txcodec import tx_hash

pytestmark = pytest.mark.timeout(90)

ALICE, BOB, CAROL = wallets(3, "lc")
A, B, C = (str(w.address()) for w in (ALICE, BOB, CAROL))
TIMEOUT = 10


def _client(server: RestServer) -> LedgerClient:
    cfg = NetworkConfig(chain_id=CHAIN_ID, url=server.cosmpy_url, fee_minimum_gas_price=float(MIN_GAS_PRICE),
                        fee_denomination=DENOM, staking_denomination=DENOM)
    return LedgerClient(cfg, query_interval_secs=0.05, query_timeout_secs=TIMEOUT)  # type: ignore[arg-type]


@pytest.fixture()
def chain() -> Iterator[tuple[EmbeddedChain, RestServer, LedgerClient]]:
    node = EmbeddedChain(ChainApp(CHAIN_ID), block_interval=0.2, genesis=genesis_for([ALICE, BOB]))
    server = RestServer(node).start()
    try:
        yield node, server, _client(server)
    finally:
        server.stop()
        node.stop()


def _signed_send(client: LedgerClient, wallet, to: str, amount: int, *, chain_id: str = CHAIN_ID,
                 sequence: int | None = None) -> bytes:
    acct = client.query_account(wallet.address())
    return sign(wallet, [msg_send(wallet, to, amount)], account_number=acct.number, chain_id=chain_id,
                sequence=acct.sequence if sequence is None else sequence)


def _broadcast(client: LedgerClient, raw: bytes, mode: int = BroadcastMode.BROADCAST_MODE_SYNC):
    return client.txs.BroadcastTx(BroadcastTxRequest(tx_bytes=raw, mode=mode)).tx_response


def test_query_account_numbers_and_sequences(chain) -> None:
    node, server, client = chain
    a, b = client.query_account(ALICE.address()), client.query_account(BOB.address())
    assert (a.number, a.sequence) == (node.app.account(A)["account_number"], 0)
    assert (b.number, b.sequence) == (node.app.account(B)["account_number"], 0)
    assert a.number != b.number
    with pytest.raises(RuntimeError, match="404"):
        client.query_account(CAROL.address())  # never funded
    r = requests.get(f"{server.url}/cosmos/auth/v1beta1/accounts/{C}", timeout=5)
    assert r.status_code == 404 and r.json()["code"] == 5 and C in r.json()["message"] and r.json()["details"] == []
    r = requests.get(f"{server.url}/cosmos/auth/v1beta1/accounts/not-an-address", timeout=5)
    assert r.status_code == 400 and "bech32" in r.json()["message"]
    r = requests.get(f"{server.url}/cosmos/nope/v1/thing", timeout=5)
    assert r.status_code == 501 and r.json()["code"] == 12


def test_send_tokens_updates_balances(chain) -> None:
    node, _, client = chain
    assert client.query_bank_balance(ALICE.address()) == FUNDS
    tx = client.send_tokens(CAROL.address(), 12_345, DENOM, ALICE).wait_to_complete(timeout=TIMEOUT, poll_period=0.05)
    resp = tx.response
    assert resp is not None and resp.code == 0 and resp.height >= 1
    assert resp.events["transfer"]["recipient"] == C
    fee = FUNDS - 12_345 - client.query_bank_balance(ALICE.address())
    offered = client.txs.GetTx(GetTxRequest(hash=resp.hash)).tx.auth_info.fee
    assert [(c.denom, int(c.amount)) for c in offered.amount] == [(DENOM, fee)]  # the chain took what was offered
    assert offered.gas_limit == resp.gas_wanted and fee >= -(-resp.gas_wanted // 100)  # ≥ ceil(gas × 0.01)
    assert resp.gas_used <= resp.gas_wanted
    assert client.query_bank_balance(CAROL.address()) == 12_345
    assert [(c.denom, int(c.amount)) for c in client.query_bank_all_balances(CAROL.address())] == [(DENOM, 12_345)]
    assert client.query_account(ALICE.address()).sequence == 1
    assert node.app.balance(C, DENOM) == 12_345  # the chain agrees with what REST reported
    # the tx is in the block cosmpy reports
    assert resp.hash in client.query_block(resp.height).tx_hashes


def test_simulate_matches_the_app(chain) -> None:
    node, _, client = chain
    acct = client.query_account(ALICE.address())
    tx = Transaction()
    tx.add_message(msg_send(ALICE, B, 10))
    tx.seal(SigningCfg.direct(ALICE.public_key(), acct.sequence), fee=TxFee([], 0))
    tx.sign(ALICE.signer(), CHAIN_ID, acct.number)
    tx.complete()
    gas = client.simulate_tx(tx)
    assert gas > 0
    assert gas == node.app.simulate(tx.tx.SerializeToString()).gas_used
    assert client.estimate_gas_for_tx(tx) >= gas  # cosmpy multiplier; consensus max_gas -1 does not clip
    # a tx that cannot succeed: simulation reports why
    tx2 = Transaction()
    tx2.add_message(msg_send(ALICE, B, FUNDS * 10))
    tx2.seal(SigningCfg.direct(ALICE.public_key(), acct.sequence), fee=TxFee([], 0))
    tx2.sign(ALICE.signer(), CHAIN_ID, acct.number)
    tx2.complete()
    with pytest.raises(RuntimeError, match="insufficient funds"):
        client.simulate_tx(tx2)


def test_query_tx_unknown_hash_is_not_found(chain) -> None:
    _, server, client = chain
    with pytest.raises(NotFoundError):
        client.query_tx("AB" * 32)
    r = requests.get(f"{server.url}/cosmos/tx/v1beta1/txs/{'AB' * 32}", timeout=5)
    assert r.status_code == 404 and r.json()["message"] == f"tx not found: {'AB' * 32}"
    r = requests.get(f"{server.url}/cosmos/tx/v1beta1/txs/xyz", timeout=5)
    assert r.status_code == 400


def test_bad_signatures_are_rejected_with_a_reason(chain) -> None:
    node, _, client = chain
    wrong_chain = _signed_send(client, ALICE, B, 5, chain_id="some-other-chain")
    r = _broadcast(client, wrong_chain)
    assert r.code == 4 and "signature verification failed" in r.raw_log and CHAIN_ID in r.raw_log
    good = _signed_send(client, ALICE, B, 5)
    raw = TxRaw.FromString(good)
    sig = bytearray(raw.signatures[0])
    sig[10] ^= 1
    raw.signatures[0] = bytes(sig)
    r = _broadcast(client, raw.SerializeToString())
    assert r.code == 4 and "signature verification failed" in r.raw_log
    # signed by Bob's key on Alice's behalf
    acct = client.query_account(ALICE.address())
    impostor = Transaction()
    impostor.add_message(msg_send(ALICE, C, 5))
    impostor.seal(SigningCfg.direct(BOB.public_key(), acct.sequence),
                  fee=TxFee(amount=f"2000{DENOM}", gas_limit=200_000))
    impostor.sign(BOB.signer(), CHAIN_ID, acct.number)
    impostor.complete()
    with pytest.raises(BroadcastError, match="does not match signer"):
        client.broadcast_tx(impostor)
    assert node.mempool() == [] and node.app.account(A)["sequence"] == 0


def test_wrong_sequence_and_replay_are_rejected(chain) -> None:
    node, _, client = chain
    r = _broadcast(client, _signed_send(client, ALICE, B, 5, sequence=3))
    assert r.code == 32 and "account sequence mismatch" in r.raw_log and "expected 0, got 3" in r.raw_log
    raw = _signed_send(client, ALICE, B, 5)
    first = _broadcast(client, raw, BroadcastMode.BROADCAST_MODE_BLOCK)  # waits for the block
    assert first.code == 0 and int(first.height) >= 1
    before = client.query_bank_balance(BOB.address())
    again = _broadcast(client, raw)
    assert again.code != 0 and "replay" in again.raw_log
    node.wait_for_height(node.height + 1, timeout=TIMEOUT)
    assert client.query_bank_balance(BOB.address()) == before  # nothing applied twice
    assert client.query_tx(tx_hash(raw)).height == int(first.height)


def test_async_mode_and_duplicate_in_mempool() -> None:
    node = EmbeddedChain(ChainApp(CHAIN_ID), genesis=genesis_for([ALICE, BOB]))  # manual blocks
    with RestServer(node) as server:
        client = _client(server)
        raw = _signed_send(client, ALICE, B, 7)
        r = _broadcast(client, raw, BroadcastMode.BROADCAST_MODE_ASYNC)
        assert r.code == 0 and r.txhash == tx_hash(raw)
        dup = _broadcast(client, raw)
        assert dup.code == 19 and "already in mempool" in dup.raw_log
        with pytest.raises(NotFoundError):
            client.query_tx(r.txhash)
        node.produce_block()
        assert client.query_tx(r.txhash).code == 0
        resp = requests.post(f"{server.url}/cosmos/tx/v1beta1/txs",
                             json={"tx_bytes": base64.b64encode(raw).decode()}, timeout=5)
        assert resp.status_code == 400  # BROADCAST_MODE_UNSPECIFIED


def test_smart_queries_and_contract_execution_through_cosmpy(chain) -> None:
    node, server, client = chain
    bank = node.app.module_address("bank")
    contract = LedgerContract(None, client, Address(bank))
    assert contract.query({"balance": {"address": A, "denom": DENOM}}) == {"denom": DENOM, "amount": str(FUNDS)}
    assert contract.query({"all_balances": {"address": B}}) == [{"denom": DENOM, "amount": str(FUNDS)}]
    auth = LedgerContract(None, client, Address(node.app.module_address("auth")))
    assert auth.query({"account": {"address": A}})["account_number"] == node.app.account(A)["account_number"]
    with pytest.raises(RuntimeError, match="unknown query"):
        contract.query({"no_such_query": {}})
    with pytest.raises(RuntimeError, match="404"):
        LedgerContract(None, client, Address(node.app.module_address("nothing-here"))).query({"x": {}})
    # a JSON message executed via cosmpy: simulate (JSON-posted tx, signature checked) then broadcast
    tx = Transaction()
    body = {"send": {"to_address": C, "amount": [{"denom": DENOM, "amount": "321"}]}}
    tx.add_message(msg_execute(ALICE, bank, body))
    submitted = prepare_and_broadcast_basic_transaction(client, tx, ALICE).wait_to_complete(
        timeout=TIMEOUT, poll_period=0.05)
    assert submitted.response is not None and submitted.response.code == 0
    assert contract.query({"balance": {"address": C, "denom": DENOM}})["amount"] == "321"
    got = client.txs.GetTx(GetTxRequest(hash=submitted.tx_hash))
    sent = MsgExecuteContract()
    assert got.tx.body.messages[0].Unpack(sent)
    assert sent.contract == bank and json.loads(sent.msg) == body
    # the base64 of some queries contains '/', which must not break routing
    q = {"balance": {"address": A, "denom": "u???"}}
    assert "/" in base64.b64encode(json.dumps(q).encode()).decode()
    assert contract.query(q) == {"denom": "u???", "amount": "0"}


def test_blocks_node_info_and_chain_id(chain) -> None:
    node, server, client = chain
    node.wait_for_height(2, timeout=TIMEOUT)
    latest = client.query_latest_block()
    assert latest.chain_id == CHAIN_ID == client.query_chain_id()
    assert latest.height >= 2 and client.query_height() >= latest.height
    b1 = client.query_block(1)
    rec = node.app.get_block(1)
    assert b1.height == 1 and abs(b1.time.timestamp() - rec["time"]) < 1e-5
    assert client.query_block(2).time > b1.time
    raw = requests.get(f"{server.url}/cosmos/base/tendermint/v1beta1/blocks/2", timeout=5).json()
    assert base64.b64decode(raw["block"]["header"]["app_hash"]).hex() == rec["result_app_hash"]
    assert base64.b64decode(raw["block"]["header"]["last_block_id"]["hash"]).hex().upper() == rec["hash"]
    info = client.query_node_info()
    assert info.app_name == "btcmesh" and str(info.cosmos_sdk_version).startswith("0.50")
    with pytest.raises(RuntimeError, match="400"):
        client.query_block(10_000)


def test_restart_persistence_over_rest(tmp_path) -> None:
    app = ChainApp(CHAIN_ID, home=tmp_path)
    node = EmbeddedChain(app, block_interval=0.1, genesis=genesis_for([ALICE, BOB]))
    with RestServer(node) as server:
        client = _client(server)
        client.send_tokens(CAROL.address(), 1_000, DENOM, ALICE).wait_to_complete(timeout=TIMEOUT, poll_period=0.05)
    node.stop()
    height, app_hash = app.info()
    balances = {a: app.balance(a, DENOM) for a in (A, B, C)}
    app.close()

    app2 = ChainApp(CHAIN_ID, home=tmp_path)
    assert app2.info() == (height, app_hash)
    node2 = EmbeddedChain(app2, block_interval=0.1)
    try:
        with RestServer(node2) as server:
            client = _client(server)
            assert client.query_height() >= height
            for addr, wallet in zip((A, B, C), (ALICE, BOB, CAROL)):
                assert client.query_bank_balance(wallet.address()) == balances[addr]
            assert client.query_account(ALICE.address()).sequence == 1
            resp = client.send_tokens(CAROL.address(), 1, DENOM, ALICE).wait_to_complete(
                timeout=TIMEOUT, poll_period=0.05).response
            assert resp is not None and resp.height > height
            assert client.query_bank_balance(CAROL.address()) == balances[C] + 1
            assert client.query_block(height).height == height  # old blocks still served
    finally:
        node2.stop()
        app2.close()


def test_same_subset_over_grpc() -> None:
    from cosmos_chain.grpc_server import GrpcServer

    node = EmbeddedChain(ChainApp(CHAIN_ID), block_interval=0.2, genesis=genesis_for([ALICE, BOB]))
    server = GrpcServer(node).start()
    try:
        cfg = NetworkConfig(chain_id=CHAIN_ID, url=server.cosmpy_url, fee_minimum_gas_price=float(MIN_GAS_PRICE),
                            fee_denomination=DENOM, staking_denomination=DENOM)
        client = LedgerClient(cfg, query_interval_secs=0.05, query_timeout_secs=TIMEOUT)  # type: ignore[arg-type]
        assert client.query_account(ALICE.address()).sequence == 0
        with pytest.raises(grpc.RpcError) as info:
            client.query_account(CAROL.address())
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        resp = client.send_tokens(CAROL.address(), 99, DENOM, ALICE).wait_to_complete(
            timeout=TIMEOUT, poll_period=0.05).response
        assert resp is not None and resp.code == 0 and resp.events["transfer"]["amount"] == f"99{DENOM}"
        assert client.query_bank_balance(CAROL.address()) == 99
        assert [c.denom for c in client.query_bank_all_balances(CAROL.address())] == [DENOM]
        with pytest.raises(NotFoundError):
            client.query_tx("CD" * 32)
        bank = node.app.module_address("bank")
        contract = LedgerContract(None, client, Address(bank))
        assert contract.query({"balance": {"address": C, "denom": DENOM}})["amount"] == "99"
        tx = Transaction()
        one = {"send": {"to_address": C, "amount": [{"denom": DENOM, "amount": "1"}]}}
        tx.add_message(msg_execute(ALICE, bank, one))
        done = prepare_and_broadcast_basic_transaction(client, tx, ALICE).wait_to_complete(timeout=TIMEOUT,
                                                                                        poll_period=0.05)
        assert done.response is not None and done.response.code == 0
        assert client.query_bank_balance(CAROL.address()) == 100
        r = _broadcast(client, _signed_send(client, ALICE, B, 5, chain_id="elsewhere"))
        assert r.code == 4 and "signature verification failed" in r.raw_log
        latest = client.query_latest_block()
        assert latest.chain_id == CHAIN_ID and resp.hash in client.query_block(resp.height).tx_hashes
        assert client.query_node_info().app_name == "btcmesh"
    finally:
        server.stop()
        node.stop()


def test_concurrent_clients_all_land() -> None:
    """Several wallets send in parallel through REST while blocks are produced: nothing lost or doubled."""
    senders = wallets(4, "lc-par")
    node = EmbeddedChain(ChainApp(CHAIN_ID), block_interval=0.1, genesis=genesis_for(senders))
    try:
        with RestServer(node) as server:
            def run(w) -> list[int]:
                client = _client(server)
                heights = []
                for i in range(3):
                    r = client.send_tokens(CAROL.address(), 10 + i, DENOM, w).wait_to_complete(
                        timeout=TIMEOUT, poll_period=0.05).response
                    assert r is not None and r.code == 0
                    heights.append(r.height)
                return heights

            with ThreadPoolExecutor(4) as pool:
                results = list(pool.map(run, senders, timeout=60))
            client = _client(server)
            assert client.query_bank_balance(CAROL.address()) == 4 * (10 + 11 + 12)
            for w, heights in zip(senders, results):
                assert heights == sorted(heights) and len(set(heights)) == 3  # one tx per block per sender
                assert client.query_account(w.address()).sequence == 3
    finally:
        node.stop()
    assert node.error is None


def test_http_error_shapes(chain) -> None:
    _, server, _ = chain
    base = f"{server.url}/cosmos"
    r = requests.post(f"{base}/tx/v1beta1/txs", data=b"{not json", timeout=5)
    assert r.status_code == 400 and "not JSON" in r.json()["message"]
    r = requests.post(f"{base}/tx/v1beta1/txs", json=[1, 2], timeout=5)
    assert r.status_code == 400
    r = requests.post(f"{base}/tx/v1beta1/txs", json={"tx_bytes": "", "mode": "BROADCAST_MODE_SYNC"}, timeout=5)
    assert r.status_code == 400 and "empty" in r.json()["message"]
    r = requests.post(f"{base}/tx/v1beta1/simulate", json={"tx_bytes": base64.b64encode(b"junk").decode()}, timeout=5)
    assert r.status_code == 400 and r.json()["code"] == 3  # tx decode error, InvalidArgument
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.putrequest("POST", "/cosmos/tx/v1beta1/txs")
    conn.putheader("Content-Length", str(10 << 20))  # announced, never sent
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 400 and "length" in json.loads(resp.read())["message"]
    conn.close()
    r = requests.get(f"{base}/bank/v1beta1/balances/{A}/by_denom", timeout=5)
    assert r.status_code == 400 and "denom" in r.json()["message"]
    r = requests.get(f"{base}/bank/v1beta1/balances/{A}", timeout=5)
    assert r.status_code == 200 and r.json()["balances"] == [{"denom": DENOM, "amount": str(FUNDS)}]
    r = requests.get(f"{server.url}/cosmwasm/wasm/v1/contract/{A}/smart/!!!", timeout=5)
    assert r.status_code == 400 and "base64" in r.json()["message"]
    q = base64.b64encode(b"not json").decode()
    r = requests.get(f"{server.url}/cosmwasm/wasm/v1/contract/{A}/smart/{q}", timeout=5)
    assert r.status_code == 400 and "not JSON" in r.json()["message"]


def test_stop_closes_keepalive_connections() -> None:
    node = EmbeddedChain(ChainApp(CHAIN_ID), genesis=genesis_for([ALICE]))
    server = RestServer(node).start()
    session = requests.Session()
    url = f"{server.url}/cosmos/base/tendermint/v1beta1/syncing"
    assert session.get(url, timeout=5).json() == {"syncing": False}
    server.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(url, timeout=5)


def test_local_chain_convenience(tmp_path) -> None:
    from cosmos_chain.rest import LocalChain

    with LocalChain(CHAIN_ID, genesis_for([ALICE]), home=str(tmp_path), block_interval=0.1) as chain:
        client = chain.ledger_client(query_interval_secs=0.05)
        assert client.network_config.fee_denomination == DENOM
        assert client.network_config.fee_minimum_gas_price == float(MIN_GAS_PRICE)
        client.send_tokens(BOB.address(), 5, DENOM, ALICE).wait_to_complete(timeout=TIMEOUT, poll_period=0.05)
        assert client.query_bank_balance(BOB.address()) == 5
    with LocalChain(CHAIN_ID, None, home=str(tmp_path)) as again:  # reopened from disk
        assert again.ledger_client().query_bank_balance(BOB.address()) == 5
