"""Mesh module on the chain: registry status changes → vault collateral + virtual stake, unbonding,
withdrawal, admin price, rollback of a failing tx, genesis checks. Every change goes through a
cosmpy-signed tx in ``ChainApp.finalize_block``/``commit``."""

from __future__ import annotations

import json

import pytest

from btc_staking.keys import xonly_from_secret
from cosmos_chain.app import ChainApp
from cosmos_chain.errors import InvalidRequestError
from cosmos_chain.modules.finality import FinalityModule
from cosmos_chain.modules.hooks import ChainFinalityHooks, ChainStakingHooks, install
from cosmos_chain.modules.mesh import MeshModule
from mesh_chain_helpers import Chain, Key, StubRegistry

pytestmark = pytest.mark.timeout(60)

ADMIN, FP_OP_A, FP_OP_B, RELAYER = (Key.from_seed(i) for i in range(4))
FP_A = xonly_from_secret((0xA1).to_bytes(32, "big")).hex()
FP_B = xonly_from_secret((0xB2).to_bytes(32, "big")).hex()
FP_C = xonly_from_secret((0xC3).to_bytes(32, "big")).hex()
STAKER = "5a" * 32
UNBONDING = 1000
MESH_GENESIS = {"admin": ADMIN.address, "price": "2", "discount": "0.25", "unbonding_period": UNBONDING,
                "max_virtual_per_validator": 3_000_000}


def h(n: int) -> str:
    return f"{n:064x}"


def delegation(n: int, fp: str, value: int) -> dict:
    return {"staking_tx_hash": h(n), "staker_btc_pk": STAKER, "fp_btc_pk_list": [fp], "staking_value": value}


def set_status(chain: Chain, n: int, fp: str, value: int, status: str, dt: float = 5):
    return chain.execute(RELAYER, "btc_staking", {"set_status": {"delegation": delegation(n, fp, value),
                                                                 "status": status}}, dt)


def activate(chain: Chain, n: int, fp: str, value: int) -> None:
    for st in ("PENDING", "VERIFIED", "ACTIVE"):
        res = set_status(chain, n, fp, value, st)
        assert res.code == 0, res.log


def mesh_q(chain: Chain, msg: dict):
    return chain.query("mesh", msg)


def adapter_del(chain: Chain, n: int) -> dict:
    return mesh_q(chain, {"adapter": {"delegation": {"staking_tx_hash": h(n)}}})["delegation"]


def virtual_on(chain: Chain, validator: str) -> int:
    return int(mesh_q(chain, {"virtual_staking": {"delegation": {"validator": validator}}})["amount"])


def lien(chain: Chain, n: int):
    return mesh_q(chain, {"adapter": {"lien": {"staking_tx_hash": h(n)}}})["lien"]


@pytest.fixture
def chain() -> Chain:
    c = Chain.start([ADMIN, FP_OP_A, FP_OP_B, RELAYER], {"mesh": MESH_GENESIS}, modules=[StubRegistry()])
    c.ok(FP_OP_A, "btc_staking", {"create_finality_provider": {"btc_pk": FP_A, "validator": "valA"}})
    c.ok(FP_OP_B, "btc_staking", {"create_finality_provider": {"btc_pk": FP_B, "validator": "valB"}})
    return c


def test_fresh_app_has_finality_and_mesh_with_chain_hooks() -> None:
    app = ChainApp("fresh-1", modules=[StubRegistry()])
    assert isinstance(app.module("finality"), FinalityModule) and isinstance(app.module("mesh"), MeshModule)
    app.init_chain({})
    assert isinstance(app.module("btc_staking").hooks, ChainStakingHooks)
    assert isinstance(app.module("finality").hooks, ChainFinalityHooks)
    cfg = app.smart_query("mesh", {"config": {}})
    assert cfg["params"]["slashing_rate"] == "0.1"  # taken from the registry
    assert install(app) is app.module("mesh")  # idempotent


