"""ABCI socket framing and server robustness (no application state involved).

The uvarint framing is checked against protobuf's own varint encoder/decoder and CometBFT's
tx-size accounting against the real ``tendermint.types.Data`` message, so a mismatch with the
Go side (``libs/protoio``: ``binary.PutUvarint``) would show up here.
"""

from __future__ import annotations

import threading
import time

import pytest
from cosmpy.protos.tendermint.abci import types_pb2 as abci
from cosmpy.protos.tendermint.types import types_pb2 as cmt_types
from google.protobuf.internal.decoder import _DecodeVarint  # type: ignore[attr-defined]
from google.protobuf.internal.encoder import _VarintBytes  # type: ignore[attr-defined]

from cosmos_chain.abci import (
    ABCIClient,
    ABCIServer,
    decode_uvarint,
    encode_uvarint,
    events_to_proto,
    frame,
    proto_size_of_txs,
)

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
