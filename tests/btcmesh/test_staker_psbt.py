"""Issue 11: ``btcmesh stake --psbt`` — BIP-174 PSBTs with BIP-371 taproot fields for every tx the staker
signs (embit), and the round trip back to signed txs.

* round trip: PSBTs written → parsed → signed (PSBT_IN_TAP_KEY_SIG / PSBT_IN_TAP_SCRIPT_SIG) →
  finalized gives byte for byte the txs and signatures signed directly with the same nonces;
* an independent signer (embit's own ``sign_with``) signs the same PSBTs: the finalized staking tx
  is accepted by libbitcoinkernel, btclib and the node, and the slashing signatures verify;
* the BIP-371 fields are there (witness UTXO, internal key, merkle root, leaf script, derivations);
* a wrong or tampered signature, or a PSBT of another tx, is refused with a typed error.
"""

from __future__ import annotations

import pytest

from btcmesh_testkit.oracles import btclib_verify, kernel_verify

from btc_staking.keys import secret_even_y, xonly_from_secret
from btc_staking.params import regtest_default_params
from btc_staking.sighash import tapleaf_hash
from btc_staking.signing import sign_key_path, sign_script_path, verify_script_path_sig
from btcmesh.daemons.staker_psbt import PsbtError, finalize, plan_stake, plan_to_psbts, sign_psbts

SECRET = secret_even_y(bytes.fromhex("11" * 32))
FP = xonly_from_secret(secret_even_y(bytes.fromhex("22" * 32)))
AUX = bytes(range(32))


@pytest.fixture()
def planned():
    from regtest.embedded import EmbeddedNode
    from regtest.wallet import Wallet

    node = EmbeddedNode()
    try:
        wallet = Wallet(node, SECRET)
        node.mine_blocks(2, wallet.script_pubkey)
        node.mine_blocks(100, bytes.fromhex("51"))  # OP_TRUE: maturity for the wallet's coinbases
        wallet.scan()
        params = regtest_default_params(confirmation_depth=3, unbonding_time_blocks=4)
        plan = plan_stake(wallet, xonly_from_secret(SECRET), params, FP, 150, 100_000, 2.0)
        yield node, wallet, plan, plan_to_psbts(plan, wallet.internal_key)
    finally:
        node.close()


def test_psbts_carry_the_bip371_taproot_fields(planned) -> None:
    from embit.psbt import PSBT

    _, wallet, plan, psbts = planned
    st = PSBT.from_string(psbts["staking"])
    assert len(st.inputs) == len(plan.staking_tx.inputs) >= 1
    for inp, prev in zip(st.inputs, plan.prevouts):
        assert inp.witness_utxo.value == prev.value and inp.witness_utxo.script_pubkey.data == prev.script_pubkey
        assert inp.taproot_internal_key.xonly() == wallet.internal_key
        assert [p.xonly() for p in inp.taproot_bip32_derivations] == [wallet.internal_key]
    for name, info in (("slashing", plan.info), ("unbonding-slashing", plan.unbonding_info)):
        inp = PSBT.from_string(psbts[name]).inputs[0]
        leaf = info.slashing_script
        assert inp.taproot_internal_key.xonly() == info.tree.internal_key
        assert inp.taproot_merkle_root == info.tree.merkle_root
        assert inp.taproot_scripts == {info.control_block(leaf): leaf + b"\xc0"}
        (pub, (leaves, _)), = inp.taproot_bip32_derivations.items()
        assert pub.xonly() == plan.staker_pk and leaves == [tapleaf_hash(leaf)]
        assert inp.witness_utxo.script_pubkey.data == info.pk_script
    # raw key types present: 0x01 witness utxo, 0x15 leaf script, 0x16 derivation, 0x17 internal key, 0x18 root
    import base64

    raw = base64.b64decode(psbts["slashing"])
    assert raw.startswith(b"psbt\xff")
    cb = plan.info.control_block(plan.info.slashing_script)
    for key in (b"\x01\x01", bytes([1 + len(cb)]) + b"\x15" + cb, b"\x21\x16" + plan.staker_pk, b"\x01\x17",
                b"\x01\x18"):
        assert key in raw, key.hex()


