"""``btc_staking`` registry through cosmpy-signed txs on a ChainApp, with real staking txs (built by
``btc_staking``), real PoW headers relayed to ``btc_light_client`` and real merkle proofs.

Covers the happy path to ACTIVE with covenant signatures, each rejection with its reason (and no
state left behind), UNBONDING / EXPIRED / WITHDRAWN / SLASHED, the hooks, queries and pagination,
app-hash determinism and persistence across a restart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from btc_staking.adaptor import AdaptorSignature, encrypt_sign
from btc_staking.keys import schnorr_verify, xonly_from_secret
from btc_staking.params import covenant_secret
from btc_staking.sighash import taproot_sighash
from btc_staking.signing import sign_script_path
from api.chain_source import delegation_from_json
from api.states import DelegationState, derive_state
from btc_staking.staking import build_slashing_change_info, build_withdraw_tx
from btc_staking.tx import OutPoint, Tx, TxIn, p2tr_script
from btc_staking.witness import timelock_witness
from checkpoint.slasher import SlashableDelegation, complete_slashing_tx
from chain_helpers import (
    CHAIN_ID,
    K,
    UNBONDING_TIME,
    kernel_verify,
    BtcChain,
    StakeFixture,
    TestChain,
    fp_pk,
    fp_secret,
    make_genesis,
    pop,
    secret,
    sign_execute,
    small_params,
    wallet,
)
from cosmos_chain.app import ChainApp
from cosmos_chain.modules.base import Context, Module

pytestmark = pytest.mark.timeout(180)

REG, LC = "btc_staking", "btc_light_client"
SUBMITTER = wallet("submitter")  # staker / checkpoint service
OPERATOR = wallet("fp-operator")
COVENANT = wallet("covenant")
P = small_params()
FPA, FPB = fp_pk("a"), fp_pk("b")


class SlashTrigger(Module):
    """Test-only contract: ``{"slash": {btc_pk, height}}`` calls the registry's Python slashing hook."""

    name = "slash_trigger"

    def exec_slash(self, ctx: Context, sender: str, body: dict, funds: list) -> Any:
        reg = ctx.module(REG)
        return [d["staking_tx_hash"] for d in reg.slash_finality_provider(ctx, body["btc_pk"], body["height"])]


@dataclass
class Recorder:
    """StakingHooks that records every status change."""

    calls: list[tuple[str, str | None, str]] = field(default_factory=list)

    def on_delegation_status(self, ctx: Context, delegation: dict, old_status: str | None, new_status: str) -> None:
        assert delegation["status"] == new_status
        self.calls.append((delegation["staking_tx_hash"], old_status, new_status))


class World:
    """A BTC chain, a ChainApp with the registry, and helpers to drive both."""

    def __init__(self, home=None, *, record: bool = False) -> None:
        self.btc = BtcChain()
        self.btc.mine(n=3)
        genesis = make_genesis([SUBMITTER, OPERATOR, COVENANT], self.btc, [P])
        self.chain = TestChain(genesis, home, modules=[SlashTrigger()])
        self.relayed = 0
        self.relay()
        self.recorder = Recorder()
        if record:
            self.chain.app.module(REG).hooks = self.recorder

    # -- BTC side
    def relay(self) -> None:
        """Send the main-branch headers the light client has not seen."""
        new = self.btc.best[self.relayed + 1:]
        if new:
            self.chain.ok(SUBMITTER, LC, {"insert_headers": {"headers": [b.raw for b in new]}})
            self.relayed = self.btc.tip.height

    def mine(self, txs=(), n: int = 1, relay: bool = True) -> None:
        self.btc.mine(list(txs), n)
        if relay:
            self.relay()

    # -- registry
    def register_fp(self, label: str, validator: str = "") -> None:
        sk = fp_secret(label)
        self.chain.ok(OPERATOR, REG, {"create_finality_provider": {
            "btc_pk": xonly_from_secret(sk).hex(), "pop": pop(sk, str(OPERATOR.address())),
            "description": {"moniker": f"fp-{label}"}, "commission": "0.05", "validator": validator or f"val-{label}"}})

    def stake(self, label: str, fps: list[bytes] = None, value: int = 100_000, time: int = 200) -> StakeFixture:
        return StakeFixture(label, fps or [FPA], value, time, P, funding_label=label)

    def create(self, s: StakeFixture, proof: bool = True) -> dict:
        inclusion = None
        if proof:
            self.mine([s.staking_tx])
            self.mine(n=K)
            inclusion = self.btc.inclusion_proof(s.staking_tx)
        return self.chain.ok(SUBMITTER, REG, {"create_btc_delegation": s.create_msg(str(SUBMITTER.address()),
                                                                                    inclusion)})

    def covenants(self, s: StakeFixture, members: range = range(2)) -> None:
        for i in members:
            self.chain.ok(COVENANT, REG, {"add_covenant_sigs": s.covenant_sigs_msg(i)})

    def delegation(self, s: StakeFixture) -> dict:
        return self.chain.query(REG, {"delegation": {"staking_tx_hash": s.staking_tx_hash}})["delegation"]

    def status(self, s: StakeFixture) -> str:
        return self.delegation(s)["status"]

    def fails(self, wallet_, msg: dict, contract: str = REG) -> str:
        """Run a failing tx; assert nothing but the fee and the sender's sequence changed."""
        before = _state_except_fees(self.chain)
        log = self.chain.fails(wallet_, contract, msg)
        assert _state_except_fees(self.chain) == before, "a failing tx left state behind"
        return log


def _state_except_fees(chain: TestChain) -> dict[str, str]:
    """Committed state minus fees/sequences and the finality module's per-block app-hash record."""
    skip = ("m/auth/", "m/bank/", "m/finality/apphash/")
    return {k: v for k, v in chain.app.root.data.items() if not k.startswith(skip)}


