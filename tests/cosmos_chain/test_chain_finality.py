"""Finality on the chain: FP clients (``btcmesh.finality_provider``) commit EOTS randomness and vote
through cosmpy-signed txs; honest FPs are never slashed; a double-sign records evidence, reveals
the FP secret, slashes the FP and its delegations in the registry and its virtual stake and vault
collateral in the mesh by the slashing rate; bad votes are rejected without state changes; two
ChainApps fed the same blocks agree on every app hash. These run on the real BTC light client and
staking registry (Bitcoin txs from ``chain_helpers``); the transport tests (REST + cosmpy
``LedgerClient``, two CometBFT validators) use ``StubRegistry`` to keep the setup short."""

from __future__ import annotations

import pytest
from cosmpy.aerial.client import LedgerClient, NetworkConfig

from btc_staking.keys import secret_even_y, xonly_from_secret
from btc_staking.tx import Tx
from btcmesh.finality_provider import (
    AppChannel, CallableChannel, ChainRejected, ClientChannel, FinalityProvider,
)
from checkpoint.chain_client import ChainClient, ChainContracts
from checkpoint.errors import ChainError
from cosmos_chain.app import ChainApp
from cosmos_chain.comet import CometClient, CometNetwork, wait_until
from cosmos_chain.node import EmbeddedChain
from cosmos_chain.rest import RestServer
from chain_helpers import K, QUORUM, BtcChain, StakeFixture, pop, small_params
from mesh_chain_helpers import (
    Chain, Key, StubRegistry, assert_apps_agree, comet_execute, comet_smart, make_genesis, stub_registry_app,
)

pytestmark = pytest.mark.timeout(120)

ADMIN, OP_A, OP_B, OP_C, RELAYER = (Key.from_seed(10 + i) for i in range(5))
SK_A, SK_B, SK_C = ((0xFA00 + i).to_bytes(32, "big") for i in range(3))
PK_A, PK_B = xonly_from_secret(SK_A), xonly_from_secret(SK_B)
STAKER = "5b" * 32
UNBONDING = 1000
MESH_GENESIS = {"admin": ADMIN.address, "price": "2", "discount": "0.25", "unbonding_period": UNBONDING}
N_RAND = 200
#: these tests vote late, block by block: a liveness window that never jails (liveness: test_chain_power)
LENIENT = {"params": {"signed_blocks_window": 1000, "max_missed": 999}}
PARAMS = small_params()
#: the Net's delegations: 1 and 2 (later unbonding) on FP A, 3 on FP B
STAKES = {1: StakeFixture("a1", [PK_A], 1_000_000, 100, PARAMS), 2: StakeFixture("a2", [PK_A], 500_000, 100, PARAMS),
          3: StakeFixture("b1", [PK_B], 2_000_000, 100, PARAMS)}


def h(n: int) -> str:
    return STAKES[n].staking_tx_hash if n in STAKES else f"{n:064x}"


def btc_left(chain: Chain, n: int) -> int:
    """What Bitcoin leaves delegation ``n`` after slashing: its registered slashing tx's change output
    (the unbonding path's once the unbonding tx is on Bitcoin)."""
    d = chain.query("btc_staking", {"delegation": {"staking_tx_hash": h(n)}})["delegation"]
    key = "unbonding_slashing_tx" if d.get("unbonding_height") is not None else "slashing_tx"
    return Tx.parse(bytes.fromhex(d[key])).outputs[1].value


def set_status(chain: Chain, n: int, sk: bytes, value: int, status: str) -> None:
    """Drive the stub registry (channel tests)."""
    d = {"staking_tx_hash": h(n), "staker_btc_pk": STAKER, "fp_btc_pk_list": [xonly_from_secret(sk).hex()],
         "staking_value": value}
    chain.ok(RELAYER, "btc_staking", {"set_status": {"delegation": d, "status": status}})


def app_hash(chain: Chain, height: int) -> bytes:
    """Block ``height``'s header app hash (what a finality vote signs, Babylon ``indexed_blocks``)."""
    return bytes.fromhex(chain.app.get_block(height)["app_hash"])


