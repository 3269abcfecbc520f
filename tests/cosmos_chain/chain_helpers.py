"""Shared helpers for the light-client and registry chain tests.

* :class:`BtcChain` mines real regtest-style blocks (coinbase + our txs, merkle root from
  ``btc_staking.merkle``, nonce ground until the header meets ``bits`` 0x207fffff), with forks,
  and hands out headers and merkle inclusion proofs.
* :class:`StakeFixture` builds everything ``create_btc_delegation`` needs (staking tx, unbonding
  tx, both slashing txs, the staker's signatures) plus covenant signatures and the witnessed
  unbonding / withdrawal spends (checked with libbitcoinkernel before they are "mined").
* :class:`TestChain` drives a :class:`~cosmos_chain.app.ChainApp` block by block with
  ``MsgExecuteContract`` txs built and signed (SIGN_MODE_DIRECT) by cosmpy.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pbk
from cosmpy.aerial.tx import SigningCfg, Transaction, TxFee
from cosmpy.aerial.wallet import LocalWallet
from cosmpy.crypto.keypairs import PrivateKey
from cosmpy.protos.cosmwasm.wasm.v1.tx_pb2 import MsgExecuteContract

from btc_staking.adaptor import encrypt_sign
from btc_staking.headers import BlockHeader, check_proof_of_work
from btc_staking.keys import schnorr_sign, xonly_from_secret
from btc_staking.merkle import build_merkle_proof, merkle_root
from btc_staking.params import StakingParams, covenant_secret, regtest_default_params
from btc_staking.sighash import taproot_sighash
from btc_staking.signing import sign_script_path
from btc_staking.staking import (
    build_slashing_tx,
    build_staking_info,
    build_unbonding_info,
    build_unbonding_tx,
    build_withdraw_tx,
)
from btc_staking.tx import OutPoint, Tx, TxIn, TxOut, p2tr_script
from btc_staking.witness import timelock_witness, unbonding_witness
from cosmos_chain.app import ChainApp, TxResult
from cosmos_chain.modules.base import DEFAULT_PREFIX, Module

CHAIN_ID = "btcmesh-registry-test"
DENOM = "ubbn"
MIN_GAS_PRICE = "0.01"
GAS_LIMIT = 3_000_000
FEE = f"{GAS_LIMIT // 100}{DENOM}"
GENESIS_TIME = 1_700_000_000
REGTEST_BITS = 0x207FFFFF
K = 2
UNBONDING_TIME = 5
NUM_COVENANTS = 3
QUORUM = 2


def secret(label: str) -> bytes:
    """Deterministic secp256k1 secret for a label."""
    return hashlib.sha256(b"btcmesh-chain-test/" + label.encode()).digest()


def small_params(**overrides: Any) -> StakingParams:
    """Regtest params with small timelocks so every status is reachable in a few blocks."""
    fields: dict[str, Any] = dict(min_staking_time_blocks=10, max_staking_time_blocks=1000,
                                  unbonding_time_blocks=UNBONDING_TIME, confirmation_depth=K)
    fields.update(overrides)
    return regtest_default_params(NUM_COVENANTS, QUORUM, **fields)


def kernel_verify(tx: Tx, prevouts: list[TxOut], index: int = 0) -> bool:
    """Bitcoin Core's consensus check (libbitcoinkernel, all flags) of one input."""
    ptx = pbk.Transaction(tx.serialize())
    spent = [pbk.TransactionOutput(pbk.ScriptPubkey(o.script_pubkey), o.value) for o in prevouts]
    pre = pbk.script.PrecomputedTransactionData(ptx, spent)
    spk = pbk.ScriptPubkey(prevouts[index].script_pubkey)
    try:
        return bool(spk.verify(prevouts[index].value, ptx, pre, index, pbk.ScriptVerificationFlags.ALL))
    except pbk.ScriptVerifyException:
        return False


def mine_header(prev: bytes, root: bytes, timestamp: int, bits: int = REGTEST_BITS, version: int = 0x20000000,
                max_tries: int = 1_000_000) -> BlockHeader:
    """Grind the nonce until the header meets its own ``bits`` (bounded)."""
    for nonce in range(max_tries):
        header = BlockHeader(version, prev, root, timestamp, bits, nonce)
        if check_proof_of_work(header):
            return header
    raise RuntimeError(f"no nonce below {max_tries} meets bits {bits:#010x}")


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


def pop(sk: bytes, sender: str) -> str:
    """Proof of possession: BIP-340 signature over sha256(sender bech32 address, utf-8)."""
    return schnorr_sign(sk, hashlib.sha256(sender.encode()).digest()).hex()