@pytest.fixture
def world() -> World:
    w = World(record=True)
    w.register_fp("a")
    w.register_fp("b")
    return w


# ---------------------------------------------------------------------------- finality providers


def test_finality_provider_registration_and_queries(world):
    fp = world.chain.query(REG, {"finality_provider": {"btc_pk": FPA.hex()}})
    assert fp["btc_pk"] == FPA.hex() and fp["addr"] == str(OPERATOR.address())
    assert fp["validator"] == "val-a" and fp["commission"] == "0.05" and fp["description"]["moniker"] == "fp-a"
    assert fp["slashed_height"] is None and fp["active_sat"] == 0
    # the compressed form of the key finds the same record
    assert world.chain.query(REG, {"finality_provider": {"btc_pk": "02" + FPA.hex()}})["btc_pk"] == FPA.hex()
    fps = world.chain.query(REG, {"finality_providers": {}})["finality_providers"]
    assert [f["btc_pk"] for f in fps] == [FPA.hex(), FPB.hex()]  # registration order
    reg = world.chain.app.module(REG)
    assert reg.finality_provider(world.chain.app.query_context(), FPB.hex())["validator"] == "val-b"


def test_finality_provider_rejections(world):
    sk = fp_secret("a")
    log = world.fails(OPERATOR, {"create_finality_provider": {
        "btc_pk": FPA.hex(), "pop": pop(sk, str(OPERATOR.address())), "description": {"moniker": "again"},
        "commission": "0.1", "validator": "v"}})
    assert "already registered" in log
    sk_c = fp_secret("c")
    # PoP made for another address (replaying someone else's registration)
    log = world.fails(OPERATOR, {"create_finality_provider": {
        "btc_pk": xonly_from_secret(sk_c).hex(), "pop": pop(sk_c, str(SUBMITTER.address())),
        "description": {"moniker": "c"}, "commission": "0.1", "validator": "v"}})
    assert "invalid proof of possession" in log
    log = world.fails(OPERATOR, {"create_finality_provider": {
        "btc_pk": xonly_from_secret(sk_c).hex(), "pop": pop(sk_c, str(OPERATOR.address())),
        "description": {"moniker": "c"}, "commission": "1.5", "validator": "v"}})
    assert "commission" in log


# ---------------------------------------------------------------------------- happy paths


def test_delegation_with_proof_becomes_active_after_covenant_quorum(world):
    s = world.stake("alice")
    out = world.create(s)
    assert out == {"staking_tx_hash": s.staking_tx_hash, "status": "PENDING"}
    block, _ = world.btc.find(s.staking_tx)
    d = world.delegation(s)
    assert d["start_height"] == block.height and d["end_height"] == block.height + 200
    assert d["staker_btc_pk"] == s.staker_pk.hex() and d["fp_btc_pk_list"] == [FPA.hex()]
    assert d["staking_value"] == d["total_sat"] == 100_000 and d["staking_output_index"] == 0
    assert d["staking_tx"] == s.staking_tx.serialize().hex() and d["params_version"] == 0
    assert d["has_covenant_quorum"] is False and d["created_height"] == world.chain.app.last_height
    world.covenants(s, range(1))
    assert world.status(s) == "PENDING"
    world.covenants(s, range(1, 2))
    d = world.delegation(s)
    assert d["status"] == "ACTIVE" and d["has_covenant_quorum"] is True
    assert [c["pk"] for c in d["covenant_sigs"]] == [xonly_from_secret(covenant_secret(i)).hex() for i in range(2)]
    # the stored covenant signatures are the real ones: adaptor sigs verify under each FP key,
    # and the unbonding sig is a BIP-340 signature of the unbonding tx
    msg = s.slashing_sighash()
    for c in d["covenant_sigs"]:
        assert AdaptorSignature.parse(bytes.fromhex(c["adaptor_sigs"][0])).verify(bytes.fromhex(c["pk"]), FPA, msg)
    ub_msg = taproot_sighash(s.unbonding_tx, 0, [s.info.output], 0, leaf_script=s.info.unbonding_script)
    for c in d["covenant_unbonding_sigs"]:
        assert schnorr_verify(bytes.fromhex(c["pk"]), ub_msg, bytes.fromhex(c["sig"]))
    assert len(d["covenant_slashing_unbonding_sigs"]) == 2
    # a member's second submission is ignored
    again = world.chain.ok(COVENANT, REG, {"add_covenant_sigs": s.covenant_sigs_msg(0)})
    assert again["ignored"] is True and len(world.delegation(s)["covenant_sigs"]) == 2
    fp = world.chain.query(REG, {"finality_provider": {"btc_pk": FPA.hex()}})
    assert fp["active_sat"] == 100_000
    assert world.recorder.calls == [(s.staking_tx_hash, None, "PENDING"), (s.staking_tx_hash, "PENDING", "ACTIVE")]


def test_pre_approval_flow_pending_verified_active(world):
    s = world.stake("bob", value=50_000)
    assert world.create(s, proof=False)["status"] == "PENDING"
    d = world.delegation(s)
    assert d["start_height"] is None and d["end_height"] is None
    world.covenants(s)
    assert world.status(s) == "VERIFIED"
    world.mine([s.staking_tx])
    world.mine(n=K - 1)
    msg = {"add_btc_delegation_inclusion_proof": {"staking_tx_hash": s.staking_tx_hash,
                                                  "inclusion_proof": world.btc.inclusion_proof(s.staking_tx)}}
    log = world.fails(SUBMITTER, msg)
    assert f"not k-deep: depth {K - 1} < {K}" in log
    world.mine(n=1)
    assert world.chain.ok(SUBMITTER, REG, msg)["status"] == "ACTIVE"
    assert "already has an inclusion proof" in world.fails(SUBMITTER, msg)
    assert [c[1:] for c in world.recorder.calls] == [(None, "PENDING"), ("PENDING", "VERIFIED"),
                                                     ("VERIFIED", "ACTIVE")]


