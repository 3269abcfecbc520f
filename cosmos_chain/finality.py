"""Finality module: EOTS public-randomness commitments, finality votes, equivocation slashing.

A built-in CosmWasm-style contract (Babylon ``x/finality`` semantics, spec §4). JSON messages:

Execute
  ``commit_pub_rand_list {fp_btc_pk, start_height, num_pub_rand, commitment, sig}``
      hex fields; ``sig`` is the FP's BIP-340 signature over
      ``SHA256(uint64_be(start) || uint64_be(num) || commitment)``. The FP must be registered
      and not slashed; ``min_pub_rand <= num <= max_pub_rand``; ``1 <= start`` and
      ``start < current_height + max_start_ahead``; no overlap with the FP's last commit.
  ``add_finality_sig {fp_btc_pk, block_height, pub_rand, proof, block_app_hash, finality_sig}``
      ``proof`` = ``{total, index, leaf_hash, aunts[]}`` (CometBFT merkle proof). Checks, in
      order: FP registered and not slashed; a commit covers the height; ``proof.index ==
      height - start``; ``proof.total == num``; the proof shows ``pub_rand`` under the
      commitment; ``eots.verify(fp, pub_rand, vote_message(height, app_hash), sig)``.

Equivocation: two valid votes by one FP at one height on different app hashes. The module
records evidence ``{fp_btc_pk, block_height, pub_rand, canonical_app_hash, fork_app_hash,
canonical_finality_sig, fork_finality_sig}``, extracts the FP's secret key with
``btc_staking.eots.extract_secret`` (which checks ``x'·G == fp_pk``), marks the FP slashed,
asks the host to slash it in the staking registry / mesh (``FinalityHooks.slash_finality_provider``)
and emits a ``slashed_finality_provider`` event carrying the extracted key.

"Canonical" is the app hash the host reports for that height (``FinalityHooks.canonical_app_hash``);
when the host cannot tell, the first vote the module accepted is the canonical one. A vote on a
non-canonical hash before the FP voted canonically is kept as a *fork vote* and turned into
evidence as soon as the canonical vote arrives (Babylon keeps it as evidence the same way).
Re-sending the very same vote is idempotent (accepted, no state change, ``duplicate=true``).

Queries
  ``params {}``; ``pub_rand_commits {fp_btc_pk}``; ``votes_at_height {height}`` →
  ``{height, votes: [{fp_btc_pk, app_hash, pub_rand, finality_sig}]}``;
  ``vote {fp_btc_pk, height}`` → ``{vote: {...} | null}``; ``evidence {fp_btc_pk}`` →
  ``{evidence: [...]}``; ``list_evidence {start_after?, limit?}`` → ``{evidence: [...]}``
  (ordered by fp key, then height); ``is_slashed {fp_btc_pk}`` → ``{fp_btc_pk, slashed,
  slashed_height, block_height, extracted_btc_sk}``; ``slashed_finality_providers {}`` →
  ``{finality_providers: [...]}``.

State is JSON only (hex strings, int heights), so ``to_state`` is deterministic. Every message
runs on a copy of the state that is swapped in only on success (``Contract.execute``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from btc_staking import eots
from btc_staking.errors import StakingError
from btc_staking.keys import lift_x, xonly_from_secret
from mesh_adapter.framework import Contract, ExecCtx, Response, clamp_page_limit

__all__ = [
    "FinalityError",
    "InvalidFinalityMsg",
    "UnknownFinalityProvider",
    "FinalityProviderSlashed",
    "InvalidPubRandCommit",
    "PubRandOverlap",
    "PubRandNotCommitted",
    "InvalidPubRandProof",
    "InvalidFinalitySig",
    "UnknownBlock",
    "FinalityHooks",
    "StaticHooks",
    "FinalityModule",
    "DEFAULT_PARAMS",
]

U64_MAX = 2**64 - 1
DEFAULT_PARAMS: dict[str, int] = {"min_pub_rand": 1, "max_pub_rand": 100_000, "max_start_ahead": 160_000}


# --------------------------------------------------------------------------------------- errors
class FinalityError(ValueError):
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
    """What the module needs from its host chain. ``knows_blocks``: True when
    ``canonical_app_hash`` answers for every produced height (votes on unknown heights are then refused)."""

    knows_blocks: bool

    def is_registered(self, fp_btc_pk: str) -> bool:
        """Whether the FP (x-only hex) is registered in the staking registry."""

    def canonical_app_hash(self, height: int) -> bytes | None:
        """App hash of the chain's block at ``height``; None when unknown (first vote wins)."""

    def slash_finality_provider(self, ctx: ExecCtx, fp_btc_pk: str, evidence: dict, extracted_sk: bytes) -> list[dict]:
        """Slash the FP in the registry (and its delegations); return sub-messages to dispatch, if any.
        Raising aborts the whole vote (nothing is written)."""


