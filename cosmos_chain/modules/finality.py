"""Finality module: EOTS public randomness, finality votes, voting power, finalization, liveness
jailing and equivocation slashing.

A built-in CosmWasm-style contract with Babylon ``x/finality`` semantics (spec §4). JSON messages:

Execute
  ``commit_pub_rand_list {fp_btc_pk, start_height, num_pub_rand, commitment, sig}``
      hex fields; ``sig`` is the FP's BIP-340 signature over
      ``SHA256(uint64_be(start) || uint64_be(num) || commitment)``. The FP must be registered
      and not slashed; ``min_pub_rand <= num <= max_pub_rand``; ``start`` above the current
      height (:class:`PubRandStartTooLow`) and below ``current + max_start_ahead``; no overlap
      with the FP's last commit (:class:`PubRandOverlap`).
  ``add_finality_sig {fp_btc_pk, block_height, pub_rand, proof, block_app_hash, finality_sig}``
      ``proof`` = ``{total, index, leaf_hash, aunts[]}`` (CometBFT merkle proof). Checks, in
      order: FP registered and not slashed; the block exists; the FP has voting power at that
      height (:class:`NoVotingPower`); a commit covers the height; ``proof.index == height -
      start``; ``proof.total == num``; the proof shows ``pub_rand`` under the commitment;
      ``eots.verify(fp, pub_rand, vote_message(height, app_hash), sig)``, i.e. a BIP-340
      signature over sha256(uint64_be(height) || app_hash) where the canonical app hash is
      block ``height``'s *header* app hash (Babylon ``indexed_blocks``; CometBFT: the state after
      block ``height - 1``).
  ``unjail_finality_provider {fp_btc_pk}``
      from the FP's registered address, once ``jail_duration`` seconds of block time have passed.

Blocks. ``begin_block(h)`` indexes block h (its header app hash) and stores its voting-power
table ``power/<h>``: the top ``max_active_finality_providers`` by ACTIVE staked sats among FPs
that are registered, not slashed, not jailed and have randomness committed for h.
``end_block(h)`` finalizes blocks in height order (Babylon ``TallyBlocks``): a block whose
voters hold strictly more than 2/3 of its table's power, all lower heights being finalized;
heights with an empty table are passed over. Then liveness (Babylon ``HandleLiveness``): block
``h - finality_sig_timeout`` is judged; an FP of its table that did not vote gets a miss; more
than ``max_missed`` misses among the last ``signed_blocks_window`` heights jails it (it leaves
the table from the next block; ``FinalityHooks.jail_finality_provider`` jails its mesh validator).

Equivocation: two valid votes by one FP at one height on different app hashes. The module
records evidence ``{fp_btc_pk, block_height, pub_rand, canonical_app_hash, fork_app_hash,
canonical_finality_sig, fork_finality_sig}``, extracts the FP's secret key with
``btc_staking.eots.extract_secret`` (which checks ``x'·G == fp_pk``), marks the FP slashed,
asks the host to slash it in the staking registry / mesh (``FinalityHooks.slash_finality_provider``)
and emits a ``slashed_finality_provider`` event carrying the extracted key. A vote on a
non-canonical hash before the FP voted canonically is kept as a *fork vote* (it carries no
power) and turned into evidence as soon as the canonical vote arrives. Re-sending the very same
vote is idempotent (accepted, no state change, ``duplicate=true``).

Queries
  ``params {}``; ``status {}`` → ``{height, last_finalized_height, activated_height}``;
  ``block_app_hash {height}`` → ``{height, app_hash | null}``; ``block {height}`` → ``{height,
  app_hash, status: finalized|pending|no_power|unknown, finalized, voted_power, total_power}``;
  ``last_finalized_height {}``; ``voting_power_table {height}`` → ``{height, total_power,
  finality_providers: [{fp_btc_pk, voting_power}]}``; ``finality_provider {fp_btc_pk, height?}``
  → ``{fp_btc_pk, height, voting_power, state: active|standby|jailed|slashed, jailed_until}``;
  ``jailed {}``; ``pub_rand_commits {fp_btc_pk}``; ``votes_at_height {height}``;
  ``vote {fp_btc_pk, height}``; ``evidence {fp_btc_pk}``; ``list_evidence {start_after?, limit?}``;
  ``is_slashed {fp_btc_pk}``; ``slashed_finality_providers {}``.

``FinalityModule`` is the chain module (``cosmos_chain.modules.base.Module``; state in its
JSON store, so a failing message leaves nothing behind: the tx journal is dropped);
``StandaloneFinality`` runs the same ``FinalityCore`` rules on a private store for tools/tests
(``next_block`` runs a block; without blocks the power table is computed on demand).
Events: ``commit_pub_rand_list``, ``finality_vote``, ``fork_vote``, ``block_finalized``,
``finality_provider_jailed``, ``finality_provider_unjailed``, ``slashed_finality_provider``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from btc_staking import eots
from btc_staking.errors import StakingError
from btc_staking.keys import lift_x, xonly_from_secret

from ..errors import ContractError
from .base import Context, Module, register_module
from ..store import CacheKV, JsonStore, RootKV

__all__ = [
    "FinalityError",
    "InvalidFinalityMsg",
    "UnknownFinalityProvider",
    "FinalityProviderSlashed",
    "InvalidPubRandCommit",
    "PubRandOverlap",
    "PubRandStartTooLow",
    "NoVotingPower",
    "FinalityProviderJailed",
    "NotJailed",
    "JailNotExpired",
    "PubRandNotCommitted",
    "InvalidPubRandProof",
    "InvalidFinalitySig",
    "UnknownBlock",
    "FinalityHooks",
    "StaticHooks",
    "FinalityCore",
    "FinalityModule",
    "StandaloneFinality",
    "extract_from_evidence",
    "DEFAULT_PARAMS",
]

U64_MAX = 2**64 - 1
#: Babylon x/finality defaults where it has them: signed_blocks_window 100, min_signed 0.5
#: (max_missed 50), finality_sig_timeout 3 blocks, jail_duration 86400 s, max_active_finality_providers 100.
DEFAULT_PARAMS: dict[str, int] = {"min_pub_rand": 1, "max_pub_rand": 100_000, "max_start_ahead": 160_000,
                                  "max_active_finality_providers": 100, "signed_blocks_window": 100,
                                  "max_missed": 50, "finality_sig_timeout": 3, "jail_duration": 86_400}
_ZERO_OK = ("finality_sig_timeout", "max_missed")


# --------------------------------------------------------------------------------------- errors
class FinalityError(ContractError):
    """Base class of every finality-module error."""


class InvalidFinalityMsg(FinalityError):
    """Malformed message: missing field, wrong type, bad hex length."""


class UnknownFinalityProvider(FinalityError):
    """The FP key is not registered in the staking registry."""


class FinalityProviderSlashed(FinalityError):
    """The FP has been slashed and may no longer commit or vote."""


class InvalidPubRandCommit(FinalityError):
    """A pub-rand commit breaks a bound or its signature does not verify."""


class PubRandOverlap(InvalidPubRandCommit):
    """A pub-rand commit overlaps (or precedes) the FP's previous commit."""