def test_round_trip_gives_the_same_signed_txs(planned) -> None:
    node, _, plan, psbts = planned
    signed = sign_psbts(psbts, SECRET, plan, aux32=AUX)
    staking, slash_sig, ub_slash_sig = finalize(plan, signed)
    direct = plan.staking_tx.copy()
    for i in range(len(direct.inputs)):
        direct.inputs[i].witness = [sign_key_path(SECRET, direct, i, list(plan.prevouts), aux32=AUX)]
    assert staking.serialize() == direct.serialize()
    staking_out = plan.staking_tx.outputs[plan.staking_output_index]
    assert slash_sig == sign_script_path(SECRET, plan.slashing_tx, 0, [staking_out], plan.info.slashing_script, AUX)
    assert ub_slash_sig == sign_script_path(SECRET, plan.unbonding_slashing_tx, 0, [plan.unbonding_info.output],
                                            plan.unbonding_info.slashing_script, AUX)
    for i in range(len(staking.inputs)):
        assert kernel_verify(staking, list(plan.prevouts), i) and btclib_verify(staking, list(plan.prevouts), i)
    assert node.send_raw_transaction(staking.serialize()) == staking.txid_hex()


def test_an_independent_signer_embit(planned) -> None:
    from embit import ec
    from embit.psbt import PSBT

    node, _, plan, psbts = planned
    key = ec.PrivateKey(SECRET)
    signed = {}
    for name, b64 in psbts.items():
        ps = PSBT.from_string(b64)
        assert ps.sign_with(key) >= 1, name
        signed[name] = ps.to_string()
    staking, slash_sig, ub_slash_sig = finalize(plan, signed)
    for i in range(len(staking.inputs)):
        assert kernel_verify(staking, list(plan.prevouts), i) and btclib_verify(staking, list(plan.prevouts), i)
    staking_out = plan.staking_tx.outputs[plan.staking_output_index]
    assert verify_script_path_sig(plan.staker_pk, slash_sig, plan.slashing_tx, 0, [staking_out],
                                  plan.info.slashing_script)
    assert verify_script_path_sig(plan.staker_pk, ub_slash_sig, plan.unbonding_slashing_tx, 0,
                                  [plan.unbonding_info.output], plan.unbonding_info.slashing_script)
    assert node.send_raw_transaction(staking.serialize()) == staking.txid_hex()


def test_bad_signatures_and_foreign_psbts_are_refused(planned) -> None:
    from embit import ec
    from embit.psbt import PSBT

    _, _, plan, psbts = planned
    with pytest.raises(PsbtError, match="no 64-byte taproot key-path signature"):
        finalize(plan, psbts)  # unsigned
    other = secret_even_y(bytes.fromhex("33" * 32))
    signed = sign_psbts(psbts, SECRET, plan)
    ps = PSBT.from_string(signed["slashing"])
    (k, sig), = ps.inputs[0].taproot_sigs.items()
    ps.inputs[0].taproot_sigs[k] = sig[:-1] + bytes([sig[-1] ^ 1])
    with pytest.raises(PsbtError, match="slashing.psbt: the staker's slashing-leaf signature does not verify"):
        finalize(plan, dict(signed, slashing=ps.to_string()))
    bad = PSBT.from_string(signed["staking"])
    bad.inputs[0].unknown[b"\x13"] = sign_key_path(other, plan.staking_tx, 0, list(plan.prevouts))
    with pytest.raises(PsbtError, match="key-path signature does not verify"):
        finalize(plan, dict(signed, staking=bad.to_string()))
    with pytest.raises(PsbtError, match="is not the planned slashing tx"):
        finalize(plan, dict(signed, slashing=signed["unbonding-slashing"]))
    with pytest.raises(PsbtError, match="not a valid PSBT"):
        finalize(plan, dict(signed, staking="bm90IGEgcHNidA=="))
    assert ec.PrivateKey(SECRET)  # embit key of the staker (used by the independent-signer test)
