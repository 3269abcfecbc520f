"""Helpers for the embedded-node / REST tests: deterministic wallets, genesis, cosmpy-signed txs."""

from __future__ import annotations

import json
from typing import Any

from cosmpy.aerial.tx import SigningCfg, Transaction, TxFee
from cosmpy.aerial.wallet import LocalWallet
from cosmpy.protos.cosmos.bank.v1beta1.tx_pb2 import MsgSend
from cosmpy.protos.cosmos.base.v1beta1.coin_pb2 import Coin
from cosmpy.protos.cosmwasm.wasm.v1.tx_pb2 import MsgExecuteContract

from cosmos_chain.genesis import build_genesis, deterministic_wallet

CHAIN_ID = "btcmesh-node-test"
DENOM = "ubbn"
MIN_GAS_PRICE = "0.01"
GAS_LIMIT = 200_000
FEE = int(GAS_LIMIT * 0.01)
FUNDS = 10_000_000


def wallets(n: int, tag: str = "cn") -> list[LocalWallet]:
    """``n`` deterministic wallets."""
    return [deterministic_wallet(f"{tag}-{i}") for i in range(n)]


def genesis_for(ws: list[LocalWallet], amount: int = FUNDS, **kw: Any) -> dict[str, Any]:
    """Genesis funding every wallet with ``amount`` ubbn (min gas price 0.01ubbn)."""
    return build_genesis({str(w.address()): amount for w in ws}, denom=DENOM, min_gas_price=MIN_GAS_PRICE, **kw)


def msg_send(sender: LocalWallet, to: str, amount: int) -> MsgSend:
    """MsgSend of ``amount`` ubbn."""
    return MsgSend(from_address=str(sender.address()), to_address=to, amount=[Coin(denom=DENOM, amount=str(amount))])


def msg_execute(sender: LocalWallet, contract: str, msg: dict[str, Any]) -> MsgExecuteContract:
    """MsgExecuteContract with a JSON message."""
    return MsgExecuteContract(sender=str(sender.address()), contract=contract, msg=json.dumps(msg).encode())


def sign(
    wallet: LocalWallet, msgs: list[Any], *, sequence: int, account_number: int, chain_id: str = CHAIN_ID,
    gas_limit: int = GAS_LIMIT, fee: int | None = None, memo: str = "",
) -> bytes:
    """Seal, sign (SIGN_MODE_DIRECT) and serialise a tx with cosmpy."""
    tx = Transaction()
    for m in msgs:
        tx.add_message(m)
    amount = FEE if fee is None else fee
    fee_ = TxFee(amount=f"{amount}{DENOM}", gas_limit=gas_limit)
    tx.seal(SigningCfg.direct(wallet.public_key(), sequence), fee=fee_, memo=memo)
    tx.sign(wallet.signer(), chain_id, account_number)
    tx.complete()
    return tx.tx.SerializeToString()
