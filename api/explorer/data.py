"""``ExplorerService``: assembles what the explorer pages show from the API's service and the chain.

Everything is read-only. Figures come from the ``/v2`` logic (``StakingService``: derived states,
TVL) and, through a ``ChainReader``, from the chain's registry, finality and mesh modules. A figure a
module does not report (voting power, missed blocks, last finalized height while other work adds
them) is ``None``, never invented.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from api.errors import ApiError, NotFoundError
from btc_staking.tx import Tx
from api.explorer.history import StatusLog, VirtualStakeRecorder
from api.explorer.models import (
    DelegationDetail,
    DelegationRow,
    MeshEvent,
    MeshOverview,
    OverviewPublic,
    ProviderDetail,
    ProviderRow,
    SlashingAmounts,
    StateTotal,
    TimelineStep,
    ValidatorInfo,
    VaultAccount,
    VirtualStakeHistory,
    VoteAtHeight,
)
from api.explorer.reader import FINALITY, MESH, REGISTRY, ChainReader
from api.service import StakingService, to_public
from api.source import DataSourceError
from api.states import DelegationState

MAX_VOTE_HEIGHTS = 500
FEED_PAGES = 50
"""At most this many pages (100 delegations each) of the registry's change feed per sample."""
DEFAULT_VOTE_HEIGHTS = 100
VOTE_QUERY_THREADS = 8
FINALIZED_QUERIES = ({"last_finalized_height": {}}, {"finalized_height": {}})
"""Finality queries that may report the last finalized height (the first that answers wins)."""


class NoChainDataError(ApiError):
    """503: this service reads no chain (e.g. an in-memory source), so the figure cannot be known."""

    def __init__(self, what: str) -> None:
        super().__init__(503, f"{what} needs a chain connection; this API reads none")


def _opt_int(v: Any) -> int | None:
    try:
        return None if v is None or v == "" or isinstance(v, bool) else int(v)
    except (TypeError, ValueError):
        return None


def _range_text(r: Any) -> str | None:
    """A vault ``ValueRange`` ``{low, high}`` as "n" or "low–high"."""
    if isinstance(r, dict) and "low" in r and "high" in r:
        return str(r["low"]) if str(r["low"]) == str(r["high"]) else f"{r['low']}–{r['high']}"
    return None if r is None else str(r)