def result_hash(chain: Chain, height: int) -> bytes:
    return bytes.fromhex(chain.app.get_block(height)["result_app_hash"])


def mesh_del(chain: Chain, n: int) -> dict:
    return chain.query("mesh", {"adapter": {"delegation": {"staking_tx_hash": h(n)}}})["delegation"]


def virtual_on(chain: Chain, validator: str) -> int:
    return int(chain.query("mesh", {"virtual_staking": {"delegation": {"validator": validator}}})["amount"])


class Net:
    """A chain with the real light client + staking registry: FPs A (valA) and B (valB); k-deep,
    covenant-signed delegations 1 (1_000_000) and 2 (500_000, unbonded on Bitcoin) on A and
    3 (2_000_000) on B; both FPs' randomness committed for heights [start, start + N_RAND), start
    above the chain height (``at(i)`` = start + i), and 16 blocks produced past start."""

    def __init__(self) -> None:
        self.btc = BtcChain()
        sections = {"mesh": MESH_GENESIS, "btc_light_client": self.btc.base(),
                    "btc_staking": {"params": [PARAMS.to_dict()]}, "finality": LENIENT}
        self.chain = Chain.start([ADMIN, OP_A, OP_B, OP_C, RELAYER], sections)
        deliver = lambda tx: self.chain.block([tx])[0]  # noqa: E731 - every tx recorded for replay
        self.fp_a = FinalityProvider(SK_A, AppChannel(self.chain.app, OP_A.wallet, deliver=deliver), b"mesh-test")
        self.fp_b = FinalityProvider(SK_B, AppChannel(self.chain.app, OP_B.wallet, deliver=deliver), b"mesh-test")
        for op, fp, val in ((OP_A, self.fp_a, "valA"), (OP_B, self.fp_b, "valB")):
            self.chain.ok(op, "btc_staking", {"create_finality_provider": {
                "btc_pk": fp.btc_pk_hex, "pop": pop(fp.secret, op.address), "description": {"moniker": val},
                "commission": "0.1", "validator": val}})
        for s in STAKES.values():
            self.btc.mine([s.staking_tx])
            self.btc.mine(n=K)
            self.relay()
            self.chain.ok(RELAYER, "btc_staking", {"create_btc_delegation": s.create_msg(
                RELAYER.address, self.btc.inclusion_proof(s.staking_tx))})
            for i in range(QUORUM):
                self.chain.ok(RELAYER, "btc_staking", {"add_covenant_sigs": s.covenant_sigs_msg(i)})
        unbonding = STAKES[2].signed_unbonding_tx()  # staker + covenant quorum, kernel-verified
        self.btc.mine([unbonding])
        self.btc.mine(n=K)
        self.relay()
        self.chain.ok(RELAYER, "btc_staking", {"btc_undelegate": {
            "staking_tx_hash": h(2), "unbonding_tx": unbonding.serialize().hex(),
            "inclusion_proof": self.btc.inclusion_proof(unbonding)}})
        assert [self.status(n) for n in STAKES] == ["ACTIVE", "UNBONDING", "ACTIVE"]
        self.start = self.chain.app.last_height + 3  # the two commits land in the next two blocks
        for fp in (self.fp_a, self.fp_b):
            out = fp.commit_pub_rand(self.start, N_RAND)
            assert out == {"fp_btc_pk": fp.btc_pk_hex, "start_height": self.start, "num_pub_rand": N_RAND}
        for _ in range(16):
            self.chain.block()

    def at(self, i: int) -> int:
        return self.start + i

    def relay(self) -> None:
        tip = self.chain.query("btc_light_client", {"tip": {}})["height"]
        headers = [b.raw for b in self.btc.best if b.height > tip]
        self.chain.ok(RELAYER, "btc_light_client", {"insert_headers": {"headers": headers}})

    def status(self, n: int) -> str:
        return self.chain.query("btc_staking", {"delegation": {"staking_tx_hash": h(n)}})["delegation"]["status"]

    def vote_honestly(self, fp: FinalityProvider, height: int) -> dict:
        return fp.vote(height, app_hash(self.chain, height))