def test_active_delegations_become_collateral_and_virtual_stake(chain: Chain) -> None:
    set_status(chain, 1, FP_A, 1_000_000, "PENDING")
    set_status(chain, 1, FP_A, 1_000_000, "VERIFIED")
    with pytest.raises(ValueError, match="unknown delegation"):
        adapter_del(chain, 1)  # nothing in the mesh before ACTIVE
    res = set_status(chain, 1, FP_A, 1_000_000, "ACTIVE")
    assert res.code == 0, res.log
    ev = [e for e in res.events if e["type"] == "mesh_delegation"]
    assert ev and {a["key"]: a["value"] for a in ev[0]["attributes"]}["virtual_stake"] == "1500000"

    d1 = adapter_del(chain, 1)
    account = f"btcdel1{h(1)}"
    assert (d1["validator"], d1["account"], d1["status"]) == ("valA", account, "ACTIVE")
    # virtual = floor(floor(1_000_000 × 2) × (1 − 0.25)) = 1_500_000
    assert (d1["collateral_sat"], d1["staked_sat"], d1["virtual_stake"]) == (1_000_000, 1_000_000, 1_500_000)
    acct = mesh_q(chain, {"vault": {"account": {"account": account}}})
    assert acct["bonded"] == "1000000" and acct["free"] == {"low": "0", "high": "0"}
    assert lien(chain, 1)["amount"] == {"low": "1000000", "high": "1000000"}
    assert virtual_on(chain, "valA") == 1_500_000
    stake = mesh_q(chain, {"external_staking": {"stake": {"user": account, "validator": "valA"}}})
    assert stake["stake"] == {"low": "1000000", "high": "1000000"}

    # 3_000_000 sat more on valA: the cap (3_000_000 virtual) leaves room for 1_000_000 sat only
    activate(chain, 2, FP_A, 3_000_000)
    d2 = adapter_del(chain, 2)
    assert (d2["collateral_sat"], d2["staked_sat"], d2["virtual_stake"]) == (3_000_000, 1_000_000, 1_500_000)
    assert mesh_q(chain, {"vault": {"account": {"account": f"btcdel1{h(2)}"}}})["free"]["low"] == "2000000"
    assert virtual_on(chain, "valA") == 3_000_000

    activate(chain, 3, FP_B, 2_000_000)
    assert virtual_on(chain, "valB") == 3_000_000
    assert mesh_q(chain, {"adapter": {"validator_virtual_stake": {"validator": "valB"}}}) == {
        "validator": "valB", "virtual_stake": "3000000", "staked_sat": "2000000"}
    status = mesh_q(chain, {"virtual_staking": {"bond_status": {}}})
    assert status["delegated"] == {"denom": "ustake", "amount": "6000000"}
    # collateral tokens: 6_000_000 sat, all held by the vault
    assert mesh_q(chain, {"balance": {"address": "mesh-vault"}})["amount"]["amount"] == "6000000"
    assert [d["staking_tx_hash"] for d in mesh_q(chain, {"adapter": {"delegations_of": {"staker_btc_pk": STAKER}}})[
        "delegations"]] == [h(1), h(2), h(3)]