class PubRandStartTooLow(InvalidPubRandCommit):
    """A pub-rand commit whose start height is not above the current height (heights already past)."""


class NoVotingPower(FinalityError):
    """The FP has no voting power at the voted height (not in that height's power table)."""


class FinalityProviderJailed(FinalityError):
    """The FP is jailed for missing votes (liveness); it may unjail after ``jail_duration``."""


class NotJailed(FinalityError):
    """``unjail_finality_provider`` for an FP that is not jailed."""


class JailNotExpired(FinalityError):
    """``unjail_finality_provider`` before ``jail_duration`` has passed."""


class PubRandNotCommitted(FinalityError):
    """No pub-rand commit covers the voted height."""


class InvalidPubRandProof(FinalityError):
    """Wrong proof index/total, or the merkle proof does not show pub_rand under the commitment."""


class InvalidFinalitySig(FinalityError):
    """The EOTS signature does not verify over vote_message(height, app_hash)."""


class UnknownBlock(FinalityError):
    """The host knows no block at the voted height (not produced yet)."""


# --------------------------------------------------------------------------------------- hooks
class FinalityHooks(Protocol):
    """What the finality logic needs from its host. ``knows_blocks``: True when
    ``canonical_app_hash`` answers for every produced height (votes on unknown heights are refused).
    Hooks may also define ``is_slashed(ctx, fp_btc_pk) -> bool`` (slashed outside this module)."""

    knows_blocks: bool

    def is_registered(self, ctx: Any, fp_btc_pk: str) -> bool:
        """Whether the FP (x-only hex) is registered in the staking registry."""

    def canonical_app_hash(self, ctx: Any, height: int) -> bytes | None:
        """App hash of the chain's block at ``height``; None when unknown."""

    def slash_finality_provider(self, ctx: Any, fp_btc_pk: str, evidence: dict, extracted_sk: bytes) -> None:
        """Slash the FP in the registry (its delegations become SLASHED) and downstream (mesh).
        Raising aborts the vote: nothing is written."""

    def active_sat(self, ctx: Any, fp_btc_pk: str) -> int:
        """Sats of the FP's ACTIVE delegations (its candidate voting power)."""


@dataclass
class StaticHooks:
    """Stand-alone hooks: a fixed FP set, optional app-hash lookup, slashes recorded in a list.
    ``powers`` maps FPs to active sats (default: 1 sat for every registered FP)."""

    registered: set[str]
    app_hashes: Callable[[int], bytes | None] | None = None
    slashed: list[str] = field(default_factory=list)
    knows_blocks: bool = False
    powers: dict[str, int] | None = None
    jailed: list[str] = field(default_factory=list)

    def active_sat(self, ctx: Any, fp_btc_pk: str) -> int:
        if self.powers is None:
            return 1 if fp_btc_pk in self.registered else 0
        return int(self.powers.get(fp_btc_pk, 0))

    def jail_finality_provider(self, ctx: Any, fp_btc_pk: str, height: int) -> None:
        self.jailed.append(fp_btc_pk)

    def unjail_finality_provider(self, ctx: Any, fp_btc_pk: str, height: int) -> None:
        self.jailed.remove(fp_btc_pk)

    def is_registered(self, ctx: Any, fp_btc_pk: str) -> bool:
        return fp_btc_pk in self.registered

    def canonical_app_hash(self, ctx: Any, height: int) -> bytes | None:
        return None if self.app_hashes is None else self.app_hashes(height)

    def slash_finality_provider(self, ctx: Any, fp_btc_pk: str, evidence: dict, extracted_sk: bytes) -> None:
        self.slashed.append(fp_btc_pk)


