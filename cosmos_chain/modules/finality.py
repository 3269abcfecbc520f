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
  ``params {}``; ``block_app_hash {height}`` → ``{height, app_hash | null}`` (recorded at the
  start of block height+1); ``pub_rand_commits {fp_btc_pk}``; ``votes_at_height {height}`` →
  ``{height, votes: [{fp_btc_pk, app_hash, pub_rand, finality_sig}]}``;
  ``vote {fp_btc_pk, height}`` → ``{vote: {...} | null}``; ``evidence {fp_btc_pk}`` →
  ``{evidence: [...]}``; ``list_evidence {start_after?, limit?}`` → ``{evidence: [...]}``
  (ordered by fp key, then height); ``is_slashed {fp_btc_pk}`` → ``{fp_btc_pk, slashed,
  slashed_height, block_height, extracted_btc_sk}``; ``slashed_finality_providers {}`` →
  ``{finality_providers: [...]}``.

``FinalityModule`` is the chain module (``cosmos_chain.modules.base.Module``; state in its
JSON store, so a failing message leaves nothing behind: the tx journal is dropped);
``StandaloneFinality`` runs the same ``FinalityCore`` rules on a private store for tools/tests.
Execute results: ``{fp_btc_pk, start_height, num_pub_rand}`` for a commit;
``{fp_btc_pk, block_height, result: voted|duplicate|fork_vote|slashed, evidence?, extracted_btc_sk?}``
for a vote. Events: ``commit_pub_rand_list``, ``finality_vote``, ``fork_vote``,
``slashed_finality_provider {fp_btc_pk, block_height, canonical_app_hash, fork_app_hash, extracted_btc_sk}``.
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
DEFAULT_PARAMS: dict[str, int] = {"min_pub_rand": 1, "max_pub_rand": 100_000, "max_start_ahead": 160_000}


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


@dataclass
class StaticHooks:
    """Stand-alone hooks: a fixed FP set, optional app-hash lookup, slashes recorded in a list."""

    registered: set[str]
    app_hashes: Callable[[int], bytes | None] | None = None
    slashed: list[str] = field(default_factory=list)
    knows_blocks: bool = False

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
            if k not in DEFAULT_PARAMS or not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise InvalidFinalityMsg(f"invalid finality param {k}={v!r}")
            p[k] = v
        if p["min_pub_rand"] > p["max_pub_rand"]:
            raise InvalidFinalityMsg("min_pub_rand must not exceed max_pub_rand")
        st.set("params", p)

    @staticmethod
    def params(st: JsonStore) -> dict:
        return st.get("params") or dict(DEFAULT_PARAMS)

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
        if start < 1:
            raise InvalidPubRandCommit("start_height must be at least 1")
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
    def query(self, st: JsonStore, msg: Any) -> Any:
        """Dispatch a smart query ``{name: body}``."""
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
        """Record the previous block's app hash (votes for height h are checked against it)."""
        last = getattr(ctx.app, "last_app_hash", None)
        if callable(last):
            last = last()
        if ctx.height > 1 and isinstance(last, (bytes, bytearray)) and len(last) == 32:
            self.store(ctx).set("apphash/" + _hkey(ctx.height - 1), bytes(last).hex())

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

    def query(self, ctx: Context, msg: dict[str, Any]) -> Any:
        return self.core.query(self.store(ctx), msg)


class StandaloneFinality:
    """The same rules without a chain (tests, tools): a private store, all-or-nothing messages."""

    def __init__(self, hooks: FinalityHooks, height: int = 1, params: dict | None = None) -> None:
        self.core = FinalityCore(hooks)
        self.kv = RootKV()
        self.height = height
        self.events: list[tuple[str, dict[str, str]]] = []
        FinalityCore.init_params(JsonStore(self.kv, "finality"), params)

    def execute(self, msg: dict) -> dict:
        """Run one execute message; state and events are kept only if it succeeds."""
        if not isinstance(msg, dict) or len(msg) != 1:
            raise InvalidFinalityMsg("message must be a JSON object with exactly one key")
        (name, body), = msg.items()
        if name not in ("commit_pub_rand_list", "add_finality_sig") or not isinstance(body, dict):
            raise InvalidFinalityMsg(f"finality: unknown execute message `{name}`")
        cache = CacheKV(self.kv)
        events: list[tuple[str, dict[str, str]]] = []
        out = getattr(self.core, name)(JsonStore(cache, "finality"), self, self.height, body,
                                       lambda t, a: events.append((t, a)))
        cache.write()
        self.events.extend(events)
        return out

    def query(self, msg: dict) -> Any:
        return self.core.query(JsonStore(self.kv, "finality"), msg)


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


