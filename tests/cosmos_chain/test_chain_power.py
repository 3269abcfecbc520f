"""Finality as Babylon runs it (issue 9), on the embedded chain with ``StubRegistry``: the
voting-power table per height (top ``max_active_finality_providers`` by active sats, only FPs with
randomness for the height), vote admission by power, finalization (> 2/3 of the height's power,
in height order), randomness commits only above the current height and never overlapping, the
signed message = sha256(height BE8 ‖ block h's header app hash), liveness jailing (mesh validator
jailed at the offline ratio, virtual stake 0) and ``unjail_finality_provider`` after ``jail_duration``."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from btc_staking import eots
from btcmesh.finality_provider import AppChannel, ChainRejected, FinalityProvider
from mesh_chain_helpers import BLOCK_INTERVAL, Chain, Key, StubRegistry

pytestmark = pytest.mark.timeout(120)

ADMIN, OP_A, OP_B, OP_C, RELAYER = (Key.from_seed(70 + i) for i in range(5))
SKS = {n: (0xF1A0 + i).to_bytes(32, "big") for i, n in enumerate("ABC")}
OPS = {"A": OP_A, "B": OP_B, "C": OP_C}
SATS = {"A": 60, "B": 30, "C": 10}
MESH_GENESIS = {"admin": ADMIN.address, "price": "2", "discount": "0.25", "unbonding_period": 1000}
STAKER = "5d" * 32


class Net:
    """Three FPs with 60 / 30 / 10 active sats, randomness committed from ``start``."""

    def __init__(self, finality_params: dict, fps: str = "ABC", **sections: dict) -> None:
        self.chain = Chain.start([ADMIN, OP_A, OP_B, OP_C, RELAYER],
                                 {"mesh": MESH_GENESIS, "finality": {"params": finality_params}, **sections},
                                 modules=[StubRegistry()])
        deliver = lambda tx: self.chain.block([tx])[0]  # noqa: E731
        self.fp = {n: FinalityProvider(SKS[n], AppChannel(self.chain.app, OPS[n].wallet, deliver=deliver), b"pw")
                   for n in fps}
        for i, (n, fp) in enumerate(self.fp.items(), start=1):
            self.chain.ok(OPS[n], "btc_staking", {"create_finality_provider": {"btc_pk": fp.btc_pk_hex,
                                                                               "validator": "val" + n}})
            self.chain.ok(RELAYER, "btc_staking", {"set_status": {"delegation": {
                "staking_tx_hash": f"{i:064x}", "staker_btc_pk": STAKER, "fp_btc_pk_list": [fp.btc_pk_hex],
                "staking_value": SATS[n]}, "status": "ACTIVE"}})
        self.start = self.chain.app.last_height + 1 + len(self.fp)  # above every commit block
        for fp in self.fp.values():
            fp.commit_pub_rand(self.start, 100)

    def q(self, msg: dict) -> dict:
        return self.chain.query("finality", msg)

    def header_hash(self, height: int) -> bytes:
        return bytes.fromhex(self.chain.app.get_block(height)["app_hash"])

    def vote_tx(self, n: str, height: int) -> bytes:
        return self.chain.sign(OPS[n], "finality", self.fp[n].vote_msg(height, self.header_hash(height)))

    def block_with_votes(self, height: int, names: str) -> list:
        """One block carrying the votes of ``names`` on ``height`` (the block must exist)."""
        res = self.chain.block([self.vote_tx(n, height) for n in names])
        assert all(r.code == 0 for r in res), [r.log for r in res]
        return res

    def until(self, height: int) -> None:
        while self.chain.app.last_height < height:
            self.chain.block()

    def finalized(self) -> int | None:
        return self.q({"last_finalized_height": {}})["height"]

    def virtual_stake(self, validator: str) -> int:
        return int(self.chain.query("mesh", {"adapter": {"validator_virtual_stake": {"validator": validator}}})
                   ["virtual_stake"])


NO_JAIL = {"max_active_finality_providers": 2, "signed_blocks_window": 1000, "max_missed": 999}


def test_power_table_top_two_by_sats_and_finalization_by_two_thirds() -> None:
    net = Net(NO_JAIL)
    s = net.start
    net.until(s + 2)
    # before the randomness starts nobody has power
    assert net.q({"voting_power_table": {"height": s - 1}})["finality_providers"] == []
    table = net.q({"voting_power_table": {"height": s}})
    assert table == {"height": s, "total_power": 90, "finality_providers": [
        {"fp_btc_pk": net.fp["A"].btc_pk_hex, "voting_power": 60},
        {"fp_btc_pk": net.fp["B"].btc_pk_hex, "voting_power": 30}]}
    assert [net.fp[n].status()["state"] for n in "ABC"] == ["active", "active", "standby"]
    assert [net.fp[n].voting_power(s) for n in "ABC"] == [60, 30, 0]

    # the third provider (no power) is refused
    with pytest.raises(ChainRejected, match="no voting power at height"):
        net.fp["C"].vote(s, net.header_hash(s))
    # A alone (60 of 90 = 2/3, not more) does not finalize; B's vote does
    net.block_with_votes(s, "A")
    assert net.finalized() is None
    blk = net.q({"block": {"height": s}})
    assert (blk["status"], blk["voted_power"], blk["total_power"]) == ("pending", 60, 90)
    res = net.block_with_votes(s, "B")
    assert net.finalized() == s
    assert net.q({"block": {"height": s}})["status"] == "finalized"
    # heights are finalized in order: s+2 fully voted waits for s+1
    net.block_with_votes(s + 2, "AB")
    assert net.finalized() == s and net.q({"block": {"height": s + 2}})["status"] == "pending"
    net.block_with_votes(s + 1, "AB")
    assert net.finalized() == s + 2
    assert net.q({"status": {}})["last_finalized_height"] == s + 2

    # the table is stored per height: when A's stake unbonds, later heights have B and C, s keeps A and B
    net.chain.ok(RELAYER, "btc_staking", {"set_status": {"delegation": {"staking_tx_hash": f"{1:064x}"},
                                                         "status": "UNBONDING"}})
    later = net.chain.app.last_height + 1
    net.until(later)
    assert [(f["fp_btc_pk"], f["voting_power"]) for f in net.q({"voting_power_table": {"height": later}})
            ["finality_providers"]] == [(net.fp["B"].btc_pk_hex, 30), (net.fp["C"].btc_pk_hex, 10)]
    assert net.q({"voting_power_table": {"height": s}})["total_power"] == 90
    assert net.fp["A"].status()["state"] == "standby"
    assert res[0].code == 0


def test_vote_signs_sha256_of_height_and_block_header_app_hash() -> None:
    net = Net(NO_JAIL, fps="AB")
    s = net.start
    net.until(s + 1)
    header = net.header_hash(s)
    assert header == bytes.fromhex(net.chain.app.get_block(s - 1)["result_app_hash"])  # CometBFT header rule
    assert net.q({"block_app_hash": {"height": s}})["app_hash"] == header.hex()
    # a vote signed over the state *after* block s (the old rule) is refused
    after = bytes.fromhex(net.chain.app.get_block(s)["result_app_hash"])
    assert after != header
    fp = net.fp["A"]
    out = fp.chain.submit(fp.vote_msg(s, after))
    assert out["result"] == "fork_vote"  # not the block's hash: kept only as a fork vote, no power counted
    # the accepted vote verifies as BIP-340 over sha256(height BE8 || header app hash)
    fp.vote(s + 1, net.header_hash(s + 1))
    vote = net.q({"vote": {"fp_btc_pk": fp.btc_pk_hex, "height": s + 1}})["vote"]
    digest = hashlib.sha256((s + 1).to_bytes(8, "big") + net.header_hash(s + 1)).digest()
    from btc_staking.keys import schnorr_verify
    assert schnorr_verify(fp.btc_pk, digest, bytes.fromhex(vote["pub_rand"]) + bytes.fromhex(vote["finality_sig"]))
    assert eots.vote_message(s + 1, net.header_hash(s + 1)) == (s + 1).to_bytes(8, "big") + net.header_hash(s + 1)


def test_pub_rand_commit_rejections_have_their_own_reasons() -> None:
    net = Net(NO_JAIL, fps="AB")
    fp = net.fp["A"]
    now = net.chain.app.last_height
    with pytest.raises(ChainRejected, match="not above the current height") as past:
        fp.commit_pub_rand(5, 10)  # heights long past (the case: committed 1..10 at ~225)
    with pytest.raises(ChainRejected, match="not above the current height"):
        fp.commit_pub_rand(now + 1, 10)  # lands in block now+1: start must be above it
    with pytest.raises(ChainRejected, match="overlaps the previous commit") as overlap:
        fp.commit_pub_rand(net.start + 99, 10)
    assert past.value.log != overlap.value.log
    out = fp.commit_pub_rand(net.start + 100, 10)  # adjacent, above the height: accepted
    assert out["start_height"] == net.start + 100


LIVENESS = {"max_active_finality_providers": 2, "signed_blocks_window": 4, "max_missed": 2,
            "finality_sig_timeout": 1, "jail_duration": 100}


#: consensus validators valA / valB with 10 power of own bond each (issue 10's valset module)
VALSET = {"validators": [{"operator": v, "pub_key": base64.b64encode(hashlib.sha256(v.encode()).digest()).decode(),
                          "self_bond": "10000000"} for v in ("valA", "valB")]}


def test_missing_votes_jails_fp_and_its_mesh_validator_until_unjail() -> None:
    net = Net(LIVENESS, fps="AB", valset=VALSET)

    def consensus_power(v: str) -> int:
        return int(net.chain.query("valset", {"target": {}})["powers"].get(v, 0))

    assert consensus_power("valB") == 10
    s = net.start
    virtual_b = net.virtual_stake("valB")
    assert virtual_b > 0
    net.until(s - 1)
    # A votes every block in time; B never votes: B's misses pile up and it is jailed
    jailed_at = None
    missed_seen = []
    for h in range(s, s + 10):
        net.chain.block([net.vote_tx("A", h - 1)] if h > s else [])
        missed_seen.append(net.q({"finality_provider": {"fp_btc_pk": net.fp["B"].btc_pk_hex}})["missed_blocks"])
        if net.fp["B"].status()["state"] == "jailed":
            jailed_at = h
            break
    assert jailed_at is not None, "B was never jailed"
    # judged finality_sig_timeout = 1 block after each height; > max_missed (2) misses jail only once a
    # full window (4) has passed since the first judged height s (Babylon): height s+5, judged at s+6
    assert jailed_at == s + 6
    jail = net.q({"jailed": {}})["finality_providers"]
    assert [j["fp_btc_pk"] for j in jail] == [net.fp["B"].btc_pk_hex] and jail[0]["missed"] == 4
    # the finality_provider query reports the misses as they pile up (the explorer's "missed blocks")
    assert missed_seen[-1] == 4 and missed_seen == sorted(missed_seen) and missed_seen[0] <= 1
    assert net.q({"finality_provider": {"fp_btc_pk": net.fp["A"].btc_pk_hex}})["missed_blocks"] == 0
    assert net.fp["A"].status()["state"] == "active"
    # B's mesh validator is jailed at the offline ratio (0: nothing burned), its virtual stake is gone
    assert net.chain.query("mesh", {"external_staking": {"validator": {"valoper": "valB"}}})["state"] == "jailed"
    assert net.chain.query("mesh", {"external_staking": {"max_slash": {}}})["slash_ratio_offline"] == "0"
    assert net.virtual_stake("valB") == 0 and net.virtual_stake("valA") > 0
    assert consensus_power("valB") == 0 and consensus_power("valA") == 10  # out of the consensus set too
    mesh_b = net.chain.query("mesh", {"adapter": {"delegation": {"staking_tx_hash": f"{2:064x}"}}})["delegation"]
    assert mesh_b["collateral_sat"] == SATS["B"] and mesh_b["slashed_sat"] == 0
    # the jailed provider drops out of the next table; A alone (60/60) finalizes
    nxt = net.chain.app.last_height + 1
    net.until(nxt)
    table = net.q({"voting_power_table": {"height": nxt}})
    assert [f["fp_btc_pk"] for f in table["finality_providers"]] == [net.fp["A"].btc_pk_hex]
    with pytest.raises(ChainRejected, match="no voting power"):
        net.fp["B"].vote(nxt, net.header_hash(nxt))

    # unjail before jail_duration is refused, after it succeeds
    with pytest.raises(ChainRejected, match="jailed until"):
        net.fp["B"].unjail()
    res = net.chain.execute(OP_A, "finality", {"unjail_finality_provider": {"fp_btc_pk": net.fp["B"].btc_pk_hex}})
    assert res.code != 0 and "may unjail" in res.log  # only the FP's own address
    net.chain.block(dt=LIVENESS["jail_duration"])
    out = net.fp["B"].unjail()
    assert out["fp_btc_pk"] == net.fp["B"].btc_pk_hex
    assert net.chain.query("mesh", {"external_staking": {"validator": {"valoper": "valB"}}})["state"] == "active"
    assert net.virtual_stake("valB") == virtual_b and consensus_power("valB") == 10
    back = net.chain.app.last_height + 1
    net.until(back)
    assert net.fp["B"].voting_power(back) == 30 and net.fp["B"].status()["state"] == "active"
    with pytest.raises(ChainRejected, match="not jailed"):
        net.fp["B"].unjail()


def test_votes_in_time_never_jail() -> None:
    net = Net(LIVENESS, fps="AB")
    s = net.start
    net.until(s - 1)
    for h in range(s, s + 10):
        net.chain.block([net.vote_tx(n, h - 1) for n in "AB"] if h > s else [])
    assert net.q({"jailed": {}})["finality_providers"] == []
    assert net.finalized() == s + 8
    events = [e for b in range(s, s + 10) for e in net.chain.app.get_block(b)["events"]]
    assert sum(e["type"] == "block_finalized" for e in events) == 9
    assert json.dumps(events).count("finality_provider_jailed") == 0


def test_client_widens_its_lead_when_the_chain_outruns_it() -> None:
    """``commit_pub_rand_ahead``: a commit refused because the chain passed its start is rebuilt
    with a wider lead (the same rule the chain enforces, here on ``StandaloneFinality``)."""
    from btc_staking.keys import xonly_from_secret
    from btcmesh.finality_provider import CallableChannel
    from cosmos_chain.modules.finality import StandaloneFinality, StaticHooks

    sk = SKS["A"]
    module = StandaloneFinality(StaticHooks({xonly_from_secret(sk).hex()}), height=10)
    tries = []

    def slow_submit(msg: dict) -> dict:  # every inclusion takes 3 blocks
        tries.append(msg["commit_pub_rand_list"]["start_height"])
        module.height += 3
        return module.execute(msg)

    fp = FinalityProvider(sk, CallableChannel(slow_submit, module.query))
    out = fp.commit_pub_rand_ahead(5, lead=2)
    assert tries == [12, 17] and out["start_height"] == 17  # 12 ≤ 13 refused; lead 4 → 13 + 4
    assert [c.start for c in fp.commits] == [17]