def test_unbonding_releases_after_period_then_withdraw_burns(chain: Chain) -> None:
    activate(chain, 1, FP_A, 1_000_000)
    activate(chain, 2, FP_A, 400_000)
    assert virtual_on(chain, "valA") == 2_100_000
    res = set_status(chain, 1, FP_A, 1_000_000, "UNBONDING")
    assert res.code == 0, res.log
    unbond_time = chain.time
    d1 = adapter_del(chain, 1)
    assert (d1["status"], d1["staked_sat"], d1["pending_sat"], d1["virtual_stake"]) == ("UNBONDING", 0, 1_000_000, 0)
    assert virtual_on(chain, "valA") == 600_000  # only delegation 2 left: floor(800_000 × 0.75)
    # the lien stays (still slashable) for the whole unbonding period
    chain.block(dt=UNBONDING - 10)
    assert chain.time < unbond_time + UNBONDING
    assert lien(chain, 1)["amount"]["high"] == "1000000"
    assert adapter_del(chain, 1)["pending_sat"] == 1_000_000
    results = chain.block(dt=10)  # now == release_at: matured in end_block
    assert chain.time == unbond_time + UNBONDING and results == []
    assert lien(chain, 1) is None
    d1 = adapter_del(chain, 1)
    assert (d1["status"], d1["pending_sat"], d1["collateral_sat"]) == ("UNBONDING", 0, 1_000_000)
    # BTC leaves the script: collateral unbonded and burned
    assert set_status(chain, 1, FP_A, 1_000_000, "WITHDRAWN").code == 0
    d1 = adapter_del(chain, 1)
    assert (d1["status"], d1["collateral_sat"]) == ("WITHDRAWN", 0)
    assert mesh_q(chain, {"balance": {"address": "mesh-vault"}})["amount"]["amount"] == "400000"
    assert mesh_q(chain, {"balance": {"address": f"btcdel1{h(1)}"}})["amount"]["amount"] == "0"
    assert adapter_del(chain, 2)["status"] == "ACTIVE"

    # EXPIRED (timelock ran out) behaves like UNBONDING
    assert set_status(chain, 2, FP_A, 400_000, "EXPIRED").code == 0
    assert adapter_del(chain, 2)["status"] == "UNBONDING" and virtual_on(chain, "valA") == 0


def test_fp_without_mesh_validator_is_left_out_of_the_mesh(chain: Chain) -> None:
    activate(chain, 1, FP_A, 1_000_000)
    mesh_before = chain.store_items("mesh")
    # FP_C is not registered and not mapped at genesis: the registry goes on, the mesh skips it
    for st in ("PENDING", "VERIFIED"):
        assert set_status(chain, 9, FP_C, 500_000, st).code == 0
    res = set_status(chain, 9, FP_C, 500_000, "ACTIVE")
    assert res.code == 0, res.log
    skipped = [{a["key"]: a["value"] for a in e["attributes"]} for e in res.events if e["type"] == "mesh_skipped"]
    assert skipped == [{"staking_tx_hash": h(9), "reason": f"finality provider {FP_C} has no mesh validator"}]
    assert chain.store_items("mesh") == mesh_before
    assert chain.query("btc_staking", {"delegation": {"staking_tx_hash": h(9)}})["delegation"]["status"] == "ACTIVE"
    assert set_status(chain, 9, FP_C, 500_000, "UNBONDING").code == 0  # unknown to the mesh: ignored
    assert chain.store_items("mesh") == mesh_before
    # an FP naming a validator that already backs another FP is kept out too (no shared slashing)
    chain.ok(RELAYER, "btc_staking", {"create_finality_provider": {"btc_pk": FP_C, "validator": "valA"}})
    res = set_status(chain, 10, FP_C, 500_000, "ACTIVE")
    assert res.code == 0 and f"already backs finality provider {FP_A}" in json.dumps(res.events)
    assert chain.store_items("mesh") == mesh_before


def test_failing_hook_rolls_back_registry_and_mesh(chain: Chain) -> None:
    activate(chain, 1, FP_A, 1_000_000)
    set_status(chain, 2, FP_A, 0, "VERIFIED")
    mesh_before, reg_before = chain.store_items("mesh"), chain.store_items("btc_staking")
    res = set_status(chain, 2, FP_A, 0, "ACTIVE")  # a zero-value delegation cannot be collateral
    assert res.code != 0 and "value_sat must be an integer in 1.." in res.log
    assert chain.store_items("mesh") == mesh_before
    assert chain.store_items("btc_staking") == reg_before  # the registry's ACTIVE write is dropped too
    assert chain.query("btc_staking", {"delegation": {"staking_tx_hash": h(2)}})["delegation"]["status"] == "VERIFIED"