# --------------------------------------------------------------------------------------- parsing
def _hex(body: dict, key: str, length: int) -> bytes:
    value = body.get(key)
    if value is None:
        raise InvalidFinalityMsg(f"missing field `{key}`")
    if not isinstance(value, str):
        raise InvalidFinalityMsg(f"field `{key}` must be a hex string, got {type(value).__name__}")
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise InvalidFinalityMsg(f"field `{key}` is not hex") from exc
    if len(raw) != length:
        raise InvalidFinalityMsg(f"field `{key}` must be {length} bytes, got {len(raw)}")
    return raw


def _uint(body: dict, key: str) -> int:
    value = body.get(key)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)  # u64 fields may arrive as JSON strings (proto3 JSON)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidFinalityMsg(f"field `{key}` must be an unsigned integer, got {value!r}")
    if not 0 <= value <= U64_MAX:
        raise InvalidFinalityMsg(f"field `{key}` out of uint64 range: {value}")
    return value


def _fp(body: dict) -> str:
    raw = _hex(body, "fp_btc_pk", 32)
    try:
        lift_x(raw)
    except StakingError as exc:
        raise InvalidFinalityMsg(f"fp_btc_pk is not a valid x-only key: {exc}") from exc
    return raw.hex()


def _proof(body: dict) -> eots.MerkleProof:
    raw = body.get("proof")
    if not isinstance(raw, dict):
        raise InvalidFinalityMsg("field `proof` must be an object {total, index, leaf_hash, aunts}")
    try:
        total, index = _uint(raw, "total"), _uint(raw, "index")
        leaf = _hex(raw, "leaf_hash", 32)
        aunts_raw = raw.get("aunts")
        if not isinstance(aunts_raw, list) or len(aunts_raw) > 64:
            raise InvalidFinalityMsg("proof.aunts must be a list of at most 64 hashes")
        aunts = tuple(_hex({"aunt": a}, "aunt", 32) for a in aunts_raw)
    except InvalidFinalityMsg as exc:
        raise InvalidFinalityMsg(f"bad proof: {exc}") from exc
    return eots.MerkleProof(total, index, leaf, aunts)


# --------------------------------------------------------------------------------------- core
def _hkey(height: int) -> str:
    return f"{height:020d}"


Emit = Callable[[str, dict[str, str]], None]


