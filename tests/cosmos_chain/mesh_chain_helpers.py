"""Helpers for the mesh/finality chain tests: a block driver over ChainApp, cosmpy-signed txs, and
``StubRegistry`` - a small stand-in for the ``btc_staking`` registry with the agreed hook interface
(``finality_provider``, ``delegations_by_fp``, ``slash_finality_provider``, ``active_sat``,
``hooks.on_delegation_status``). It skips the Bitcoin checks of the real registry; status
changes are driven by an explicit ``set_status`` message so the mesh wiring can be tested alone.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cosmpy.aerial.wallet import LocalWallet
from cosmpy.crypto.keypairs import PrivateKey

from btcmesh.finality_provider import ChainRejected, sign_execute_tx
from cmt_helpers import query_account
from cosmos_chain.app import ChainApp, TxResult
from cosmos_chain.comet import CometClient, CometNetwork, wait_until
from cosmos_chain.errors import ContractError
from cosmos_chain.modules.base import DEFAULT_PREFIX, Context, Module

DENOM = "ubbn"
MIN_GAS_PRICE = "0.01"
GAS_LIMIT = 2_000_000
FEE = f"{GAS_LIMIT // 100}{DENOM}"
GENESIS_TIME = 1_700_000_000
BLOCK_INTERVAL = 5


@dataclass
class Key:
    """A funded cosmpy wallet."""

    wallet: LocalWallet

    @classmethod
    def from_seed(cls, seed: int) -> "Key":
        return cls(LocalWallet(PrivateKey((0x6D657368 + seed).to_bytes(32, "big")), prefix=DEFAULT_PREFIX))

    @property
    def address(self) -> str:
        return str(self.wallet.address())


def make_genesis(keys: list[Key], sections: dict[str, Any]) -> dict[str, Any]:
    """Genesis funding ``keys`` (fees in ubbn, min gas price 0.01) plus module ``sections``."""
    genesis: dict[str, Any] = {
        "genesis_time": GENESIS_TIME, "fees": {"denom": DENOM, "min_gas_price": MIN_GAS_PRICE},
        "bank": {"balances": [{"address": k.address, "coins": [{"denom": DENOM, "amount": str(10**12)}]}
                              for k in keys]}}
    genesis.update(sections)
    return genesis


@dataclass
class Block:
    height: int
    time: float
    txs: list[bytes]


@dataclass
class Chain:
    """A ChainApp driven block by block; every block fed to it is recorded for replay."""

    app: ChainApp
    time: float = GENESIS_TIME
    blocks: list[Block] = field(default_factory=list)
    genesis: dict = field(default_factory=dict)

    @classmethod
    def start(cls, keys: list[Key], sections: dict[str, Any], *, modules: list[Module] | None = None,
              chain_id: str = "mesh-test-1", home: Path | None = None) -> "Chain":
        genesis = make_genesis(keys, sections)
        app = ChainApp(chain_id, home, modules=modules)
        app.init_chain(genesis)
        return cls(app, GENESIS_TIME, [], genesis)

    def block(self, txs: list[bytes] | None = None, dt: float = BLOCK_INTERVAL) -> list[TxResult]:
        """Finalize and commit the next block ``dt`` seconds after the last."""
        self.time += dt
        h = self.app.last_height + 1
        txs = list(txs or [])
        results, _ = self.app.finalize_block(h, self.time, txs)
        self.app.commit()
        self.blocks.append(Block(h, self.time, txs))
        return results

    def sign(self, key: Key, contract: str, msg: dict) -> bytes:
        acct = self.app.account(key.address)
        assert acct is not None, f"no account {key.address}"
        return sign_execute_tx(key.wallet, self.app.module(contract).address, msg, chain_id=self.app.chain_id,
                               account_number=acct["account_number"], sequence=acct["sequence"],
                               gas_limit=GAS_LIMIT, fee=FEE)

    def execute(self, key: Key, contract: str, msg: dict, dt: float = BLOCK_INTERVAL) -> TxResult:
        """One signed MsgExecuteContract in its own block."""
        return self.block([self.sign(key, contract, msg)], dt)[0]

    def ok(self, key: Key, contract: str, msg: dict, dt: float = BLOCK_INTERVAL) -> Any:
        res = self.execute(key, contract, msg, dt)
        assert res.code == 0, res.log
        return json.loads(res.data)[0]

    def query(self, contract: str, msg: dict) -> Any:
        return self.app.smart_query(contract, msg)

    def store_items(self, module: str, exclude: tuple[str, ...] = ()) -> dict[str, str]:
        """Committed raw KV entries of a module (minus key prefixes in ``exclude``)."""
        pre = f"m/{module}/"
        return {k: v for k, v in self.app.root.data.items()
                if k.startswith(pre) and not k[len(pre):].startswith(exclude)}

    def replay(self, modules: list[Module] | None = None) -> list[bytes]:
        """Feed genesis and every recorded block to a fresh ChainApp; returns its app hashes."""
        other = ChainApp(self.app.chain_id, modules=modules)
        other.init_chain(self.genesis)
        hashes = []
        for b in self.blocks:
            _, h = other.finalize_block(b.height, b.time, b.txs)
            other.commit()
            hashes.append(h)
        return hashes


class StubRegistry(Module):
    """Stand-in ``btc_staking`` module: FPs with a mesh validator, delegations moved by ``set_status``."""

    name = "btc_staking"

    def __init__(self, slashing_rate: str = "0.1") -> None:
        super().__init__()
        self.hooks: Any = None
        self.slashing_rate = slashing_rate

    def _status(self, ctx: Context, d: dict, new: str) -> None:
        old = d.get("status")
        d["status"] = new
        self.store(ctx).set("del/" + d["staking_tx_hash"], d)
        if self.hooks is not None:
            self.hooks.on_delegation_status(ctx, dict(d), old, new)

    # --- agreed interface ------------------------------------------------------------
    def finality_provider(self, ctx: Context, btc_pk_hex: str) -> dict | None:
        return self.store(ctx).get("fp/" + btc_pk_hex.lower())

    def delegations_by_fp(self, ctx: Context, btc_pk_hex: str) -> list[dict]:
        return [d for _, d in self.store(ctx).items("del/") if btc_pk_hex.lower() in d["fp_btc_pk_list"]]

    def slash_finality_provider(self, ctx: Context, btc_pk_hex: str, height: int) -> list[dict]:
        fp = self.finality_provider(ctx, btc_pk_hex)
        if fp is None:
            raise ContractError(f"unknown finality provider {btc_pk_hex}")
        if fp["slashed_height"]:
            raise ContractError(f"finality provider {btc_pk_hex} already slashed")
        fp["slashed_height"] = height
        self.store(ctx).set("fp/" + btc_pk_hex.lower(), fp)
        out = []
        for d in self.delegations_by_fp(ctx, btc_pk_hex):
            if d["status"] != "WITHDRAWN":
                self._status(ctx, d, "SLASHED")
                out.append(d)
        return out

    def active_sat(self, ctx: Context, btc_pk_hex: str) -> int:
        return sum(d["staking_value"] for d in self.delegations_by_fp(ctx, btc_pk_hex) if d["status"] == "ACTIVE")

    # --- messages --------------------------------------------------------------------
    def exec_create_finality_provider(self, ctx: Context, sender: str, body: dict, funds: list) -> dict:
        pk = body["btc_pk"].lower()
        if self.finality_provider(ctx, pk) is not None:
            raise ContractError("finality provider already registered")
        rec = {"btc_pk": pk, "addr": sender, "validator": body["validator"], "slashed_height": 0}
        self.store(ctx).set("fp/" + pk, rec)
        return rec

    def exec_set_status(self, ctx: Context, sender: str, body: dict, funds: list) -> dict:
        """``{delegation: {staking_tx_hash, staker_btc_pk, fp_btc_pk_list, staking_value}, status}``."""
        d = self.store(ctx).get("del/" + body["delegation"]["staking_tx_hash"]) or dict(body["delegation"], status=None)
        self._status(ctx, d, body["status"])
        return {"status": d["status"]}

    def exec_slash(self, ctx: Context, sender: str, body: dict, funds: list) -> dict:
        """``{btc_pk, height}``: slash an FP directly (as a registry may on a BTC slashing report)."""
        return {"slashed": [d["staking_tx_hash"] for d in self.slash_finality_provider(ctx, body["btc_pk"],
                                                                                        body["height"])]}

    def query_params(self, ctx: Context, body: dict) -> dict:
        return {"params_versions": [{"version": 0, "slashing_rate": self.slashing_rate}]}

    def query_finality_provider(self, ctx: Context, body: dict) -> dict:
        return self.finality_provider(ctx, body["btc_pk"]) or {}

    def query_delegation(self, ctx: Context, body: dict) -> dict:
        d = self.store(ctx).get("del/" + body["staking_tx_hash"])
        if d is None:
            raise ContractError(f"delegation {body['staking_tx_hash']} not found")
        return {"delegation": d}


# ------------------------------------------------------------------ the same modules on CometBFT nodes
def stub_registry_app(chain_id: str, home: Any) -> ChainApp:
    """A ``CometNetwork`` app factory: ChainApp with :class:`StubRegistry` as ``btc_staking``."""
    return ChainApp(chain_id, home, modules=[StubRegistry()])


def comet_smart(client: CometClient, contract: str, msg: dict[str, Any]) -> Any:
    """Smart query of module ``contract`` (its name) over the node's ``abci_query``."""
    code, value, log, _ = client.abci_query("/smart/" + contract, json.dumps(msg).encode())
    assert code == 0, log
    return json.loads(value)


