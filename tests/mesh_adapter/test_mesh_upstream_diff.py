"""Differential test: ``mesh_adapter`` against the upstream Mesh Security contracts, run.

The upstream contracts run in cw-multi-test inside ``conformance/mesh-upstream`` (Rust; built by
``scripts/test.sh`` / ``scripts/setup.sh --daemons``). Every op goes to both sides; every reply's
success flag and, after every op, every user's vault account (bonded, free, max_lien,
total_slashable), claims, stakes and pending unbonds, and each validator's virtual stake are
compared. Differences the docs call ours (docs/MESH_MAPPING.md, "Our choices" and "Remaining
differences") are named below and each is pinned by its own test; anything else fails.
"""

from __future__ import annotations

import pytest

from btcmesh_testkit.mesh_upstream import require_upstream_harness
from mesh_adapter.upstream import HarnessError, UpstreamHarness

from upstream_diff import Config, ModelWorld, UpstreamWorld, random_sequence

VALIDATORS = ["val1", "val2", "val3"]

# --- named, deliberate differences (docs/MESH_MAPPING.md) -----------------------------------
#: Our external staking tells the consumer to burn the slashed stake (upstream: the consumer
#: slashed natively, its bond requests stay). Upstream virtual stake = ours + what we burned.
CONSUMER_BURN_ON_SLASH = "consumer_burn_on_slash"
#: We refuse (typed ``AlreadyTombstoned``) to slash a validator that is tombstoned or was not
#: active at the infraction height; upstream's valset update ignores that slash silently (and
#: still applies the tombstone / jail, which on our side is its own valset message).
SLASH_INACTIVE_REJECTED = "slash_inactive_rejected"
#: Upstream slashes each staker by ``slash_amount / Σ stake`` (an 18-decimal truncated
#: effective ratio from the consumer's report); we apply the nominal ratio per stake.
EFFECTIVE_SLASH_RATIO = "effective_slash_ratio"
#: We slash every still-locked pending unbond; upstream only those started after the
#: infraction time.
PENDING_SLASH_IGNORES_INFRACTION_TIME = "pending_slash_ignores_infraction_time"
#: Upstream skips stakers whose stake on the validator is zero, so their still-locked pending
#: unbonds escape the slash; we slash them (Bitcoin can slash an unbonding output). States part,
#: so a random sequence stops comparing at that op.
PENDING_SLASH_WITHOUT_ACTIVE_STAKE = "pending_slash_without_active_stake"
#: Upstream releases an unstake from a tombstoned/unbonded validator at once; by default we keep
#: the unbonding period (the BTC stays timelocked). ``release_tombstoned_at_once`` turns
#: upstream's rule on; the differential runs use it, and one test pins the default.
RELEASE_TOMBSTONED_KEEPS_PERIOD = "release_tombstoned_keeps_period"
#: Pagination: we clamp a page to at most 30 (default 10); upstream's ``clamp_page_limit`` uses
#: ``max``, so every page holds at least 30.
PAGINATION_CLAMP = "pagination_clamp"
#: Our virtual staking rebalances after every packet; upstream once per epoch. The harness runs
#: upstream's (test) epoch after every packet (``auto_epoch``); without it the stake lags.
REBALANCE_EVERY_CHANGE = "rebalance_every_change"
#: Upstream keeps ``total_slashable`` rounding dust after every lien is released (it sums
#: per-operation floors), locking a few units of collateral for good; we clear it once no lien
#: is left (``Vault._clear_dust``). States part, so a random sequence stops there.
SLASHABLE_DUST_CLEARED = "slashable_dust_cleared"
#: An unstake committed after a slash cut its stake: we unbond (and tell the consumer) what is
#: left, ``min(amount, high - low)``; upstream's consumer got the full amount at unstake time.
UNSTAKE_AFTER_SLASH_SATURATES = "unstake_after_slash_saturates"
#: Upstream bug: an ack of an in-flight tx that a slash overlapped can panic: rolling back a
#: slashed in-flight stake underflows the vault lien's range (``rollback_tx``), committing an
#: unstake after a slash and a stake commit leaves ``high < low`` (``assert_valid_range``); the
#: ack fails and the tx stays in flight. Ours saturates. States part, so a sequence stops there.
UPSTREAM_ACK_PANICS_AFTER_SLASH = "upstream_ack_panics_after_slash"
#: Upstream bug: ``handle_slashing`` divides by the validator's total stake and panics (the
#: packet fails: nothing slashed, no tombstone) when its stakers have only pending unbonds
#: left. We slash those unbonds and tombstone. The states part here, so a random sequence
#: stops comparing at that op.
UPSTREAM_SLASH_PANICS_ON_ZERO_STAKE = "upstream_slash_panics_on_zero_stake"