class FinalityCore:
    """The module's rules over a JSON store. Keys: ``params``, ``commits/<fp>`` (list),
    ``vote/<h20>/<fp>``, ``fork/<h20>/<fp>``, ``evidence/<fp>`` (list), ``slashed/<fp>``."""

    def __init__(self, hooks: FinalityHooks) -> None:
        self.hooks = hooks

    # ----------------------------------------------------------------------------- helpers
    @staticmethod
    def init_params(st: JsonStore, params: dict | None = None) -> None:
        """Write ``DEFAULT_PARAMS`` overridden by ``params`` (validated)."""
        p = dict(DEFAULT_PARAMS)
        for k, v in (params or {}).items():
            lo = 0 if k in _ZERO_OK else 1
            if k not in DEFAULT_PARAMS or not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise InvalidFinalityMsg(f"invalid finality param {k}={v!r}")
            p[k] = v
        if p["min_pub_rand"] > p["max_pub_rand"]:
            raise InvalidFinalityMsg("min_pub_rand must not exceed max_pub_rand")
        if p["max_missed"] >= p["signed_blocks_window"]:
            raise InvalidFinalityMsg("max_missed must be below signed_blocks_window")
        st.set("params", p)

    @staticmethod
    def params(st: JsonStore) -> dict:
        return dict(DEFAULT_PARAMS, **(st.get("params") or {}))

    def _check_fp(self, st: JsonStore, ctx: Any, fp: str) -> None:
        if st.has("slashed/" + fp):
            raise FinalityProviderSlashed(f"finality provider {fp} is slashed")
        is_slashed = getattr(self.hooks, "is_slashed", None)  # optional: slashed in the registry
        if callable(is_slashed) and is_slashed(ctx, fp):
            raise FinalityProviderSlashed(f"finality provider {fp} is slashed in the staking registry")
        if not self.hooks.is_registered(ctx, fp):
            raise UnknownFinalityProvider(f"finality provider {fp} is not registered")

    @staticmethod
    def commit_for(st: JsonStore, fp: str, height: int) -> dict | None:
        """The FP's pub-rand commit covering ``height`` (or None)."""
        for c in reversed(st.get("commits/" + fp, [])):
            if c["start_height"] <= height < c["start_height"] + c["num_pub_rand"]:
                return c
            if c["start_height"] + c["num_pub_rand"] <= height:
                break
        return None

    # ----------------------------------------------------------------------------- voting power
    def compute_power_table(self, st: JsonStore, ctx: Any, height: int) -> dict:
        """``{total, finality_providers: [[fp, sats], ...]}`` for ``height``: the top
        ``max_active_finality_providers`` by active staked sats among FPs that are registered,
        not slashed, not jailed and have public randomness committed for ``height``."""
        candidates: list[tuple[int, str]] = []
        is_slashed = getattr(self.hooks, "is_slashed", None)
        for key, _ in st.items("commits/"):
            fp = key[len("commits/"):]
            if self.commit_for(st, fp, height) is None or st.has("slashed/" + fp) or st.has("jailed/" + fp):
                continue
            if callable(is_slashed) and is_slashed(ctx, fp):
                continue
            if not self.hooks.is_registered(ctx, fp):
                continue
            sats = int(self.hooks.active_sat(ctx, fp))
            if sats > 0:
                candidates.append((sats, fp))
        candidates.sort(key=lambda c: (-c[0], c[1]))
        top = candidates[: self.params(st)["max_active_finality_providers"]]
        return {"total": sum(c[0] for c in top), "finality_providers": [[fp, sats] for sats, fp in top]}

    def power_table(self, st: JsonStore, ctx: Any, height: int) -> dict:
        """The table stored for ``height`` (at its begin block); hosts that do not run blocks
        (``knows_blocks`` False) compute it on demand."""
        table = st.get("power/" + _hkey(height))
        if table is None:
            if self.hooks.knows_blocks:
                return {"total": 0, "finality_providers": []}
            return self.compute_power_table(st, ctx, height)
        return table

    def voting_power(self, st: JsonStore, ctx: Any, fp: str, height: int) -> int:
        return dict(map(tuple, self.power_table(st, ctx, height)["finality_providers"])).get(fp, 0)

    # ----------------------------------------------------------------------------- blocks
    def begin_block(self, st: JsonStore, ctx: Any, height: int, header_app_hash: bytes | None) -> None:
        """Index block ``height`` (its header app hash, what votes sign) and record its power table."""
        if header_app_hash is not None:
            st.set("apphash/" + _hkey(height), header_app_hash.hex())
        table = self.compute_power_table(st, ctx, height)
        if table["finality_providers"]:
            st.set("power/" + _hkey(height), table)
            st.set("last_power_height", height)
            if st.get("activated_height") is None:
                st.set("activated_height", height)

    def end_block(self, st: JsonStore, ctx: Any, height: int, now: float, emit: Emit) -> None:
        """Finalize what the votes allow (in height order), then the liveness check."""
        self.tally(st, height, emit)
        self.liveness(st, ctx, height, now, emit)

    def _voted_power(self, st: JsonStore, height: int, table: dict) -> int:
        return sum(p for fp, p in table["finality_providers"] if st.has(f"vote/{_hkey(height)}/{fp}"))

    def tally(self, st: JsonStore, height: int, emit: Emit) -> None:
        """Babylon TallyBlocks: from the next unfinalized height up to ``height``, finalize each
        block whose voters hold > 2/3 of its power; stop at the first that does not. A height with
        an empty power table cannot be finalized and is passed over."""
        activated = st.get("activated_height")
        if activated is None:
            return
        nxt = max(int(st.get("next_to_finalize", activated)), activated)
        while nxt <= height:
            table = st.get("power/" + _hkey(nxt))
            if table is None or not table["finality_providers"]:
                nxt += 1
                continue
            voted = self._voted_power(st, nxt, table)
            if 3 * voted <= 2 * table["total"]:
                break
            st.set("finalized/" + _hkey(nxt), {"voted_power": voted, "total_power": table["total"]})
            st.set("last_finalized_height", nxt)
            emit("block_finalized", {"height": str(nxt), "voted_power": str(voted),
                                     "total_power": str(table["total"])})
            nxt += 1
        st.set("next_to_finalize", nxt)

    def liveness(self, st: JsonStore, ctx: Any, height: int, now: float, emit: Emit) -> None:
        """Babylon HandleLiveness: at ``height`` judge block ``height - finality_sig_timeout``; an FP
        in its power table that did not vote gets a miss; more than ``max_missed`` misses in the
        last ``signed_blocks_window`` heights jails it (it leaves the power table from the next block),
        once a full window has passed since the first height it was judged at (Babylon's signing-info
        start height)."""
        p = self.params(st)
        judged = height - p["finality_sig_timeout"]
        if judged < 1:
            return
        table = st.get("power/" + _hkey(judged))
        if table is None:
            return
        for fp, _ in table["finality_providers"]:
            if st.has("jailed/" + fp) or st.has("slashed/" + fp):
                continue
            start = st.get("liveness_start/" + fp)
            if start is None:  # Babylon signing info: start height = the first height judged with power
                start = judged
                st.set("liveness_start/" + fp, start)
            missed = [h for h in st.get("missed/" + fp, []) if h > judged - p["signed_blocks_window"]]
            if not st.has(f"vote/{_hkey(judged)}/{fp}"):
                missed.append(judged)
            # Babylon liveness.go: jailed only past start + window (a full window observed)
            if len(missed) > p["max_missed"] and judged > start + p["signed_blocks_window"]:
                rec = {"fp_btc_pk": fp, "jailed_height": height, "jailed_time": now,
                       "jailed_until": now + p["jail_duration"], "missed": len(missed)}
                st.set("jailed/" + fp, rec)
                st.delete("missed/" + fp)  # a fresh window after unjail (Babylon resets signing info)
                jail = getattr(self.hooks, "jail_finality_provider", None)
                if callable(jail):
                    try:  # end of block: a failing downstream jail must not halt the chain
                        jail(ctx, fp, height)
                    except ValueError as exc:
                        emit("finality_jail_error", {"fp_btc_pk": fp, "error": str(exc)})
                emit("finality_provider_jailed", {"fp_btc_pk": fp, "height": str(height),
                                                  "missed": str(len(missed)), "jailed_until": str(rec["jailed_until"])})
            elif missed:
                st.set("missed/" + fp, missed)
            else:
                st.delete("missed/" + fp)

    def unjail_finality_provider(self, st: JsonStore, ctx: Any, cur_height: int, now: float, sender: str | None,
                                 body: dict, emit: Emit) -> dict:
        """Lift a liveness jail once ``jail_duration`` has passed (sent by the FP's registered address)."""
        fp = _fp(body)
        self._check_fp(st, ctx, fp)
        owner = getattr(self.hooks, "fp_owner", None)
        if sender is not None and callable(owner):
            addr = owner(ctx, fp)
            if addr and addr != sender:
                raise InvalidFinalityMsg(f"only the finality provider's address {addr} may unjail it")
        rec = st.get("jailed/" + fp)
        if rec is None:
            raise NotJailed(f"finality provider {fp} is not jailed")
        if now < rec["jailed_until"]:
            raise JailNotExpired(f"finality provider {fp} is jailed until {rec['jailed_until']} "
                                 f"(block time {now}; jail_duration {self.params(st)['jail_duration']} s)")
        st.delete("jailed/" + fp)
        unjail = getattr(self.hooks, "unjail_finality_provider", None)
        if callable(unjail):
            unjail(ctx, fp, cur_height)
        emit("finality_provider_unjailed", {"fp_btc_pk": fp, "height": str(cur_height)})
        return {"fp_btc_pk": fp, "unjailed_height": cur_height}

    def fp_state(self, st: JsonStore, ctx: Any, fp: str, height: int | None = None) -> dict:
        """``{fp_btc_pk, height, voting_power, state, jailed_until, missed_blocks}``; state: slashed |
        jailed | active | standby; missed_blocks: misses in the current liveness window (when jailed,
        the misses that jailed it)."""
        if height is None:
            height = int(st.get("last_power_height", 0))
        power = self.voting_power(st, ctx, fp, height) if height else 0
        is_slashed = getattr(self.hooks, "is_slashed", None)
        jailed = st.get("jailed/" + fp)
        if st.has("slashed/" + fp) or (callable(is_slashed) and is_slashed(ctx, fp)):
            state = "slashed"
        elif jailed is not None:
            state = "jailed"
        else:
            state = "active" if power > 0 else "standby"
        missed = len(st.get("missed/" + fp, [])) or (int(jailed.get("missed", 0)) if jailed else 0)
        return {"fp_btc_pk": fp, "height": height, "voting_power": power, "state": state,
                "jailed_until": jailed["jailed_until"] if jailed else None, "missed_blocks": missed}

    # ----------------------------------------------------------------------------- execute
    def commit_pub_rand_list(self, st: JsonStore, ctx: Any, cur_height: int, body: dict, emit: Emit) -> dict:
        """Store a signed commitment to the FP's public randomness for [start, start+num)."""
        fp = _fp(body)
        start, num = _uint(body, "start_height"), _uint(body, "num_pub_rand")
        commitment, sig = _hex(body, "commitment", 32), _hex(body, "sig", 64)
        self._check_fp(st, ctx, fp)
        p = self.params(st)
        if num < p["min_pub_rand"]:
            raise InvalidPubRandCommit(f"num_pub_rand {num} below minimum {p['min_pub_rand']}")
        if num > p["max_pub_rand"]:
            raise InvalidPubRandCommit(f"num_pub_rand {num} above maximum {p['max_pub_rand']}")
        if start <= cur_height:
            raise PubRandStartTooLow(f"start_height {start} is not above the current height {cur_height} "
                                     "(randomness for heights already past cannot be committed)")
        if start + num > U64_MAX:
            raise InvalidPubRandCommit("start_height + num_pub_rand overflows uint64")
        if start >= cur_height + p["max_start_ahead"]:
            raise InvalidPubRandCommit(f"start_height {start} too far ahead of current height {cur_height} "
                                       f"(limit {p['max_start_ahead']})")
        commits = st.get("commits/" + fp, [])
        if commits:
            last_end = commits[-1]["start_height"] + commits[-1]["num_pub_rand"] - 1
            if start <= last_end:
                raise PubRandOverlap(f"start_height {start} overlaps the previous commit ending at {last_end}")
        if not eots.verify_pub_rand_commit(bytes.fromhex(fp), start, num, commitment, sig):
            raise InvalidPubRandCommit("pub rand commit signature does not verify under fp_btc_pk")
        commits.append({"start_height": start, "num_pub_rand": num, "commitment": commitment.hex(),
                        "committed_height": cur_height})
        st.set("commits/" + fp, commits)
        emit("commit_pub_rand_list", {"fp_btc_pk": fp, "start_height": str(start), "num_pub_rand": str(num)})
        return {"fp_btc_pk": fp, "start_height": start, "num_pub_rand": num}

    def add_finality_sig(self, st: JsonStore, ctx: Any, cur_height: int, body: dict, emit: Emit) -> dict:
        """Verify and record an EOTS finality vote; slash on equivocation. Returns
        ``{fp_btc_pk, block_height, result}`` with result ``voted | duplicate | fork_vote | slashed``."""
        fp = _fp(body)
        height = _uint(body, "block_height")
        pub_rand, app_hash = _hex(body, "pub_rand", 32), _hex(body, "block_app_hash", 32)
        sig = _hex(body, "finality_sig", 32)
        proof = _proof(body)
        self._check_fp(st, ctx, fp)
        if self.hooks.knows_blocks and height > cur_height:
            raise UnknownBlock(f"no block at height {height} yet (current height {cur_height})")
        if self.voting_power(st, ctx, fp, height) <= 0:
            raise NoVotingPower(f"finality provider {fp} has no voting power at height {height}")
        commit = self.commit_for(st, fp, height)
        if commit is None:
            raise PubRandNotCommitted(f"finality provider {fp} has no public randomness committed for height {height}")
        if proof.index != height - commit["start_height"]:
            raise InvalidPubRandProof(
                f"proof index {proof.index} != height - start_height = {height - commit['start_height']}")
        if proof.total != commit["num_pub_rand"]:
            raise InvalidPubRandProof(f"proof total {proof.total} != committed num_pub_rand {commit['num_pub_rand']}")
        try:
            ok = eots.verify_pub_rand_proof(bytes.fromhex(commit["commitment"]), pub_rand, proof)
        except StakingError as exc:
            raise InvalidPubRandProof(f"bad merkle proof: {exc}") from exc
        if not ok:
            raise InvalidPubRandProof("merkle proof does not show pub_rand under the committed root")
        try:
            ok = eots.verify(bytes.fromhex(fp), pub_rand, eots.vote_message(height, app_hash), sig)
        except StakingError as exc:
            raise InvalidFinalitySig(f"bad finality signature: {exc}") from exc
        if not ok:
            raise InvalidFinalitySig("EOTS signature does not verify over vote_message(height, app_hash)")
        canonical = self.hooks.canonical_app_hash(ctx, height)
        if canonical is None and self.hooks.knows_blocks:
            raise UnknownBlock(f"no block at height {height} yet (current height {cur_height})")

        vote = {"fp_btc_pk": fp, "block_height": height, "app_hash": app_hash.hex(), "pub_rand": pub_rand.hex(),
                "finality_sig": sig.hex()}
        out = {"fp_btc_pk": fp, "block_height": height}
        vkey, fkey = f"vote/{_hkey(height)}/{fp}", f"fork/{_hkey(height)}/{fp}"
        existing, fork = st.get(vkey), st.get(fkey)
        if canonical is not None and app_hash != canonical:  # a vote on a fork
            if fork is not None and fork["app_hash"] == vote["app_hash"]:
                return dict(out, result="duplicate")
            if existing is None:
                st.set(fkey, vote)
                emit("fork_vote", {"fp_btc_pk": fp, "block_height": str(height), "app_hash": vote["app_hash"]})
                return dict(out, result="fork_vote")
            return self._equivocation(st, ctx, cur_height, out, existing, vote, emit)
        if existing is not None:
            if existing["app_hash"] == vote["app_hash"]:
                return dict(out, result="duplicate")
            # no canonical hash known: the first accepted vote is the canonical one
            return self._equivocation(st, ctx, cur_height, out, existing, vote, emit)
        st.set(vkey, vote)
        emit("finality_vote", {"fp_btc_pk": fp, "block_height": str(height), "app_hash": vote["app_hash"]})
        if fork is not None:
            return self._equivocation(st, ctx, cur_height, out, vote, fork, emit)
        return dict(out, result="voted")

    def _equivocation(self, st: JsonStore, ctx: Any, cur_height: int, out: dict, canon: dict, fork: dict,
                      emit: Emit) -> dict:
        fp, height = canon["fp_btc_pk"], canon["block_height"]
        if canon["pub_rand"] != fork["pub_rand"]:  # impossible with non-overlapping commits; guard anyway
            raise InvalidPubRandProof("equivocating votes use different public randomness")
        evidence = {
            "fp_btc_pk": fp,
            "block_height": height,
            "pub_rand": canon["pub_rand"],
            "canonical_app_hash": canon["app_hash"],
            "fork_app_hash": fork["app_hash"],
            "canonical_finality_sig": canon["finality_sig"],
            "fork_finality_sig": fork["finality_sig"],
        }
        sk = extract_from_evidence(evidence)
        st.set("evidence/" + fp, st.get("evidence/" + fp, []) + [evidence])
        st.set("slashed/" + fp, {"fp_btc_pk": fp, "slashed_height": cur_height, "block_height": height,
                                 "extracted_btc_sk": sk.hex()})
        st.delete(f"fork/{_hkey(height)}/{fp}")
        self.hooks.slash_finality_provider(ctx, fp, evidence, sk)
        emit("slashed_finality_provider", {
            "fp_btc_pk": fp, "block_height": str(height), "canonical_app_hash": evidence["canonical_app_hash"],
            "fork_app_hash": evidence["fork_app_hash"], "extracted_btc_sk": sk.hex()})
        return dict(out, result="slashed", evidence=evidence, extracted_btc_sk=sk.hex())

    # ----------------------------------------------------------------------------- queries
    _query_ctx: Any = None

    def query(self, st: JsonStore, msg: Any, ctx: Any = None) -> Any:
        """Dispatch a smart query ``{name: body}``."""
        self._query_ctx = ctx
        if not isinstance(msg, dict) or len(msg) != 1:
            raise InvalidFinalityMsg("query must be a JSON object with exactly one key")
        (name, body), = msg.items()
        fn = getattr(self, "q_" + str(name), None)
        if fn is None:
            raise InvalidFinalityMsg(f"finality: unknown query `{name}`")
        return fn(st, body or {})

    def q_params(self, st: JsonStore, body: dict) -> dict:
        return self.params(st)

    def q_block_app_hash(self, st: JsonStore, body: dict) -> dict:
        """The recorded app hash of block ``height`` (what votes are checked against), or null."""
        height = _uint(body, "height")
        return {"height": height, "app_hash": st.get("apphash/" + _hkey(height))}

    def q_status(self, st: JsonStore, body: dict) -> dict:
        """``{}`` → ``{height, last_finalized_height, activated_height}`` (height: the latest committed
        block; a randomness commit must start above the height of the block that includes it)."""
        ctx = self._query_ctx
        return {"height": int(getattr(ctx, "height", 0) or 0), "last_finalized_height": st.get("last_finalized_height"),
                "activated_height": st.get("activated_height")}

    def q_voting_power_table(self, st: JsonStore, body: dict) -> dict:
        """``{height}`` → ``{height, total_power, finality_providers: [{fp_btc_pk, voting_power}]}``."""
        height = _uint(body, "height")
        table = st.get("power/" + _hkey(height)) or {"total": 0, "finality_providers": []}
        return {"height": height, "total_power": table["total"],
                "finality_providers": [{"fp_btc_pk": fp, "voting_power": p} for fp, p in table["finality_providers"]]}

    def q_last_finalized_height(self, st: JsonStore, body: dict) -> dict:
        """``{}`` → ``{height | null, activated_height | null}``."""
        return {"height": st.get("last_finalized_height"), "activated_height": st.get("activated_height")}

    def q_block(self, st: JsonStore, body: dict) -> dict:
        """``{height}`` → ``{height, app_hash, status: finalized | pending | no_power | unknown,
        finalized, voted_power, total_power}``."""
        height = _uint(body, "height")
        app_hash = st.get("apphash/" + _hkey(height))
        table = st.get("power/" + _hkey(height))
        fin = st.get("finalized/" + _hkey(height))
        if fin is not None:
            status = "finalized"
        elif app_hash is None and table is None:
            status = "unknown"
        elif table is None or not table["finality_providers"]:
            status = "no_power"
        else:
            status = "pending"
        total = table["total"] if table else 0
        voted = fin["voted_power"] if fin else (self._voted_power(st, height, table) if table else 0)
        return {"height": height, "app_hash": app_hash, "status": status, "finalized": fin is not None,
                "voted_power": voted, "total_power": total}

    def q_finality_provider(self, st: JsonStore, body: dict) -> dict:
        """``{fp_btc_pk, height?}`` → ``{fp_btc_pk, height, voting_power, state, jailed_until, missed_blocks}``
        (height: the latest block with a power table by default)."""
        fp = _fp(body)
        height = _uint(body, "height") if body.get("height") is not None else None
        return self.fp_state(st, self._query_ctx, fp, height)

    def q_jailed(self, st: JsonStore, body: dict) -> dict:
        """``{}`` → ``{finality_providers: [{fp_btc_pk, jailed_height, jailed_until, ...}]}``."""
        return {"finality_providers": [v for _, v in st.items("jailed/")]}

    def q_pub_rand_commits(self, st: JsonStore, body: dict) -> dict:
        fp = _fp(body)
        return {"fp_btc_pk": fp, "commits": st.get("commits/" + fp, [])}

    def q_votes_at_height(self, st: JsonStore, body: dict) -> dict:
        height = _uint(body, "height")
        votes = [v for _, v in st.items(f"vote/{_hkey(height)}/")]
        return {"height": height, "votes": votes}

    def q_vote(self, st: JsonStore, body: dict) -> dict:
        fp, height = _fp(body), _uint(body, "height")
        return {"vote": st.get(f"vote/{_hkey(height)}/{fp}")}

    def q_evidence(self, st: JsonStore, body: dict) -> dict:
        fp = _fp(body)
        return {"fp_btc_pk": fp, "evidence": st.get("evidence/" + fp, [])}

    def q_list_evidence(self, st: JsonStore, body: dict) -> dict:
        start_after = body.get("start_after")
        if start_after is not None and not isinstance(start_after, str):
            raise InvalidFinalityMsg("start_after must be a hex fp key")
        limit = body.get("limit", 100)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= 1000:
            raise InvalidFinalityMsg("limit must be an int in 1..1000")
        out: list[dict] = []
        for key, evs in st.items("evidence/"):
            fp = key[len("evidence/"):]
            if start_after is not None and fp <= start_after:
                continue
            out.extend(evs)
            if len(out) >= limit:
                break
        return {"evidence": out[:limit]}

    def q_is_slashed(self, st: JsonStore, body: dict) -> dict:
        fp = _fp(body)
        s = st.get("slashed/" + fp)
        return {"fp_btc_pk": fp, "slashed": s is not None,
                "slashed_height": s["slashed_height"] if s else None,
                "block_height": s["block_height"] if s else None,
                "extracted_btc_sk": s["extracted_btc_sk"] if s else None}

    def q_slashed_finality_providers(self, st: JsonStore, body: dict) -> dict:
        return {"finality_providers": [v for _, v in st.items("slashed/")]}


