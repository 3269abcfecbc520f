"""Shared helpers for the light-client and registry chain tests.

* :class:`BtcChain` mines real regtest-style blocks (coinbase + our txs, merkle root from
  ``btc_staking.merkle``, nonce ground until the header meets ``bits`` 0x207fffff), with forks,
  and hands out headers and merkle inclusion proofs.
* :class:`StakeFixture` (:class:`btcmesh_testkit.btc.StakeFixture` with this suite's keys) builds
  everything ``create_btc_delegation`` needs plus covenant signatures and oracle-checked spends.
* :class:`TestChain` drives a :class:`~cosmos_chain.app.ChainApp` block by block with
  ``MsgExecuteContract`` txs built and signed (SIGN_MODE_DIRECT) by cosmpy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosmpy.aerial.tx import SigningCfg, Transaction, TxFee
from cosmpy.aerial.wallet import LocalWallet
from cosmpy.crypto.keypairs import PrivateKey
from cosmpy.protos.cosmwasm.wasm.v1.tx_pb2 import MsgExecuteContract

from btcmesh_testkit.btc import (  # noqa: F401  (small_params and its constants are re-exported)
    K, NUM_COVENANTS, QUORUM, REGTEST_BITS, UNBONDING_TIME, labelled_secret, mine_header, small_params,
)
from btcmesh_testkit.btc import StakeFixture as _StakeFixture
from btcmesh_testkit.btc import pop_hex as pop  # noqa: F401  (re-exported for the chain tests)
from btcmesh_testkit.oracles import kernel_verify  # noqa: F401  (re-exported)

from btc_staking.headers import BlockHeader
from btc_staking.keys import xonly_from_secret
from btc_staking.merkle import build_merkle_proof, merkle_root
from btc_staking.params import StakingParams
from btc_staking.tx import OutPoint, Tx, TxIn, TxOut, p2tr_script
from cosmos_chain.app import ChainApp, TxResult
from cosmos_chain.modules.base import DEFAULT_PREFIX, Module

CHAIN_ID = "btcmesh-registry-test"
DENOM = "ubbn"
MIN_GAS_PRICE = "0.01"
GAS_LIMIT = 3_000_000
FEE = f"{GAS_LIMIT // 100}{DENOM}"
GENESIS_TIME = 1_700_000_000


SECRET_NAMESPACE = b"btcmesh-chain-test/"


def secret(label: str) -> bytes:
    """Deterministic secp256k1 secret for a label."""
    return labelled_secret(SECRET_NAMESPACE, label)


# ---------------------------------------------------------------------------- Bitcoin side


@dataclass
class Block:
    """A mined block: header, height, txids (internal order, coinbase first)."""

    header: BlockHeader
    height: int
    txids: list[bytes]

    @property
    def hash(self) -> str:
        """Display-order block hash."""
        return self.header.hash_hex()

    @property
    def raw(self) -> str:
        """80-byte header hex."""
        return self.header.serialize().hex()


class BtcChain:
    """Regtest-style blocks with real PoW and merkle roots; ``best`` is the branch we extend by default."""

    def __init__(self, start_time: int = 1_700_000_000, base_height: int = 0) -> None:
        self.by_hash: dict[str, Block] = {}
        self.best: list[Block] = []  # the main branch, base first
        self._time = start_time
        self._coinbase_n = 0
        self.best = self.mine_on(None, n=1, height=base_height)

    @property
    def tip(self) -> Block:
        """Last block of the main branch."""
        return self.best[-1]

    def base(self) -> dict[str, Any]:
        """``btc_light_client`` genesis section."""
        b = self.best[0]
        return {"base": {"height": b.height, "header": b.raw}}

    def mine_on(self, parent: Block | None, txs: list[Tx] = (), n: int = 1, *,  # type: ignore[assignment]
                height: int | None = None, bits: int = REGTEST_BITS) -> list[Block]:
        """Mine ``n`` blocks on ``parent`` (``txs`` in the first); does not change ``best``."""
        out: list[Block] = []
        for i in range(n):
            self._coinbase_n += 1
            h = (parent.height + 1) if parent is not None else (height or 0)
            coinbase = Tx(2, [TxIn(OutPoint(b"\0" * 32, 0xFFFFFFFF),
                                   script_sig=bytes([4]) + self._coinbase_n.to_bytes(4, "little"))],
                          [TxOut(50_0000_0000, p2tr_script(xonly_from_secret(secret("miner"))))], 0)
            block_txs = [coinbase] + (list(txs) if i == 0 else [])
            txids = [t.txid() for t in block_txs]
            self._time += 600
            prev = parent.header.hash() if parent is not None else b"\0" * 32
            header = mine_header(prev, merkle_root(txids), self._time, bits)
            block = Block(header, h, txids)
            self.by_hash[block.hash] = block
            out.append(block)
            parent = block
        return out

    def mine(self, txs: list[Tx] = (), n: int = 1) -> list[Block]:  # type: ignore[assignment]
        """Extend the main branch."""
        blocks = self.mine_on(self.tip, list(txs), n)
        self.best.extend(blocks)
        return blocks

    def branch(self, tip: Block) -> list[Block]:
        """Blocks from the base to ``tip`` (follows parents)."""
        out = [tip]
        while out[-1].header.prev_hash[::-1].hex() in self.by_hash:
            out.append(self.by_hash[out[-1].header.prev_hash[::-1].hex()])
        return out[::-1]

    def reorg_to(self, tip: Block) -> None:
        """Make the branch ending at ``tip`` the main branch."""
        self.best = self.branch(tip)

    def find(self, tx: Tx) -> tuple[Block, int]:
        """The main-branch block holding ``tx`` and its index."""
        txid = tx.txid()
        for b in self.best:
            if txid in b.txids:
                return b, b.txids.index(txid)
        raise KeyError(f"tx {tx.txid_hex()} not mined")

    def inclusion_proof(self, tx: Tx) -> dict[str, Any]:
        """``{block_hash, index, proof}`` for a mined tx."""
        block, index = self.find(tx)
        return {"block_hash": block.hash, "index": index, "proof": build_merkle_proof(block.txids, index).hex()}


# ---------------------------------------------------------------------------- delegations


def fp_secret(label: str) -> bytes:
    """A finality provider's BTC secret."""
    return secret("fp/" + label)