@pytest.fixture(scope="module")
def harness() -> UpstreamHarness:
    h = UpstreamHarness(require_upstream_harness())
    yield h
    h.close()


class Diff:
    """Runs ops on both sides and compares, tolerating only the named differences."""

    def __init__(self, harness: UpstreamHarness, cfg: Config | None = None) -> None:
        self.cfg = cfg or Config()
        self.model = ModelWorld(self.cfg)
        self.up = UpstreamWorld(harness, self.cfg)
        self.burned: dict[str, int] = {}
        self.hits: list[str] = []
        self.diverged = False
        self.log: list[tuple[dict, dict, dict]] = []
        # Start one block after the validators were activated: upstream's validator history
        # orders same-height entries by insertion, so a jail in the activation block is lost.
        self.step({"op": "advance", "seconds": 5})

    def resolve(self, op: dict) -> list[dict]:
        """Turn the generator's state-dependent ops into concrete ones (from the model's state)."""
        op = dict(op)
        if op["op"] == "release":
            return [{"op": "advance", "seconds": self.cfg.unbonding_period + 1},
                    {"op": "withdraw_unbonded", "user": op["user"]}]
        kind = op.pop("_tx", None)
        if kind is not None:
            variant = "in_flight_remote_staking" if kind == "stake" else "in_flight_remote_unstaking"
            txs = [tx[variant]["id"] for tx in self.model.app.query(
                "external_staking", {"all_pending_txs_desc": {}})["txs"] if variant in tx]
            if not txs:
                return []
            return [{"op": f"{op['op']}_{kind}", "tx_id": txs[0]}]
        fit = op.pop("_fit", None)
        if fit is not None:
            free = int(self.model.app.query("vault", {"account": {"account": op["user"]}})["free"]["low"])
            if free >= 100:
                op["amount"] = 100 * (1 + int(fit * (free // 100)) % (free // 100))
        pick = op.pop("_pick", None)
        if pick is not None:
            stakes = [(s["validator"], int(s["stake"]["low"])) for s in self.model.app.query(
                "external_staking", {"stakes": {"user": op["user"]}})["stakes"] if int(s["stake"]["low"]) > 0]
            if stakes:
                op["validator"], low = stakes[int(pick * len(stakes)) % len(stakes)]
                op["amount"] = low if pick < 0.3 or low < 100 else 100 * (1 + int(pick * (low // 100)) % (low // 100))
        if op.pop("_free", False):
            acct = self.model.app.query("vault", {"account": {"account": op["user"]}})
            op["amount"] = int(acct["free"]["low"]) or op["amount"]
        return [op]

    def step(self, op: dict) -> tuple[dict, dict]:
        vs_before = self.model.snapshot(VALIDATORS)["virtual_stake"]
        up_vs_before = self.up.snapshot(VALIDATORS)["virtual_stake"]
        in_flight = self.unstake_tx_amount(op)
        m = self.model.call(op)
        u = self.up.call(op)
        self.log.append((op, m, u))
        if op["op"] == "slash" and m["ok"] and not u["ok"] and "Denominator must not be zero" in u["error"]:
            self.hits.append(UPSTREAM_SLASH_PANICS_ON_ZERO_STAKE)
            stakes = [st["stake"] for usr in self.model.snapshot([])["users"].values()
                      for v, st in usr["stakes"].items() if v == op["validator"]]
            assert stakes and all(high == 0 for _, high in stakes), "upstream panicked with stake left"
            self.diverged = True
            return m, u
        if (op["op"].startswith(("commit_", "rollback_")) and m["ok"] and not u["ok"]
                and "contract panicked" in u["error"]):
            self.hits.append(UPSTREAM_ACK_PANICS_AFTER_SLASH)
            assert any(o["op"] == "slash" and mm["ok"] for o, mm, _ in self.log), "panicked without a slash"
            self.diverged = True
            return m, u
        if op["op"] == "slash" and not m["ok"] and u["ok"] and m["error"].startswith("AlreadyTombstoned"):
            self.hits.append(SLASH_INACTIVE_REJECTED)
            assert u["result"]["events"] == [], f"upstream slashed an inactive validator: {u}"
            # upstream's valset update still tombstones (double sign) or jails (offline) it; on
            # our side that is the separate valset message, sent here
            ext = self.model.app.contracts["external_staking"]
            if ext.current_state(op["validator"]) != "tombstoned":
                block = self.model.app.block()
                change = "test_tombstone_validator" if op.get("kind", "double_sign") == "double_sign" else "test_jail_validator"
                self.model.app.execute("relayer", "external_staking", {change: {
                    "valoper": op["validator"], "height": block.height, "time": block.time}})
        else:
            assert m["ok"] == u["ok"], self.explain(f"accept/reject differs on {op}: model={m} upstream={u}")
        vs_after = self.model.snapshot(VALIDATORS)["virtual_stake"]
        if op["op"] == "slash" and m["ok"]:
            # what our consumer burn took (never below zero: in-flight stake is not on the consumer yet)
            for v in VALIDATORS:
                self.burned[v] = self.burned.get(v, 0) + vs_before[v] - vs_after[v]
            assert set(m["result"]["burned"]) >= {v for v in VALIDATORS if vs_before[v] != vs_after[v]}
            if m["result"]["burned"]:
                self.hits.append(CONSUMER_BURN_ON_SLASH)
        elif in_flight and m["ok"] and u["ok"]:
            validator, amount = in_flight
            ours = vs_before[validator] - vs_after[validator]
            theirs = up_vs_before[validator] - self.up.snapshot(VALIDATORS)["virtual_stake"][validator]
            if ours != theirs:
                # upstream's consumer unbonded the full amount, ours what the slash left
                assert theirs == amount and ours < amount, self.explain(f"unstake: ours {ours} theirs {theirs}")
                self.burned[validator] = self.burned.get(validator, 0) - (theirs - ours)
                self.hits.append(UNSTAKE_AFTER_SLASH_SATURATES)
        if op["op"] == "slash" and m["ok"] and u["ok"]:
            escaped = self.pending_escaped_upstream(op["validator"])
            if escaped:
                self.hits.append(PENDING_SLASH_WITHOUT_ACTIVE_STAKE)
                self.diverged = True
                return m, u
        self.compare()
        return m, u

    def pending_escaped_upstream(self, validator: str) -> list[str]:
        """Users (if every difference is this) whose pending unbonds on ``validator`` we slashed
        while upstream skipped them for having no stake there; else [] (and ``compare`` judges)."""
        ms, us = self.model.snapshot([])["users"], self.up.snapshot([])["users"]
        differing = [u for u in ms if ms[u] != us.get(u)]
        for user in differing:
            mine, theirs = ms[user]["stakes"].get(validator), us[user]["stakes"].get(validator)
            if not (mine and theirs and mine["stake"] == theirs["stake"] == (0, 0)
                    and [a for a, _ in mine["pending_unbonds"]] != [a for a, _ in theirs["pending_unbonds"]]
                    and all(a <= b for (a, _), (b, _) in zip(mine["pending_unbonds"], theirs["pending_unbonds"]))):
                return []
        return differing

    def compare(self) -> None:
        ms = self.model.snapshot(VALIDATORS)
        us = self.up.snapshot(VALIDATORS)
        if ms["users"] != us["users"] and self.only_dust(ms["users"], us["users"]):
            self.hits.append(SLASHABLE_DUST_CLEARED)
            self.diverged = True
            return
        assert ms["users"] == us["users"], self.explain(f"state differs:\nmodel={ms['users']}\nupstream={us['users']}")
        assert ms["pending_txs"] == us["pending_txs"], self.explain(
            f"pending txs differ:\nmodel={ms['pending_txs']}\nupstream={us['pending_txs']}")
        expected_vs = {v: ms["virtual_stake"][v] + self.burned.get(v, 0) for v in VALIDATORS}
        assert us["virtual_stake"] == expected_vs, self.explain(
            f"virtual stake differs: model={ms['virtual_stake']} (+burned {self.burned}) upstream={us['virtual_stake']}")

    def unstake_tx_amount(self, op: dict) -> tuple[str, int] | None:
        """(validator, amount) of the unstake an op commits, if it commits one."""
        if op["op"] == "unstake" and op.get("commit", True):
            return op["validator"], int(op["amount"])
        if op["op"] == "commit_unstake":
            try:
                tx = self.model.app.query("external_staking", {"pending_tx": {"tx_id": op["tx_id"]}})
            except ValueError:
                return None
            inner = tx.get("in_flight_remote_unstaking")
            return (inner["validator"], int(inner["amount"])) if inner else None
        return None

    @staticmethod
    def only_dust(mine: dict, theirs: dict) -> bool:
        """Every difference is upstream's leftover ``total_slashable`` of a user with no lien left."""
        for user in set(mine) | set(theirs):
            a, b = mine.get(user), theirs.get(user)
            if a == b:
                continue
            if a is None or b is None:
                return False
            dust = b["account"]["total_slashable"]
            if not (a["account"]["total_slashable"] == (0, 0) and dust[0] == dust[1] > 0
                    and all(amount == (0, 0) for _, amount in b["claims"])
                    and a["account"]["free"] == (b["account"]["free"][0] + dust[0], b["account"]["free"][1] + dust[0])
                    and {k: v for k, v in a.items() if k != "account"} == {k: v for k, v in b.items() if k != "account"}
                    and a["account"]["bonded"] == b["account"]["bonded"]):
                return False
        return True

    def explain(self, msg: str) -> str:
        tail = "\n".join(f"  {op} -> model ok={m['ok']} upstream ok={u['ok']}" for op, m, u in self.log[-8:])
        return f"{msg}\nlast ops:\n{tail}"

    def run(self, ops: list[dict]) -> "Diff":
        for raw in ops:
            for op in self.resolve(raw):
                if self.diverged:
                    return self
                self.step(op)
        return self


# --- upstream's own multitest scenarios, ported as op sequences ----------------------------

def test_external_staking_multitest_staking(harness):
    """external-staking ``staking``: two users, two validators, stakes add up per (user, validator)."""
    d = Diff(harness).run([
        {"op": "bond", "user": "alice", "amount": 300}, {"op": "bond", "user": "bob", "amount": 300},
        {"op": "stake_remote", "user": "alice", "validator": "val1", "amount": 100},
        {"op": "stake_remote", "user": "alice", "validator": "val2", "amount": 100},
        {"op": "stake_remote", "user": "alice", "validator": "val1", "amount": 100},
        {"op": "stake_remote", "user": "bob", "validator": "val1", "amount": 100},
        {"op": "stake_remote", "user": "bob", "validator": "val2", "amount": 200},
    ])
    snap = d.up.snapshot(VALIDATORS)["users"]
    assert snap["alice"]["stakes"]["val1"]["stake"] == (200, 200)  # upstream's own assertion
    assert snap["bob"]["stakes"]["val2"]["stake"] == (200, 200)


def test_external_staking_multitest_unstaking(harness):
    """external-staking ``unstaking``: pending unbonds keep the lien until released, oldest first."""
    d = Diff(harness).run([
        {"op": "bond", "user": "alice", "amount": 300}, {"op": "bond", "user": "bob", "amount": 300},
        {"op": "stake_remote", "user": "alice", "validator": "val1", "amount": 200},
        {"op": "stake_remote", "user": "bob", "validator": "val1", "amount": 100},
        {"op": "stake_remote", "user": "bob", "validator": "val2", "amount": 200},
        {"op": "unstake", "user": "alice", "validator": "val1", "amount": 50},
        {"op": "unstake", "user": "bob", "validator": "val1", "amount": 100},
        {"op": "unstake", "user": "alice", "validator": "val1", "amount": 300},  # more than staked: both refuse
        {"op": "advance", "seconds": 50},
        {"op": "unstake", "user": "alice", "validator": "val1", "amount": 70},
        {"op": "withdraw_unbonded", "user": "alice"},  # nothing matured yet
        {"op": "advance", "seconds": 60},
        {"op": "withdraw_unbonded", "user": "alice"},  # the first unbond matured
        {"op": "advance", "seconds": 100},
        {"op": "withdraw_unbonded", "user": "alice"}, {"op": "withdraw_unbonded", "user": "bob"},
        {"op": "unbond", "user": "alice", "amount": 121},  # free is 220 (300 - 80 lien left)
        {"op": "unbond", "user": "alice", "amount": 100},  # free is now 99: refused
    ])
    acct = d.up.snapshot(VALIDATORS)["users"]["alice"]["account"]
    assert acct["bonded"] == 179 and acct["max_lien"] == (80, 80) and acct["free"] == (99, 99)


def test_vault_multitest_stake_cross_txs_and_rollback(harness):
    """vault ``stake_cross_txs`` / ``stake_cross_rollback_tx``: in-flight ranges, then commit or rollback."""
    Diff(harness).run([
        {"op": "bond", "user": "alice", "amount": 1000},
        {"op": "stake_remote", "user": "alice", "validator": "val1", "amount": 300, "commit": False},
        {"op": "stake_remote", "user": "alice", "validator": "val2", "amount": 500, "commit": False},
        {"op": "stake_remote", "user": "alice", "validator": "val2", "amount": 300},  # over collateral (range high)
        {"op": "unbond", "user": "alice", "amount": 300},  # free.low is 200
        {"op": "unbond", "user": "alice", "amount": 100},
    ])
    d2 = Diff(harness)
    d2.run([{"op": "bond", "user": "bob", "amount": 500},
            {"op": "stake_remote", "user": "bob", "validator": "val1", "amount": 400, "commit": False}])
    # roll back the in-flight stake on both sides through the ack entry points
    m = d2.model
    m.app.execute("relayer", "external_staking", {"test_rollback_stake": {"tx_id": m._last_tx()}})
    d2.up.h.run({"op": "rollback_stake"})
    d2.compare()


def test_vault_multitest_cross_slash_no_native_staking(harness):
    """vault ``cross_slash_no_native_staking``: 10% double sign on one validator, user with two."""
    d = Diff(harness).run([
        {"op": "bond", "user": "alice", "amount": 200},
        {"op": "stake_remote", "user": "alice", "validator": "val1", "amount": 100},
        {"op": "stake_remote", "user": "alice", "validator": "val2", "amount": 50},
        {"op": "slash", "validator": "val1", "kind": "double_sign"},
    ])
    acct = d.up.snapshot(VALIDATORS)["users"]["alice"]["account"]
    assert acct["bonded"] == 190 and acct["max_lien"] == (140, 140)  # upstream's assertions
    assert acct["total_slashable"] == (14, 14)


def test_vault_multitest_cross_slash_pending_unbonding(harness):
    """vault ``cross_slash_pending_unbonding``: a still-locked pending unbond is slashed too."""
    d = Diff(harness).run([
        {"op": "bond", "user": "alice", "amount": 200},
        {"op": "stake_remote", "user": "alice", "validator": "val1", "amount": 200},
        {"op": "advance", "seconds": 10},
        {"op": "unstake", "user": "alice", "validator": "val1", "amount": 100},
        {"op": "advance", "seconds": 10},
        {"op": "slash", "validator": "val1", "kind": "double_sign"},
        {"op": "advance", "seconds": 200},
        {"op": "withdraw_unbonded", "user": "alice"},
    ])
    acct = d.up.snapshot(VALIDATORS)["users"]["alice"]["account"]
    assert acct["bonded"] == 180 and acct["max_lien"] == (90, 90)


def test_external_staking_multitest_slashing_and_tombstone(harness):
    """external-staking ``slashing``: stakers of the slashed validator only; tombstoned gets no stake."""
    d = Diff(harness).run([
        {"op": "bond", "user": "alice", "amount": 500}, {"op": "bond", "user": "bob", "amount": 500},
        {"op": "stake_remote", "user": "alice", "validator": "val1", "amount": 200},
        {"op": "stake_remote", "user": "alice", "validator": "val2", "amount": 100},
        {"op": "stake_remote", "user": "bob", "validator": "val2", "amount": 300},
        {"op": "slash", "validator": "val2", "kind": "double_sign"},
        {"op": "stake_remote", "user": "alice", "validator": "val2", "amount": 100},  # tombstoned: refused
        {"op": "unstake", "user": "bob", "validator": "val2", "amount": 270},
        {"op": "slash", "validator": "val1", "kind": "offline"},
        {"op": "stake_remote", "user": "alice", "validator": "val1", "amount": 100},  # jailed: refused
    ])
    assert CONSUMER_BURN_ON_SLASH in d.hits


# --- seeded random sequences ----------------------------------------------------------------

RANDOM_SEQUENCES = 200


def test_random_sequences_match_upstream(harness):
    """200 seeded sequences of bond / stake_remote / unstake / withdraw_unbonded / release /
    slash (double sign and offline) / unbond / advance; state compared after every op."""
    hits: set[str] = set()
    ops_run = slashes_ok = diverged = 0
    done: dict[str, int] = {}
    for seed in range(RANDOM_SEQUENCES):
        d = Diff(harness).run(random_sequence(seed, in_flight=True))
        hits.update(d.hits)
        diverged += d.diverged
        ops_run += len(d.log)
        for op, m, u in d.log:
            done[op["op"]] = done.get(op["op"], 0) + (m["ok"] and u["ok"])
        slashes_ok += sum(1 for op, m, u in d.log if op["op"] == "slash" and m["ok"] and u["ok"])
    # the sequences really exercise every op (successful on both sides), and most run to the end
    assert ops_run >= RANDOM_SEQUENCES * 30
    assert all(done[k] >= 100 for k in ("bond", "stake_remote", "unstake", "withdraw_unbonded", "unbond", "slash")), done
    assert slashes_ok > 100
    assert diverged <= RANDOM_SEQUENCES // 5
    assert {CONSUMER_BURN_ON_SLASH, SLASH_INACTIVE_REJECTED} <= hits


# --- each named difference, pinned ----------------------------------------------------------

def test_difference_consumer_burn_on_slash(harness):
    d = Diff(harness).run([
        {"op": "bond", "user": "alice", "amount": 1000},
        {"op": "stake_remote", "user": "alice", "validator": "val1", "amount": 1000},
        {"op": "slash", "validator": "val1", "kind": "double_sign"},
    ])
    assert d.model.snapshot(VALIDATORS)["virtual_stake"]["val1"] == 900
    assert d.up.snapshot(VALIDATORS)["virtual_stake"]["val1"] == 1000


def test_difference_slash_inactive_rejected(harness):
    d = Diff(harness).run([
        {"op": "bond", "user": "alice", "amount": 1000},
        {"op": "stake_remote", "user": "alice", "validator": "val1", "amount": 1000},
        {"op": "slash", "validator": "val1", "kind": "double_sign"},
        {"op": "slash", "validator": "val1", "kind": "double_sign"},
    ])
    assert d.hits.count(SLASH_INACTIVE_REJECTED) == 1


def test_difference_effective_slash_ratio(harness):
    """Stakes 120 and 130 on one validator, 10%: we cut 12 and 13; upstream gets slash_amount 25
    (exact here) — but with 1e18-truncation on ``25/250`` still exact; with 7 and 8 (Σ 15 -> 1)
    upstream cuts floor(7/15)=0 and floor(8/15)=0 where we cut 0 and 0; with 12 and 13 (Σ 25 -> 2)
    upstream cuts 0 and 1 where we cut 1 and 1."""
    cfg = Config()
    model, up = ModelWorld(cfg), UpstreamWorld(harness, cfg)
    for w in (model, up):
        for user, amount in (("alice", 12), ("bob", 13)):
            assert w.call({"op": "bond", "user": user, "amount": 100})["ok"]
            assert w.call({"op": "stake_remote", "user": user, "validator": "val1", "amount": amount})["ok"]
        assert w.call({"op": "slash", "validator": "val1", "kind": "double_sign"})["ok"]
    ms, us = model.snapshot(VALIDATORS)["users"], up.snapshot(VALIDATORS)["users"]
    assert [ms[u]["stakes"]["val1"]["stake"][1] for u in ("alice", "bob")] == [11, 12]
    # upstream: effective ratio 2/25 = 0.08 -> floor(12*0.08)=0, floor(13*0.08)=1
    assert [us[u]["stakes"]["val1"]["stake"][1] for u in ("alice", "bob")] == [12, 12]


def test_difference_pending_slash_ignores_infraction_time(harness):
    """An unbond started before the infraction time: we slash it (Bitcoin can still slash an
    unbonding output), upstream does not."""
    cfg = Config()
    model, up = ModelWorld(cfg), UpstreamWorld(harness, cfg)
    for w in (model, up):
        assert w.call({"op": "bond", "user": "alice", "amount": 1000})["ok"]
        assert w.call({"op": "stake_remote", "user": "alice", "validator": "val1", "amount": 1000})["ok"]
        assert w.call({"op": "unstake", "user": "alice", "validator": "val1", "amount": 500})["ok"]
        assert w.call({"op": "advance", "seconds": 10})["ok"]
        assert w.call({"op": "slash", "validator": "val1", "kind": "double_sign",
                       "infraction_time": 1_000_000 + 5})["ok"]
    mp = model.snapshot(VALIDATORS)["users"]["alice"]["stakes"]["val1"]["pending_unbonds"]
    upp = up.snapshot(VALIDATORS)["users"]["alice"]["stakes"]["val1"]["pending_unbonds"]
    assert [a for a, _ in mp] == [450] and [a for a, _ in upp] == [500]


def test_difference_pending_slash_without_active_stake(harness):
    """Carol unstaked everything from val1 (pending, still locked); alice still stakes there.
    We cut carol's pending unbond by the ratio; upstream skips her."""
    d = Diff(harness)
    for op in ({"op": "bond", "user": "alice", "amount": 1000}, {"op": "bond", "user": "carol", "amount": 1000},
               {"op": "stake_remote", "user": "alice", "validator": "val1", "amount": 1000},
               {"op": "stake_remote", "user": "carol", "validator": "val1", "amount": 1000},
               {"op": "unstake", "user": "carol", "validator": "val1", "amount": 1000}):
        d.step(op)
    d.step({"op": "slash", "validator": "val1", "kind": "double_sign"})
    assert d.hits[-1] == PENDING_SLASH_WITHOUT_ACTIVE_STAKE
    mine = d.model.snapshot([])["users"]["carol"]["stakes"]["val1"]["pending_unbonds"]
    theirs = d.up.snapshot([])["users"]["carol"]["stakes"]["val1"]["pending_unbonds"]
    assert [a for a, _ in mine] == [900] and [a for a, _ in theirs] == [1000]


def test_difference_upstream_slash_panics_on_zero_stake(harness):
    """Everyone unstaked from val1: upstream's slash divides by zero total stake and the packet
    fails (nothing slashed, not tombstoned); we slash the pending unbond and tombstone."""
    d = Diff(harness)
    for op in ({"op": "bond", "user": "alice", "amount": 1000},
               {"op": "stake_remote", "user": "alice", "validator": "val1", "amount": 1000},
               {"op": "unstake", "user": "alice", "validator": "val1", "amount": 1000}):
        d.step(op)
    m, u = d.step({"op": "slash", "validator": "val1", "kind": "double_sign"})
    assert d.hits[-1] == UPSTREAM_SLASH_PANICS_ON_ZERO_STAKE and m["ok"] and "panicked" in u["error"]
    assert [a for a, _ in d.model.snapshot([])["users"]["alice"]["stakes"]["val1"]["pending_unbonds"]] == [900]
    # the harness survived and restored the contract's state
    assert [a for a, _ in d.up.snapshot([])["users"]["alice"]["stakes"]["val1"]["pending_unbonds"]] == [1000]


TOMBSTONED_UNSTAKE = [
    {"op": "bond", "user": "alice", "amount": 1000},
    {"op": "stake_remote", "user": "alice", "validator": "val1", "amount": 1000},
    {"op": "slash", "validator": "val1", "kind": "double_sign"},
    {"op": "unstake", "user": "alice", "validator": "val1", "amount": 900},
    {"op": "withdraw_unbonded", "user": "alice"},
]


def test_unstake_from_tombstoned_validator_releases_at_once_with_the_option(harness):
    """Upstream ``commit_unstake``: no unbonding period once the validator is tombstoned; the
    model's ``release_tombstoned_at_once`` matches it (compared after every op)."""
    d = Diff(harness).run(TOMBSTONED_UNSTAKE)
    assert d.model.snapshot([])["users"]["alice"]["account"]["max_lien"] == (0, 0)


def test_difference_release_tombstoned_keeps_period(harness):
    """Our default keeps the lien for the unbonding period after unstaking from a tombstoned
    validator; upstream frees it at once."""
    cfg = Config(release_tombstoned_at_once=False)
    model, up = ModelWorld(cfg), UpstreamWorld(harness, cfg)
    for op in TOMBSTONED_UNSTAKE:
        assert model.call(op)["ok"] and up.call(op)["ok"]
    assert model.snapshot([])["users"]["alice"]["account"]["max_lien"] == (900, 900)
    assert up.snapshot([])["users"]["alice"]["account"]["max_lien"] == (0, 0)
    model.call({"op": "advance", "seconds": cfg.unbonding_period})
    model.call({"op": "withdraw_unbonded", "user": "alice"})
    assert model.snapshot([])["users"]["alice"]["account"]["max_lien"] == (0, 0)


def test_harness_reports_upstream_errors(harness):
    """Upstream errors come back as ``ok: false`` with the contract's message."""
    harness.run(Config().reset_op())
    with pytest.raises(HarnessError, match="(?i)claim is locked"):
        harness.run({"op": "unbond", "user": "nobody", "amount": 1})


def test_difference_pagination_clamp(harness):
    """12 stakes of one user: a default page is 10 here, 12 (limit max(10, 30)) upstream."""
    vals = [f"v{i:02d}" for i in range(12)]
    cfg = Config(validators=vals)
    model, up = ModelWorld(cfg), UpstreamWorld(harness, cfg)
    for w in (model, up):
        assert w.call({"op": "bond", "user": "alice", "amount": 1200})["ok"]
        for v in vals:
            assert w.call({"op": "stake_remote", "user": "alice", "validator": v, "amount": 100})["ok"]
    mine = model.app.query("external_staking", {"stakes": {"user": "alice"}})["stakes"]
    theirs = harness.run({"op": "query", "contract": "external_staking", "msg": {"stakes": {"user": "alice"}}})["stakes"]
    assert (len(mine), len(theirs)) == (10, 12)
    mine = model.app.query("external_staking", {"stakes": {"user": "alice", "limit": 50}})["stakes"]
    theirs = harness.run({"op": "query", "contract": "external_staking",
                          "msg": {"stakes": {"user": "alice", "limit": 50}}})["stakes"]
    assert [s["validator"] for s in mine] == [s["validator"] for s in theirs] == vals


def test_difference_rebalance_every_change(harness):
    """Without a per-packet epoch, upstream's virtual stake shows the bond only after the epoch."""
    op = dict(Config().reset_op(), auto_epoch=False)
    harness.run(op)
    harness.run({"op": "advance", "seconds": 5})
    harness.run({"op": "bond", "user": "alice", "amount": 500})
    harness.run({"op": "stake_remote", "user": "alice", "validator": "val1", "amount": 500})
    stake = lambda: harness.run({"op": "query", "contract": "virtual_staking", "msg": {"get_stake": {"validator": "val1"}}})
    assert stake()["stake"] == "0"
    harness.run({"op": "epoch"})
    assert stake()["stake"] == "500"
    model = ModelWorld(Config())
    model.call({"op": "bond", "user": "alice", "amount": 500})
    model.call({"op": "stake_remote", "user": "alice", "validator": "val1", "amount": 500})
    assert model.snapshot(["val1"])["virtual_stake"]["val1"] == 500


def test_price_and_discount_reach_virtual_stake(harness):
    """Converter price 2, discount 0.25: both sides give floor(floor(n*2)*0.75) virtual stake."""
    Diff(harness, Config(price="2", discount="0.25")).run([
        {"op": "bond", "user": "alice", "amount": 1000},
        {"op": "stake_remote", "user": "alice", "validator": "val1", "amount": 333},
        {"op": "stake_remote", "user": "alice", "validator": "val2", "amount": 100},
        {"op": "unstake", "user": "alice", "validator": "val1", "amount": 111},
    ])


def test_difference_upstream_ack_panics_after_slash(harness):
    """Stake 400 in flight, 900 committed, unstake 800 in flight, slash 10%, then both acks:
    upstream's ``commit_unstake`` leaves ``high < low`` and panics (the tx stays in flight);
    ours unbonds what the slash left (770)."""
    d = Diff(harness)
    for op in ({"op": "bond", "user": "carol", "amount": 1300},
               {"op": "stake_remote", "user": "carol", "validator": "val3", "amount": 400, "commit": False},
               {"op": "stake_remote", "user": "carol", "validator": "val3", "amount": 900},
               {"op": "unstake", "user": "carol", "validator": "val3", "amount": 800, "commit": False},
               {"op": "slash", "validator": "val3", "kind": "double_sign"}):
        d.step(op)
    d.step({"op": "commit_stake", "tx_id": d.model._last_tx("in_flight_remote_staking")})
    m, u = d.step({"op": "commit_unstake", "tx_id": d.model._last_tx("in_flight_remote_unstaking")})
    assert d.hits[-1] == UPSTREAM_ACK_PANICS_AFTER_SLASH and m["ok"] and "panicked" in u["error"]
    st = d.model.snapshot([])["users"]["carol"]["stakes"]["val3"]
    assert st["stake"] == (400, 400) and [a for a, _ in st["pending_unbonds"]] == [770]
    # upstream's state is untouched by the failed ack (cw-multi-test's tx rolled back)
    assert d.up.snapshot([])["users"]["carol"]["stakes"]["val3"]["stake"] == (400, 1170)


def test_difference_slashable_dust_cleared(harness):
    """Stake 15 at 10% (slashable 1), released in three separate unstakes of 5 (each floor(0.5) = 0):
    upstream keeps total_slashable 1 with no lien left; we clear it."""
    cfg = Config()
    model, up = ModelWorld(cfg), UpstreamWorld(harness, cfg)
    ops = [{"op": "bond", "user": "alice", "amount": 100},
           {"op": "stake_remote", "user": "alice", "validator": "val1", "amount": 15}]
    ops += [{"op": "unstake", "user": "alice", "validator": "val1", "amount": 5},
            {"op": "advance", "seconds": 101}, {"op": "withdraw_unbonded", "user": "alice"}] * 3
    for op in ops:
        assert model.call(op)["ok"] and up.call(op)["ok"]
    mine, theirs = model.snapshot([])["users"]["alice"], up.snapshot([])["users"]["alice"]
    assert mine["account"]["total_slashable"] == (0, 0) and mine["account"]["free"] == (100, 100)
    assert theirs["account"]["total_slashable"] == (1, 1) and theirs["account"]["free"] == (99, 99)
    assert Diff.only_dust({"alice": mine}, {"alice": theirs})


def test_difference_unstake_after_slash_saturates(harness):
    """Unstake 300 in flight, slash 10%, commit: we unbond (and tell the consumer) the 270 left;
    upstream's consumer unbonds 300 (it never saw the slash as a burn)."""
    d = Diff(harness)
    for op in ({"op": "bond", "user": "alice", "amount": 300},
               {"op": "stake_remote", "user": "alice", "validator": "val1", "amount": 300},
               {"op": "unstake", "user": "alice", "validator": "val1", "amount": 300, "commit": False},
               {"op": "slash", "validator": "val1", "kind": "double_sign"}):
        d.step(op)
    d.step({"op": "commit_unstake", "tx_id": d.model._last_tx("in_flight_remote_unstaking")})
    assert d.hits[-1] == UNSTAKE_AFTER_SLASH_SATURATES
    assert [a for a, _ in d.model.snapshot([])["users"]["alice"]["stakes"]["val1"]["pending_unbonds"]] == [270]
    assert d.model.snapshot(["val1"])["virtual_stake"]["val1"] == d.up.snapshot(["val1"])["virtual_stake"]["val1"] == 0