def test_registry_side_slash_propagates_once(chain: Chain) -> None:
    activate(chain, 1, FP_A, 1_000_000)
    activate(chain, 2, FP_B, 1_000_000)
    # a delegation naming [FP_B, FP_A] is mapped to FP_B (the first) in the mesh
    for st in ("VERIFIED", "ACTIVE"):
        res = chain.execute(RELAYER, "btc_staking", {"set_status": {"delegation": dict(
            delegation(3, FP_B, 200_000), fp_btc_pk_list=[FP_B, FP_A]), "status": st}})
        assert res.code == 0, res.log
    assert adapter_del(chain, 3)["validator"] == "valB"
    out = chain.ok(RELAYER, "btc_staking", {"slash": {"btc_pk": FP_A, "height": 7}})
    assert out == {"slashed": [h(1), h(3)]}
    d1 = adapter_del(chain, 1)
    assert (d1["status"], d1["collateral_sat"], d1["slashed_sat"], d1["virtual_stake"]) == ("SLASHED", 900_000,
                                                                                          100_000, 0)
    assert mesh_q(chain, {"external_staking": {"validator": {"valoper": "valA"}}})["state"] == "tombstoned"
    # FP_B is honest: valB is not slashed; delegation 2 keeps its stake, delegation 3 (its BTC is
    # slashed through FP_A) leaves valB like a withdrawal: unstaked now, burned after the period
    assert adapter_del(chain, 2)["collateral_sat"] == 1_000_000
    d3 = adapter_del(chain, 3)
    assert (d3["status"], d3["staked_sat"], d3["pending_sat"], d3["collateral_sat"]) == ("WITHDRAWING", 0,
                                                                                       200_000, 200_000)
    assert mesh_q(chain, {"external_staking": {"validator": {"valoper": "valB"}}})["state"] == "active"
    assert virtual_on(chain, "valB") == 1_500_000
    assert mesh_q(chain, {"balance": {"address": "mesh-vault"}})["amount"]["amount"] == "2100000"
    chain.block(dt=UNBONDING)
    assert adapter_del(chain, 3)["status"] == "WITHDRAWN"
    # the finality module refuses the registry-slashed FP too
    res = chain.execute(FP_OP_A, "finality", {"commit_pub_rand_list": {
        "fp_btc_pk": FP_A, "start_height": 1, "num_pub_rand": 10, "commitment": "00" * 32, "sig": "00" * 64}})
    assert res.code != 0 and "slashed in the staking registry" in res.log
    assert mesh_q(chain, {"balance": {"address": "mesh-vault"}})["amount"]["amount"] == "1900000"


def test_slashed_then_withdrawn_burns_the_remaining_collateral(chain: Chain) -> None:
    """Registry SLASHED → WITHDRAWN (the staker took back what Bitcoin left): that delegation's
    remaining collateral is unbonded and burned once its lien matures; the others keep theirs."""
    activate(chain, 1, FP_A, 1_000_000)
    activate(chain, 4, FP_A, 500_000)
    activate(chain, 2, FP_B, 1_000_000)
    assert chain.ok(RELAYER, "btc_staking", {"slash": {"btc_pk": FP_A, "height": 7}}) == {"slashed": [h(1), h(4)]}
    d1, d4 = adapter_del(chain, 1), adapter_del(chain, 4)
    assert (d1["status"], d1["collateral_sat"], d1["pending_sat"]) == ("SLASHED", 900_000, 900_000)
    assert (d4["status"], d4["collateral_sat"], d4["pending_sat"]) == ("SLASHED", 450_000, 450_000)
    assert mesh_q(chain, {"balance": {"address": "mesh-vault"}})["amount"]["amount"] == "2350000"
    res = set_status(chain, 1, FP_A, 1_000_000, "WITHDRAWN")
    assert res.code == 0, res.log
    d1 = adapter_del(chain, 1)  # the lien on the tombstoned validator is still running
    assert (d1["status"], d1["collateral_sat"], d1["pending_sat"]) == ("WITHDRAWING", 900_000, 900_000)
    chain.block(dt=UNBONDING)
    d1 = adapter_del(chain, 1)
    assert (d1["status"], d1["collateral_sat"], d1["pending_sat"], d1["staked_sat"]) == ("WITHDRAWN", 0, 0, 0)
    assert lien(chain, 1) is None
    assert mesh_q(chain, {"balance": {"address": f"btcdel1{h(1)}"}})["amount"]["amount"] == "0"
    assert mesh_q(chain, {"balance": {"address": "mesh-vault"}})["amount"]["amount"] == "1450000"
    d4 = adapter_del(chain, 4)  # same slashed FP, not withdrawn: keeps its (now unlocked) collateral
    assert (d4["status"], d4["collateral_sat"], d4["pending_sat"]) == ("SLASHED", 450_000, 0)
    d2 = adapter_del(chain, 2)
    assert (d2["status"], d2["collateral_sat"], d2["staked_sat"]) == ("ACTIVE", 1_000_000, 1_000_000)
    assert virtual_on(chain, "valB") == 1_500_000
    assert set_status(chain, 1, FP_A, 1_000_000, "WITHDRAWN").code == 0  # reported twice: nothing left to do
    assert mesh_q(chain, {"balance": {"address": "mesh-vault"}})["amount"]["amount"] == "1450000"


