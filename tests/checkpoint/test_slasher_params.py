"""Slasher, issue 9: each delegation is slashed with the params version it was registered under
(version 1 has another covenant committee), and only ACTIVE / UNBONDING (registry: SLASHED) stake is
taken; EXPIRED and WITHDRAWN delegations are left alone, as Babylon's slasher does. Every completed
slashing tx is checked by libbitcoinkernel and btclib."""

from __future__ import annotations

import os

from test_slasher_support import btclib_verify, kernel_verify, presign_delegation

from btc_staking.keys import generate_secret, xonly_from_secret
from btc_staking.params import covenant_secret, regtest_default_params
from btc_staking.staking import build_staking_info
from btc_staking.tx import OutPoint, Tx, TxIn, TxOut
from btcmesh.finality_provider import CallableChannel, FinalityProvider
from checkpoint.slasher import QuerySlasherChain, Slasher
from cosmos_chain.modules.finality import StandaloneFinality, StaticHooks

STAKING_TIME, VALUE = 150, 1_000_000
V0 = regtest_default_params(num_covenants=3)
V1_SKS = [covenant_secret(i) for i in (7, 8, 9)]
V1 = regtest_default_params(num_covenants=3, covenant_pks=tuple(xonly_from_secret(k) for k in V1_SKS),
                            btc_activation_height=500)


class FakeBitcoin:
    """Confirmed txs + a mempool; a broadcast must pass libbitcoinkernel."""

    def __init__(self) -> None:
        self.prevouts: dict[bytes, list[TxOut]] = {}
        self.confirmed: dict[str, bytes] = {}
        self.mempool: dict[str, bytes] = {}

    def add_confirmed(self, tx: Tx) -> None:
        self.confirmed[tx.txid_hex()] = tx.serialize()
        self.prevouts[tx.txid()] = tx.outputs

    def send_raw_transaction(self, raw: bytes) -> str:
        tx = Tx.parse(raw)
        if not kernel_verify(tx, [self.prevouts[i.prevout.txid][i.prevout.vout] for i in tx.inputs], 0):
            raise ValueError("mandatory-script-verify-flag-failed")
        self.mempool[tx.txid_hex()] = raw
        return tx.txid_hex()

    def get_raw_transaction(self, txid: str) -> bytes:
        if txid in self.mempool or txid in self.confirmed:
            return self.mempool.get(txid) or self.confirmed[txid]
        raise KeyError(txid)

    def get_mempool(self) -> list[str]:
        return list(self.mempool)


def _delegation(params, cov_sks, fp: bytes, status: str, version: int) -> tuple[dict, Tx]:
    staker_sk = generate_secret()
    info = build_staking_info(xonly_from_secret(staker_sk), [fp], params.covenant_pks, params.covenant_quorum,
                              STAKING_TIME, VALUE)
    tx = Tx(2, [TxIn(OutPoint(os.urandom(32), 0))], [info.output], 0)
    d = presign_delegation(params, cov_sks, staker_sk, [fp], tx, 0, STAKING_TIME)
    d.update(status=status, params_version=version)
    return d, tx


def test_each_delegation_slashed_with_its_own_params_version_and_only_live_stake() -> None:
    fp_sk = generate_secret()
    fp = xonly_from_secret(fp_sk)
    v0_sks = [covenant_secret(i) for i in range(3)]
    d0, tx0 = _delegation(V0, v0_sks, fp, "SLASHED", 0)
    d1, tx1 = _delegation(V1, V1_SKS, fp, "SLASHED", 1)
    expired, tx_e = _delegation(V0, v0_sks, fp, "EXPIRED", 0)
    withdrawn, tx_w = _delegation(V0, v0_sks, fp, "WITHDRAWN", 0)
    btc = FakeBitcoin()
    for tx in (tx0, tx1, tx_e, tx_w):
        btc.add_confirmed(tx)

    module = StandaloneFinality(StaticHooks({fp.hex()}), height=0)
    client = FinalityProvider(fp_sk, CallableChannel(module.execute, module.query))
    client.commit_pub_rand(1, 10)
    module.height = 20
    client.vote(5, b"\x11" * 32)
    client.double_sign(5, b"\x22" * 32)

    versions = [dict(V0.to_dict(), version=0), dict(V1.to_dict(), version=1)]

    def query(contract: str, msg: dict):
        if contract == "registry":
            assert msg == {"params": {}}
            return {"params_versions": versions}
        return module.query(msg)

    chain = QuerySlasherChain(query, "finality", "registry",
                              delegations_query=lambda k: [d0, d1, expired, withdrawn] if k == fp.hex() else [])
    results = {r.staking_tx_hash: r for r in Slasher(chain, btc).poll()}
    # the EXPIRED and WITHDRAWN delegations are not touched
    assert set(results) == {tx0.txid_hex(), tx1.txid_hex()}
    for h, tx in ((tx0.txid_hex(), tx0), (tx1.txid_hex(), tx1)):
        assert results[h].status == "broadcast", results[h]
        slash = Tx.parse(btc.mempool[results[h].txid])
        assert kernel_verify(slash, [tx.outputs[0]], 0) and btclib_verify(slash, [tx.outputs[0]], 0)
    # without its own version d1 cannot be slashed: version 0's committee does not match its output
    only_v0 = QuerySlasherChain(query, "finality", "registry", params=V0,
                                delegations_query=lambda k: [dict(d1, params_version=None)])
    other = FakeBitcoin()
    other.add_confirmed(tx1)
    [r] = Slasher(only_v0, other).poll()
    assert r.status == "skipped" and "does not match" in r.reason
