"""Babylon's official btcstaking test vectors must match byte for byte."""

from __future__ import annotations

import dataclasses
import json

import pytest

from btc_staking.params import regtest_default_params
from btc_staking.staking import (
    build_staking_info,
    build_unbonding_info,
    build_unbonding_tx,
    build_v0_op_return,
    parse_v0_op_return,
)
from btc_staking.tx import OutPoint, Tx, TxIn


def _cases(vectors_path):
    return json.loads(vectors_path.read_text())["vectors"]


def test_five_cases_present(vectors_path):
    assert len(_cases(vectors_path)) == 5


def test_vendored_copy_matches_shared_vectors():
    """tests/data holds a byte-identical copy of ../shared/conformance for standalone clones."""
    from btcmesh_testkit.paths import VECTORS_PATH, VENDORED_VECTORS_PATH

    if not VECTORS_PATH.is_file():
        pytest.skip(f"no ../shared checkout next to this clone ({VECTORS_PATH}); the vendored copy is used")
    assert VENDORED_VECTORS_PATH.read_bytes() == VECTORS_PATH.read_bytes()


@pytest.mark.parametrize("idx", range(5))
def test_vector_case(vectors_path, idx):
    case = _cases(vectors_path)[idx]
    p, exp = case["parameters"], case["expected"]
    staker = bytes.fromhex(p["staker_public_key"])
    fps = [bytes.fromhex(k) for k in p["finality_provider_public_keys"]]
    covs = [bytes.fromhex(k) for k in p["covenant_public_keys"]]
    q = p["covenant_quorum"]

    info = build_staking_info(staker, fps, covs, q, p["staking_time"], p["staking_value"])
    assert info.pk_script.hex() == exp["staking_output_pkscript_hex"]
    assert info.output.value == exp["staking_output_value"]
    assert info.timelock_script.hex() == exp["staking_transaction_timelock_script_hex"]
    assert info.unbonding_script.hex() == exp["staking_transaction_unbonding_script_hex"]
    assert info.slashing_script.hex() == exp["staking_transaction_slashing_script_hex"]

    unbonding_value = p["staking_value"] - p["unbonding_fee"]
    ub = build_unbonding_info(staker, fps, covs, q, p["unbonding_time"], unbonding_value)
    assert ub.timelock_script.hex() == exp["unbonding_transaction_time_lock_script_hex"]
    assert ub.slashing_script.hex() == exp["unbonding_transaction_slashing_script_hex"]

    outpoint = OutPoint.from_hex(p["staking_tx_hash"], p["staking_output_index"])
    manual = Tx(p["unbonding_tx_version"], [TxIn(outpoint)], [ub.output], 0)
    assert manual.serialize().hex() == exp["unbonding_transaction_hex"]

    # The params-driven builder produces the same bytes.
    params = dataclasses.replace(
        regtest_default_params(),
        covenant_pks=tuple(covs),
        covenant_quorum=q,
        unbonding_time_blocks=p["unbonding_time"],
        unbonding_fee_sat=p["unbonding_fee"],
        min_staking_value_sat=p["staking_value"],
        tag=bytes.fromhex(p["tag"]),
    ).validate()
    built = build_unbonding_tx(outpoint, p["staking_value"], staker, fps, params)
    assert built.serialize().hex() == exp["unbonding_transaction_hex"]
    assert Tx.parse(bytes.fromhex(exp["unbonding_transaction_hex"])).serialize() == built.serialize()

    if exp["op_return_script_hex"]:
        assert len(fps) == 1
        op = build_v0_op_return(bytes.fromhex(p["tag"]), staker, fps[0], p["staking_time"])
        assert op.value == 0
        assert op.script_pubkey.hex() == exp["op_return_script_hex"]
        parsed = parse_v0_op_return(op.script_pubkey)
        assert parsed["staker_pk"] == staker[-32:]
        assert parsed["fp_pk"] == fps[0][-32:]
        assert parsed["staking_time"] == p["staking_time"]
        assert parsed["tag"].hex() == p["tag"]
    else:
        assert len(fps) > 1


def test_vector2_control_blocks_and_parity(vectors_path):
    """Spec §1.4 worked example: vector #2 control blocks; staking Q even, unbonding Q odd."""
    p = _cases(vectors_path)[1]["parameters"]
    staker = bytes.fromhex(p["staker_public_key"])
    fps = [bytes.fromhex(k) for k in p["finality_provider_public_keys"]]
    covs = [bytes.fromhex(k) for k in p["covenant_public_keys"]]
    info = build_staking_info(staker, fps, covs, p["covenant_quorum"], p["staking_time"], p["staking_value"])
    nums = "50929b74c1a04954b78b4b6035e97a5e078a5a0f28ec96d547bfee9ace803ac0"
    h_t = "3daa8f8233ff4c81f9b03df3fcecc9aa61afb87498776cd4939f4288716749cd"
    h_u = "1008c3c95007cd0679e24d5897d8986e98e6ceee4f16473c646c97f0b9804ca1"
    h_s = "3a8f5efd55d86a621aa9be0e9c487f7b8c1d80cd1e3a5d9eeaf63fa5e0ac810f"
    assert info.tree.merkle_root.hex() == "14c1437d68de48965c060c80b64d65610e1f88062643cb2d78475d3491f2d779"
    assert info.control_block(info.timelock_script).hex() == "c0" + nums + h_u + h_s
    assert info.control_block(info.unbonding_script).hex() == "c0" + nums + h_t + h_s
    assert info.control_block(info.slashing_script).hex() == (
        "c0" + nums + "9e26b1af7ff978e296ee1b337a54d32ea160d526c657f673784f31fedb1ab70b"
    )
    ub = build_unbonding_info(staker, fps, covs, p["covenant_quorum"], p["unbonding_time"], 980_000)
    assert ub.control_block(ub.slashing_script)[0] == 0xC1