def test_set_price_admin_only(chain: Chain) -> None:
    res = chain.execute(RELAYER, "mesh", {"set_price": {"price": "3"}})
    assert res.code != 0 and "only the admin" in res.log
    assert chain.ok(ADMIN, "mesh", {"set_price": {"price": "3"}}) == {"price": "3"}
    assert mesh_q(chain, {"converter": {"config": {}}})["price"] == "3"
    activate(chain, 1, FP_A, 100_000)
    assert adapter_del(chain, 1)["virtual_stake"] == 225_000  # floor(300_000 × 0.75)
    assert virtual_on(chain, "valA") == 225_000
    assert chain.execute(ADMIN, "mesh", {"set_price": {"price": "0"}}).code != 0


def test_genesis_validation() -> None:
    app = ChainApp("g-1", modules=[StubRegistry()])
    with pytest.raises(InvalidRequestError, match="unknown keys"):
        app.init_chain({"mesh": {"pricee": "1"}})
    app = ChainApp("g-2", modules=[StubRegistry()])
    with pytest.raises(InvalidRequestError, match="must equal the staking registry"):
        app.init_chain({"mesh": {"slashing_rate": "0.2"}})
    app = ChainApp("g-2b", modules=[StubRegistry()])
    with pytest.raises(InvalidRequestError, match="two finality providers to one validator"):
        app.init_chain({"mesh": {"fp_to_validator": {FP_A: "valA", FP_B: "valA"}}})
    app = ChainApp("g-3", modules=[StubRegistry()])
    app.init_chain({"mesh": {"fp_to_validator": {FP_A: "valA"}}})
    assert app.smart_query("mesh", {"external_staking": {"validator": {"valoper": "valA"}}})["state"] == "active"
    assert app.smart_query("mesh", {"adapter": {"config": {}}})["fp_to_validator"] == {FP_A: "valA"}


def test_mesh_state_is_deterministic_and_in_the_app_hash(chain: Chain) -> None:
    before = chain.app.last_app_hash
    activate(chain, 1, FP_A, 1_000_000)
    set_status(chain, 1, FP_A, 1_000_000, "UNBONDING")
    chain.block(dt=UNBONDING)
    assert chain.app.last_app_hash != before
    replayed = chain.replay(modules=[StubRegistry()])
    assert replayed == [bytes.fromhex(chain.app.get_block(b.height)["result_app_hash"]) for b in chain.blocks]
    assert json.loads(chain.app.root.data[f"m/mesh/adapter/delegations/{h(1)}"])["pending_sat"] == 0