# --------------------------------------------------------------------------------------- hosts
@register_module
class FinalityModule(Module):
    """The chain's finality module (built-in contract ``module_address("finality")``).

    ``hooks`` default to :class:`cosmos_chain.modules.hooks.ChainFinalityHooks` (registry + block
    app hashes + mesh), set by ``ChainApp`` when it adds the module, so every ChainApp behaves the
    same. The app hash of block ``h`` is recorded at the start of
    block ``h+1`` (``apphash/<h20>``), which is what votes are checked against."""

    name = "finality"

    def __init__(self, hooks: FinalityHooks | None = None, params: dict | None = None) -> None:
        super().__init__()
        self.hooks = hooks
        self.genesis_params = params

    @property
    def core(self) -> FinalityCore:
        if self.hooks is None:
            raise ContractError("finality: no hooks set (ChainApp sets the chain hooks when it adds the module)")
        return FinalityCore(self.hooks)

    def init_genesis(self, ctx: Context, genesis: dict[str, Any]) -> None:
        FinalityCore.init_params(self.store(ctx), genesis.get("params", self.genesis_params))

    def begin_block(self, ctx: Context) -> None:
        """Index this block: its header app hash (CometBFT: the app hash after the previous block;
        votes for height h sign it, as Babylon's ``indexed_blocks``) and its voting-power table."""
        last = getattr(ctx.app, "last_app_hash", None)
        if callable(last):
            last = last()
        header = bytes(last) if isinstance(last, (bytes, bytearray)) and len(last) == 32 else None
        self.core.begin_block(self.store(ctx), ctx, ctx.height, header)

    def end_block(self, ctx: Context) -> None:
        """Finalize blocks (> 2/3 of the power voted, in height order) and check liveness."""
        self.core.end_block(self.store(ctx), ctx, ctx.height, ctx.time_unix, self._emitter(ctx))

    def app_hash_at(self, ctx: Context, height: int) -> bytes | None:
        """Recorded app hash of block ``height`` (None if not recorded)."""
        h = self.store(ctx).get("apphash/" + _hkey(height))
        return None if h is None else bytes.fromhex(h)

    @staticmethod
    def _emitter(ctx: Context) -> Emit:
        return lambda type_, attrs: ctx.emit(type_, **attrs)

    def exec_commit_pub_rand_list(self, ctx: Context, sender: str, body: dict, funds: list) -> dict:
        return self.core.commit_pub_rand_list(self.store(ctx), ctx, ctx.height, body, self._emitter(ctx))

    def exec_add_finality_sig(self, ctx: Context, sender: str, body: dict, funds: list) -> dict:
        return self.core.add_finality_sig(self.store(ctx), ctx, ctx.height, body, self._emitter(ctx))

    def exec_unjail_finality_provider(self, ctx: Context, sender: str, body: dict, funds: list) -> dict:
        return self.core.unjail_finality_provider(self.store(ctx), ctx, ctx.height, ctx.time_unix, sender, body,
                                                  self._emitter(ctx))

    def query(self, ctx: Context, msg: dict[str, Any]) -> Any:
        return self.core.query(self.store(ctx), msg, ctx)


