"""Helpers for the CometBFT tests: genesis, cosmpy-signed txs, RPC queries (no mocks)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cosmpy.aerial.tx import SigningCfg, Transaction, TxFee
from cosmpy.aerial.wallet import LocalWallet
from cosmpy.crypto.keypairs import PrivateKey
from cosmpy.protos.cosmos.auth.v1beta1.auth_pb2 import BaseAccount
from cosmpy.protos.cosmos.auth.v1beta1.query_pb2 import QueryAccountRequest, QueryAccountResponse
from cosmpy.protos.cosmos.bank.v1beta1.query_pb2 import QueryBalanceRequest, QueryBalanceResponse
from cosmpy.protos.cosmos.bank.v1beta1.tx_pb2 import MsgSend
from cosmpy.protos.cosmos.base.v1beta1.coin_pb2 import Coin
from cosmpy.protos.cosmwasm.wasm.v1.tx_pb2 import MsgExecuteContract

from cosmos_chain.comet import CometClient
from cosmos_chain.modules.base import DEFAULT_PREFIX, module_address

DENOM = "ubbn"
MIN_GAS_PRICE = "0.01"
GAS_LIMIT = 200_000
FEE = f"{int(GAS_LIMIT * 0.01)}{DENOM}"
GENESIS_AMOUNT = 10_000_000_000
BANK_CONTRACT = module_address("bank", DEFAULT_PREFIX)


@dataclass
class Key:
    """A funded test key: cosmpy ``LocalWallet`` plus its bech32 address."""

    wallet: LocalWallet

    @classmethod
    def from_seed(cls, seed: int) -> "Key":
        """Deterministic key whose secret is ``seed + 1`` (big-endian, 32 bytes)."""
        return cls(LocalWallet(PrivateKey((seed + 1).to_bytes(32, "big")), prefix=DEFAULT_PREFIX))

    @property
    def address(self) -> str:
        """bech32 address."""
        return str(self.wallet.address())


def make_genesis(keys: list[Key], amount: int = GENESIS_AMOUNT) -> dict[str, Any]:
    """ChainApp genesis funding ``keys`` with ``amount`` ubbn each, min gas price 0.01ubbn."""
    return {
        "fees": {"denom": DENOM, "min_gas_price": MIN_GAS_PRICE},
        "bank": {
            "balances": [{"address": k.address, "coins": [{"denom": DENOM, "amount": str(amount)}]} for k in keys]
        },
    }


def msg_send(sender: Key, to: str, amount: int) -> MsgSend:
    """``cosmos.bank.v1beta1.MsgSend`` of ``amount`` ubbn."""
    return MsgSend(from_address=sender.address, to_address=to, amount=[Coin(denom=DENOM, amount=str(amount))])


def msg_bank_execute(sender: Key, to: str, amount: int) -> MsgExecuteContract:
    """``MsgExecuteContract`` to the built-in bank contract: ``{"send": {to_address, amount}}``."""
    body = {"send": {"to_address": to, "amount": [{"denom": DENOM, "amount": str(amount)}]}}
    return MsgExecuteContract(sender=sender.address, contract=BANK_CONTRACT, msg=json.dumps(body).encode())


def sign_tx(
    key: Key, msgs: list[Any], *, sequence: int, account_number: int, chain_id: str, memo: str = ""
) -> bytes:
    """Seal and sign (SIGN_MODE_DIRECT) with cosmpy; return the raw tx bytes."""
    tx = Transaction()
    for m in msgs:
        tx.add_message(m)
    tx.seal(SigningCfg.direct(key.wallet.public_key(), sequence), fee=TxFee(amount=FEE, gas_limit=GAS_LIMIT), memo=memo)
    tx.sign(key.wallet.signer(), chain_id, account_number)
    tx.complete()
    return tx.tx.SerializeToString()


def query_account(client: CometClient, address: str) -> BaseAccount:
    """``/cosmos.auth.v1beta1.Query/Account`` over ``abci_query``."""
    code, value, log, _ = client.abci_query(
        "/cosmos.auth.v1beta1.Query/Account", QueryAccountRequest(address=address).SerializeToString()
    )
    assert code == 0, log
    account = BaseAccount()
    assert QueryAccountResponse.FromString(value).account.Unpack(account)
    return account


def query_balance(client: CometClient, address: str, denom: str = DENOM) -> int:
    """``/cosmos.bank.v1beta1.Query/Balance`` over ``abci_query``."""
    code, value, log, _ = client.abci_query(
        "/cosmos.bank.v1beta1.Query/Balance", QueryBalanceRequest(address=address, denom=denom).SerializeToString()
    )
    assert code == 0, log
    return int(QueryBalanceResponse.FromString(value).balance.amount)


def signed_send(client: CometClient, chain_id: str, key: Key, to: str, amount: int, memo: str = "") -> bytes:
    """A MsgSend signed with the account's current on-chain sequence and number."""
    acct = query_account(client, key.address)
    return sign_tx(
        key, [msg_send(key, to, amount)], sequence=acct.sequence, account_number=acct.account_number,
        chain_id=chain_id, memo=memo,
    )  # fmt: skip


def fee_amount() -> int:
    """The fee each helper tx pays (ubbn)."""
    return int(FEE.removesuffix(DENOM))
