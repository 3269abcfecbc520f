"""Issue 15 reward ops in the differential test against the upstream contracts (run in the
``conformance/mesh-upstream`` harness): ``distribute`` (upstream's ``DistributeBatch`` via
``test_distribute_rewards_batch``) and ``withdraw_rewards`` (+ ``test_commit_withdraw_rewards``)
join the seeded bond / stake / unstake / slash / release sequences; after every op each stake's
pending rewards are compared too (points per stake, integer alignment: exact, both sides).

Distributions go only to validators with stake (upstream divides by the validator's total stake
and panics on zero; ours keeps such rewards ``undistributed``, pinned below on our side only).
"""

from __future__ import annotations

import random

from mesh_adapter.numeric import coin

from test_mesh_upstream_diff import VALIDATORS, Diff, harness  # noqa: F401  (the harness fixture)
from upstream_diff import USERS, random_sequence

SEQUENCES = 60


class RewardDiff(Diff):
    """``Diff`` with rewards in every snapshot and the state-dependent reward ops resolved."""

    def __init__(self, h) -> None:
        super().__init__(h)
        self.model.with_rewards = self.up.with_rewards = True

    def resolve(self, op: dict) -> list[dict]:
        if op["op"] == "withdraw_rewards" and "_pick" in op:  # mostly a stake that has rewards
            app = self.model.app
            earning = [(u, v) for u in sorted(self.model.users) for v in VALIDATORS if int(app.query(
                "external_staking", {"pending_rewards": {"user": u, "validator": v}})["amount"]["amount"])]
            op = {k: x for k, x in op.items() if k != "_pick"}
            if earning:
                op["user"], op["validator"] = earning[int(op.pop("_at", 0) * len(earning)) % len(earning)]
            op.pop("_at", None)
            return [op]
        if op["op"] != "distribute" or "_pick" not in op:
            return super().resolve(op)
        staked = [v for v in VALIDATORS if int(self.model.app.query(
            "external_staking", {"total_stake": {"validator": v}})["total_stake"]) > 0]
        if not staked:
            return []
        rnd = random.Random(op["_pick"])
        chosen = sorted(rnd.sample(staked, rnd.randint(1, len(staked))))
        return [{"op": "distribute", "rewards": [(v, rnd.choice([1, 7, 99, 1000, 12345])) for v in chosen]}]


def reward_sequence(seed: int) -> list[dict]:
    """``random_sequence`` with distributions and withdrawals mixed in."""
    rnd = random.Random(10_000 + seed)
    out: list[dict] = []
    for op in random_sequence(seed, length=40):
        out.append(op)
        r = rnd.random()
        if r < 0.35:
            out.append({"op": "distribute", "_pick": rnd.random()})
        elif r < 0.5:
            w = {"op": "withdraw_rewards", "user": rnd.choice(USERS), "validator": rnd.choice(VALIDATORS)}
            if rnd.random() < 0.8:
                w.update(_pick=True, _at=rnd.random())
            out.append(w)
    return out


def test_upstream_distribution_multitest_with_withdrawals(harness):  # noqa: F811
    """Upstream external-staking ``distribution`` multitest's opening, on both sides."""
    d = RewardDiff(harness).run([
        {"op": "bond", "user": "alice", "amount": 600}, {"op": "bond", "user": "bob", "amount": 600},
        {"op": "stake_remote", "user": "alice", "validator": "val1", "amount": 200},
        {"op": "stake_remote", "user": "alice", "validator": "val2", "amount": 100},
        {"op": "stake_remote", "user": "bob", "validator": "val1", "amount": 300},
        {"op": "distribute", "rewards": [("val1", 50), ("val2", 30)]},
        {"op": "distribute", "rewards": [("val1", 71)]},  # 28 / 42, one unit carried
        {"op": "withdraw_rewards", "user": "alice", "validator": "val1"},
        {"op": "withdraw_rewards", "user": "bob", "validator": "val2"},  # nothing to withdraw: refused on both
        {"op": "unstake", "user": "bob", "validator": "val1", "amount": 100},
        {"op": "distribute", "rewards": [("val1", 9)]},
        {"op": "slash", "validator": "val1", "kind": "double_sign"},
        {"op": "distribute", "rewards": [("val1", 11), ("val2", 5)]},
        {"op": "withdraw_rewards", "user": "bob", "validator": "val1"},
    ])
    assert not d.diverged
    snap = d.model.snapshot(VALIDATORS)["users"]
    assert snap["alice"]["stakes"]["val1"]["rewards"] > 0 and snap["alice"]["stakes"]["val2"]["rewards"] == 35
    oks = [(op["op"], m["ok"]) for op, m, _ in d.log if op["op"] == "withdraw_rewards"]
    assert oks == [("withdraw_rewards", True), ("withdraw_rewards", False), ("withdraw_rewards", True)]


def test_random_reward_sequences_match_upstream(harness):  # noqa: F811
    """Seeded sequences with rewards: every reply's accept/reject and every stake's pending rewards
    (with the vault and stake state) equal upstream's after every op."""
    counts = {"distribute": 0, "withdraw_rewards": 0}
    compared_with_rewards = 0
    for seed in range(SEQUENCES):
        d = RewardDiff(harness).run(reward_sequence(seed))
        for op, m, u in d.log:
            if op["op"] in counts and m["ok"] and u["ok"]:
                counts[op["op"]] += 1
        users = d.model.snapshot(VALIDATORS)["users"]
        compared_with_rewards += any(st.get("rewards", 0) for usr in users.values() for st in usr["stakes"].values())
    assert counts["distribute"] >= 200 and counts["withdraw_rewards"] >= 50, counts
    assert compared_with_rewards >= SEQUENCES // 2


def test_ours_keeps_rewards_without_stake_undistributed(harness):  # noqa: F811
    """Named difference (model side only; upstream panics dividing by a zero total stake)."""
    d = RewardDiff(harness)
    d.model.app.mint("converter", [coin(10, "ustake")])
    d.model.app.execute("relayer", "external_staking", {"test_distribute_rewards_batch": {
        "denom": "ustake", "rewards": [{"validator": "val3", "reward": "10"}]}})
    vr = d.model.app.query("external_staking", {"validator_rewards": {"validator": "val3"}})
    assert vr["undistributed"] == "10"