def test_nums_key_is_bip341_h_point():
    """NUMS = lift_x(SHA256(uncompressed G)) — spec §1.1; recomputed with coincurve."""
    import hashlib

    from coincurve import PublicKey

    from btc_staking.script import NUMS_KEY

    g = PublicKey.from_valid_secret((1).to_bytes(32, "big")).format(compressed=False)
    assert hashlib.sha256(g).digest() == NUMS_KEY
    assert PublicKey(b"\x02" + NUMS_KEY).format(compressed=False)[1:33] == NUMS_KEY


def test_v0_staking_tx_parse_roundtrip(vectors_path):
    """Build the V0 staking tx for each vector with an OP_RETURN and parse it back (Go ParseV0StakingTx)."""
    from btc_staking.errors import InvalidTxError
    from btc_staking.staking import parse_v0_staking_tx
    from btc_staking.tx import TxOut

    for case in _cases(vectors_path):
        p, exp = case["parameters"], case["expected"]
        if not exp["op_return_script_hex"]:
            continue
        staker = bytes.fromhex(p["staker_public_key"])
        fp = bytes.fromhex(p["finality_provider_public_keys"][0])
        covs = [bytes.fromhex(k) for k in p["covenant_public_keys"]]
        info = build_staking_info(staker, [fp], covs, p["covenant_quorum"], p["staking_time"], p["staking_value"])
        op = TxOut(0, bytes.fromhex(exp["op_return_script_hex"]))
        change = TxOut(1234, bytes.fromhex("0014" + "00" * 20))
        tx = Tx(2, [TxIn(OutPoint(b"\x01" * 32, 0))], [change, op, info.output], 0)
        got = parse_v0_staking_tx(tx, covs, p["covenant_quorum"], bytes.fromhex(p["tag"]))
        assert got["staking_output_index"] == 2 and got["op_return_index"] == 1
        assert got["staking_value"] == p["staking_value"] and got["staking_time"] == p["staking_time"]
        with pytest.raises(InvalidTxError):
            parse_v0_staking_tx(tx, covs, p["covenant_quorum"], b"bbn1")
        with pytest.raises(InvalidTxError):  # two OP_RETURNs
            parse_v0_staking_tx(Tx(2, tx.inputs, [op, op, info.output], 0), covs, p["covenant_quorum"])
        with pytest.raises(InvalidTxError):  # staking output twice
            parse_v0_staking_tx(Tx(2, tx.inputs, [op, info.output, info.output], 0), covs, p["covenant_quorum"])
        with pytest.raises(InvalidTxError):  # staking output missing
            parse_v0_staking_tx(Tx(2, tx.inputs, [op, change], 0), covs, p["covenant_quorum"])


def test_vector2_unbonding_sighash_matches_ts_library(vectors_path):
    """Spec §2.4: btc-staking-ts computed the unbonding-path sighash of vector #2 as fbb467b5…2506."""
    from btc_staking.sighash import taproot_sighash
    from btc_staking.tx import TxOut

    e = _cases(vectors_path)[1]["expected"]
    tx = Tx.parse(bytes.fromhex(e["unbonding_transaction_hex"]))
    prev = TxOut(e["staking_output_value"], bytes.fromhex(e["staking_output_pkscript_hex"]))
    h = taproot_sighash(tx, 0, [prev], 0, leaf_script=bytes.fromhex(e["staking_transaction_unbonding_script_hex"]))
    assert h.hex().startswith("fbb467b5") and h.hex().endswith("2506")


def test_taproot_tree_shapes_and_control_blocks_vs_btclib():
    """btcd AssembleTaprootScriptTree shapes; every control block checked by btclib.check_output_pubkey."""
    from btclib.script.taproot import check_output_pubkey

    from btc_staking.keys import generate_secret, xonly_from_secret
    from btc_staking.script import NUMS_KEY, TaprootTree, tap_branch, timelock_script
    from btc_staking.sighash import tapleaf_hash

    staker = xonly_from_secret(generate_secret())
    for n in range(1, 8):
        leaves = [timelock_script(staker, 100 + i) for i in range(n)]
        for internal in (NUMS_KEY, xonly_from_secret(generate_secret())):
            tree = TaprootTree(leaves, internal)
            for leaf in leaves:
                cb = tree.control_block(leaf)
                assert len(cb) == 33 + 32 * (len(cb) - 33) // 32
                assert check_output_pubkey(tree.output_key, leaf, cb)
                bad = bytes([cb[0] ^ 1]) + cb[1:]
                assert not check_output_pubkey(tree.output_key, leaf, bad)
    h = [tapleaf_hash(timelock_script(staker, 100 + i)) for i in range(5)]
    leaves5 = [timelock_script(staker, 100 + i) for i in range(5)]
    assert TaprootTree(leaves5[:3]).merkle_root == tap_branch(tap_branch(h[0], h[1]), h[2])
    assert TaprootTree(leaves5[:4]).merkle_root == tap_branch(tap_branch(h[0], h[1]), tap_branch(h[2], h[3]))
    # btcd: the odd last leaf is merged into the LAST pair branch, then branches are folded
    assert TaprootTree(leaves5).merkle_root == tap_branch(tap_branch(h[0], h[1]),
                                                          tap_branch(tap_branch(h[2], h[3]), h[4]))
    assert TaprootTree(leaves5[:1]).merkle_root == h[0]