@pytest.fixture
def net() -> Net:
    return Net()


def test_honest_votes_on_many_heights_never_slash(net: Net) -> None:
    chain = net.chain
    heights = [net.at(i) for i in range(12)]
    for height in heights:
        assert net.vote_honestly(net.fp_a, height)["result"] == "voted"
        assert net.vote_honestly(net.fp_b, height)["result"] == "voted"
    # re-sending the same vote is idempotent
    assert net.vote_honestly(net.fp_a, heights[0])["result"] == "duplicate"
    for height in heights:
        votes = chain.query("finality", {"votes_at_height": {"height": height}})["votes"]
        assert sorted(v["fp_btc_pk"] for v in votes) == sorted([net.fp_a.btc_pk_hex, net.fp_b.btc_pk_hex])
        assert {v["app_hash"] for v in votes} == {app_hash(chain, height).hex()}
    assert not net.fp_a.is_slashed() and not net.fp_b.is_slashed()
    assert chain.query("finality", {"list_evidence": {}}) == {"evidence": []}
    assert mesh_del(chain, 1)["status"] == "ACTIVE" and virtual_on(chain, "valA") == 1_500_000
    assert virtual_on(chain, "valB") == 3_000_000


def test_double_sign_slashes_fp_registry_and_mesh(net: Net) -> None:
    chain = net.chain
    for height in map(net.at, range(4)):
        net.vote_honestly(net.fp_a, height)
        net.vote_honestly(net.fp_b, height)
    bad_height = net.at(3)
    fork_hash = bytes(32 * [0x13])
    out = net.fp_a.double_sign(bad_height, fork_hash)
    assert out["result"] == "slashed"
    # the EOTS key extraction reveals the FP secret (BIP-340 form: SK_A's point has odd y, so n − SK_A)
    assert secret_even_y(SK_A) != SK_A and out["extracted_btc_sk"] == secret_even_y(SK_A).hex()
    assert xonly_from_secret(bytes.fromhex(out["extracted_btc_sk"])) == net.fp_a.btc_pk
    ev = chain.query("finality", {"evidence": {"fp_btc_pk": net.fp_a.btc_pk_hex}})["evidence"]
    assert len(ev) == 1 and ev[0]["block_height"] == bad_height
    assert (ev[0]["canonical_app_hash"], ev[0]["fork_app_hash"]) == (app_hash(chain, bad_height).hex(), fork_hash.hex())
    st = chain.query("finality", {"is_slashed": {"fp_btc_pk": net.fp_a.btc_pk_hex}})
    assert st["slashed"] and st["extracted_btc_sk"] == out["extracted_btc_sk"] and st["block_height"] == bad_height
    assert net.fp_a.is_slashed() and not net.fp_b.is_slashed()

    # registry: FP A and both its delegations slashed, FP B untouched
    reg = chain.app.module("btc_staking")
    ctx = chain.app.query_context()
    assert reg.finality_provider(ctx, net.fp_a.btc_pk_hex)["slashed_height"] == bad_height
    assert reg.finality_provider(ctx, net.fp_b.btc_pk_hex)["slashed_height"] is None
    assert [d["status"] for d in reg.delegations_by_fp(ctx, net.fp_a.btc_pk_hex)] == ["SLASHED", "SLASHED"]
    assert [d["status"] for d in reg.delegations_by_fp(ctx, net.fp_b.btc_pk_hex)] == ["ACTIVE"]

    # mesh: slashing rate 0.1 on stake and still-locked pending unbonds; collateral follows
    # (collateral = the registered slashing tx's change output: the slash and its fee are gone)
    a1, a2, b1 = mesh_del(chain, 1), mesh_del(chain, 2), mesh_del(chain, 3)
    left1, left2 = btc_left(chain, 1), btc_left(chain, 2)
    assert left1 < 900_000 and left2 < 450_000
    assert (a1["status"], a1["collateral_sat"], a1["slashed_sat"]) == ("SLASHED", left1, 1_000_000 - left1)
    assert (a1["staked_sat"], a1["pending_sat"], a1["virtual_stake"]) == (0, left1, 0)  # rest unstaked
    assert (a2["status"], a2["collateral_sat"], a2["slashed_sat"], a2["pending_sat"]) == ("SLASHED", left2,
                                                                                        500_000 - left2, left2)
    assert (b1["status"], b1["collateral_sat"], b1["staked_sat"], b1["slashed_sat"]) == ("ACTIVE", 2_000_000,
                                                                                        2_000_000, 0)
    assert virtual_on(chain, "valA") == 0 and virtual_on(chain, "valB") == 3_000_000
    es = chain.query("mesh", {"external_staking": {"validator": {"valoper": "valA"}}})
    assert es["state"] == "tombstoned"
    assert chain.query("mesh", {"external_staking": {"validator": {"valoper": "valB"}}})["state"] == "active"
    # burned collateral: 150_000 sat slashed + the two slashing txs' fees, out of 3_500_000
    assert chain.query("mesh", {"balance": {"address": "mesh-vault"}})["amount"]["amount"] == \
        str(left1 + left2 + 2_000_000)

    # the slashed FP can no longer vote or commit; the honest one goes on
    with pytest.raises(ChainRejected, match="is slashed"):
        net.vote_honestly(net.fp_a, net.at(6))
    assert net.vote_honestly(net.fp_b, net.at(6))["result"] == "voted"
    # after the unbonding period the slashed liens are released; collateral stays what BTC is left
    chain.block(dt=UNBONDING)
    a1 = mesh_del(chain, 1)
    assert (a1["pending_sat"], a1["collateral_sat"]) == (0, left1)