def comet_tx_data(tx_result: dict[str, Any]) -> Any:
    """The first message's reply of a committed tx (ChainRejected if the tx failed)."""
    if int(tx_result.get("code", 0)) != 0:
        raise ChainRejected(int(tx_result["code"]), tx_result.get("log", ""))
    return json.loads(base64.b64decode(tx_result["data"]))[0]


def comet_signed_execute(client: CometClient, key: Key, contract_address: str, msgs: list[dict[str, Any]],
                         chain_id: str) -> list[bytes]:
    """One signed ``MsgExecuteContract`` tx per message, consecutive sequences from ``key``'s account."""
    acct = query_account(client, key.address)
    return [sign_execute_tx(key.wallet, contract_address, msg, chain_id=chain_id, account_number=acct.account_number,
                            sequence=acct.sequence + i, gas_limit=GAS_LIMIT, fee=FEE) for i, msg in enumerate(msgs)]


def comet_execute(client: CometClient, key: Key, contract_address: str, msg: dict[str, Any], chain_id: str) -> Any:
    """Sign ``msg`` with ``key``, submit it through ``client`` and return its reply once committed."""
    raw, = comet_signed_execute(client, key, contract_address, [msg], chain_id)
    return comet_tx_data(client.submit(raw, timeout=30)["tx_result"])


def assert_apps_agree(net: CometNetwork, height: int, what: str) -> None:
    """Wait until every node's app has committed ``height``, then check that all apps have the same app
    hash at every height they all committed."""
    servers = [n.server for n in net.nodes]
    wait_until(lambda: all(height in s.committed_hashes() for s in servers), 30, what)  # type: ignore[union-attr]
    snapshots = [s.committed_hashes() for s in servers]  # type: ignore[union-attr]
    common = set.intersection(*(set(snap) for snap in snapshots))
    assert height in common
    for h in common:
        assert len({snap[h] for snap in snapshots}) == 1, f"app hashes diverge at {h}"