def test_mesh_hooks_see_the_active_delegation():
    """With the default hooks (mesh module), ACTIVE stake reaches the FP's mesh validator."""
    w = World()
    w.register_fp("a", validator="valoper-a")
    s = w.stake("carol", value=300_000)
    w.create(s)
    w.covenants(s)
    assert w.status(s) == "ACTIVE"
    got = w.chain.query("mesh", {"adapter": {"delegation": {"staking_tx_hash": s.staking_tx_hash}}})["delegation"]
    assert got is not None and got["validator"] == "valoper-a"


# ---------------------------------------------------------------------------- rejections


def test_proof_rejections(world):
    sender = str(SUBMITTER.address())
    s = world.stake("dave")
    # the staking block is not relayed yet → unknown header
    world.mine([s.staking_tx], relay=False)
    world.mine(n=K, relay=False)
    proof = world.btc.inclusion_proof(s.staking_tx)
    assert "unknown header" in world.fails(SUBMITTER, {"create_btc_delegation": s.create_msg(sender, proof)})
    world.relay()
    # forged proofs: wrong index, tampered sibling, proof for another tx of the block
    for forged in (dict(proof, index=proof["index"] ^ 1),
                   dict(proof, proof="00" * 32),
                   dict(proof, proof="")):
        log = world.fails(SUBMITTER, {"create_btc_delegation": s.create_msg(sender, forged)})
        assert "invalid inclusion proof" in log, log
    other = world.btc.tip  # a block that does not contain the staking tx
    log = world.fails(SUBMITTER, {"create_btc_delegation": s.create_msg(sender, dict(proof, block_hash=other.hash))})
    assert "invalid inclusion proof" in log
    # a k-deep header off the main chain
    fork = world.btc.mine_on(world.btc.best[1], n=2)
    world.chain.ok(SUBMITTER, LC, {"insert_headers": {"headers": [b.raw for b in fork]}})
    log = world.fails(SUBMITTER, {"create_btc_delegation": s.create_msg(sender, dict(proof, block_hash=fork[0].hash))})
    assert "not on the BTC main chain" in log
    # finally the real proof works
    assert world.chain.ok(SUBMITTER, REG, {"create_btc_delegation": s.create_msg(sender, proof)})["status"] == "PENDING"


def test_shallow_staking_tx_is_not_k_deep(world):
    s = world.stake("erin")
    world.mine([s.staking_tx])
    proof = world.btc.inclusion_proof(s.staking_tx)
    log = world.fails(SUBMITTER, {"create_btc_delegation": s.create_msg(str(SUBMITTER.address()), proof)})
    assert f"not k-deep: depth 0 < {K}" in log


def test_wrong_staking_script_is_rejected(world):
    sender = str(SUBMITTER.address())
    s = world.stake("frank")
    world.mine([s.staking_tx])
    world.mine(n=K)
    proof = world.btc.inclusion_proof(s.staking_tx)
    for change in ({"staking_time": 201}, {"fp_btc_pk_list": [FPB.hex()]}, {"staking_output_index": 1}):
        msg = dict(s.create_msg(sender, proof), **change)
        assert "wrong staking script" in world.fails(SUBMITTER, {"create_btc_delegation": msg}), change
    msg = dict(s.create_msg(sender, proof), staking_value=99_000)
    assert "wrong staking script" in world.fails(SUBMITTER, {"create_btc_delegation": msg})
    msg = dict(s.create_msg(sender, proof), staking_time=5)  # below the params minimum
    assert "staking time 5 outside" in world.fails(SUBMITTER, {"create_btc_delegation": msg})


def test_replayed_attestation_is_already_registered(world):
    s = world.stake("gina")
    world.create(s)
    msg = {"create_btc_delegation": s.create_msg(str(SUBMITTER.address()), world.btc.inclusion_proof(s.staking_tx))}
    assert "already registered" in world.fails(SUBMITTER, msg)


def test_unknown_finality_provider_bad_pop_and_bad_signatures(world):
    sender = str(SUBMITTER.address())
    unknown = world.stake("hank", fps=[fp_pk("nobody")])
    log = world.fails(SUBMITTER, {"create_btc_delegation": unknown.create_msg(sender)})
    assert f"unknown finality provider {fp_pk('nobody').hex()}" in log
    s = world.stake("hank")
    # PoP for another sender
    msg = s.create_msg(str(OPERATOR.address()))
    assert "invalid proof of possession" in world.fails(SUBMITTER, {"create_btc_delegation": msg})
    # delegator slashing signature by the wrong key / over the wrong leaf
    wrong = sign_script_path(secret("mallory"), s.slashing_tx, 0, [s.info.output], s.info.slashing_script)
    msg = dict(s.create_msg(sender), delegator_slashing_sig=wrong.hex())
    assert "invalid delegator slashing signature" in world.fails(SUBMITTER, {"create_btc_delegation": msg})
    wrong = sign_script_path(s.staker_sk, s.slashing_tx, 0, [s.info.output], s.info.timelock_script)
    msg = dict(s.create_msg(sender), delegator_slashing_sig=wrong.hex())
    assert "invalid delegator slashing signature" in world.fails(SUBMITTER, {"create_btc_delegation": msg})
    wrong = sign_script_path(s.staker_sk, s.slashing_tx, 0, [s.info.output], s.info.slashing_script)
    msg = dict(s.create_msg(sender), delegator_unbonding_slashing_sig=wrong.hex())
    assert "invalid delegator unbonding slashing signature" in world.fails(SUBMITTER, {"create_btc_delegation": msg})
    # the unbonding tx must pay value - unbonding fee to the unbonding script
    other = world.stake("hank", value=100_500)
    msg = dict(s.create_msg(sender), unbonding_tx=other.unbonding_tx.serialize().hex())
    assert "invalid unbonding tx" in world.fails(SUBMITTER, {"create_btc_delegation": msg})
    assert world.chain.query(REG, {"delegations": {}})["delegations"] == []