def test_fork_vote_first_then_canonical_vote_slashes(net: Net) -> None:
    chain = net.chain
    fork = bytes(32 * [0x77])
    assert net.fp_b.double_sign(net.at(1), fork)["result"] == "fork_vote"
    assert not net.fp_b.is_slashed()
    out = net.vote_honestly(net.fp_b, net.at(1))
    assert secret_even_y(SK_B) == SK_B  # even-y key: the extracted secret is SK_B itself
    assert out["result"] == "slashed" and out["extracted_btc_sk"] == SK_B.hex()
    assert mesh_del(chain, 3)["collateral_sat"] == btc_left(chain, 3) and virtual_on(chain, "valB") == 0
    assert mesh_del(chain, 1)["status"] == "ACTIVE" and virtual_on(chain, "valA") == 1_500_000


def _tamper_hex(value: str) -> str:
    b = bytearray(bytes.fromhex(value))
    b[-1] ^= 1
    return b.hex()


def test_bad_votes_rejected_without_state_change(net: Net) -> None:
    chain = net.chain
    net.vote_honestly(net.fp_b, net.at(0))
    fp = net.fp_b
    chan = fp.chain
    target = net.at(2)
    good = fp.vote_msg(target, app_hash(chain, target))
    body = good["add_finality_sig"]

    wrong_sig = {"add_finality_sig": dict(body, finality_sig=_tamper_hex(body["finality_sig"]))}
    wrong_hash = {"add_finality_sig": dict(body, block_app_hash=_tamper_hex(body["block_app_hash"]))}
    bad_aunt = dict(body["proof"], aunts=[_tamper_hex(body["proof"]["aunts"][0])] + body["proof"]["aunts"][1:])
    bad_proof = {"add_finality_sig": dict(body, proof=bad_aunt)}
    bad_index = {"add_finality_sig": dict(body, proof=dict(body["proof"], index=body["proof"]["index"] + 1))}
    other_rand = {"add_finality_sig": dict(body, pub_rand=fp.pub_rand(target + 1).hex())}
    beyond = FinalityProvider(SK_B, chan, b"mesh-test")
    beyond.pub_rand_commit_msg(net.at(-8), 5)  # known locally, never committed on chain
    no_commit = beyond.vote_msg(net.at(-6), bytes(32))
    future = fp.vote_msg(chain.app.last_height + 50, bytes(32))
    cases = [
        (wrong_sig, "EOTS signature does not verify"),
        (wrong_hash, "EOTS signature does not verify"),
        (bad_proof, "merkle proof does not show pub_rand"),
        (bad_index, "proof index"),
        (other_rand, "merkle proof does not show pub_rand"),
        (no_commit, "no voting power at height"),
        (future, "no block at height"),
    ]
    stranger = FinalityProvider(SK_C, AppChannel(chain.app, OP_C.wallet, deliver=lambda tx: chain.block([tx])[0]))
    finality_before = chain.store_items("finality", exclude=("apphash/", "power/", "last_power_height",
                                                              "next_to_finalize", "missed/"))
    mesh_before, reg_before = chain.store_items("mesh"), chain.store_items("btc_staking")
    for msg, reason in cases:
        with pytest.raises(ChainRejected, match=reason):
            chan.submit(msg)
    with pytest.raises(ChainRejected, match="is not registered"):
        stranger.commit_pub_rand(chain.app.last_height + 2, 10)
    assert stranger.commits == []  # the client forgets a rejected commit
    assert chain.store_items("finality", exclude=("apphash/", "power/", "last_power_height", "next_to_finalize",
                                                  "missed/")) == finality_before
    assert chain.store_items("mesh") == mesh_before and chain.store_items("btc_staking") == reg_before
    assert chain.query("finality", {"vote": {"fp_btc_pk": fp.btc_pk_hex, "height": target}}) == {"vote": None}
    assert not fp.is_slashed()
    assert chan.submit(good)["result"] == "voted"  # the genuine vote still goes through