@dataclass
class StakeFixture:
    """One staker's BTC delegation with every tx and signature the registry needs."""

    staker_label: str
    fps: list[bytes]
    value: int
    staking_time: int
    params: StakingParams
    funding_label: str = ""
    staking_tx: Tx = field(init=False)

    def __post_init__(self) -> None:
        p = self.params
        self.staker_sk = secret("staker/" + self.staker_label)
        self.staker_pk = xonly_from_secret(self.staker_sk)
        self.info = build_staking_info(self.staker_pk, self.fps, p.covenant_pks, p.covenant_quorum,
                                       self.staking_time, self.value)
        funding = OutPoint(hashlib.sha256(f"funding/{self.staker_label}/{self.funding_label}".encode()).digest(), 0)
        change = TxOut(50_000, p2tr_script(self.staker_pk))
        self.staking_tx = Tx(2, [TxIn(funding)], [self.info.output, change], 0)
        self.staking_outpoint = OutPoint(self.staking_tx.txid(), 0)
        self.slashing_tx = build_slashing_tx(self.staking_outpoint, self.value, self.staker_pk, p)
        self.unbonding_tx = build_unbonding_tx(self.staking_outpoint, self.value, self.staker_pk, self.fps, p)
        self.unbonding_value = self.value - p.unbonding_fee_sat
        self.unbonding_info = build_unbonding_info(self.staker_pk, self.fps, p.covenant_pks, p.covenant_quorum,
                                                   p.unbonding_time_blocks, self.unbonding_value)
        self.unbonding_outpoint = OutPoint(self.unbonding_tx.txid(), 0)
        self.unbonding_slashing_tx = build_slashing_tx(self.unbonding_outpoint, self.unbonding_value,
                                                       self.staker_pk, p)

    @property
    def staking_tx_hash(self) -> str:
        """Display-order staking txid."""
        return self.staking_tx.txid_hex()

    def create_msg(self, sender: str, inclusion_proof: dict[str, Any] | None = None) -> dict[str, Any]:
        """``create_btc_delegation`` body (signed by the staker)."""
        body: dict[str, Any] = {
            "staker_btc_pk": self.staker_pk.hex(),
            "pop": pop(self.staker_sk, sender),
            "fp_btc_pk_list": [k.hex() for k in self.fps],
            "staking_time": self.staking_time,
            "staking_value": self.value,
            "staking_tx": self.staking_tx.serialize().hex(),
            "staking_output_index": 0,
            "slashing_tx": self.slashing_tx.serialize().hex(),
            "delegator_slashing_sig": sign_script_path(self.staker_sk, self.slashing_tx, 0, [self.info.output],
                                                       self.info.slashing_script).hex(),
            "unbonding_time": self.params.unbonding_time_blocks,
            "unbonding_tx": self.unbonding_tx.serialize().hex(),
            "unbonding_value": self.unbonding_value,
            "unbonding_slashing_tx": self.unbonding_slashing_tx.serialize().hex(),
            "delegator_unbonding_slashing_sig": sign_script_path(
                self.staker_sk, self.unbonding_slashing_tx, 0, [self.unbonding_info.output],
                self.unbonding_info.slashing_script).hex(),
        }
        if inclusion_proof is not None:
            body["inclusion_proof"] = inclusion_proof
        return body

    def slashing_sighash(self) -> bytes:
        """Sighash of the staking slashing tx (slashing leaf of the staking output)."""
        return taproot_sighash(self.slashing_tx, 0, [self.info.output], 0, leaf_script=self.info.slashing_script)

    def unbonding_slashing_sighash(self) -> bytes:
        """Sighash of the unbonding slashing tx (slashing leaf of the unbonding output)."""
        return taproot_sighash(self.unbonding_slashing_tx, 0, [self.unbonding_info.output], 0,
                               leaf_script=self.unbonding_info.slashing_script)

    def covenant_sigs_msg(self, i: int, sk: bytes | None = None) -> dict[str, Any]:
        """``add_covenant_sigs`` body of covenant member ``i`` (``sk`` overrides the signing key)."""
        sk = sk or covenant_secret(i)
        return {
            "pk": xonly_from_secret(covenant_secret(i)).hex(),
            "staking_tx_hash": self.staking_tx_hash,
            "slashing_tx_sigs": [encrypt_sign(sk, fp, self.slashing_sighash()).serialize().hex() for fp in self.fps],
            "unbonding_tx_sig": sign_script_path(sk, self.unbonding_tx, 0, [self.info.output],
                                                 self.info.unbonding_script).hex(),
            "slashing_unbonding_tx_sigs": [encrypt_sign(sk, fp, self.unbonding_slashing_sighash()).serialize().hex()
                                           for fp in self.fps],
        }

    def signed_unbonding_tx(self) -> Tx:
        """The unbonding tx with the staker + covenant-quorum witness (kernel-verified)."""
        p = self.params
        cov = {xonly_from_secret(covenant_secret(i)): sign_script_path(
            covenant_secret(i), self.unbonding_tx, 0, [self.info.output], self.info.unbonding_script)
            for i in range(p.covenant_quorum)}
        staker_sig = sign_script_path(self.staker_sk, self.unbonding_tx, 0, [self.info.output],
                                      self.info.unbonding_script)
        wit = unbonding_witness(p.covenant_pks, cov, p.covenant_quorum, staker_sig, self.info.unbonding_script,
                                self.info.control_block(self.info.unbonding_script))
        tx = Tx(2, [TxIn(self.staking_outpoint, witness=wit)], self.unbonding_tx.outputs, 0)
        assert tx.txid() == self.unbonding_tx.txid()
        assert kernel_verify(tx, [self.info.output]), "unbonding spend rejected by libbitcoinkernel"
        return tx

    def signed_withdraw_tx(self, *, after_unbonding: bool) -> Tx:
        """Timelock-path withdrawal of the staking (or unbonding) output, kernel-verified."""
        if after_unbonding:
            info, outpoint, value, lock = (self.unbonding_info, self.unbonding_outpoint, self.unbonding_value,
                                           self.params.unbonding_time_blocks)
        else:
            info, outpoint, value, lock = self.info, self.staking_outpoint, self.value, self.staking_time
        tx = build_withdraw_tx(outpoint, value, lock, p2tr_script(self.staker_pk), 500)
        sig = sign_script_path(self.staker_sk, tx, 0, [info.output], info.timelock_script)
        tx.inputs[0].witness = timelock_witness(sig, info.timelock_script, info.control_block(info.timelock_script))
        assert kernel_verify(tx, [info.output]), "withdrawal spend rejected by libbitcoinkernel"
        return tx


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
