"""btcmesh.staker + btcmesh.covenant against btc_staking and a real (embedded, libbitcoinkernel) node.

Every spend assembled from the staker's and the covenant's signatures is checked by two independent
interpreters (libbitcoinkernel via pbk, btclib) and then accepted by the EmbeddedNode."""

from __future__ import annotations

import hashlib

import pytest
from cosmpy.crypto.address import Address

from btcmesh_testkit.oracles import both_accept

from btc_staking.adaptor import AdaptorSignature
from btc_staking.keys import xonly_from_secret
from btc_staking.params import covenant_secret, mul_f64, regtest_default_params
from btc_staking.sighash import taproot_sighash
from btc_staking.signing import verify_pop_bip340
from btc_staking.tx import OutPoint, Tx, TxIn, TxOut, p2tr_script
from btcmesh.covenant import CovenantCommittee, CovenantError, CovenantMember
from btcmesh.staker import Staker, StakerError
from checkpoint.slasher import CovenantAdaptorSigs, complete_slashing_tx

ANY_ADDRESS = str(Address(b"\x33" * 20, prefix="bbn"))  # a submitter (PoP signs its raw bytes)
PARAMS = regtest_default_params(unbonding_time_blocks=3)
STAKING_TIME = 150
VALUE = 200_000


def sk(label: str) -> bytes:
    return hashlib.sha256(b"btcmesh-cs-test/" + label.encode()).digest()


FP_SK = sk("fp")
FP_PK = xonly_from_secret(FP_SK)


def synthetic_staking_tx(staker: Staker, value: int = VALUE) -> Tx:
    """A staking tx spending a made-up outpoint (for checks that need no node)."""
    outs = staker.staking_outputs(FP_PK, STAKING_TIME, value)
    return Tx(2, [TxIn(OutPoint(hashlib.sha256(b"funding").digest(), 0))], outs + [TxOut(5_000, p2tr_script(FP_PK))], 0)


def test_staker_delegation_material_is_consistent() -> None:
    staker = Staker(sk("staker"), PARAMS)
    tx = synthetic_staking_tx(staker)
    d = staker.delegation(tx, [FP_PK], STAKING_TIME)
    assert d.staking_output_index == 0 and d.staking_value == VALUE
    assert d.unbonding_value == VALUE - PARAMS.unbonding_fee_sat
    assert d.slashing_tx.outputs[0].value == mul_f64(VALUE, PARAMS.slashing_rate)
    assert d.slashing_tx.outputs[0].script_pubkey == PARAMS.slashing_pk_script
    submitter, other = (Address(bytes([b]) * 20, prefix="bbn") for b in (0x11, 0x22))
    body = d.create_msg(staker.pop(str(submitter)), {"block_hash": "00" * 32, "index": 1, "proof": ""})
    assert body["staking_tx"] == tx.serialize().hex() and body["inclusion_proof"]["index"] == 1
    assert body["fp_btc_pk_list"] == [FP_PK.hex()] and body["unbonding_time"] == 3
    # PoP (Babylon types/pop.go): the staker's key over sha256(raw submitter address bytes)
    assert verify_pop_bip340(staker.pk, bytes(submitter), bytes.fromhex(body["pop"]))
    assert not verify_pop_bip340(staker.pk, str(submitter).encode(), bytes.fromhex(body["pop"]))
    assert not verify_pop_bip340(staker.pk, bytes(other), bytes.fromhex(body["pop"]))


def test_staker_refuses_foreign_or_wrong_tx() -> None:
    staker = Staker(sk("staker"), PARAMS)
    other = Staker(sk("other"), PARAMS)
    tx = synthetic_staking_tx(other)
    with pytest.raises(StakerError, match="staking output"):
        staker.delegation(tx, [FP_PK], STAKING_TIME)
    d = other.delegation(tx, [FP_PK], STAKING_TIME)
    with pytest.raises(StakerError, match="another staker"):
        staker.withdraw_tx(d, p2tr_script(FP_PK))
    with pytest.raises(StakerError, match="unknown withdrawal path"):
        other.withdraw_tx(d, p2tr_script(FP_PK), path="sideways")
    with pytest.raises(ValueError, match="staking time"):
        staker.staking_outputs(FP_PK, 5, VALUE)