def test_two_apps_fed_the_same_blocks_agree(net: Net) -> None:
    chain = net.chain
    for height in map(net.at, range(3)):
        net.vote_honestly(net.fp_a, height)
        net.vote_honestly(net.fp_b, height)
    net.fp_a.double_sign(net.at(2), bytes(32 * [0x21]))
    chain.block(dt=UNBONDING)
    replayed = chain.replay()
    assert replayed == [result_hash(chain, b.height) for b in chain.blocks]
    assert len(set(replayed)) == len(replayed)  # every block changed the state (fees, records)


def test_client_channel_over_rest_with_cosmpy_ledger_client() -> None:
    """The FP client through ``ClientChannel`` → ``ChainClient`` → cosmpy ``LedgerClient`` → REST →
    an EmbeddedChain producing blocks on its own: commit, honest votes, rejection, double-sign."""
    genesis = make_genesis([ADMIN, OP_A, OP_B, RELAYER], {"mesh": MESH_GENESIS, "finality": LENIENT})
    node = EmbeddedChain(ChainApp("mesh-rest-1", modules=[StubRegistry()]), block_interval=0.1, genesis=genesis)
    server = RestServer(node).start()
    try:
        cfg = NetworkConfig(chain_id="mesh-rest-1", url=server.cosmpy_url, fee_minimum_gas_price=0.01,
                            fee_denomination="ubbn", staking_denomination="ubbn")
        ledger = LedgerClient(cfg, query_interval_secs=0.05, query_timeout_secs=10)
        app = node.app
        client = ChainClient(ledger, ChainContracts(app.module("btc_light_client").address
                                                    if "btc_light_client" in app.modules else "",
                                                    app.module("btc_staking").address), tx_timeout_s=10)
        fp = FinalityProvider(SK_A, ClientChannel(client, OP_A.wallet), b"rest")
        assert fp.chain.contract == app.module("finality").address
        client.execute(app.module("btc_staking").address, {"create_finality_provider": {
            "btc_pk": fp.btc_pk_hex, "validator": "valA"}}, OP_A.wallet)
        set_hash = client.execute(app.module("btc_staking").address, {"set_status": {"delegation": {
            "staking_tx_hash": h(1), "staker_btc_pk": STAKER, "fp_btc_pk_list": [fp.btc_pk_hex],
            "staking_value": 1_000_000}, "status": "ACTIVE"}}, RELAYER.wallet)
        assert len(set_hash) == 64
        fp.commit_pub_rand_ahead(100, lead=5)
        start = fp.commits[-1].start
        wait_until(lambda: app.last_height >= start + 2, 30, "blocks past the committed start")
        for height in (start, start + 1):
            assert len(fp.vote_block(height)) == 64  # committed tx hash
        votes = fp.chain.query({"votes_at_height": {"height": start}})["votes"]
        assert [v["fp_btc_pk"] for v in votes] == [fp.btc_pk_hex]
        with pytest.raises(ChainError, match="EOTS signature does not verify") as exc:
            bad = fp.vote_msg(start + 2, fp.block_app_hash(start + 2) or bytes(32))
            bad["add_finality_sig"]["finality_sig"] = _tamper_hex(bad["add_finality_sig"]["finality_sig"])
            fp.chain.submit(bad)
        assert exc.value.transient is False
        assert not fp.is_slashed()
        fp.double_sign(start, bytes(32 * [0x44]))
        assert fp.is_slashed()
        res = fp.chain.query({"is_slashed": {"fp_btc_pk": fp.btc_pk_hex}})
        assert res["extracted_btc_sk"] == secret_even_y(SK_A).hex()
        mesh = client.query(app.module("mesh").address, {"adapter": {"delegation": {"staking_tx_hash": h(1)}}})
        assert (mesh["delegation"]["status"], mesh["delegation"]["collateral_sat"]) == ("SLASHED", 900_000)
    finally:
        server.stop()
        node.stop()


