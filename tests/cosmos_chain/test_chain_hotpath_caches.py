"""The CheckTx/DeliverTx hot-path shortcuts (cached bech32 work, TxResult.to_dict without asdict)
give exactly what the plain code gives, errors included."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import asdict

import pytest
from cosmpy.crypto.address import Address

from cosmos_chain.app import TxResult
from cosmos_chain.errors import InvalidRequestError
from cosmos_chain.genesis import deterministic_wallet
from cosmos_chain.modules.auth import validate_address
from cosmos_chain.modules.base import module_address
from cosmos_chain.txcodec import pubkey_address

GOOD = str(deterministic_wallet("hotpath-0").address())


class _Str(str):
    """A str subclass: must take the uncached path and come back as itself."""


def _error(fn, *args) -> tuple[type, str, type | None]:
    with pytest.raises(Exception) as info:
        fn(*args)
    return type(info.value), str(info.value), type(info.value.__cause__) if info.value.__cause__ else None


def test_validate_address_results_and_errors_repeat_exactly() -> None:
    for _ in range(3):  # first call fills the cache, later ones hit it
        assert validate_address(GOOD, "bbn") is GOOD
    sub = _Str(GOOD)
    assert validate_address(sub, "bbn") is sub
    bad = [
        ("bbn1notanaddress", "invalid bech32 address 'bbn1notanaddress': "),
        (GOOD.upper(), "does not have the chain prefix 'bbn'"),
        (str(Address(bytes(20), prefix="cosmos")), "does not have the chain prefix 'bbn'"),
        (GOOD[:-1] + ("q" if GOOD[-1] != "q" else "p"), "invalid bech32 address"),
    ]
    for addr, fragment in bad:
        first = _error(validate_address, addr, "bbn")
        assert first[0] is InvalidRequestError and fragment in first[1]
        assert _error(validate_address, addr, "bbn") == first  # failures are never cached
        assert _error(validate_address, _Str(addr), "bbn") == first
    assert _error(validate_address, GOOD, "cosmos")[1] == f"address {GOOD!r} does not have the chain prefix 'cosmos'"
    assert _error(validate_address, 5, "bbn")[1] == "address must be a string, got int"
    assert _error(validate_address, GOOD, None)[0] is TypeError  # prefix + "1", as before


def test_address_derivations_match_bech32() -> None:
    pk = deterministic_wallet("hotpath-1").public_key().public_key_bytes
    want = str(Address(hashlib.new("ripemd160", hashlib.sha256(pk).digest()).digest(), prefix="bbn"))
    assert pubkey_address(pk, "bbn") == pubkey_address(pk, "bbn") == pubkey_address(bytearray(pk), "bbn") == want
    assert pubkey_address(pk, "cosmos") != want
    for name in ("fee_collector", "bank", "btc_light_client"):
        want = str(Address(hashlib.sha256(name.encode()).digest()[:20], prefix="bbn"))
        assert module_address(name) == module_address(name, "bbn") == module_address(_Str(name)) == want


def _asdict_form(r: TxResult) -> dict:
    d = asdict(r)
    d["data"] = base64.b64encode(r.data).decode()
    return d


def test_txresult_to_dict_is_the_asdict_form() -> None:
    events = [{"type": "transfer", "attributes": [{"key": "amount", "value": "5ubbn"}, {"key": "n", "value": 1.5}]},
              {"type": "x", "attributes": [], "extra": {"none": None, "flag": True}}]
    plain = TxResult(0, "", 200_000, 54_050, events, b"[{}]", "")
    d = plain.to_dict()
    assert d == _asdict_form(plain) and list(d) == list(_asdict_form(plain))
    assert d["events"] is not events and d["events"][0] is not events[0]  # a copy, as asdict makes
    d["events"][0]["attributes"].append({})
    assert len(events[0]["attributes"]) == 2
    odd = TxResult(5, "log", 1, 2, [{"type": "t", "attributes": ({"key": "k", "value": "v"},)}], b"\x00", "sdk")
    assert odd.to_dict() == _asdict_form(odd)  # tuples keep their type through the asdict fallback
    assert TxResult.from_dict(plain.to_dict()) == plain
