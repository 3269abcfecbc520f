"""Shared helpers for the regtest tests: a funded chain on either backend, oracles, Babylon parties.

``chain`` is the fixture the scenario tests use; it is parametrized over the two backends:

* ``embedded`` — `regtest.embedded.EmbeddedNode` (in-process, libbitcoinkernel-validated);
* ``btcd``     — a real btcd v0.26 process (`regtest.btcd.BtcdProcess`) found with ``tool_path``;
* ``embedded-rpc`` — the embedded node behind `regtest.rpc_server.RpcServer`, used through
  `regtest.rpc.RpcBackend` in the bitcoind dialect (so the same tests cover that adapter).

Every chain comes with a `Wallet` holding 101 blocks of coinbase (one mature coin, plus more as
blocks are mined: every block is mined to the wallet, which is how btcd mines anyway). Spends
are checked with two independent script interpreters (libbitcoinkernel via ``pbk`` and btclib,
from ``btcmesh_testkit.oracles``) before they are broadcast. No tests live here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import pytest

from btcmesh_testkit.oracles import btclib_verify, kernel_verify

from btc_staking.adaptor import encrypt_sign
from btc_staking.keys import generate_secret, xonly_from_secret
from btc_staking.params import StakingParams, regtest_default_params
from btc_staking.sighash import taproot_sighash
from btc_staking.signing import sign_script_path
from btc_staking.staking import StakingInfo, build_staking_info, build_staking_tx
from btc_staking.tx import OutPoint, Tx, TxOut
from regtest.backend import BitcoinBackend, TxRejected
from regtest.wallet import Wallet

__all__ = [
    "BACKENDS",
    "Chain",
    "Parties",
    "Stake",
    "make_chain",
    "chain",
    "btcd_chain",
    "assert_oracles_accept",
    "assert_oracles_reject",
    "rejected",
    "make_parties",
    "stake",
    "kernel_verify",
    "btclib_verify",
]

BACKENDS = ["embedded", "btcd", "embedded-rpc"]
FEE_RATE = 2  # sat/vB


@dataclass
class Chain:
    """A regtest backend plus a funded wallet that receives every mined block."""

    kind: str
    backend: BitcoinBackend
    wallet: Wallet
    closers: list = field(default_factory=list)
    node: object | None = None  # the BtcdProcess, for btcd

    def mine(self, n: int = 1) -> list[str]:
        """Mine n blocks to the wallet and rescan it."""
        hashes = self.backend.mine_blocks(n, self.wallet.script_pubkey)
        self.wallet.scan()
        return hashes

    @property
    def flavor(self) -> str:
        """Whose reject-reason wording the node uses: "core" (embedded, any transport) or "btcd"."""
        return "btcd" if self.kind == "btcd" else "core"

    def height(self) -> int:
        return self.backend.get_block_count()

    def block_txids(self, hash_hex: str) -> list[str]:
        from regtest.wallet import parse_block

        return [t.txid_hex() for t in parse_block(self.backend.get_block(hash_hex))[1]]

    def close(self) -> None:
        for c in reversed(self.closers):
            c()


def make_chain(kind: str, tool_path, tmp_path: Path, mature_blocks: int = 101) -> Chain:
    """Start a backend of ``kind`` with a wallet that owns ``mature_blocks`` coinbases."""
    secret = generate_secret()
    address_wallet = Wallet(None, secret)  # type: ignore[arg-type]  # only to learn the address
    closers = []
    node = None
    if kind == "btcd":
        from regtest.btcd import BtcdProcess

        node = BtcdProcess(tool_path("btcd"), tmp_path / "btcd", address_wallet.address)
        node.start()
        closers.append(node.stop)
        backend: BitcoinBackend = node.backend()
    elif kind == "embedded":
        from regtest.embedded import EmbeddedNode

        backend = EmbeddedNode()
        closers.append(backend.close)
    elif kind == "embedded-rpc":  # the bitcoind dialect: EmbeddedNode behind its JSON-RPC server
        from regtest.embedded import EmbeddedNode
        from regtest.rpc import RpcBackend
        from regtest.rpc_server import RpcServer

        inner = EmbeddedNode()
        closers.append(inner.close)
        server = RpcServer(inner).start()
        closers.append(server.stop)
        node = server
        backend = RpcBackend(server.plain_url, server.user, server.password, dialect="auto")
        assert backend.dialect == "bitcoind"
        closers.append(backend.close)
    else:
        raise ValueError(kind)
    wallet = Wallet(backend, secret, verify=assert_oracles_accept)  # every wallet spend is oracle-checked
    c = Chain(kind, backend, wallet, closers, node)
    try:
        c.mine(mature_blocks)
    except Exception:
        c.close()
        raise
    return c


@pytest.fixture(params=BACKENDS)
def chain(request, tool_path, tmp_path) -> Iterator[Chain]:
    """A fresh funded chain on each backend."""
    c = make_chain(request.param, tool_path, tmp_path)
    yield c
    c.close()


@pytest.fixture
def btcd_chain(tool_path, tmp_path) -> Iterator[Chain]:
    """A fresh funded btcd chain."""
    c = make_chain("btcd", tool_path, tmp_path)
    yield c
    c.close()


# ----------------------------------------------------------------------------------- oracles
def assert_oracles_accept(tx: Tx, prevouts: list[TxOut]) -> None:
    """Both independent interpreters accept every input of ``tx``."""
    for i in range(len(tx.inputs)):
        k, b = kernel_verify(tx, prevouts, i), btclib_verify(tx, prevouts, i)
        assert k and b, f"oracle rejected input {i}: kernel={k} btclib={b}"


def assert_oracles_reject(tx: Tx, prevouts: list[TxOut], index: int = 0) -> None:
    """Both interpreters reject input ``index``."""
    k, b = kernel_verify(tx, prevouts, index), btclib_verify(tx, prevouts, index)
    assert not k and not b, f"oracle accepted a bad input: kernel={k} btclib={b}"


def rejected(backend: BitcoinBackend, tx: Tx) -> str:
    """Broadcast a tx that must be refused; returns the node's reason."""
    with pytest.raises(TxRejected) as info:
        backend.send_raw_transaction(tx.serialize())
    assert info.value.reason, "empty reject reason"
    return info.value.reason