def test_covenant_signatures_verify_and_adaptors_need_the_fp_key() -> None:
    staker = Staker(sk("staker"), PARAMS)
    d = staker.delegation(synthetic_staking_tx(staker), [FP_PK], STAKING_TIME)
    body = d.create_msg(staker.pop(ANY_ADDRESS))
    committee = CovenantCommittee.regtest(PARAMS)
    sigs = committee.sign(body)
    assert len(sigs) == 3
    slash_msg = taproot_sighash(d.slashing_tx, 0, [d.staking_output], 0, leaf_script=d.info.slashing_script)
    for s in sigs:
        msg = s.to_msg()["add_covenant_sigs"]
        assert msg["staking_tx_hash"] == d.staking_tx_hash and msg["pk"] == s.pk.hex()
        (adaptor,) = s.slashing_tx_sigs
        assert adaptor.verify(s.pk, FP_PK, slash_msg)
        assert AdaptorSignature.parse(bytes.fromhex(msg["slashing_tx_sigs"][0])) == adaptor
        # only the FP's secret turns it into a signature
        adaptor.decrypt_and_verify(FP_SK, s.pk, slash_msg)
        with pytest.raises(ValueError):
            adaptor.decrypt_and_verify(sk("not-the-fp"), s.pk, slash_msg)
    # a staker can assemble its unbonding tx from any quorum of them
    ub = staker.signed_unbonding_tx(d, CovenantCommittee.unbonding_sigs(sigs[1:]))
    assert both_accept(ub, [d.staking_output])
    assert ub.txid() == d.unbonding_tx.txid()


def test_covenant_refuses_bad_delegations() -> None:
    staker = Staker(sk("staker"), PARAMS)
    d = staker.delegation(synthetic_staking_tx(staker), [FP_PK], STAKING_TIME)
    good = d.create_msg(staker.pop(ANY_ADDRESS))
    member = CovenantMember(covenant_secret(0))
    cases = {
        "staking output does not match": {"staking_value": VALUE - 1},
        "slashing signature does not verify": {"delegator_slashing_sig": "00" * 64},
        "unbonding-slashing signature": {"delegator_unbonding_slashing_sig": d.delegator_slashing_sig.hex()},
        "unbonding_time": {"unbonding_time": 4},
        "staking_output_index": {"staking_output_index": 7},
        "lacks slashing_tx": {"slashing_tx": ""},
    }
    for reason, patch in cases.items():
        with pytest.raises(CovenantError, match=reason):
            member.sign({**good, **patch}, PARAMS)
    # an unbonding tx paying the wrong amount is a staking-rule violation
    bad_ub = d.unbonding_tx.copy()
    bad_ub.outputs[0] = TxOut(bad_ub.outputs[0].value - 1, bad_ub.outputs[0].script_pubkey)
    with pytest.raises(CovenantError, match="unbonding fee"):
        member.sign({**good, "unbonding_tx": bad_ub.serialize().hex()}, PARAMS)
    with pytest.raises(CovenantError, match="not a covenant key"):
        CovenantMember(sk("outsider")).sign(good, PARAMS)
    with pytest.raises(CovenantError, match="not a covenant key"):
        CovenantCommittee([sk("outsider")], PARAMS)


