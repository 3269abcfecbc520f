"""ABCI socket framing, server robustness, and a block lifecycle against a real ChainApp (no CometBFT).

The uvarint framing is checked against protobuf's own varint encoder/decoder and CometBFT's
tx-size accounting against the real ``tendermint.types.Data`` message, so a mismatch with the
Go side (``libs/protoio``: ``binary.PutUvarint``) would show up here.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from cosmpy.protos.tendermint.abci import types_pb2 as abci
from cosmpy.protos.tendermint.types import types_pb2 as cmt_types
from google.protobuf.internal.decoder import _DecodeVarint  # type: ignore[attr-defined]
from google.protobuf.internal.encoder import _VarintBytes  # type: ignore[attr-defined]
from google.protobuf.timestamp_pb2 import Timestamp

from cmt_helpers import DENOM, GAS_LIMIT, Key, make_genesis, msg_send, sign_tx

from cosmos_chain.abci import (
    ABCIClient,
    ABCIServer,
    decode_uvarint,
    encode_uvarint,
    events_to_proto,
    frame,
    proto_size_of_txs,
)
from cosmos_chain.app import ChainApp

VALUES = [0, 1, 127, 128, 255, 300, 16383, 16384, 2**21, 2**31 - 1, 2**32, 2**63 - 1, 2**64 - 1]


@pytest.mark.parametrize("value", VALUES)
def test_uvarint_matches_protobuf(value: int) -> None:
    """Our uvarint is byte-identical to protobuf's varint and round-trips."""
    encoded = encode_uvarint(value)
    assert encoded == _VarintBytes(value)
    assert decode_uvarint(encoded + b"tail") == (value, len(encoded))
    assert _DecodeVarint(encoded, 0) == (value, len(encoded))


def test_uvarint_partial_and_invalid() -> None:
    """A truncated varint means 'need more bytes'; negatives and >64-bit values are rejected."""
    assert decode_uvarint(encode_uvarint(300)[:1]) is None
    assert decode_uvarint(b"") is None
    with pytest.raises(ValueError):
        encode_uvarint(-1)
    with pytest.raises(ValueError):
        decode_uvarint(b"\xff" * 10 + b"\x01")


def test_frame_is_delimited_proto() -> None:
    """A frame is uvarint(len) + the serialized message."""
    req = abci.Request(echo=abci.RequestEcho(message="x" * 200))
    body = req.SerializeToString()
    assert frame(req) == _VarintBytes(len(body)) + body


def test_proto_size_of_txs_matches_data_message() -> None:
    """PrepareProposal's byte accounting equals ``Data{txs}.ByteSize()`` (CometBFT's ComputeProtoSizeForTxs)."""
    txs = [b"", b"a", b"b" * 127, b"c" * 128, b"d" * 20000]
    assert proto_size_of_txs(txs) == cmt_types.Data(txs=txs).ByteSize()


def test_events_conversion_shapes() -> None:
    """Dict, pair and mapping event shapes all become ABCI events."""
    events = events_to_proto(
        [
            {"type": "transfer", "attributes": [{"key": "amount", "value": "5ubbn"}]},
            ("message", {"action": "send"}),
            {"type": "x", "attributes": [("k", b"v")]},
        ]
    )
    assert [(e.type, [(a.key, a.value) for a in e.attributes]) for e in events] == [
        ("transfer", [("amount", "5ubbn")]),
        ("message", [("action", "send")]),
        ("x", [("k", "v")]),
    ]


@pytest.fixture()
def bare_server():
    """An ABCI server with no application: Echo/Flush/malformed input only."""
    server = ABCIServer(app=None).start()  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


def test_echo_flush_roundtrip(bare_server: ABCIServer) -> None:
    """Echo is answered, followed by the Flush response, in order."""
    with ABCIClient("127.0.0.1", bare_server.port) as client:
        assert client.request(echo=abci.RequestEcho(message="hello")).echo.message == "hello"