def test_covenant_signature_rejections(world):
    s = world.stake("ivy")
    world.create(s)
    good = s.covenant_sigs_msg(0)
    # adaptor signature encrypted to the wrong FP key
    bad = dict(good, slashing_tx_sigs=[encrypt_sign(covenant_secret(0), FPB, s.slashing_sighash()).serialize().hex()])
    assert "invalid covenant adaptor signature on the slashing tx" in world.fails(COVENANT, {"add_covenant_sigs": bad})
    bad = dict(good, slashing_unbonding_tx_sigs=good["slashing_tx_sigs"])  # right key, wrong message
    log = world.fails(COVENANT, {"add_covenant_sigs": bad})
    assert "invalid covenant adaptor signature on the unbonding slashing tx" in log
    # unbonding signature by another key
    bad = dict(good, unbonding_tx_sig=s.covenant_sigs_msg(1)["unbonding_tx_sig"])
    assert "invalid covenant unbonding signature" in world.fails(COVENANT, {"add_covenant_sigs": bad})
    # signatures made with a key that is not the claimed member's
    bad = s.covenant_sigs_msg(0, sk=covenant_secret(7))
    assert "invalid covenant" in world.fails(COVENANT, {"add_covenant_sigs": bad})
    # a key outside the committee
    bad = dict(good, pk=xonly_from_secret(covenant_secret(7)).hex())
    assert "not a covenant committee member" in world.fails(COVENANT, {"add_covenant_sigs": bad})
    bad = dict(good, slashing_tx_sigs=[])
    assert "one adaptor signature per finality provider" in world.fails(COVENANT, {"add_covenant_sigs": bad})
    unknown = dict(good, staking_tx_hash="ab" * 32)
    assert f"delegation {'ab' * 32} not found" in world.fails(COVENANT, {"add_covenant_sigs": unknown})
    assert world.status(s) == "PENDING" and world.delegation(s)["covenant_sigs"] == []


def test_slashed_finality_provider_takes_no_new_delegations(world):
    s = world.stake("jack")
    world.create(s)
    world.covenants(s)
    s2 = world.stake("jill", fps=[FPA, FPB], value=70_000)
    world.create(s2, proof=False)
    withdrawn = world.stake("joe", fps=[FPA])
    world.create(withdrawn, proof=False)
    world.covenants(withdrawn)
    out = world.chain.ok(SUBMITTER, "slash_trigger", {"slash": {"btc_pk": FPA.hex(), "height": 7}})
    # as Babylon's slasher: only stake live on Bitcoin (ACTIVE, UNBONDING) is slashed; the PENDING and
    # VERIFIED delegations are left alone, and can no longer become active
    assert out == [s.staking_tx_hash]
    d = world.delegation(s)
    assert d["status"] == "SLASHED" and d["slashed"] is True
    assert [(world.delegation(x)["status"], world.delegation(x)["slashed"]) for x in (s2, withdrawn)] == [
        ("PENDING", False), ("VERIFIED", False)]
    world.mine([withdrawn.staking_tx])
    world.mine(n=K)
    world.relay()
    log = world.fails(SUBMITTER, {"add_btc_delegation_inclusion_proof": {
        "staking_tx_hash": withdrawn.staking_tx_hash, "inclusion_proof": world.btc.inclusion_proof(withdrawn.staking_tx)}})
    assert f"finality provider {FPA.hex()} is slashed" in log
    fp = world.chain.query(REG, {"finality_provider": {"btc_pk": FPA.hex()}})
    assert fp["slashed_height"] == 7 and fp["active_sat"] == 0
    assert (s.staking_tx_hash, "ACTIVE", "SLASHED") in world.recorder.calls
    assert world.chain.ok(SUBMITTER, "slash_trigger", {"slash": {"btc_pk": FPA.hex(), "height": 9}}) == []
    late = world.stake("kim")
    log = world.fails(SUBMITTER, {"create_btc_delegation": late.create_msg(str(SUBMITTER.address()))})
    assert f"finality provider {FPA.hex()} is slashed" in log
    reg = world.chain.app.module(REG)
    ctx = world.chain.app.query_context()
    assert {d["staking_tx_hash"] for d in reg.delegations_by_fp(ctx, FPB.hex())} == {s2.staking_tx_hash}
    assert reg.active_sat(ctx, FPB.hex()) == 0


def _noop_twin_app_hash(chain: TestChain, w) -> bytes:
    """App hash of the last block if its only tx had been a no-op failing tx from the same sender
    (same fee, same sequence): replay every earlier block into a fresh node, then that tx."""
    other = ChainApp(CHAIN_ID, modules=[SlashTrigger()])
    other.init_chain(chain.genesis)
    *earlier, (height, time_unix, _, _) = chain.blocks
    for h, t, txs, _ in earlier:
        other.finalize_block(h, t, txs)
        other.commit()
    acct = other.account(str(w.address()))
    noop = sign_execute(w, other.module(REG).address, {"no_such_message": {}},
                        account_number=acct["account_number"], sequence=acct["sequence"])
    results, app_hash = other.finalize_block(height, time_unix, [noop])
    assert results[0].code != 0 and "unknown execute message" in results[0].log
    return app_hash