def fp_pk(label: str) -> bytes:
    """A finality provider's x-only BTC key."""
    return xonly_from_secret(fp_secret(label))


class StakeFixture(_StakeFixture):
    """One staker's BTC delegation with every tx and signature the registry needs (keys from :func:`secret`)."""

    SECRET_NAMESPACE = SECRET_NAMESPACE


# ---------------------------------------------------------------------------- chain side


def wallet(label: str) -> LocalWallet:
    """A deterministic cosmpy wallet."""
    return LocalWallet(PrivateKey(secret("wallet/" + label)), prefix=DEFAULT_PREFIX)


def sign_execute(w: LocalWallet, contract: str, msg: dict[str, Any], *, account_number: int, sequence: int,
                 chain_id: str = CHAIN_ID) -> bytes:
    """A cosmpy ``Transaction`` with one ``MsgExecuteContract``, SIGN_MODE_DIRECT-signed, serialised."""
    tx = Transaction()
    tx.add_message(MsgExecuteContract(sender=str(w.address()), contract=contract, msg=json.dumps(msg).encode()))
    tx.seal(SigningCfg.direct(w.public_key(), sequence), fee=TxFee(amount=FEE, gas_limit=GAS_LIMIT))
    tx.sign(w.signer(), chain_id, account_number)
    tx.complete()
    return tx.tx.SerializeToString()


class TxFailed(AssertionError):
    """A chain tx was rejected (carries the raw log)."""


