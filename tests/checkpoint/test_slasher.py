"""Slasher: completes covenant adaptor signatures with the extracted EOTS key; every completed
tx is checked by libbitcoinkernel and btclib's script engine (no regtest node needed here)."""

from __future__ import annotations

import os

import pytest
from test_slasher_support import btclib_verify, kernel_verify, presign_delegation

from btc_staking.keys import generate_secret, secret_even_y, xonly_from_secret
from btc_staking.params import covenant_secret, regtest_default_params
from btc_staking.staking import build_slashing_change_info, build_staking_info, slashing_amounts
from btc_staking.tx import OutPoint, Tx, TxIn, TxOut
from btcmesh.finality_provider import CallableChannel, FinalityProvider
from checkpoint.slasher import (
    IncompleteDelegationError,
    KeyMismatchError,
    QuerySlasherChain,
    SlashableDelegation,
    Slasher,
    recover_fp_secret,
)
from cosmos_chain.modules.finality import StandaloneFinality, StaticHooks

N_COV, QUORUM, STAKING_TIME, VALUE = 5, 3, 150, 1_000_000


class FakeBitcoin:
    """Records broadcasts; 'confirm' moves mempool txs to the chain. Rejects invalid scripts via the kernel."""

    def __init__(self, prevouts: dict[bytes, list[TxOut]]) -> None:
        self.prevouts = prevouts  # txid(internal) -> outputs
        self.mempool: dict[str, bytes] = {}
        self.confirmed: dict[str, bytes] = {}
        self.sent: list[str] = []

    def add_confirmed(self, tx: Tx) -> None:
        self.confirmed[tx.txid_hex()] = tx.serialize()
        self.prevouts[tx.txid()] = tx.outputs

    def send_raw_transaction(self, raw: bytes) -> str:
        tx = Tx.parse(raw)
        prev = [self.prevouts[i.prevout.txid][i.prevout.vout] for i in tx.inputs]
        if not kernel_verify(tx, prev, 0):
            raise ValueError("mandatory-script-verify-flag-failed")
        self.sent.append(tx.txid_hex())
        self.mempool[tx.txid_hex()] = raw
        return tx.txid_hex()

    def get_raw_transaction(self, txid: str) -> bytes:
        if txid in self.mempool:
            return self.mempool[txid]
        if txid in self.confirmed:
            return self.confirmed[txid]
        raise KeyError(f"no such tx {txid}")

    def get_mempool(self) -> list[str]:
        return list(self.mempool)

    def mine(self) -> None:
        self.confirmed.update(self.mempool)
        self.mempool.clear()


@pytest.fixture()
def world():
    params = regtest_default_params(num_covenants=N_COV, quorum=QUORUM)
    cov_sks = [covenant_secret(i) for i in range(N_COV)]
    staker_sk, fp_sk, honest_sk = generate_secret(), generate_secret(), generate_secret()
    fp, honest = xonly_from_secret(fp_sk), xonly_from_secret(honest_sk)
    info = build_staking_info(xonly_from_secret(staker_sk), [fp], params.covenant_pks, QUORUM, STAKING_TIME, VALUE)
    staking_tx = Tx(2, [TxIn(OutPoint(os.urandom(32), 0))], [TxOut(5000, b"\x6a"), info.output], 0)
    d = presign_delegation(params, cov_sks, staker_sk, [fp], staking_tx, 1, STAKING_TIME)
    hinfo = build_staking_info(xonly_from_secret(staker_sk), [honest], params.covenant_pks, QUORUM, STAKING_TIME, VALUE)
    htx = Tx(2, [TxIn(OutPoint(os.urandom(32), 0))], [hinfo.output], 0)
    hd = presign_delegation(params, cov_sks, staker_sk, [honest], htx, 0, STAKING_TIME)
    btc = FakeBitcoin({})
    btc.add_confirmed(staking_tx)
    btc.add_confirmed(htx)

    hooks = StaticHooks({fp.hex(), honest.hex()})
    module = StandaloneFinality(hooks, height=0)  # randomness is committed ahead, then the chain moves on
    chan = CallableChannel(module.execute, module.query)
    delegations = {fp.hex(): [d], honest.hex(): [hd]}

    def query(contract: str, msg: dict):
        assert contract == "finality"
        return module.query(msg)

    chain = QuerySlasherChain(query, "finality", "registry", params=params,
                              delegations_query=lambda k: delegations.get(k, []))
    return dict(params=params, cov_sks=cov_sks, staker_sk=staker_sk, fp_sk=fp_sk, fp=fp, honest_sk=honest_sk,
                d=d, hd=hd, staking_tx=staking_tx, btc=btc, module=module, chain=chain,
                fp_client=FinalityProvider(fp_sk, chan), honest_client=FinalityProvider(honest_sk, chan))


