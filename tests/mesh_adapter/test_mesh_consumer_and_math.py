"""Converter (price x (1 - discount)), virtual staking cap, and exact integer math helpers."""

from __future__ import annotations

import pytest

from mesh_adapter.converter import Converter, VirtualStaking
from mesh_adapter.errors import (
    InsufficientBalance, InvalidConfig, InvalidDecimal, InvalidMessage, Unauthorized, UnexpectedDenom,
)
from mesh_adapter.framework import MeshApp, from_binary, to_binary
from mesh_adapter.numeric import Dec, ValueRange, coin, max_range, parse_uint


def consumer(price="18", discount="0.4", cap=10**9):
    app = MeshApp()
    app.instantiate(VirtualStaking, "vs", {"denom": "CONS", "converter": "conv", "max_cap": cap, "admin": "gov"})
    app.instantiate(Converter, "conv", {"price": price, "discount": discount, "remote_denom": "PROV",
                                        "local_denom": "CONS", "virtual_staking": "vs", "provider": "ext",
                                        "admin": "gov"})
    return app


def packet(app, kind, body):
    return app.execute("ext", "conv", {"provider_packet": {kind: body}})


def deleg(app, v):
    return int(app.query("vs", {"delegation": {"validator": v}})["amount"])


def test_converter_docs_example():
    """Converter.md: 100 PROV * 18 CONS/PROV * (1 - 0.4) = 1080 CONS."""
    app = consumer()
    assert app.query("conv", {"normalize": {"amount": coin(100, "PROV")}}) == coin(1080, "CONS")
    packet(app, "stake", {"validator": "v", "stake": coin(100, "PROV"), "tx_id": 1})
    assert deleg(app, "v") == 1080
    packet(app, "unstake", {"validator": "v", "unstake": coin(50, "PROV"), "tx_id": 2})
    assert deleg(app, "v") == 540
    packet(app, "burn", {"validators": ["v"], "burn": coin(10, "PROV")})
    assert deleg(app, "v") == 540 - 108


def test_converter_rounds_down_and_checks_inputs():
    app = consumer(price="0.0005", discount="0.1")
    # 12_345 sat * 0.0005 = 6.1725 -> 6; * 0.9 = 5.4 -> 5
    assert app.query("conv", {"normalize": {"amount": coin(12_345, "PROV")}}) == coin(5, "CONS")
    with pytest.raises(Unauthorized):
        app.execute("mallory", "conv", {"provider_packet": {"stake": {"validator": "v", "stake": coin(1, "PROV")}}})
    with pytest.raises(UnexpectedDenom):
        packet(app, "stake", {"validator": "v", "stake": coin(1, "CONS")})
    with pytest.raises(InvalidMessage):
        packet(app, "teleport", {})
    with pytest.raises(InvalidConfig):
        app.instantiate(Converter, "c2", {"price": "1", "discount": "1.5", "remote_denom": "a",
                                          "local_denom": "b", "virtual_staking": "vs", "provider": "p"})
    with pytest.raises(Unauthorized):
        app.execute("mallory", "conv", {"update_price": {"price": "2"}})
    app.execute("gov", "conv", {"update_price": {"price": "2"}})
    assert app.query("conv", {"normalize": {"amount": coin(10, "PROV")}}) == coin(18, "CONS")


def test_virtual_staking_cap_scales_and_recovers():
    app = consumer(price="1", discount="0", cap=1000)
    packet(app, "stake", {"validator": "a", "stake": coin(900, "PROV")})
    packet(app, "stake", {"validator": "b", "stake": coin(600, "PROV")})
    # 1500 requested > 1000 cap: a = 900 * 1000 // 1500, b = 600 * 1000 // 1500
    assert (deleg(app, "a"), deleg(app, "b")) == (600, 400)
    assert app.query("vs", {"bond_status": {}}) == {"cap": coin(1000, "CONS"), "delegated": coin(1000, "CONS")}
    packet(app, "unstake", {"validator": "b", "unstake": coin(600, "PROV")})
    assert (deleg(app, "a"), deleg(app, "b")) == (900, 0)
    with pytest.raises(InsufficientBalance):
        packet(app, "unstake", {"validator": "b", "unstake": coin(1, "PROV")})
    with pytest.raises(Unauthorized):
        app.execute("conv2", "vs", {"bond": {"validator": "a", "amount": coin(1, "CONS")}})
    app.execute("gov", "vs", {"set_max_cap": {"max_cap": "500"}})
    assert deleg(app, "a") == 500


def test_dec_parsing_and_rounding():
    assert str(Dec.parse("0.1")) == "0.1" and str(Dec.parse("1.50")) == "1.5" and str(Dec.parse(2)) == "2"
    assert Dec.percent(10) == Dec.parse("0.1")
    assert Dec.parse("0.1").mul_floor(15) == 1 and Dec.parse("0.1").mul_ceil(15) == 2
    assert Dec.parse("1.6").inv() == Dec.parse("0.625")
    assert Dec.parse("1.6").inv().mul_ceil(35) == 22  # Slashing.md scenario 5
    assert Dec.parse("0.000000000000000001").atomics == 1
    for bad in ("", "-0.1", "1e5", "0.1.2", "0.0000000000000000001", 0.1, None, True):
        with pytest.raises(InvalidDecimal):
            Dec.parse(bad)
    with pytest.raises(InvalidDecimal):
        Dec.zero().inv()


def test_value_range_semantics():
    r = ValueRange.val(100)
    r.prepare_add(50, 200)
    assert (r.low, r.high) == (100, 150)
    r.commit_add(50)
    assert r.is_exact() and r.low == 150
    r.prepare_sub(30, 0)
    assert (r.low, r.high) == (120, 150)
    r.rollback_sub(30)
    assert (r.low, r.high) == (150, 150)
    with pytest.raises(InsufficientBalance):
        r.prepare_add(51, 200)
    with pytest.raises(InsufficientBalance):
        r.sub(151, 0)
    assert max_range(ValueRange(1, 9), ValueRange(5, 6)) == ValueRange(5, 9)
    assert ValueRange.from_json(r.to_json()) == r


def test_uint_and_binary_parsing():
    assert parse_uint("340282366920938463463374607431768211455") == 2**128 - 1
    for bad in ("-1", "1.0", "", 2**128, True, None, " 1"):
        with pytest.raises(InvalidMessage):
            parse_uint(bad)
    assert from_binary(to_binary({"validator": "v"})) == {"validator": "v"}
    with pytest.raises(InvalidMessage):
        from_binary("not base64!")