@dataclass
class StaticHooks:
    """Stand-alone hooks: a fixed FP set, optional app-hash lookup, slashes recorded in a list."""

    registered: set[str]
    app_hashes: Callable[[int], bytes | None] | None = None
    slashed: list[str] | None = None
    knows_blocks: bool = False

    def is_registered(self, fp_btc_pk: str) -> bool:
        return fp_btc_pk in self.registered

    def canonical_app_hash(self, height: int) -> bytes | None:
        return None if self.app_hashes is None else self.app_hashes(height)

    def slash_finality_provider(self, ctx: ExecCtx, fp_btc_pk: str, evidence: dict, extracted_sk: bytes) -> list[dict]:
        if self.slashed is None:
            self.slashed = []
        self.slashed.append(fp_btc_pk)
        return []


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


# --------------------------------------------------------------------------------------- module
class FinalityModule(Contract):
    """Babylon-style finality module as a built-in contract; host-specific behaviour via hooks."""

    kind = "btcmesh-finality"

    def __init__(self, address: str, state: dict, hooks: FinalityHooks) -> None:
        super().__init__(address, state)
        self.hooks = hooks

    @classmethod
    def create(cls, address: str, hooks: FinalityHooks, params: dict | None = None) -> "FinalityModule":
        """Fresh module with ``DEFAULT_PARAMS`` overridden by ``params``."""
        p = dict(DEFAULT_PARAMS)
        for k, v in (params or {}).items():
            if k not in DEFAULT_PARAMS or not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise InvalidFinalityMsg(f"invalid finality param {k}={v!r}")
            p[k] = v
        if p["min_pub_rand"] > p["max_pub_rand"]:
            raise InvalidFinalityMsg("min_pub_rand must not exceed max_pub_rand")
        state = {"params": p, "commits": {}, "votes": {}, "fork_votes": {}, "evidence": {}, "slashed": {}}
        return cls(address, state, hooks)

    @classmethod
    def from_state(cls, data: dict, hooks: FinalityHooks | None = None) -> "FinalityModule":  # type: ignore[override]
        """Rebuild from ``to_state`` output (hooks are runtime wiring, not state)."""
        if data.get("kind") != cls.kind:
            raise InvalidFinalityMsg(f"state kind {data.get('kind')!r} is not {cls.kind!r}")
        if hooks is None:
            raise InvalidFinalityMsg("FinalityModule.from_state needs hooks")
        return cls(data["address"], copy.deepcopy(data["state"]), hooks)

    # ----------------------------------------------------------------------------- helpers
    def _check_fp(self, fp: str) -> None:
        if fp in self.state["slashed"]:
            raise FinalityProviderSlashed(f"finality provider {fp} is slashed")
        if not self.hooks.is_registered(fp):
            raise UnknownFinalityProvider(f"finality provider {fp} is not registered")

    def _commit_for(self, fp: str, height: int) -> dict | None:
        for c in reversed(self.state["commits"].get(fp, [])):
            if c["start_height"] <= height < c["start_height"] + c["num_pub_rand"]:
                return c
            if c["start_height"] + c["num_pub_rand"] <= height:
                break
        return None

    # ----------------------------------------------------------------------------- execute
    def exec_commit_pub_rand_list(self, ctx: ExecCtx, body: dict) -> Response:
        """Store a signed commitment to the FP's public randomness for [start, start+num)."""
        fp = _fp(body)
        start, num = _uint(body, "start_height"), _uint(body, "num_pub_rand")
        commitment, sig = _hex(body, "commitment", 32), _hex(body, "sig", 64)
        self._check_fp(fp)
        p = self.state["params"]
        if num < p["min_pub_rand"]:
            raise InvalidPubRandCommit(f"num_pub_rand {num} below minimum {p['min_pub_rand']}")
        if num > p["max_pub_rand"]:
            raise InvalidPubRandCommit(f"num_pub_rand {num} above maximum {p['max_pub_rand']}")
        if start < 1:
            raise InvalidPubRandCommit("start_height must be at least 1")
        if start + num > U64_MAX:
            raise InvalidPubRandCommit("start_height + num_pub_rand overflows uint64")
        if start >= ctx.block.height + p["max_start_ahead"]:
            raise InvalidPubRandCommit(
                f"start_height {start} too far ahead of current height {ctx.block.height} "
                f"(limit {p['max_start_ahead']})")
        commits = self.state["commits"].setdefault(fp, [])
        if commits:
            last_end = commits[-1]["start_height"] + commits[-1]["num_pub_rand"] - 1
            if start <= last_end:
                raise PubRandOverlap(f"start_height {start} overlaps the previous commit ending at {last_end}")
        if not eots.verify_pub_rand_commit(bytes.fromhex(fp), start, num, commitment, sig):
            raise InvalidPubRandCommit("pub rand commit signature does not verify under fp_btc_pk")
        commits.append({"start_height": start, "num_pub_rand": num, "commitment": commitment.hex(),
                        "committed_height": ctx.block.height})
        resp = Response().add_attribute("action", "commit_pub_rand_list").add_attribute("fp_btc_pk", fp)
        resp.add_attribute("start_height", start).add_attribute("num_pub_rand", num)
        return resp

    def exec_add_finality_sig(self, ctx: ExecCtx, body: dict) -> Response:
        """Verify and record an EOTS finality vote; slash on equivocation."""
        fp = _fp(body)
        height = _uint(body, "block_height")
        pub_rand, app_hash = _hex(body, "pub_rand", 32), _hex(body, "block_app_hash", 32)
        sig = _hex(body, "finality_sig", 32)
        proof = _proof(body)
        self._check_fp(fp)
        commit = self._commit_for(fp, height)
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

        vote = {"fp_btc_pk": fp, "app_hash": app_hash.hex(), "pub_rand": pub_rand.hex(), "finality_sig": sig.hex()}
        resp = Response().add_attribute("action", "add_finality_sig").add_attribute("fp_btc_pk", fp) \
            .add_attribute("block_height", height)
        key = str(height)
        votes = self.state["votes"].setdefault(key, {})
        forks = self.state["fork_votes"].setdefault(key, {})
        canonical = self.hooks.canonical_app_hash(height)
        if canonical is None and self.hooks.knows_blocks:
            raise UnknownBlock(f"no block at height {height} yet (current height {ctx.block.height})")
        existing = votes.get(fp)
        if canonical is not None and app_hash != canonical:
            # vote on a fork
            if fp in forks and forks[fp]["app_hash"] == vote["app_hash"]:
                return resp.add_attribute("duplicate", "true")
            if existing is None:
                forks[fp] = vote
                return resp.add_attribute("fork_vote", "true")
            return self._equivocation(ctx, resp, height, existing, vote)
        if existing is not None:
            if existing["app_hash"] == vote["app_hash"]:
                return resp.add_attribute("duplicate", "true")
            # no canonical hash known: the first accepted vote is canonical
            return self._equivocation(ctx, resp, height, existing, vote)
        votes[fp] = vote
        if fp in forks:
            return self._equivocation(ctx, resp, height, vote, forks[fp])
        return resp

    def _equivocation(self, ctx: ExecCtx, resp: Response, height: int, canon: dict, fork: dict) -> Response:
        fp = canon["fp_btc_pk"]
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
        self.state["evidence"].setdefault(fp, []).append(evidence)
        self.state["slashed"][fp] = {"slashed_height": ctx.block.height, "block_height": height,
                                     "extracted_btc_sk": sk.hex()}
        self.state["fork_votes"].get(str(height), {}).pop(fp, None)
        msgs = self.hooks.slash_finality_provider(ctx, fp, evidence, sk)
        resp.messages.extend(msgs or [])
        resp.add_attribute("equivocation", "true").add_attribute("slashed", fp)
        resp.events.append({"type": "slashed_finality_provider", "attributes": [
            {"key": "fp_btc_pk", "value": fp},
            {"key": "block_height", "value": str(height)},
            {"key": "canonical_app_hash", "value": evidence["canonical_app_hash"]},
            {"key": "fork_app_hash", "value": evidence["fork_app_hash"]},
            {"key": "extracted_btc_sk", "value": sk.hex()},
        ]})
        return resp

    # ----------------------------------------------------------------------------- queries
    def query_params(self, body: dict) -> dict:
        return dict(self.state["params"])

    def query_pub_rand_commits(self, body: dict) -> dict:
        fp = _fp(body)
        return {"fp_btc_pk": fp, "commits": copy.deepcopy(self.state["commits"].get(fp, []))}

    def query_votes_at_height(self, body: dict) -> dict:
        height = _uint(body, "height")
        votes = self.state["votes"].get(str(height), {})
        return {"height": height, "votes": [dict(votes[k]) for k in sorted(votes)]}

    def query_vote(self, body: dict) -> dict:
        fp, height = _fp(body), _uint(body, "height")
        vote = self.state["votes"].get(str(height), {}).get(fp)
        return {"vote": dict(vote) if vote else None}

    def query_evidence(self, body: dict) -> dict:
        fp = _fp(body)
        return {"evidence": copy.deepcopy(self.state["evidence"].get(fp, []))}

    def query_list_evidence(self, body: dict) -> dict:
        start_after = body.get("start_after")
        if start_after is not None and not isinstance(start_after, str):
            raise InvalidFinalityMsg("start_after must be a hex fp key")
        limit = clamp_page_limit(body.get("limit"), default=30, maximum=100)
        out = []
        for fp in sorted(self.state["evidence"]):
            if start_after is not None and fp <= start_after:
                continue
            out.extend(copy.deepcopy(self.state["evidence"][fp]))
            if len(out) >= limit:
                break
        return {"evidence": out[:limit]}

    def query_is_slashed(self, body: dict) -> dict:
        fp = _fp(body)
        s = self.state["slashed"].get(fp)
        return {"fp_btc_pk": fp, "slashed": s is not None,
                "slashed_height": s["slashed_height"] if s else None,
                "block_height": s["block_height"] if s else None,
                "extracted_btc_sk": s["extracted_btc_sk"] if s else None}

    def query_slashed_finality_providers(self, body: dict) -> dict:
        out = [{"fp_btc_pk": fp, **v} for fp, v in sorted(self.state["slashed"].items())]
        return {"finality_providers": out}


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


def exec_json(module: FinalityModule, ctx: ExecCtx, msg: dict[str, Any]) -> Response:
    """Convenience: execute a JSON message as ``ctx.sender``."""
    return module.execute(ctx, ctx.sender, msg)