def test_failing_txs_leave_the_app_hash_of_a_no_op():
    """Each rejected registry tx yields exactly the app hash of a tx that does nothing but pay its fee."""
    world = World()  # default (mesh) hooks, as on the replaying node
    world.register_fp("a")
    sender = str(SUBMITTER.address())
    s = world.stake("pia")
    world.create(s)
    proof = world.btc.inclusion_proof(s.staking_tx)
    t = world.stake("quinn")
    world.mine([t.staking_tx])
    world.mine(n=K)
    t_proof = world.btc.inclusion_proof(t.staking_tx)
    failing = [
        (SUBMITTER, {"create_btc_delegation": s.create_msg(sender, proof)}, "already registered"),
        (SUBMITTER, {"create_btc_delegation": t.create_msg(sender, dict(t_proof, index=1 - t_proof["index"]))},
         "invalid inclusion proof"),
        (SUBMITTER, {"create_btc_delegation": dict(t.create_msg(sender, t_proof), staking_time=300)},
         "wrong staking script"),
        (COVENANT, {"add_covenant_sigs": dict(s.covenant_sigs_msg(0), unbonding_tx_sig="11" * 64)},
         "invalid covenant unbonding signature"),
    ]
    for w, msg, why in failing:
        assert why in world.fails(w, msg)
        assert world.chain.blocks[-1][3] == _noop_twin_app_hash(world.chain, w), why


def test_staker_key_must_differ_from_fp_and_covenant_keys(world):
    sender = str(SUBMITTER.address())
    s = world.stake("sly")
    for sk in (covenant_secret(0), fp_secret("a")):
        # the library refuses to build such an output, so only the claimed key and its PoP change
        msg = dict(s.create_msg(sender), staker_btc_pk=xonly_from_secret(sk).hex(), pop=pop(sk, sender))
        log = world.fails(SUBMITTER, {"create_btc_delegation": msg})
        assert "staker key must differ from the finality provider and covenant keys" in log


# ---------------------------------------------------------------------------- BTC spends and time


def test_unbonding_then_withdrawal(world):
    s = world.stake("liam")
    world.create(s)
    world.covenants(s)
    ub = s.signed_unbonding_tx()
    world.mine([ub])
    world.mine(n=K)
    proof = world.btc.inclusion_proof(ub)
    # a tx other than the registered unbonding tx
    w_tx = s.signed_withdraw_tx(after_unbonding=False)
    bad = {"btc_undelegate": {"staking_tx_hash": s.staking_tx_hash, "unbonding_tx": w_tx.serialize().hex(),
                              "inclusion_proof": proof}}
    assert "through its unbonding path" in world.fails(SUBMITTER, bad)  # a timelock-path spend
    # withdrawing from the unbonding output before btc_undelegate was reported
    early = s.signed_withdraw_tx(after_unbonding=True)
    msg = {"report_withdrawal": {"staking_tx_hash": s.staking_tx_hash, "spend_tx": early.serialize().hex(),
                                 "inclusion_proof": proof}}
    assert "has not been reported" in world.fails(SUBMITTER, msg)
    out = world.chain.ok(SUBMITTER, REG, {"btc_undelegate": {
        "staking_tx_hash": s.staking_tx_hash, "unbonding_tx": ub.serialize().hex(), "inclusion_proof": proof}})
    block, _ = world.btc.find(ub)
    assert out == {"staking_tx_hash": s.staking_tx_hash, "status": "UNBONDING", "unbonding_height": block.height}
    d = world.delegation(s)
    assert d["status"] == "UNBONDING" and d["unbonding_height"] == block.height
    assert world.chain.query(REG, {"finality_provider": {"btc_pk": FPA.hex()}})["active_sat"] == 0
    again = {"btc_undelegate": {"staking_tx_hash": s.staking_tx_hash, "unbonding_tx": ub.serialize().hex(),
                                "inclusion_proof": proof}}
    assert "already UNBONDING" in world.fails(SUBMITTER, again)
    # the unbonding tx itself is not a timelock withdrawal
    msg = {"report_withdrawal": {"staking_tx_hash": s.staking_tx_hash, "spend_tx": ub.serialize().hex(),
                                 "inclusion_proof": proof}}
    assert "through its timelock path" in world.fails(SUBMITTER, msg)
    world.mine(n=UNBONDING_TIME)
    wd = s.signed_withdraw_tx(after_unbonding=True)
    world.mine([wd])
    world.mine(n=K)
    out = world.chain.ok(SUBMITTER, REG, {"report_withdrawal": {
        "staking_tx_hash": s.staking_tx_hash, "spend_tx": wd.serialize().hex(),
        "inclusion_proof": world.btc.inclusion_proof(wd)}})
    assert out["status"] == "WITHDRAWN" and out["withdrawn_height"] == world.btc.find(wd)[0].height
    assert [c[1:] for c in world.recorder.calls] == [
        (None, "PENDING"), ("PENDING", "ACTIVE"), ("ACTIVE", "UNBONDING"), ("UNBONDING", "WITHDRAWN")]