def _double_sign(w, height: int = 7) -> None:
    fpc = w["fp_client"]
    fpc.commit_pub_rand(1, 20)
    w["module"].height = 50
    fpc.vote(height, b"\x11" * 32)
    fpc.double_sign(height, b"\x22" * 32)


def test_completed_staking_slashing_tx_is_valid_and_pays_burn_and_change(world):
    w = world
    _double_sign(w)
    s = Slasher(w["chain"], w["btc"])
    [res] = [r for r in s.poll()]
    assert (res.status, res.path) == ("broadcast", "staking")
    tx = Tx.parse(w["btc"].mempool[res.txid])
    prev = [w["staking_tx"].outputs[1]]
    assert kernel_verify(tx, prev, 0) and btclib_verify(tx, prev, 0)
    p = w["params"]
    slash, change = slashing_amounts(VALUE, p.slashing_rate, p.min_slashing_tx_fee_sat)
    assert tx.outputs[0] == TxOut(slash, p.slashing_pk_script) and slash == VALUE // 10
    change_info = build_slashing_change_info(xonly_from_secret(w["staker_sk"]), p.unbonding_time_blocks)
    assert tx.outputs[1] == TxOut(change, change_info.pk_script)
    # witness: 5 covenant slots (3 sigs) + 1 FP sig + staker sig + leaf + control block
    wit = tx.inputs[0].witness
    assert len(wit) == N_COV + 1 + 1 + 2 and sum(1 for x in wit[:N_COV] if x) == QUORUM


def test_tampered_witness_rejected_by_both_oracles(world):
    w = world
    _double_sign(w)
    res = Slasher(w["chain"], w["btc"]).poll()[0]
    tx = Tx.parse(w["btc"].mempool[res.txid])
    prev = [w["staking_tx"].outputs[1]]
    fp_slot = N_COV  # flip one bit of the FP signature
    sig = bytearray(tx.inputs[0].witness[fp_slot])
    sig[5] ^= 1
    tx.inputs[0].witness[fp_slot] = bytes(sig)
    assert not kernel_verify(tx, prev, 0) and not btclib_verify(tx, prev, 0)
    # a 4th covenant signature (more than quorum) fails OP_NUMEQUAL
    tx2 = Tx.parse(w["btc"].mempool[res.txid])
    empty = [i for i, x in enumerate(tx2.inputs[0].witness[:N_COV]) if not x]
    tx2.inputs[0].witness[empty[0]] = tx2.inputs[0].witness[[i for i in range(N_COV) if i not in empty][0]]
    assert not kernel_verify(tx2, prev, 0) and not btclib_verify(tx2, prev, 0)


def test_idempotent_no_rebroadcast(world):
    w = world
    _double_sign(w)
    s = Slasher(w["chain"], w["btc"])
    first = s.poll()[0]
    assert first.status == "broadcast" and w["btc"].sent == [first.txid]
    again = s.poll()[0]
    assert again.status == "in_mempool" and w["btc"].sent == [first.txid]
    w["btc"].mine()
    assert s.poll()[0].status == "confirmed"
    fresh = Slasher(w["chain"], w["btc"])  # a restarted slasher also sees it confirmed
    assert fresh.poll()[0].status == "confirmed" and w["btc"].sent == [first.txid]