def test_two_cometbft_validators_agree_on_finality_and_mesh(tool_path, tmp_path) -> None:
    """Two CometBFT validators, each with a ChainApp built by a plain factory (no manual wiring):
    an FP's votes and double-sign arrive as signed txs at node 0; both apps slash identically."""
    def submit(client: CometClient, key: Key, contract: str, msg: dict) -> dict:
        return comet_execute(client, key, addresses[contract], msg, net.chain_id)

    genesis = make_genesis([ADMIN, OP_A, OP_B, RELAYER], {"mesh": MESH_GENESIS, "finality": LENIENT})
    genesis.pop("genesis_time")
    net = CometNetwork(tool_path("cometbft"), 2, stub_registry_app, tmp_path / "net", app_genesis=genesis,
                       block_time=0.2)
    with net.start(timeout=90):
        c0 = net.nodes[0].client
        app0 = net.nodes[0].server.app  # type: ignore[union-attr]
        addresses = {n: app0.module(n).address for n in ("btc_staking", "finality", "mesh")}
        fp = FinalityProvider(SK_A, CallableChannel(lambda m: submit(c0, OP_A, "finality", m),
                                                    lambda m: comet_smart(c0, "finality", m)), b"comet")
        submit(c0, OP_A, "btc_staking", {"create_finality_provider": {"btc_pk": fp.btc_pk_hex, "validator": "valA"}})
        d = {"staking_tx_hash": h(1), "staker_btc_pk": STAKER, "fp_btc_pk_list": [fp.btc_pk_hex],
             "staking_value": 1_000_000}
        submit(c0, RELAYER, "btc_staking", {"set_status": {"delegation": d, "status": "ACTIVE"}})
        fp.commit_pub_rand_ahead(100, lead=5)
        start = fp.commits[-1].start
        c0.wait_for_height(start + 1, timeout=30)
        assert fp.vote_block(start)["result"] == "voted"
        out = fp.double_sign(start, bytes(32 * [0x55]))
        assert out["result"] == "slashed" and out["extracted_btc_sk"] == secret_even_y(SK_A).hex()
        done = c0.latest_height()
        for node in net.nodes:
            node.client.wait_for_height(done + 1, timeout=30)
            assert comet_smart(node.client, "finality", {"is_slashed": {"fp_btc_pk": fp.btc_pk_hex}})["slashed"]
            mesh = comet_smart(node.client, "mesh",
                               {"adapter": {"delegation": {"staking_tx_hash": h(1)}}})["delegation"]
            assert (mesh["status"], mesh["collateral_sat"]) == ("SLASHED", 900_000)
        assert_apps_agree(net, done, "both apps past the slash")