def make_genesis(wallets: list[LocalWallet], btc: BtcChain | None, params: list[StakingParams] | None,
                 **sections: Any) -> dict[str, Any]:
    """Funded wallets, the light-client base and the registry params."""
    genesis: dict[str, Any] = {
        "genesis_time": GENESIS_TIME, "fees": {"denom": DENOM, "min_gas_price": MIN_GAS_PRICE},
        "bank": {"balances": [{"address": str(w.address()), "coins": [{"denom": DENOM, "amount": str(10**12)}]}
                              for w in wallets]},
    }
    if btc is not None:
        genesis["btc_light_client"] = btc.base()
    if params is not None:
        genesis["btc_staking"] = {"params": [p.to_dict() for p in params]}
    genesis.update(sections)
    return genesis


class TestChain:
    """A ChainApp driven block by block with cosmpy-signed execute txs."""

    __test__ = False  # not a pytest class

    def __init__(self, genesis: dict[str, Any], home: Path | None = None, *, init: bool = True,
                 modules: list[Module] | None = None) -> None:
        self.genesis = genesis
        self.app = ChainApp(CHAIN_ID, home, modules=modules)
        self.time = float(GENESIS_TIME)
        self.blocks: list[tuple[int, float, list[bytes], bytes]] = []  # (height, time, txs, app hash)
        if init:
            self.app.init_chain(genesis)
        else:
            self.time = float(GENESIS_TIME + 5 * self.app.last_height)

    def sign(self, w: LocalWallet, contract: str, msg: dict[str, Any], sequence_offset: int = 0) -> bytes:
        """Signed tx for ``msg`` to module ``contract`` using the committed account number/sequence."""
        acct = self.app.account(str(w.address()))
        assert acct is not None, f"no account {w.address()}"
        return sign_execute(w, self.app.module(contract).address, msg, account_number=acct["account_number"],
                            sequence=acct["sequence"] + sequence_offset)

    def block(self, txs: list[bytes] = ()) -> tuple[list[TxResult], bytes]:  # type: ignore[assignment]
        """Finalize and commit the next block."""
        self.time += 5
        height = self.app.last_height + 1
        results, app_hash = self.app.finalize_block(height, self.time, list(txs))
        self.app.commit()
        self.blocks.append((height, self.time, list(txs), app_hash))
        return results, app_hash

    def replay(self, modules: list[Module] | None = None) -> list[tuple[bytes, bytes]]:
        """Feed genesis and every recorded block to a fresh in-memory ChainApp: [(our hash, its hash)]."""
        other = ChainApp(CHAIN_ID, modules=modules)
        other.init_chain(self.genesis)
        out = []
        for height, time_unix, txs, app_hash in self.blocks:
            _, h = other.finalize_block(height, time_unix, txs)
            other.commit()
            out.append((app_hash, h))
        return out

    def execute(self, w: LocalWallet, contract: str, msg: dict[str, Any]) -> TxResult:
        """One tx in its own block; returns its result."""
        return self.block([self.sign(w, contract, msg)])[0][0]

    def ok(self, w: LocalWallet, contract: str, msg: dict[str, Any]) -> Any:
        """Execute and require success; returns the message's result."""
        res = self.execute(w, contract, msg)
        if res.code != 0:
            raise TxFailed(res.log)
        return json.loads(res.data)[0]

    def fails(self, w: LocalWallet, contract: str, msg: dict[str, Any]) -> str:
        """Execute and require failure; returns the raw log."""
        res = self.execute(w, contract, msg)
        if res.code == 0:
            raise AssertionError(f"tx unexpectedly succeeded: {msg}")
        return res.log

    def query(self, contract: str, msg: dict[str, Any]) -> Any:
        """Smart query on committed state."""
        return self.app.smart_query(contract, msg)

    def module_state(self, name: str) -> dict[str, str]:
        """Committed raw KV entries of a module."""
        pre = f"m/{name}/"
        return {k: v for k, v in self.app.root.data.items() if k.startswith(pre)}
