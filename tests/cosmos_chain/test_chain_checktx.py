"""Stateless checks in CheckTx (issue 12): a bad address, a zero or malformed amount or a badly shaped
contract message fails CheckTx and, if it reaches a block anyway, fails before the ante handler: the
sender pays no fee and keeps its sequence."""

from __future__ import annotations

import json

import pytest
from cosmpy.aerial.tx import SigningCfg, Transaction, TxFee
from cosmpy.protos.cosmos.bank.v1beta1.tx_pb2 import MsgSend
from cosmpy.protos.cosmos.base.v1beta1.coin_pb2 import Coin
from cosmpy.protos.cosmwasm.wasm.v1.tx_pb2 import MsgExecuteContract

from chain_helpers import CHAIN_ID, DENOM, FEE, GAS_LIMIT, TestChain, make_genesis, wallet

pytestmark = pytest.mark.timeout(60)

ALICE, BOB = wallet("checktx-alice"), wallet("checktx-bob")


def _signed(chain: TestChain, msg) -> bytes:
    acct = chain.app.account(str(ALICE.address()))
    tx = Transaction()
    tx.add_message(msg)
    tx.seal(SigningCfg.direct(ALICE.public_key(), acct["sequence"]), fee=TxFee(amount=FEE, gas_limit=GAS_LIMIT))
    tx.sign(ALICE.signer(), CHAIN_ID, acct["account_number"])
    tx.complete()
    return tx.tx.SerializeToString()


def _send(to: str, coins: list[tuple[str, str]]) -> MsgSend:
    return MsgSend(from_address=str(ALICE.address()), to_address=to,
                   amount=[Coin(denom=d, amount=a) for d, a in coins])


def _execute(contract: str, msg: bytes, funds: list[tuple[str, str]] = ()) -> MsgExecuteContract:  # type: ignore
    return MsgExecuteContract(sender=str(ALICE.address()), contract=contract, msg=msg,
                              funds=[Coin(denom=d, amount=a) for d, a in funds])


def _bad_messages(chain: TestChain) -> dict[str, object]:
    bob, lc = str(BOB.address()), chain.app.module("btc_light_client").address
    return {
        "bad bech32 recipient": _send(bob[:-1] + ("q" if bob[-1] != "q" else "p"), [(DENOM, "5")]),
        "wrong prefix recipient": _send("cosmos1qypqxpq9qcrsszg2pvxq6rs0zqg3yyc5lzv7xu", [(DENOM, "5")]),
        "zero amount": _send(bob, [(DENOM, "0")]),
        "no amount": _send(bob, []),
        "duplicate denom": _send(bob, [(DENOM, "1"), (DENOM, "2")]),
        "bad denom": _send(bob, [("u", "5")]),
        "contract not an address": _execute("btc_light_client", b'{"tip": {}}'),
        "message not an object": _execute(lc, b"[1, 2]"),
        "message with two keys": _execute(lc, json.dumps({"a": {}, "b": {}}).encode()),
        "body not an object": _execute(lc, b'{"insert_headers": 5}'),
        "zero funds": _execute(lc, b'{"insert_headers": {"headers": []}}', [(DENOM, "0")]),
    }


@pytest.mark.parametrize("case", ["bad bech32 recipient", "wrong prefix recipient", "zero amount", "no amount",
                                  "duplicate denom", "bad denom", "contract not an address",
                                  "message not an object", "message with two keys", "body not an object",
                                  "zero funds"])
def test_bad_message_fails_checktx_and_costs_no_fee(case: str) -> None:
    chain = TestChain(make_genesis([ALICE, BOB], None, None))
    tx = _signed(chain, _bad_messages(chain)[case])
    check = chain.app.check_tx(tx)
    assert check.code != 0, case
    assert check.gas_used == 0
    before = chain.app.balance(str(ALICE.address()), DENOM), chain.app.account(str(ALICE.address()))["sequence"]
    results, _ = chain.block([tx])  # a proposer that skipped CheckTx: still no fee, no sequence bump
    assert results[0].code == check.code
    after = chain.app.balance(str(ALICE.address()), DENOM), chain.app.account(str(ALICE.address()))["sequence"]
    assert after == before


def test_good_send_still_passes_and_pays_its_fee() -> None:
    chain = TestChain(make_genesis([ALICE, BOB], None, None))
    tx = _signed(chain, _send(str(BOB.address()), [(DENOM, "7")]))
    assert chain.app.check_tx(tx).code == 0
    before = chain.app.balance(str(BOB.address()), DENOM)
    assert chain.block([tx])[0][0].code == 0
    assert chain.app.balance(str(BOB.address()), DENOM) == before + 7