def test_pipelined_requests_split_bytewise(bare_server: ABCIServer) -> None:
    """Many requests written byte by byte are all answered in order (partial frames are buffered)."""
    requests = [abci.Request(echo=abci.RequestEcho(message=f"m{i}" * (i * 20))) for i in range(30)]
    data = b"".join(frame(r) for r in requests) + frame(abci.Request(flush=abci.RequestFlush()))
    with ABCIClient("127.0.0.1", bare_server.port) as client:
        for i in range(0, len(data), 7):
            client.sock.sendall(data[i : i + 7])
        for i in range(30):
            assert client.recv().echo.message == f"m{i}" * (i * 20)
        assert client.recv().WhichOneof("value") == "flush"


def test_large_message(bare_server: ABCIServer) -> None:
    """A multi-megabyte request (like a full block) is read across many recv() calls."""
    with ABCIClient("127.0.0.1", bare_server.port) as client:
        big = "z" * (3 * 1024 * 1024)
        assert client.request(echo=abci.RequestEcho(message=big)).echo.message == big


def test_malformed_and_unknown_requests_do_not_kill_server(bare_server: ABCIServer) -> None:
    """Undecodable bytes and an empty Request get an exception response; the connection lives on."""
    with ABCIClient("127.0.0.1", bare_server.port) as client:
        client.sock.sendall(encode_uvarint(3) + b"\xff\xff\xff")
        assert client.recv().WhichOneof("value") == "exception"
        client.send(abci.Request())
        response = client.recv()
        assert response.WhichOneof("value") == "exception"
        assert "unknown" in response.exception.error
        assert client.request(echo=abci.RequestEcho(message="still alive")).echo.message == "still alive"


def test_many_connections_and_stop(bare_server: ABCIServer) -> None:
    """Four concurrent connections (CometBFT's consensus/mempool/query/snapshot) are served; stop() is bounded."""
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with ABCIClient("127.0.0.1", bare_server.port) as client:
                for i in range(50):
                    assert client.request(echo=abci.RequestEcho(message=f"{n}-{i}")).echo.message == f"{n}-{i}"
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    idle = ABCIClient("127.0.0.1", bare_server.port)
    started = time.monotonic()
    bare_server.stop()
    assert time.monotonic() - started < 5
    with pytest.raises((ConnectionError, OSError)):
        idle.request(echo=abci.RequestEcho(message="after stop"))
    idle.close()


def test_server_refuses_non_loopback() -> None:
    """The ABCI server only binds loopback."""
    with pytest.raises(ValueError):
        ABCIServer(app=None, host="0.0.0.0")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# a full ABCI 2.0 block lifecycle against a real ChainApp, over the socket (no CometBFT)


CHAIN_ID = "abci-socket-1"
ALICE, BOB = Key.from_seed(31), Key.from_seed(32)


@pytest.fixture()
def app_server(tmp_path):
    """A ChainApp with a SQLite home behind an ABCI server; always stopped and closed."""
    app = ChainApp(CHAIN_ID, tmp_path / "app")
    server = ABCIServer(app).start()
    try:
        yield server
    finally:
        server.stop()
        app.close()


def _init(client: ABCIClient, genesis: dict, chain_id: str = CHAIN_ID) -> abci.Response:
    request = abci.RequestInitChain(chain_id=chain_id, app_state_bytes=json.dumps(genesis).encode(), initial_height=1)
    return client.request(init_chain=request)