def test_restart_from_disk_continues_identically(tmp_path) -> None:
    keys = [ADMIN, FP_OP_A, FP_OP_B, RELAYER]
    chain = Chain.start(keys, {"mesh": MESH_GENESIS}, modules=[StubRegistry()], home=tmp_path / "node")
    chain.ok(FP_OP_A, "btc_staking", {"create_finality_provider": {"btc_pk": FP_A, "validator": "valA"}})
    activate(chain, 1, FP_A, 1_000_000)
    set_status(chain, 1, FP_A, 1_000_000, "UNBONDING")
    chain.app.close()
    chain.app = ChainApp(chain.app.chain_id, tmp_path / "node", modules=[StubRegistry()])  # a restarted node
    # wired when the module is added, before any block: check_tx on a restarted node runs the hooks
    assert isinstance(chain.app.module("btc_staking").hooks, ChainStakingHooks)
    chain.block(dt=UNBONDING)  # matured in end_block after the restart
    activate(chain, 2, FP_A, 300_000)
    assert lien(chain, 1) is None and adapter_del(chain, 2)["virtual_stake"] == 450_000
    replayed = chain.replay(modules=[StubRegistry()])
    assert replayed == [bytes.fromhex(chain.app.get_block(b.height)["result_app_hash"]) for b in chain.blocks]


# ------------------------------------------------------------------------------------------------
# with the real staking registry (Bitcoin txs, light client, covenant signatures) and FP clients