def test_expiry_at_end_minus_unbonding_time_then_timelock_withdrawal(world):
    s = world.stake("mia", time=12)
    world.create(s)
    world.covenants(s)
    d = world.delegation(s)
    assert d["status"] == "ACTIVE"
    boundary = d["end_height"] - UNBONDING_TIME
    world.mine(n=boundary - 1 - world.btc.tip.height)
    assert world.chain.query(LC, {"tip": {}})["height"] == boundary - 1
    assert world.status(s) == "ACTIVE"
    world.mine(n=1)  # tip == end_height - unbonding_time: Babylon's EXPIRED
    assert world.status(s) == "EXPIRED"
    assert world.chain.query(REG, {"finality_provider": {"btc_pk": FPA.hex()}})["active_sat"] == 0
    # covenant sigs are no longer accepted
    assert "covenant signatures are no longer accepted" in world.fails(
        COVENANT, {"add_covenant_sigs": s.covenant_sigs_msg(2)})
    # the staking timelock passes; the staker withdraws through the timelock path
    wd = s.signed_withdraw_tx(after_unbonding=False)
    world.mine(n=max(0, d["start_height"] + 12 - world.btc.tip.height - 1))
    world.mine([wd])
    world.mine(n=K)
    out = world.chain.ok(SUBMITTER, REG, {"report_withdrawal": {
        "staking_tx_hash": s.staking_tx_hash, "spend_tx": wd.serialize().hex(),
        "inclusion_proof": world.btc.inclusion_proof(wd)}})
    assert out["status"] == "WITHDRAWN"
    assert [c[1:] for c in world.recorder.calls] == [
        (None, "PENDING"), ("PENDING", "ACTIVE"), ("ACTIVE", "EXPIRED"), ("EXPIRED", "WITHDRAWN")]
    again = {"report_withdrawal": {"staking_tx_hash": s.staking_tx_hash, "spend_tx": wd.serialize().hex(),
                                   "inclusion_proof": world.btc.inclusion_proof(wd)}}
    assert "already withdrawn" in world.fails(SUBMITTER, again)


def test_slasher_completes_a_slashing_tx_from_the_registry_record_and_it_is_reported(world):
    """The stored delegation (covenant adaptor sigs, staker pre-signature) is enough for
    ``checkpoint.slasher`` to build a consensus-valid slashing tx once the FP key is known."""
    s = world.stake("sam")
    world.create(s)
    world.covenants(s)
    world.chain.ok(SUBMITTER, "slash_trigger", {"slash": {"btc_pk": FPA.hex(), "height": 3}})
    d = world.delegation(s)
    sd = SlashableDelegation.from_json(d)
    assert len(sd.covenant_slashing_unbonding_sigs) == 2
    tx = complete_slashing_tx(sd.slashing_tx, s.info.output, s.info.slashing_script,
                              s.info.control_block(s.info.slashing_script), P.covenant_pks, P.covenant_quorum,
                              sd.covenant_slashing_sigs, sd.fp_pks, fp_secret("a"), s.staker_pk,
                              sd.delegator_slashing_sig)
    assert kernel_verify(tx, [s.info.output]), "slashing spend rejected by libbitcoinkernel"
    world.mine([tx])
    world.mine(n=K)
    proof = world.btc.inclusion_proof(tx)
    bad = {"report_btc_slashing": {"staking_tx_hash": s.staking_tx_hash,
                                   "slashing_tx": s.unbonding_tx.serialize().hex(), "inclusion_proof": proof}}
    assert "is not a registered slashing tx" in world.fails(SUBMITTER, bad)
    out = world.chain.ok(SUBMITTER, REG, {"report_btc_slashing": {
        "staking_tx_hash": s.staking_tx_hash, "slashing_tx": tx.serialize().hex(), "inclusion_proof": proof}})
    assert out == {"staking_tx_hash": s.staking_tx_hash, "slashing_btc_txid": tx.txid_hex(), "status": "SLASHED"}
    d = world.delegation(s)
    assert d["slashing_btc_txid"] == tx.txid_hex() and d["status"] == "SLASHED"


def _slash_on_bitcoin(world: World, s: StakeFixture) -> Tx:
    """FP A slashed on the chain; ``checkpoint.slasher`` completes the staking slashing tx, mined k deep."""
    world.chain.ok(SUBMITTER, "slash_trigger", {"slash": {"btc_pk": FPA.hex(), "height": 3}})
    sd = SlashableDelegation.from_json(world.delegation(s))
    tx = complete_slashing_tx(sd.slashing_tx, s.info.output, s.info.slashing_script,
                              s.info.control_block(s.info.slashing_script), P.covenant_pks, P.covenant_quorum,
                              sd.covenant_slashing_sigs, sd.fp_pks, fp_secret("a"), s.staker_pk,
                              sd.delegator_slashing_sig)
    assert kernel_verify(tx, [s.info.output]), "slashing spend rejected by libbitcoinkernel"
    world.mine([tx])
    world.mine(n=K)
    return tx


def _signed_change_withdrawal(s: StakeFixture, slashing_tx: Tx) -> Tx:
    """The staker takes back the slashing change (output 1) through its timelock, kernel-verified."""
    change_info = build_slashing_change_info(s.staker_pk, P.unbonding_time_blocks)
    change = slashing_tx.outputs[1]
    assert change.script_pubkey == change_info.pk_script
    tx = build_withdraw_tx(OutPoint(slashing_tx.txid(), 1), change.value, P.unbonding_time_blocks,
                           p2tr_script(s.staker_pk), 500)
    sig = sign_script_path(s.staker_sk, tx, 0, [change], change_info.timelock_script)
    tx.inputs[0].witness = timelock_witness(sig, change_info.timelock_script, change_info.control_block())
    assert kernel_verify(tx, [change]), "slashing change withdrawal rejected by libbitcoinkernel"
    return tx