def test_unbonding_needs_quorum_of_valid_covenant_sigs() -> None:
    staker = Staker(sk("staker"), PARAMS)
    d = staker.delegation(synthetic_staking_tx(staker), [FP_PK], STAKING_TIME)
    sigs = CovenantCommittee.regtest(PARAMS).sign(d.create_msg(b"\x00" * 64))
    with pytest.raises(StakerError, match="quorum"):
        staker.signed_unbonding_tx(d, CovenantCommittee.unbonding_sigs(sigs[:1]))
    forged = {sigs[0].pk: sigs[0].unbonding_tx_sig, sigs[1].pk: sigs[0].unbonding_tx_sig}
    with pytest.raises(StakerError, match="does not verify"):
        staker.signed_unbonding_tx(d, forged)


@pytest.fixture
def node_and_wallet():
    from regtest.embedded import EmbeddedNode
    from regtest.wallet import Wallet

    node = EmbeddedNode()
    wallet = Wallet(node, sk("wallet"))
    node.mine_blocks(101, wallet.script_pubkey)
    wallet.scan()
    yield node, wallet
    node.close()


def _mine(node, wallet, tx: Tx) -> None:
    assert node.send_raw_transaction(tx.serialize()) == tx.txid_hex()
    node.mine_blocks(1, wallet.script_pubkey)
    assert node.get_tx_height(tx.txid_hex()) == node.get_block_count()


def test_on_node_stake_unbond_withdraw(node_and_wallet) -> None:
    node, wallet = node_and_wallet
    staker = Staker(sk("staker"), PARAMS)
    tx = staker.fund_staking_tx(wallet, FP_PK, STAKING_TIME, VALUE)
    assert both_accept(tx, wallet.prevouts(tx), 0)
    _mine(node, wallet, tx)
    d = staker.delegation(tx, [FP_PK], STAKING_TIME)
    sigs = CovenantCommittee.regtest(PARAMS).sign(d.create_msg(staker.pop(ANY_ADDRESS)), signers=2)
    ub = staker.signed_unbonding_tx(d, CovenantCommittee.unbonding_sigs(sigs))
    assert both_accept(ub, [d.staking_output])
    _mine(node, wallet, ub)
    back = staker.withdraw_tx(d, wallet.script_pubkey)
    assert both_accept(back, [d.unbonding_info.output])
    # BIP-68: refused until unbonding_time blocks have passed, then accepted
    node.mine_blocks(PARAMS.unbonding_time_blocks - 2, wallet.script_pubkey)
    assert node.test_mempool_accept(back.serialize()) is not None
    node.mine_blocks(1, wallet.script_pubkey)
    _mine(node, wallet, back)
    assert back.outputs[0].value == VALUE - PARAMS.unbonding_fee_sat - 500


def test_on_node_slashing_completed_with_fp_key(node_and_wallet) -> None:
    node, wallet = node_and_wallet
    staker = Staker(sk("staker2"), PARAMS)
    tx = staker.fund_staking_tx(wallet, FP_PK, STAKING_TIME, VALUE)
    _mine(node, wallet, tx)
    d = staker.delegation(tx, [FP_PK], STAKING_TIME)
    sigs = CovenantCommittee.regtest(PARAMS).sign(d.create_msg(staker.pop(ANY_ADDRESS)))
    adaptors = [CovenantAdaptorSigs(s.pk, s.slashing_tx_sigs) for s in sigs]
    leaf = d.info.slashing_script
    slashed = complete_slashing_tx(d.slashing_tx, d.staking_output, leaf, d.info.control_block(leaf),
                                   PARAMS.covenant_pks, PARAMS.covenant_quorum, adaptors, [FP_PK], FP_SK,
                                   staker.pk, d.delegator_slashing_sig)
    assert both_accept(slashed, [d.staking_output])
    _mine(node, wallet, slashed)
    assert slashed.outputs[0].value == mul_f64(VALUE, PARAMS.slashing_rate)
    # the change comes back to the staker through its timelock
    back = staker.withdraw_tx(d, wallet.script_pubkey, path="slashing_change", slashing_tx=slashed)
    assert both_accept(back, [slashed.outputs[1]])
    node.mine_blocks(PARAMS.unbonding_time_blocks - 1, wallet.script_pubkey)
    _mine(node, wallet, back)