# ----------------------------------------------------------------------------------- parties
@dataclass
class Parties:
    """Keys of one delegation's participants and the (small-timelock) params."""

    params: StakingParams
    cov_sks: list[bytes]
    staker_sk: bytes
    fp_sk: bytes

    @property
    def staker_pk(self) -> bytes:
        return xonly_from_secret(self.staker_sk)

    @property
    def fp_pk(self) -> bytes:
        return xonly_from_secret(self.fp_sk)


def make_parties(unbonding_time: int = 5, num_covenants: int = 3, quorum: int = 2) -> Parties:
    """Fresh covenant committee / staker / FP keys and params with short timelocks."""
    cov_sks = [generate_secret() for _ in range(num_covenants)]
    params = regtest_default_params(
        covenant_pks=tuple(xonly_from_secret(s) for s in cov_sks),
        covenant_quorum=quorum,
        min_staking_time_blocks=3,
        unbonding_time_blocks=unbonding_time,
        slashing_rate=Decimal("0.1"),
    )
    return Parties(params, cov_sks, generate_secret(), generate_secret())


@dataclass
class Stake:
    """A confirmed (or broadcast) staking tx and its output."""

    tx: Tx
    vout: int
    info: StakingInfo
    height: int | None

    @property
    def outpoint(self) -> OutPoint:
        return OutPoint(self.tx.txid(), self.vout)

    @property
    def output(self) -> TxOut:
        return self.tx.outputs[self.vout]


def stake(c: Chain, p: Parties, staking_time: int, value: int = 100_000, confirm: bool = True) -> Stake:
    """Fund, oracle-check, broadcast and (optionally) confirm a V0 staking tx."""
    unfunded = build_staking_tx(p.staker_pk, p.fp_pk, p.params, staking_time, value)
    tx = c.wallet.fund(unfunded.outputs, FEE_RATE)
    assert_oracles_accept(tx, c.wallet.prevouts(tx))
    txid = c.backend.send_raw_transaction(tx.serialize())
    assert txid == tx.txid_hex()
    c.wallet.watch(txid)
    info = build_staking_info(
        p.staker_pk, [p.fp_pk], p.params.covenant_pks, p.params.covenant_quorum, staking_time, value
    )
    assert tx.outputs[0] == info.output
    height = None
    if confirm:
        (block,) = c.mine(1)
        assert txid in c.block_txids(block)
        height = c.height()
        assert c.wallet.tx_height(txid) == height
    return Stake(tx, 0, info, height)


def covenant_adaptor_sigs(p: Parties, tx: Tx, funding_out: TxOut, leaf: bytes, signers: list[int]):
    """Each chosen covenant member adaptor-signs the slashing sighash, encrypted to the FP key."""
    from checkpoint.slasher import CovenantAdaptorSigs

    msg = taproot_sighash(tx, 0, [funding_out], 0, leaf_script=leaf)
    return [
        CovenantAdaptorSigs(xonly_from_secret(p.cov_sks[i]), (encrypt_sign(p.cov_sks[i], p.fp_pk, msg),))
        for i in signers
    ]


def staker_sig(p: Parties, tx: Tx, funding_out: TxOut, leaf: bytes) -> bytes:
    return sign_script_path(p.staker_sk, tx, 0, [funding_out], leaf)