def test_slashed_delegation_withdrawn_from_the_slashing_change(world):
    """SLASHED, slashing tx mined, the staker takes the change back after its timelock → WITHDRAWN,
    still ``slashed``; the hooks see SLASHED → WITHDRAWN; the API reports it slashed and withdrawn."""
    s = world.stake("sara", value=100_000)
    other = world.stake("saul", value=50_000)
    for x in (s, other):
        world.create(x)
        world.covenants(x)
    slashing_tx = _slash_on_bitcoin(world, s)
    assert world.status(s) == "SLASHED"
    wd = _signed_change_withdrawal(s, slashing_tx)
    world.mine(n=P.unbonding_time_blocks - K - 1)  # the change's CSV lock, counted from the slashing block
    world.mine([wd])
    world.mine(n=K)
    proof = world.btc.inclusion_proof(wd)
    # the other delegation's slashing change is not this delegation's output
    foreign = {"report_withdrawal": {"staking_tx_hash": other.staking_tx_hash, "spend_tx": wd.serialize().hex(),
                                     "inclusion_proof": proof}}
    assert "nor a slashing change output" in world.fails(SUBMITTER, foreign)
    # a witness that is not the change output's timelock leaf is refused (before any proof check)
    bad = Tx(wd.version, [TxIn(wd.inputs[0].prevout, sequence=wd.inputs[0].sequence,
                               witness=[b"\x01" * 64, b"\x51", b"\xc0"])], wd.outputs, wd.locktime)
    msg = {"report_withdrawal": {"staking_tx_hash": s.staking_tx_hash, "spend_tx": bad.serialize().hex(),
                                 "inclusion_proof": proof}}
    assert "does not spend the slashing change output through its timelock path" in world.fails(SUBMITTER, msg)
    out = world.chain.ok(SUBMITTER, REG, {"report_withdrawal": {
        "staking_tx_hash": s.staking_tx_hash, "spend_tx": wd.serialize().hex(), "inclusion_proof": proof}})
    height = world.btc.find(wd)[0].height
    assert out == {"staking_tx_hash": s.staking_tx_hash, "status": "WITHDRAWN", "withdrawn_height": height}
    d = world.delegation(s)
    assert (d["status"], d["slashed"], d["withdrawn_height"], d["withdrawal_btc_txid"]) == (
        "WITHDRAWN", True, height, wd.txid_hex())
    assert [c[1:] for c in world.recorder.calls if c[0] == s.staking_tx_hash] == [
        (None, "PENDING"), ("PENDING", "ACTIVE"), ("ACTIVE", "SLASHED"), ("SLASHED", "WITHDRAWN")]
    assert world.status(other) == "SLASHED" and world.delegation(other)["withdrawn_height"] is None
    assert "already withdrawn" in world.fails(SUBMITTER, {"report_withdrawal": {
        "staking_tx_hash": s.staking_tx_hash, "spend_tx": wd.serialize().hex(), "inclusion_proof": proof}})
    # the API keeps the slashing: withdrawn after being slashed (no timelock / early-unbonding sub-state)
    rec = delegation_from_json(d)
    assert rec.slashed and rec.withdrawn_height == height
    derived = derive_state(rec, world.btc.tip.height)
    assert (derived.state, derived.sub_state) == (DelegationState.WITHDRAWN, None)


def test_slashed_delegation_withdrawn_through_the_staking_timelock(world):
    """No slashing tx was ever mined: the staker withdraws the whole staking output once its
    timelock passed → WITHDRAWN with ``slashed`` kept, hooks SLASHED → WITHDRAWN."""
    s = world.stake("seth", time=12)
    world.create(s)
    world.covenants(s)
    world.chain.ok(SUBMITTER, "slash_trigger", {"slash": {"btc_pk": FPA.hex(), "height": 3}})
    d = world.delegation(s)
    assert d["status"] == "SLASHED"
    wd = s.signed_withdraw_tx(after_unbonding=False)
    world.mine(n=max(0, d["start_height"] + 12 - world.btc.tip.height - 1))
    world.mine([wd])
    world.mine(n=K)
    out = world.chain.ok(SUBMITTER, REG, {"report_withdrawal": {
        "staking_tx_hash": s.staking_tx_hash, "spend_tx": wd.serialize().hex(),
        "inclusion_proof": world.btc.inclusion_proof(wd)}})
    assert out["status"] == "WITHDRAWN"
    d = world.delegation(s)
    assert d["slashed"] is True and d["withdrawn_height"] == world.btc.find(wd)[0].height
    assert [c[1:] for c in world.recorder.calls if c[0] == s.staking_tx_hash] == [
        (None, "PENDING"), ("PENDING", "ACTIVE"), ("ACTIVE", "SLASHED"), ("SLASHED", "WITHDRAWN")]


class RefusingHooks(Recorder):
    """Hooks that refuse EXPIRED (like a mesh that cannot apply the change)."""

    def on_delegation_status(self, ctx: Context, delegation: dict, old_status: str | None, new_status: str) -> None:
        if new_status == "EXPIRED":
            raise ValueError("mesh refuses")
        super().on_delegation_status(ctx, delegation, old_status, new_status)


def test_a_failing_hook_in_end_block_does_not_halt_the_chain(world):
    s = world.stake("rita", time=12)
    world.create(s)
    world.covenants(s)
    world.chain.app.module(REG).hooks = RefusingHooks()
    end = world.delegation(s)["end_height"]
    world.mine(n=end - UNBONDING_TIME - world.btc.tip.height)  # crosses the expiry boundary
    assert world.status(s) == "ACTIVE"  # the change was refused and rolled back, the block committed
    events = world.chain.app.latest_block()["events"]
    errors = [e for e in events if e["type"] == "btc_delegation_status_error"]
    assert errors and {"key": "error", "value": "mesh refuses"} in errors[0]["attributes"]
    world.chain.app.module(REG).hooks = world.recorder
    world.mine(n=1)  # next tip move: retried
    assert world.status(s) == "EXPIRED"
    assert world.recorder.calls[-1] == (s.staking_tx_hash, "ACTIVE", "EXPIRED")