class StandaloneFinality:
    """The same rules without a chain (tests, tools): a private store, all-or-nothing messages."""

    def __init__(self, hooks: FinalityHooks, height: int = 1, params: dict | None = None) -> None:
        self.core = FinalityCore(hooks)
        self.kv = RootKV()
        self.height = height
        self.time = 0.0
        self.events: list[tuple[str, dict[str, str]]] = []
        FinalityCore.init_params(JsonStore(self.kv, "finality"), params)

    def execute(self, msg: dict) -> dict:
        """Run one execute message; state and events are kept only if it succeeds."""
        if not isinstance(msg, dict) or len(msg) != 1:
            raise InvalidFinalityMsg("message must be a JSON object with exactly one key")
        (name, body), = msg.items()
        if name not in ("commit_pub_rand_list", "add_finality_sig", "unjail_finality_provider") \
                or not isinstance(body, dict):
            raise InvalidFinalityMsg(f"finality: unknown execute message `{name}`")
        cache = CacheKV(self.kv)
        events: list[tuple[str, dict[str, str]]] = []
        emit = lambda t, a: events.append((t, a))  # noqa: E731
        st = JsonStore(cache, "finality")
        if name == "unjail_finality_provider":
            out = self.core.unjail_finality_provider(st, self, self.height, self.time, None, body, emit)
        else:
            out = getattr(self.core, name)(st, self, self.height, body, emit)
        cache.write()
        self.events.extend(events)
        return out

    def next_block(self, app_hash: bytes | None = None, time: float | None = None) -> None:
        """Run one block: begin (index ``app_hash``, record the power table) and end (tally, liveness)."""
        self.height += 1
        self.time = self.time + 1.0 if time is None else time
        st = JsonStore(self.kv, "finality")
        self.core.begin_block(st, self, self.height, app_hash)
        self.core.end_block(st, self, self.height, self.time, lambda t, a: self.events.append((t, a)))

    def query(self, msg: dict) -> Any:
        return self.core.query(JsonStore(self.kv, "finality"), msg, self)


def extract_from_evidence(evidence: dict) -> bytes:
    """Extract the FP's secret key from an evidence record; checks x'·G matches the FP key."""
    try:
        fp = bytes.fromhex(evidence["fp_btc_pk"])
        height = int(evidence["block_height"])
        pr = bytes.fromhex(evidence["pub_rand"])
        m1 = eots.vote_message(height, bytes.fromhex(evidence["canonical_app_hash"]))
        m2 = eots.vote_message(height, bytes.fromhex(evidence["fork_app_hash"]))
        sk = eots.extract_secret(fp, pr, m1, bytes.fromhex(evidence["canonical_finality_sig"]),
                                 m2, bytes.fromhex(evidence["fork_finality_sig"]))
    except (KeyError, TypeError) as exc:
        raise InvalidFinalityMsg(f"malformed evidence: {exc}") from exc
    except StakingError as exc:
        raise InvalidFinalitySig(f"cannot extract a key from the evidence: {exc}") from exc
    if xonly_from_secret(sk) != fp:
        raise InvalidFinalitySig("extracted key does not match fp_btc_pk")
    return sk