def test_honest_fp_delegation_untouched(world):
    w = world
    w["honest_client"].commit_pub_rand(1, 20)
    w["honest_client"].vote(7, b"\x33" * 32)
    _double_sign(w)
    results = Slasher(w["chain"], w["btc"]).poll()
    assert [r.staking_tx_hash for r in results] == [w["d"]["staking_tx_hash"]]
    assert all(Tx.parse(raw).inputs[0].prevout.txid != Tx.parse(bytes.fromhex(w["hd"]["staking_tx"])).txid()
               for raw in w["btc"].mempool.values())


def test_unbonded_delegation_slashed_via_unbonding_output(world):
    w = world
    from test_slasher_support import covenant_unbonding_sigs

    ub, prev = covenant_unbonding_sigs(w["params"], w["cov_sks"], w["staker_sk"], w["d"])
    assert kernel_verify(ub, prev, 0) and btclib_verify(ub, prev, 0)
    w["btc"].add_confirmed(ub)
    _double_sign(w)
    res = Slasher(w["chain"], w["btc"]).poll()[0]
    assert (res.status, res.path) == ("broadcast", "unbonding")
    tx = Tx.parse(w["btc"].mempool[res.txid])
    assert tx.inputs[0].prevout == OutPoint(ub.txid(), 0)
    assert kernel_verify(tx, ub.outputs, 0) and btclib_verify(tx, ub.outputs, 0)
    slash, _ = slashing_amounts(ub.outputs[0].value, w["params"].slashing_rate, w["params"].min_slashing_tx_fee_sat)
    assert tx.outputs[0].value == slash


def test_quorum_exactly_met_and_short(world):
    w = world
    params, staker_sk = w["params"], w["staker_sk"]
    d3 = presign_delegation(params, w["cov_sks"], staker_sk, [w["fp"]], w["staking_tx"], 1, STAKING_TIME,
                            signers=[0, 2, 4])
    d2 = presign_delegation(params, w["cov_sks"], staker_sk, [w["fp"]], w["staking_tx"], 1, STAKING_TIME,
                            signers=[1, 3])
    _double_sign(w)
    sk = secret_even_y(w["fp_sk"])
    s = Slasher(w["chain"], w["btc"])
    _, tx, out = s.build(SlashableDelegation.from_json(d3), sk, params)
    assert kernel_verify(tx, [out], 0) and btclib_verify(tx, [out], 0)
    with pytest.raises(IncompleteDelegationError, match="quorum"):
        s.build(SlashableDelegation.from_json(d2), sk, params)
    # a wrong key decrypts nothing usable
    with pytest.raises(IncompleteDelegationError):
        s.build(SlashableDelegation.from_json(w["d"]), generate_secret(), params)


def test_key_recovery_both_ways_must_agree(world):
    w = world
    _double_sign(w)
    fp = w["fp"].hex()
    ev = w["module"].query({"evidence": {"fp_btc_pk": fp}})["evidence"][0]
    chain_sk = w["module"].query({"is_slashed": {"fp_btc_pk": fp}})["extracted_btc_sk"]
    sk = recover_fp_secret(w["fp"], ev, chain_sk)
    assert sk == secret_even_y(w["fp_sk"]) and xonly_from_secret(sk) == w["fp"]
    with pytest.raises(KeyMismatchError, match="differs"):
        recover_fp_secret(w["fp"], ev, generate_secret().hex())
    bad = dict(ev, fork_finality_sig="00" * 31 + "01")
    with pytest.raises(KeyMismatchError):
        recover_fp_secret(w["fp"], bad, None)


def test_unbonding_slashing_sigs_read_by_documented_name(world):
    """``covenant_slashing_unbonding_sigs`` (docs/CHAIN_MESSAGES.md) is read; without it there are none."""
    d = dict(world["d"])
    documented = SlashableDelegation.from_json(d).covenant_slashing_unbonding_sigs
    assert len(documented) == N_COV  # every covenant signed in this fixture
    d.pop("covenant_slashing_unbonding_sigs")
    assert SlashableDelegation.from_json(d).covenant_slashing_unbonding_sigs == ()