def test_a_late_proof_is_refused_with_a_reason(world):
    """Babylon VerifyInclusionProofAndGetHeight: a staking tx whose timelock has no more than
    unbonding_time blocks left is refused (not registered as EXPIRED)."""
    s = world.stake("tom", time=10)
    world.mine([s.staking_tx])
    world.mine(n=10 - UNBONDING_TIME)  # tip == start + staking_time - unbonding_time
    log = world.fails(SUBMITTER, {"create_btc_delegation": s.create_msg(
        str(SUBMITTER.address()), world.btc.inclusion_proof(s.staking_tx))})
    assert "timelock has no more than unbonding_time" in log
    assert world.chain.query(REG, {"delegations": {}})["delegations"] == []
    assert world.recorder.calls == []


# ---------------------------------------------------------------------------- queries, determinism, restart


def test_delegations_query_filters_and_pagination(world):
    stakes = [world.stake(f"p{i}", value=20_000 + i) for i in range(5)]
    stakes.append(world.stake("q", fps=[FPB]))
    for s in stakes:
        world.create(s, proof=False)
    world.covenants(stakes[0])
    want = sorted(s.staking_tx_hash for s in stakes)
    seen: list[str] = []
    key = None
    for _ in range(10):
        body = {"limit": 2} if key is None else {"limit": 2, "start_after": key}
        page = world.chain.query(REG, {"delegations": body})
        seen += [d["staking_tx_hash"] for d in page["delegations"]]
        key = page["next_key"]
        if key is None:
            break
    assert seen == want
    by_fp = world.chain.query(REG, {"delegations": {"fp_btc_pk": FPB.hex()}})
    assert [d["staking_tx_hash"] for d in by_fp["delegations"]] == [stakes[-1].staking_tx_hash]
    by_staker = world.chain.query(REG, {"delegations": {"staker_pk": stakes[2].staker_pk.hex()}})
    assert [d["staking_tx_hash"] for d in by_staker["delegations"]] == [stakes[2].staking_tx_hash]
    verified = world.chain.query(REG, {"delegations": {"status": "VERIFIED"}})
    assert [d["staking_tx_hash"] for d in verified["delegations"]] == [stakes[0].staking_tx_hash]
    with pytest.raises(ValueError, match="not found"):
        world.chain.query(REG, {"delegation": {"staking_tx_hash": "cd" * 32}})
    with pytest.raises(ValueError, match="limit"):
        world.chain.query(REG, {"delegations": {"limit": 0}})
    params = world.chain.query(REG, {"params": {}})["params_versions"]
    assert params == [{"version": 0, **P.to_dict()}]


def test_same_blocks_give_the_same_app_hashes():
    """A second node fed the same genesis and blocks computes the same app hash at every height."""
    w = World()
    w.register_fp("a")
    s = w.stake("nina")
    w.create(s)
    w.covenants(s)
    w.fails(COVENANT, {"add_covenant_sigs": dict(s.covenant_sigs_msg(2), unbonding_tx_sig="00" * 64)})
    w.mine(n=200)
    assert w.status(s) == "EXPIRED"
    pairs = w.chain.replay(modules=[SlashTrigger()])
    assert len(pairs) == w.chain.app.last_height
    assert all(ours == theirs for ours, theirs in pairs)


def test_state_survives_a_restart(tmp_path):
    w = World(tmp_path / "home")
    w.register_fp("a")
    s = w.stake("olga", time=15)
    w.create(s)
    w.covenants(s)
    before = w.delegation(s)
    info = w.chain.app.info()
    assert before["status"] == "ACTIVE"
    w.chain.app.close()
    reopened = TestChain(w.chain.genesis, tmp_path / "home", init=False, modules=[SlashTrigger()])
    assert reopened.app.info() == info
    assert reopened.query(REG, {"delegation": {"staking_tx_hash": s.staking_tx_hash}})["delegation"] == before
    assert reopened.query(LC, {"tip": {}})["hash"] == w.btc.tip.hash
    # the reopened node keeps working: more headers expire the delegation through end_block
    w.chain = reopened
    w.mine(n=before["end_height"] - UNBONDING_TIME - w.btc.tip.height)
    assert w.status(s) == "EXPIRED"
    json.dumps(w.delegation(s))  # JSON-able reply
    reopened.app.close()


def test_restarted_node_simulates_status_changes_like_delivery(tmp_path):
    """A node reopened from disk has run no block yet: ``simulate`` and ``check_tx`` of a tx that
    makes a delegation ACTIVE already go through the mesh hooks (wired when ChainApp adds the
    modules), so they give what delivering it gives (result, events, gas)."""
    w = World(tmp_path / "home")
    w.register_fp("a", validator="valoper-a")
    s = w.stake("una", value=300_000)
    w.create(s)
    w.covenants(s, range(1))
    assert w.status(s) == "PENDING"
    w.chain.app.close()
    node = TestChain(w.chain.genesis, tmp_path / "home", init=False, modules=[SlashTrigger()])
    assert node.app.module(REG).hooks is not None  # wired at construction, before any block
    tx = node.sign(COVENANT, REG, {"add_covenant_sigs": s.covenant_sigs_msg(1)})
    checked = node.app.check_tx(tx)
    simulated = node.app.simulate(tx)
    assert checked.code == 0 and simulated.code == 0, (checked.log, simulated.log)
    delivered = node.block([tx])[0][0]
    assert delivered.code == 0, delivered.log
    mesh_events = [e for e in delivered.events if e["type"] == "mesh_delegation"]
    assert len(mesh_events) == 1  # the delegation became mesh collateral
    assert simulated.events == delivered.events
    assert (simulated.data, simulated.gas_used) == (delivered.data, delivered.gas_used)
    got = node.query("mesh", {"adapter": {"delegation": {"staking_tx_hash": s.staking_tx_hash}}})["delegation"]
    assert (got["validator"], got["collateral_sat"]) == ("valoper-a", 300_000)
    node.app.close()