def test_block_lifecycle_over_socket(app_server: ABCIServer) -> None:
    """Info → InitChain → CheckTx → PrepareProposal → ProcessProposal → FinalizeBlock → Commit → Info/Query."""
    with ABCIClient("127.0.0.1", app_server.port) as client:
        info = client.request(info=abci.RequestInfo()).info
        assert (info.last_block_height, info.last_block_app_hash) == (0, b"")
        genesis_hash = _init(client, make_genesis([ALICE])).init_chain.app_hash
        assert len(genesis_hash) == 32

        good = sign_tx(ALICE, [msg_send(ALICE, BOB.address, 500)], sequence=0, account_number=0, chain_id=CHAIN_ID)
        wrong_chain = sign_tx(ALICE, [msg_send(ALICE, BOB.address, 500)], sequence=0, account_number=0, chain_id="x")
        bad = client.request(check_tx=abci.RequestCheckTx(tx=wrong_chain)).check_tx
        assert bad.code == 4 and "signature verification failed" in bad.log
        check = client.request(check_tx=abci.RequestCheckTx(tx=good, type=abci.CheckTxType.NEW)).check_tx
        assert check.code == 0 and check.gas_wanted == GAS_LIMIT and check.gas_used > 0, check.log
        junk = client.request(check_tx=abci.RequestCheckTx(tx=b"\x01garbage")).check_tx
        assert junk.code == 2 and junk.log

        # PrepareProposal keeps txs in order and drops what does not fit in max_tx_bytes
        limit = proto_size_of_txs([good])
        prep = client.request(prepare_proposal=abci.RequestPrepareProposal(
            txs=[good, b"y" * 100], max_tx_bytes=limit, height=1)).prepare_proposal
        assert list(prep.txs) == [good]
        proc = client.request(process_proposal=abci.RequestProcessProposal(txs=[good], height=1)).process_proposal
        assert proc.status == abci.ResponseProcessProposal.ProposalStatus.ACCEPT

        fin = client.request(finalize_block=abci.RequestFinalizeBlock(
            txs=[wrong_chain, good], height=1, time=Timestamp(seconds=1_700_000_000))).finalize_block
        assert [r.code for r in fin.tx_results] == [4, 0]
        assert {e.type for e in fin.tx_results[1].events} >= {"transfer", "tx"}
        assert len(fin.app_hash) == 32 and fin.app_hash != genesis_hash
        client.request(commit=abci.RequestCommit())
        info = client.request(info=abci.RequestInfo()).info
        assert (info.last_block_height, info.last_block_app_hash) == (1, fin.app_hash)
        assert app_server.app_hashes == {1: fin.app_hash}

        q = client.request(query=abci.RequestQuery(path="/smart/bank", data=json.dumps(
            {"balance": {"address": BOB.address, "denom": DENOM}}).encode())).query
        assert q.code == 0 and json.loads(q.value)["amount"] == "500" and q.height == 1
        q = client.request(query=abci.RequestQuery(path="/nope")).query
        assert q.code != 0 and "unknown query path" in q.log
        # the replay of a committed tx is refused at CheckTx
        again = client.request(check_tx=abci.RequestCheckTx(tx=good)).check_tx
        assert again.code == 19 and "replay" in again.log


def test_consensus_errors_become_exceptions(app_server: ABCIServer) -> None:
    """A FinalizeBlock at the wrong height or an InitChain for another chain halts (exception), the server lives."""
    with ABCIClient("127.0.0.1", app_server.port) as client:
        wrong = _init(client, make_genesis([ALICE]), chain_id="another-chain")
        assert wrong.WhichOneof("value") == "exception" and "chain_id" in wrong.exception.error
        assert _init(client, make_genesis([ALICE])).WhichOneof("value") == "init_chain"
        skip = client.request(finalize_block=abci.RequestFinalizeBlock(height=5, time=Timestamp(seconds=1)))
        assert skip.WhichOneof("value") == "exception" and "expected height 1" in skip.exception.error
        commit = client.request(commit=abci.RequestCommit())
        assert commit.WhichOneof("value") == "exception"  # nothing finalized
        assert app_server.errors and app_server.app.info() == (0, b"")
        assert client.request(echo=abci.RequestEcho(message="alive")).echo.message == "alive"


def test_restart_handshake_reports_persisted_state(tmp_path) -> None:
    """A new app + server over the same home answers Info with the committed height and app hash."""
    home = tmp_path / "app"
    app = ChainApp(CHAIN_ID, home)
    with ABCIServer(app) as server, ABCIClient("127.0.0.1", server.port) as client:
        _init(client, make_genesis([ALICE]))
        hashes = []
        for h in (1, 2, 3):
            fin = client.request(finalize_block=abci.RequestFinalizeBlock(height=h, time=Timestamp(seconds=h)))
            client.request(commit=abci.RequestCommit())
            hashes.append(fin.finalize_block.app_hash)
    app.close()
    again = ChainApp(CHAIN_ID, home)
    try:
        with ABCIServer(again) as server, ABCIClient("127.0.0.1", server.port) as client:
            info = client.request(info=abci.RequestInfo()).info
            assert (info.last_block_height, info.last_block_app_hash) == (3, hashes[-1])
            assert server.info_responses[-1].height == 3
            nxt = client.request(finalize_block=abci.RequestFinalizeBlock(height=4, time=Timestamp(seconds=4)))
            assert nxt.WhichOneof("value") == "finalize_block"
    finally:
        again.close()