def test_real_registry_lifecycle_and_double_sign_slashing() -> None:
    """Real ``btc_staking`` + ``btc_light_client``: two FPs, k-deep proven delegations with covenant
    quorum become mesh collateral + virtual stake; an on-Bitcoin unbonding releases after the mesh
    period; FP A double-signs → registry and mesh slashed, FP B untouched."""
    from btc_staking.signing import sign_script_path
    from btc_staking.staking import build_slashing_change_info, build_withdraw_tx
    from btc_staking.tx import OutPoint, p2tr_script
    from btc_staking.witness import timelock_witness
    from btcmesh.finality_provider import AppChannel, FinalityProvider
    from checkpoint.slasher import SlashableDelegation, complete_slashing_tx
    from chain_helpers import (
        K, QUORUM, BtcChain, StakeFixture, TestChain, fp_pk, fp_secret, kernel_verify, make_genesis, pop,
        small_params, wallet,
    )

    btc = BtcChain()
    params = small_params()
    admin, op_a, op_b, relayer = (wallet(f"mesh-{n}") for n in ("admin", "op-a", "op-b", "relayer"))
    mesh = {"admin": str(admin.address()), "price": "2", "discount": "0.25", "unbonding_period": 20}
    chain = TestChain(make_genesis([admin, op_a, op_b, relayer], btc, [params], mesh=mesh))
    assert chain.query("mesh", {"config": {}})["params"]["slashing_rate"] == "0.1"

    def relay() -> None:
        tip = chain.query("btc_light_client", {"tip": {}})["height"]
        headers = [b.raw for b in btc.best if b.height > tip]
        if headers:
            chain.ok(relayer, "btc_light_client", {"insert_headers": {"headers": headers}})

    def stake(label: str, fp: bytes, value: int) -> StakeFixture:
        s = StakeFixture(label, [fp], value, 100, params)
        btc.mine([s.staking_tx])
        btc.mine(n=K)
        relay()
        sender = str(relayer.address())
        chain.ok(relayer, "btc_staking", {"create_btc_delegation": s.create_msg(sender, btc.inclusion_proof(
            s.staking_tx))})
        for i in range(QUORUM):
            chain.ok(relayer, "btc_staking", {"add_covenant_sigs": s.covenant_sigs_msg(i)})
        return s

    for op, label, val in ((op_a, "a", "valA"), (op_b, "b", "valB")):
        chain.ok(op, "btc_staking", {"create_finality_provider": {
            "btc_pk": fp_pk(label).hex(), "pop": pop(fp_secret(label), str(op.address())),
            "description": {"moniker": f"fp-{label}"}, "commission": "0.05", "validator": val}})
    s1 = stake("s1", fp_pk("a"), 1_000_000)
    s2 = stake("s2", fp_pk("b"), 2_000_000)
    s3 = stake("s3", fp_pk("b"), 300_000)

    def reg(s: StakeFixture) -> str:
        return chain.query("btc_staking", {"delegation": {"staking_tx_hash": s.staking_tx_hash}})["delegation"][
            "status"]

    def mesh_del(s: StakeFixture) -> dict:
        return chain.query("mesh", {"adapter": {"delegation": {"staking_tx_hash": s.staking_tx_hash}}})["delegation"]

    def virtual(v: str) -> int:
        return int(chain.query("mesh", {"virtual_staking": {"delegation": {"validator": v}}})["amount"])

    assert [reg(s) for s in (s1, s2, s3)] == ["ACTIVE"] * 3
    assert (mesh_del(s1)["collateral_sat"], mesh_del(s1)["virtual_stake"]) == (1_000_000, 1_500_000)
    assert virtual("valA") == 1_500_000 and virtual("valB") == 3_450_000

    # s3 unbonds on Bitcoin (covenant-signed unbonding tx, k deep) → UNBONDING; lien kept 20 s
    unbonding = s3.signed_unbonding_tx()
    btc.mine([unbonding])
    btc.mine(n=K)
    relay()
    chain.ok(relayer, "btc_staking", {"btc_undelegate": {"staking_tx_hash": s3.staking_tx_hash,
                                                         "unbonding_tx": unbonding.serialize().hex(),
                                                         "inclusion_proof": btc.inclusion_proof(unbonding)}})
    assert reg(s3) == "UNBONDING" and virtual("valB") == 3_000_000
    assert (mesh_del(s3)["status"], mesh_del(s3)["pending_sat"]) == ("UNBONDING", 300_000)
    for _ in range(4):  # 4 blocks × 5 s = the mesh unbonding period
        chain.block()
    assert (mesh_del(s3)["pending_sat"], mesh_del(s3)["collateral_sat"]) == (0, 300_000)

    # finality: both FPs commit randomness and vote; FP A double-signs
    deliver = lambda tx: chain.block([tx])[0][0]  # noqa: E731
    fp_a = FinalityProvider(fp_secret("a"), AppChannel(chain.app, op_a, deliver=deliver), b"real")
    fp_b = FinalityProvider(fp_secret("b"), AppChannel(chain.app, op_b, deliver=deliver), b"real")
    start = chain.app.last_height + 2  # randomness only for heights above the commit block
    chain.block([chain.sign(op, "finality", fp.pub_rand_commit_msg(start, 50)) for op, fp in ((op_a, fp_a),
                                                                                            (op_b, fp_b))])
    chain.block()  # block `start`: indexed, so it can be voted on
    for height in (start, start + 1, start + 2):
        assert fp_a.vote_block(height)["result"] == "voted"
        assert fp_b.vote_block(height)["result"] == "voted"
    out = fp_a.double_sign(start + 1, bytes(32 * [0x99]))
    assert out["result"] == "slashed"
    assert xonly_from_secret(bytes.fromhex(out["extracted_btc_sk"])) == fp_pk("a")
    fp_rec = chain.query("btc_staking", {"finality_provider": {"btc_pk": fp_pk("a").hex()}})
    assert fp_rec["slashed"] and fp_rec["slashed_height"] == start + 1
    assert [reg(s) for s in (s1, s2, s3)] == ["SLASHED", "ACTIVE", "UNBONDING"]
    m1 = mesh_del(s1)
    # collateral = the registered slashing tx's change output (slash and tx fee gone), not 90 %
    left = SlashableDelegation.from_json(chain.query("btc_staking", {"delegation": {
        "staking_tx_hash": s1.staking_tx_hash}})["delegation"]).slashing_tx.outputs[1].value
    assert left < 900_000
    assert (m1["status"], m1["collateral_sat"], m1["slashed_sat"], m1["virtual_stake"]) == (
        "SLASHED", left, 1_000_000 - left, 0)
    assert virtual("valA") == 0 and virtual("valB") == 3_000_000
    assert mesh_del(s2)["collateral_sat"] == 2_000_000
    assert chain.query("mesh", {"external_staking": {"validator": {"valoper": "valA"}}})["state"] == "tombstoned"
    assert not fp_b.is_slashed() and fp_b.vote_block(start + 3)["result"] == "voted"

    # s1's slashing tx (completed by checkpoint.slasher with FP A's extracted key) is mined; after
    # the change output's timelock the staker takes back the 90 % Bitcoin left → registry SLASHED →
    # WITHDRAWN (still slashed) and the mesh burns the collateral it still held for s1
    vault_before = int(chain.query("mesh", {"balance": {"address": "mesh-vault"}})["amount"]["amount"])
    assert vault_before == left + 2_000_000 + 300_000
    sd = SlashableDelegation.from_json(chain.query("btc_staking", {"delegation": {
        "staking_tx_hash": s1.staking_tx_hash}})["delegation"])
    slashing_tx = complete_slashing_tx(sd.slashing_tx, s1.info.output, s1.info.slashing_script,
                                       s1.info.control_block(s1.info.slashing_script), params.covenant_pks,
                                       params.covenant_quorum, sd.covenant_slashing_sigs, sd.fp_pks,
                                       bytes.fromhex(out["extracted_btc_sk"]), s1.staker_pk, sd.delegator_slashing_sig)
    assert kernel_verify(slashing_tx, [s1.info.output]), "slashing tx rejected by libbitcoinkernel"
    btc.mine([slashing_tx])
    change_info = build_slashing_change_info(s1.staker_pk, params.unbonding_time_blocks)
    change = slashing_tx.outputs[1]
    withdraw = build_withdraw_tx(OutPoint(slashing_tx.txid(), 1), change.value, params.unbonding_time_blocks,
                                 p2tr_script(s1.staker_pk), 500)
    sig = sign_script_path(s1.staker_sk, withdraw, 0, [change], change_info.timelock_script)
    withdraw.inputs[0].witness = timelock_witness(sig, change_info.timelock_script, change_info.control_block())
    assert kernel_verify(withdraw, [change]), "slashing change withdrawal rejected by libbitcoinkernel"
    btc.mine(n=params.unbonding_time_blocks - 1)  # CSV: spendable unbonding_time blocks after the slashing
    btc.mine([withdraw])
    btc.mine(n=K)
    relay()
    chain.ok(relayer, "btc_staking", {"report_withdrawal": {"staking_tx_hash": s1.staking_tx_hash,
                                                            "spend_tx": withdraw.serialize().hex(),
                                                            "inclusion_proof": btc.inclusion_proof(withdraw)}})
    d1 = chain.query("btc_staking", {"delegation": {"staking_tx_hash": s1.staking_tx_hash}})["delegation"]
    assert (d1["status"], d1["slashed"]) == ("WITHDRAWN", True)
    m1 = mesh_del(s1)  # unstaked from the tombstoned validator at the slash: the lien is still pending
    assert (m1["status"], m1["collateral_sat"], m1["pending_sat"]) == ("WITHDRAWING", left, left)
    for _ in range(4):  # the lien on the tombstoned validator matures after the mesh unbonding period
        chain.block()
    m1 = mesh_del(s1)
    assert (m1["status"], m1["collateral_sat"], m1["staked_sat"], m1["pending_sat"]) == ("WITHDRAWN", 0, 0, 0)
    assert chain.query("mesh", {"balance": {"address": f"btcdel1{s1.staking_tx_hash}"}})["amount"]["amount"] == "0"
    assert int(chain.query("mesh", {"balance": {"address": "mesh-vault"}})["amount"]["amount"]) == \
        vault_before - left
    assert (mesh_del(s2)["collateral_sat"], mesh_del(s2)["status"]) == (2_000_000, "ACTIVE")
    assert (mesh_del(s3)["collateral_sat"], mesh_del(s3)["status"]) == (300_000, "UNBONDING")
    assert virtual("valB") == 3_000_000