class ExplorerService:
    """Read-side logic of the explorer routes."""

    def __init__(self, staking: StakingService, reader: ChainReader | None,
                 btc_tip: Callable[[], int] | None = None) -> None:
        self.staking = staking
        self.reader = reader
        self.btc_tip = btc_tip
        self.recorder = VirtualStakeRecorder(self.sample_virtual_stake) if reader is not None else None
        self.status_log = StatusLog()

    # ------------------------------------------------------------------ chain helpers
    def _need_reader(self, what: str) -> ChainReader:
        if self.reader is None:
            raise NoChainDataError(what)
        return self.reader

    def raw_providers(self) -> list[dict[str, Any]]:
        """The registry's finality-provider records (with ``validator``, ``slashed_height``...)."""
        if self.reader is None:
            return []
        return list(self.reader.query(REGISTRY, {"finality_providers": {}}).get("finality_providers") or [])

    def virtual_stake_of(self, validator: str) -> int | None:
        """Mesh virtual stake on one validator (None without mesh or validator)."""
        if self.reader is None or not validator:
            return None
        reply = self.reader.try_query(MESH, {"adapter": {"validator_virtual_stake": {"validator": validator}}})
        return _opt_int((reply or {}).get("virtual_stake"))

    def validator_state(self, validator: str) -> tuple[str | None, list[list[Any]]]:
        """(current state, [[height, state], ...]) of a validator in the external staking contract."""
        if self.reader is None or not validator:
            return None, []
        reply = self.reader.try_query(MESH, {"external_staking": {"validator": {"valoper": validator}}}) or {}
        history = [e for e in reply.get("history") or [] if isinstance(e, list) and len(e) == 2]
        return reply.get("state"), history

    def slash_heights(self, fp_btc_pk: str) -> tuple[int | None, int | None]:
        """(chain height the FP was slashed at, height of its double vote) per the finality module."""
        if self.reader is None:
            return None, None
        reply = self.reader.try_query(FINALITY, {"is_slashed": {"fp_btc_pk": fp_btc_pk}}) or {}
        if not reply.get("slashed"):
            return None, None
        return _opt_int(reply.get("slashed_height")), _opt_int(reply.get("block_height"))

    def finality_status(self, fp_btc_pk: str) -> dict[str, Any]:
        """The finality module's view of a provider (``voting_power``, ``state``...), {} if it has none."""
        if self.reader is None:
            return {}
        reply = self.reader.try_query(FINALITY, {"finality_provider": {"fp_btc_pk": fp_btc_pk}})
        return reply if isinstance(reply, dict) else {}

    def last_finalized_height(self) -> int | None:
        """What the finality module reports as finalized, if it reports it."""
        if self.reader is None:
            return None
        for msg in FINALIZED_QUERIES:
            reply = self.reader.try_query(FINALITY, msg)
            if isinstance(reply, dict):
                for key in ("last_finalized_height", "finalized_height", "height"):
                    if _opt_int(reply.get(key)) is not None:
                        return _opt_int(reply.get(key))
            elif _opt_int(reply) is not None:
                return _opt_int(reply)
        return None

    # ------------------------------------------------------------------ overview
    def overview(self) -> OverviewPublic:
        """The overview numbers (TVL by state, stakers, tips, heights, virtual stake)."""
        svc = self.staking
        tip = svc.source.btc_tip_height()
        pairs = [(r, to_public(r, tip).state) for r in svc._records()]  # noqa: SLF001 - same records as /v2
        totals = {s: [0, 0] for s in DelegationState}
        for rec, state in pairs:
            totals[state][0] += 1
            totals[state][1] += rec.staking_amount
        active = [r for r, s in pairs if s is DelegationState.ACTIVE]
        validators = [str(fp.get("validator") or "") for fp in self.raw_providers()]
        stakes = [self.virtual_stake_of(v) for v in validators if v]
        known = [s for s in stakes if s is not None]
        btc_tip = None
        if self.btc_tip is not None:
            try:
                btc_tip = int(self.btc_tip())
            except Exception:  # noqa: BLE001 - the BTC node is optional: shown as "—"
                btc_tip = None
        return OverviewPublic(
            btc_tip_height=btc_tip,
            light_client_tip_height=tip,
            chain_height=self.reader.chain_height() if self.reader else None,
            last_finalized_height=self.last_finalized_height(),
            tvl_by_state=[StateTotal(state=s, delegations=n, sat=sat) for s, (n, sat) in totals.items()],
            active_tvl=sum(r.staking_amount for r in active),
            total_stakers=len({r.staker_pk_hex for r, _ in pairs}),
            active_stakers=len({r.staker_pk_hex for r in active}),
            total_delegations=len(pairs),
            total_finality_providers=len(svc.source.list_finality_providers()),
            total_virtual_stake=sum(known) if known else (0 if self.reader and not validators else None),
        )

    # ------------------------------------------------------------------ providers
    def providers(self) -> list[ProviderRow]:
        """The providers table, largest active stake first."""
        svc = self.staking
        raw = {str(fp.get("btc_pk")): fp for fp in self.raw_providers()}
        records = svc._records()  # noqa: SLF001
        rows = []
        for fp in svc.finality_providers():
            r = raw.get(fp.btc_pk, {})
            validator = str(r.get("validator") or "")
            slashed_at, double_vote_at = self.slash_heights(fp.btc_pk) if fp.state == "slashed" else (None, None)
            fin = self.finality_status(fp.btc_pk)
            state = fin.get("state") if fin.get("state") in ("active", "standby", "jailed", "slashed") else fp.state
            if fp.state == "slashed":
                state = "slashed"
            rows.append(ProviderRow(
                btc_pk=fp.btc_pk, moniker=fp.description.moniker, validator=validator, state=state,
                voting_power=_opt_int(fin.get("voting_power", r.get("voting_power"))),
                delegations=sum(1 for d in records if fp.btc_pk in d.fp_pks_hex),
                active_sat=fp.active_tvl, virtual_stake=self.virtual_stake_of(validator),
                missed_blocks=_opt_int(fin.get("missed_blocks", fin.get("missed", r.get("missed_blocks")))),
                slashed_height=slashed_at if slashed_at is not None else _opt_int(r.get("slashed_height")),
                double_vote_height=double_vote_at,
                commission=fp.commission,
            ))
        return rows

    def provider(self, btc_pk: str, before_height: int | None = None,
                 limit: int = DEFAULT_VOTE_HEIGHTS) -> ProviderDetail:
        """A provider page: row, delegations, votes per height (scanning its committed heights)."""
        row = next((p for p in self.providers() if p.btc_pk == btc_pk), None)
        if row is None:
            raise NotFoundError(f"finality provider {btc_pk} not found")
        tip = self.staking.source.btc_tip_height()
        dels = [to_public(r, tip) for r in self.staking._records() if btc_pk in r.fp_pks_hex]  # noqa: SLF001
        votes: list[VoteAtHeight] = []
        lo = hi = None
        extracted = False
        if self.reader is not None:
            votes, lo, hi = self._votes(btc_pk, before_height, max(1, min(limit, MAX_VOTE_HEIGHTS)))
            slashed = self.reader.try_query(FINALITY, {"is_slashed": {"fp_btc_pk": btc_pk}}) or {}
            extracted = bool(slashed.get("extracted_btc_sk"))
        return ProviderDetail(provider=row, delegations=dels, votes=votes, votes_from_height=lo,
                              votes_to_height=hi, extracted_key_known=extracted)

    def _votes(self, fp: str, before: int | None, limit: int) -> tuple[list[VoteAtHeight], int | None, int | None]:
        """Votes at the newest ``limit`` heights the FP committed randomness for (votes need it), plus
        every height with evidence of a double vote."""
        reader = self._need_reader("votes")
        top = reader.chain_height()
        if before is not None:
            top = min(top, before - 1)
        commits = (reader.try_query(FINALITY, {"pub_rand_commits": {"fp_btc_pk": fp}}) or {}).get("commits") or []
        heights: list[int] = []
        for c in sorted(commits, key=lambda c: -int(c["start_height"])):
            start, num = int(c["start_height"]), int(c["num_pub_rand"])
            h = min(top, start + num - 1)
            while h >= start and len(heights) < limit:
                heights.append(h)
                h -= 1
            if len(heights) >= limit:
                break
        evidence = (reader.try_query(FINALITY, {"evidence": {"fp_btc_pk": fp}}) or {}).get("evidence") or []
        forks = {int(e["block_height"]): e for e in evidence}
        scan = sorted(set(heights) | set(forks), reverse=True)
        with ThreadPoolExecutor(max_workers=VOTE_QUERY_THREADS) as pool:  # one query per height: overlap them
            votes = list(pool.map(
                lambda h: (reader.try_query(FINALITY, {"vote": {"fp_btc_pk": fp, "height": h}}) or {}).get("vote"),
                scan))
        out = []
        for h, vote in zip(scan, votes):
            ev = forks.get(h)
            if vote is None and ev is None:
                continue
            app_hash = (vote or {}).get("app_hash") or (ev or {}).get("canonical_app_hash")
            out.append(VoteAtHeight(height=h, app_hash=app_hash, double_vote=ev is not None,
                                    fork_app_hash=(ev or {}).get("fork_app_hash")))
        return out, (min(heights) if heights else None), (max(heights) if heights else None)

    # ------------------------------------------------------------------ delegations
    def delegations(self, states: Iterable[DelegationState] | None = None, search: str = "",
                    limit: int = 200) -> list[DelegationRow]:
        """All delegations (newest BTC height first), filtered by state and by staker key / tx hash."""
        tip = self.staking.source.btc_tip_height()
        wanted = set(states or ())
        needle = search.strip().lower()
        if len(needle) == 66 and needle[:2] in ("02", "03"):
            needle = needle[2:]  # a compressed staker key: compare its x-only part
        rows = []
        for rec in self.staking._records():  # noqa: SLF001
            pub = to_public(rec, tip)
            if wanted and pub.state not in wanted:
                continue
            if needle and needle not in (rec.staking_tx_hash_hex, rec.staker_pk_hex):
                continue
            rows.append(DelegationRow(
                staking_tx_hash_hex=rec.staking_tx_hash_hex, staker_btc_pk_hex=rec.staker_pk_hex,
                finality_provider_btc_pks_hex=list(rec.fp_pks_hex), staking_amount=rec.staking_amount,
                state=pub.state, start_height=rec.start_height))
        rows.sort(key=lambda r: (-(r.start_height or 10**12), r.staking_tx_hash_hex))
        return rows[:limit]

    def delegation(self, staking_tx_hash: str) -> DelegationDetail:
        """A delegation page: its API view, timeline, slashing amounts and mesh record."""
        public = self.staking.get_delegation(staking_tx_hash)  # NotFoundError for an unknown hash
        raw: dict[str, Any] = {}
        mesh = None
        fps: dict[str, dict[str, Any]] = {}
        if self.reader is not None:
            raw = (self.reader.query(REGISTRY, {"delegation": {"staking_tx_hash": staking_tx_hash}}) or {}
                   ).get("delegation") or {}
            fps = {str(f.get("btc_pk")): f for f in self.raw_providers()}
            m = self.reader.try_query(MESH, {"adapter": {"delegation": {"staking_tx_hash": staking_tx_hash}}})
            rec = (m or {}).get("delegation")
            if isinstance(rec, dict):
                mesh = {k: v if isinstance(v, (int, type(None))) else str(v) for k, v in rec.items()
                        if isinstance(v, (str, int, float, type(None))) and not isinstance(v, bool)}
            try:
                self.sync_statuses()
            except DataSourceError:
                pass  # the timeline keeps what was synced before
        params = {p.version: p for p in self.staking.source.params()}
        p = params.get(public.params_version)
        depth = p.btc_confirmation_depth if p else None
        slashing = self._slashing_amounts(raw, public.state)
        return DelegationDetail(delegation=public, chain_status=str(raw.get("status") or ""),
                                timeline=self._timeline(public, raw, fps, depth, p.covenant_quorum if p else None,
                                                        slashing),
                                slashing=slashing, mesh=mesh)

    @staticmethod
    def _slashing_amounts(raw: dict[str, Any], state: DelegationState) -> SlashingAmounts | None:
        """Burned / returned / fee of the slashing tx a slashed delegation's stake went through."""
        if state is not DelegationState.SLASHED and not raw.get("slashing_btc_txid"):
            return None
        path = str(raw.get("slashing_btc_path") or "slashing_tx")
        if path == "slashing_tx" and raw.get("unbonding_height") is not None and not raw.get("slashing_btc_txid"):
            path = "unbonding_slashing_tx"  # unbonded before the slash: only the unbonding output is left
        hex_tx = raw.get(path)
        if not hex_tx:
            return None
        tx = Tx.parse(bytes.fromhex(hex_tx))
        input_sat = int(raw.get("staking_value" if path == "slashing_tx" else "unbonding_value") or 0)
        outs = [o.value for o in tx.outputs]
        burned = outs[0] if outs else 0
        returned = outs[1] if len(outs) > 1 else 0
        return SlashingAmounts(slashing_txid=tx.txid_hex(), path=path, input_sat=input_sat, burned_sat=burned,
                               returned_sat=returned, fee_sat=max(0, input_sat - sum(outs)),
                               reported_on_chain=bool(raw.get("slashing_btc_txid")),
                               btc_height=_opt_int(raw.get("slashing_btc_height")))

    def _timeline(self, public: Any, raw: dict[str, Any], fps: dict[str, dict[str, Any]], depth: int | None,
                  quorum: int | None, slashing: SlashingAmounts | None) -> list[TimelineStep]:
        """Locked → k-deep → attested → covenant-signed → ACTIVE → unbonding / slashed → withdrawn."""
        slash_heights = self.slash_heights
        seen = self.status_log.heights(public.delegation_staking.staking_tx_hash_hex)
        signed_at = min((seen[s] for s in ("VERIFIED", "ACTIVE") if s in seen), default=None)
        st = public.delegation_staking
        state = public.state
        txid = st.staking_tx_hash_hex
        start = st.start_height
        sigs = len(raw.get("covenant_sigs") or [])
        signed = bool(raw.get("has_covenant_quorum")) or state not in (DelegationState.PENDING,)
        reached_active = start is not None and signed and state is not DelegationState.PENDING \
            and state is not DelegationState.VERIFIED
        steps = [
            TimelineStep(step="locked", label="Locked on Bitcoin", done=start is not None, btc_height=start,
                         txid=txid, detail=f"{st.staking_amount:,} sat for {st.staking_timelock} blocks"),
            TimelineStep(step="k_deep", label=f"{depth if depth is not None else 'k'} blocks deep",
                         done=start is not None,
                         btc_height=(start + depth) if start is not None and depth is not None else None, txid=txid),
            TimelineStep(step="attested", label="Attested on the chain", done=bool(raw) or st.bbn_inception_height
                         is not None, chain_height=st.bbn_inception_height,
                         detail="inclusion proof checked against the BTC light client"),
            TimelineStep(step="covenant_signed", label="Covenant-signed", done=signed, chain_height=signed_at,
                         detail=(f"{sigs} covenant signature{'s' if sigs != 1 else ''}"
                                 + (f" (quorum {quorum})" if quorum else "")) if raw else ""),
            TimelineStep(step="active", label="ACTIVE", done=reached_active, chain_height=seen.get("ACTIVE"),
                         detail="k deep, attested and covenant-signed: counts towards TVL and mesh virtual stake"),
        ]
        ub_h = public.delegation_unbonding.unbonding_height
        if ub_h is not None or state in (DelegationState.UNBONDING, DelegationState.WITHDRAWABLE):
            steps.append(TimelineStep(step="unbonding", label="Unbonding", done=True, btc_height=ub_h,
                                      chain_height=seen.get("UNBONDING"),
                                      txid=raw.get("unbonding_btc_txid"),
                                      detail=public.sub_state.value if public.sub_state else ""))
        if state is DelegationState.SLASHED or raw.get("slashed"):
            fp = fps.get(str(raw.get("slashed_fp") or ""), {}) or next(
                (fps[k] for k in public.finality_provider_btc_pks_hex if k in fps and
                 fps[k].get("slashed_height") is not None), {})
            slashed_at, double_vote_at = slash_heights(str(fp.get("btc_pk", ""))) if fp else (None, None)
            detail = f"provider {str(fp.get('btc_pk', ''))[:16]}…" if fp else ""
            if double_vote_at is not None:
                detail += f" double-voted at height {double_vote_at}"
            steps.append(TimelineStep(step="slashed", label="Slashed (finality provider double-signed)", done=True,
                                      chain_height=slashed_at if slashed_at is not None
                                      else _opt_int(fp.get("slashed_height")), detail=detail))
            if slashing is not None:
                steps.append(TimelineStep(
                    step="slashing_tx", label="Slashing tx on Bitcoin", done=slashing.reported_on_chain,
                    btc_height=slashing.btc_height, txid=slashing.slashing_txid,
                    detail=(f"{slashing.burned_sat:,} sat burned, {slashing.returned_sat:,} sat returned (timelocked), "
                            f"{slashing.fee_sat:,} sat fee" + ("" if slashing.reported_on_chain
                                                            else "; not reported to the chain yet"))))
        withdrawn_h = _opt_int(raw.get("withdrawn_height"))
        steps.append(TimelineStep(step="withdrawn", label="Withdrawn", done=state is DelegationState.WITHDRAWN
                                  or withdrawn_h is not None, btc_height=withdrawn_h,
                                  chain_height=seen.get("WITHDRAWN"),
                                  txid=raw.get("withdrawal_btc_txid")))
        return steps

    # ------------------------------------------------------------------ mesh
    def validators(self) -> list[ValidatorInfo]:
        """Every provider's mesh validator with its state and virtual stake."""
        out = []
        for fp in self.raw_providers():
            v = str(fp.get("validator") or "")
            if not v:
                continue
            state, _ = self.validator_state(v)
            moniker = str((fp.get("description") or {}).get("moniker", "")) if isinstance(
                fp.get("description"), dict) else ""
            out.append(ValidatorInfo(validator=v, fp_btc_pk=str(fp.get("btc_pk")), moniker=moniker, state=state,
                                     virtual_stake=self.virtual_stake_of(v)))
        return out

    def sync_statuses(self) -> None:
        """Read the registry's change feed since the last sync into ``status_log`` (delegation timelines)."""
        reader = self._need_reader("status changes")
        cursor = None
        for _ in range(FEED_PAGES):
            msg: dict[str, Any] = {"after_height": self.status_log.synced_height, "limit": 100}
            if cursor is not None:
                msg["start_after"] = cursor
            reply = reader.try_query(REGISTRY, {"delegations_updated": msg})
            if not isinstance(reply, dict):
                return  # a registry without the feed: timelines keep their BTC heights only
            for d in reply.get("delegations") or []:
                h, status = _opt_int(d.get("updated_height")), d.get("status")
                if h is not None and status:
                    self.status_log.observe(str(d.get("staking_tx_hash")), str(status), h)
            cursor = reply.get("next")
            if not cursor:
                return

    def sample_virtual_stake(self) -> tuple[int, dict[str, int]]:
        """(chain height, validator → virtual stake) now: what the recorder stores (and the status feed
        is read on the way, for the delegation timelines)."""
        reader = self._need_reader("virtual stake")
        self.sync_statuses()
        height = reader.chain_height()
        stakes = {}
        for fp in self.raw_providers():
            v = str(fp.get("validator") or "")
            s = self.virtual_stake_of(v)
            if v and s is not None:
                stakes[v] = s
        return height, stakes

    def history(self) -> VirtualStakeHistory:
        """Recorded virtual stake per validator over chain heights, with slash/jail events."""
        if self.recorder is None:
            raise NoChainDataError("virtual-stake history")
        try:
            self.recorder.record()
        except DataSourceError:
            if not self.recorder.points():
                raise
        validators = self.validators()
        events = []
        for v in validators:
            _, hist = self.validator_state(v.validator)
            for prev, (h, state) in zip([None, *hist], hist):
                if prev is None and state == "active":
                    continue  # registration, not an event
                events.append(MeshEvent(height=int(h), validator=v.validator,
                                        kind="unjailed" if state == "active" else str(state)))
        jailed = (self.reader.try_query(FINALITY, {"jailed": {}}) or {}) if self.reader else {}
        jailed_at = {str(j.get("fp_btc_pk")): _opt_int(j.get("jailed_height"))
                     for j in jailed.get("finality_providers") or [] if isinstance(j, dict)}
        for fp in self.raw_providers():
            v = str(fp.get("validator") or "")
            if v and jailed_at.get(str(fp.get("btc_pk"))) is not None:
                events.append(MeshEvent(height=jailed_at[str(fp.get("btc_pk"))], validator=v, kind="jailed"))
            slashed_at, double_vote_at = self.slash_heights(str(fp.get("btc_pk")))
            if v and slashed_at is not None:
                events.append(MeshEvent(height=slashed_at, validator=v, kind="slashed"))
            if v and double_vote_at is not None:
                events.append(MeshEvent(height=double_vote_at, validator=v, kind="double vote"))
        points = self.recorder.points()
        return VirtualStakeHistory(validators=validators, points=points, events=sorted(events, key=lambda e: e.height),
                                   recorded_since_height=points[0].height if points else None)

    def mesh(self) -> MeshOverview:
        """Validators and vault accounts (collateral, liens, slashable)."""
        reader = self._need_reader("mesh")
        accounts = []
        reply = reader.try_query(MESH, {"vault": {"all_accounts": {"limit": 100}}}) or {}
        for item in reply.get("accounts") or []:
            user = str(item.get("user"))
            details = reader.try_query(MESH, {"vault": {"account_details": {"account": user}}}) or {}
            claims = reader.try_query(MESH, {"vault": {"account_claims": {"account": user}}}) or {}
            accounts.append(VaultAccount(
                account=user, collateral=_opt_int(details.get("bonded", item.get("account", {}).get("bonded"))) or 0,
                max_lien=_range_text(details.get("max_lien")), slashable=_range_text(details.get("total_slashable")),
                free=_range_text(details.get("free")),
                liens=[{"lienholder": str(c.get("lienholder")), "amount": _range_text(c.get("amount")) or ""}
                       for c in claims.get("claims") or []]))
        return MeshOverview(validators=self.validators(), accounts=accounts)
