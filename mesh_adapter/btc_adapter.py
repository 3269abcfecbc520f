"""The BTC collateral adapter: attested Babylon-style BTC delegations -> Mesh Security stake.

Mapping (see ``docs/MESH_MAPPING.md``):

* **Vault user** - one vault account per BTC delegation (staking tx), named
  ``f"{account_prefix}1{staking_tx_hash}"``. A staking output is slashable only for its own
  finality provider, so collateral is segregated per output exactly as on Bitcoin; the staker's
  BTC key is kept as metadata (``delegations_of(staker_btc_pk)``).
* **Collateral** - ``value_sat`` units of the vault denom (default ``"sat"``), minted to the
  account when the delegation is attested ACTIVE and bonded into the vault.
* **Cross stake** - the account ``stake_remote``s on the external-staking contract, on the mesh
  validator mapped from the FP key, as many sats as fit under the per-validator cap on
  *virtual* stake, where ``virtual(sats) = floor(floor(sats * price) * (1 - discount))``
  (the converter's formula). Sats above the cap stay bonded but free.
* **Max slash** - the external-staking ``slash_ratio.double_sign`` should equal Babylon's
  ``slashing_rate``; the vault reserves ``floor(stake * ratio)`` of collateral per lien.

Lifecycle (every step goes through vault / external-staking JSON messages only):

* ACTIVE -> mint + ``bond {}`` + ``stake_remote {contract, amount, msg}``.
* UNBONDING / EXPIRED -> ``unstake {validator, amount}``; the lien stays (still slashable)
  until ``withdraw_unbonded {}`` after the unbonding period (``process_matured``), oldest first.
* WAITING - collateral bonded, nothing staked yet: the delegation turned ACTIVE while its mesh
  validator was jailed (external staking refuses stake on a non-active validator), or it was
  proven again after a BTC reorg (:meth:`on_delegation_reproven`) while its earlier unstake was
  still unbonding (Mesh Security cannot cancel an unbonding, and one collateral cannot carry a
  second lien of the same size). It is cross-staked through the normal ``stake_remote`` path as
  soon as its validator is active and no unbond of it is pending (:meth:`stake_waiting`,
  ``process_matured``), then ACTIVE.
* WITHDRAWN -> unstake if still staked, release matured unbonds, ``unbond {amount}`` of all
  free collateral and burn it; finishes in ``process_matured`` once the lien is released.
* FP slashed (EOTS key extracted) -> ``handle_slashing {validator, height, time}`` as the
  adapter authority: stakes and pending unbonds on that validator lose ``ratio``; the vault's
  ``cross_slash`` cuts collateral and liens (propagating if needed); ``collateral_left`` caps
  the remaining lien at the BTC left after the Bitcoin slashing tx (its change output, fee
  included; default ``value - floor(value * ratio)``) and the adapter unbonds and burns the free
  rest, so collateral equals that change. The consumer's virtual staking is told of the tombstone
  and force-unbonds the validator (upstream ``handle_epoch``); with ``unbond_slashed`` the
  provider-side stake is unstaked too (liens released after the unbonding period).

Host: anything implementing :class:`mesh_adapter.framework.MeshHost` (``MeshApp`` or the
chain). If the host has ``atomic()`` every event is all-or-nothing; the adapter's own records
are only updated after the host calls succeed.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator

from .errors import (
    DuplicateDelegation,
    InvalidDelegation,
    InvalidTransition,
    NoClaim,
    UnknownDelegation,
    UnknownFinalityProvider,
    ValidatorNotActive,
)
from .framework import MeshHost, json_copy, to_binary, wasm_execute
from .numeric import Dec, coin, parse_uint
from .storage import Map

MAX_SAT = 21_000_000 * 100_000_000
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
STATUSES = ("ACTIVE", "UNBONDING", "EXPIRED", "WITHDRAWN", "SLASHED")


@dataclass(frozen=True)
class DelegationEvent:
    """An attested BTC delegation as the chain reports it."""

    staking_tx_hash: str
    staker_btc_pk: str
    fp_btc_pk: str
    value_sat: int
    status: str = "ACTIVE"


def normalize_pk(pk: Any, field_name: str) -> str:
    """Lower-case x-only hex (32 bytes); accepts 32-byte x-only or 33-byte compressed, hex or bytes."""
    if isinstance(pk, (bytes, bytearray)):
        pk = bytes(pk).hex()
    if not isinstance(pk, str):
        raise InvalidDelegation(f"{field_name}: expected hex public key, got {type(pk).__name__}")
    pk = pk.lower()
    if len(pk) == 66 and pk[:2] in ("02", "03"):
        pk = pk[2:]
    if not _HEX64.match(pk):
        raise InvalidDelegation(f"{field_name}: expected 32-byte x-only (or 33-byte compressed) key")
    return pk


def normalize_hash(h: Any) -> str:
    """Staking tx hash as 64 lower-case hex chars (display order, as given)."""
    if isinstance(h, (bytes, bytearray)):
        h = bytes(h).hex()
    if not isinstance(h, str) or not _HEX64.match(h.lower()):
        raise InvalidDelegation("staking_tx_hash: expected 32-byte hex")
    return h.lower()


def parse_event(event: Any) -> DelegationEvent:
    """Validate a dict / dataclass event into a :class:`DelegationEvent`."""
    if isinstance(event, DelegationEvent):
        data = asdict(event)
    elif isinstance(event, dict):
        data = dict(event)
    elif hasattr(event, "__dataclass_fields__"):
        data = asdict(event)
    else:
        raise InvalidDelegation(f"delegation event must be a dict or dataclass, got {type(event).__name__}")
    for key in ("staking_tx_hash", "staker_btc_pk", "fp_btc_pk", "value_sat"):
        if key not in data or data[key] is None:
            raise InvalidDelegation(f"delegation event is missing `{key}`")
    value = data["value_sat"]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SAT:
        raise InvalidDelegation(f"value_sat must be an integer in 1..{MAX_SAT}, got {value!r}")
    status = data.get("status") or "ACTIVE"
    if not isinstance(status, str) or status.upper() not in STATUSES:
        raise InvalidDelegation(f"unknown delegation status {status!r}")
    return DelegationEvent(normalize_hash(data["staking_tx_hash"]), normalize_pk(data["staker_btc_pk"], "staker_btc_pk"),
                           normalize_pk(data["fp_btc_pk"], "fp_btc_pk"), value, status.upper())


@dataclass
class AdapterConfig:
    """Adapter settings (JSON-serialisable).

    ``price`` and ``discount`` must match the converter's; ``max_virtual_per_validator`` is the
    cap on virtual stake (consumer tokens) per mesh validator (None = uncapped).
    ``virtual_staking``: the consumer contract told of a tombstoning (``handle_valset_update``,
    the adapter acting for the consumer chain); it force-unbonds the validator's virtual stake.
    """

    vault: str
    external_staking: str
    fp_to_validator: dict[str, str] = field(default_factory=dict)
    denom: str = "sat"
    price: str = "1"
    discount: str = "0"
    max_virtual_per_validator: int | None = None
    account_prefix: str = "btcdel"
    authority: str = "btc-mesh-adapter"
    unbond_slashed: bool = True
    virtual_staking: str | None = None

    def __post_init__(self) -> None:
        price, discount = Dec.parse(self.price, "price"), Dec.parse(self.discount, "discount")
        if price == Dec.zero() or Dec.one() < discount:
            raise InvalidDelegation("price must be > 0 and discount in [0, 1]")
        if self.max_virtual_per_validator is not None:
            parse_uint(self.max_virtual_per_validator, "max_virtual_per_validator")
        self.fp_to_validator = {normalize_pk(k, "fp_btc_pk"): v for k, v in self.fp_to_validator.items()}


#: statuses :meth:`BtcMeshAdapter.process_matured` looks at
MATURING_STATUSES = ("UNBONDING", "SLASHED", "WITHDRAWING", "WAITING")


class BtcMeshAdapter:
    """Turns delegation events into vault / external-staking messages on a :class:`MeshHost`.

    ``records`` is a per-key :class:`~mesh_adapter.storage.Map`. A host that stores it per key
    (:meth:`attach_records`) also keeps the totals (``staked``: sats of ACTIVE delegations per
    validator, ``status``: delegations per status) and a status index, so no event reads every
    record; :meth:`totals` adds what this session changed to the stored totals, exactly."""

    def __init__(self, host: MeshHost, config: AdapterConfig, state: dict | None = None) -> None:
        self.host = host
        self.config = config
        self.records: Map = Map(json_copy(state["delegations"]) if state else {})
        self.base_totals: dict[str, dict[str, int]] = {"staked": {}, "status": {}}
        self.status_index: Callable[[str], Iterable[str]] | None = None

    def attach_records(self, records: Map, totals: dict[str, dict[str, int]],
                       status_index: Callable[[str], Iterable[str]]) -> None:
        """Use host-stored records: ``totals`` as :meth:`totals` returned when they were stored,
        ``status_index(status)`` the stored hashes of delegations in that status."""
        self.records = records
        self.base_totals = {"staked": dict(totals.get("staked", {})), "status": dict(totals.get("status", {}))}
        self.status_index = status_index

    # --- persistence ----------------------------------------------------
    def to_state(self) -> dict:
        """JSON-serialisable adapter state (config + per-delegation records)."""
        return {"config": asdict(self.config), "delegations": self.records.to_dict()}

    def totals(self) -> dict[str, dict[str, int]]:
        """``{"staked": {validator: sats of its ACTIVE delegations}, "status": {status: count}}``:
        the stored totals plus what the loaded records changed (all records without a host store)."""
        staked = dict(self.base_totals["staked"])
        status = dict(self.base_totals["status"])
        for _, old, new in self.records.changes():
            for rec, sign in ((old, -1), (new, 1)):
                if rec is None:
                    continue
                status[rec["status"]] = status.get(rec["status"], 0) + sign
                if rec["status"] == "ACTIVE":
                    staked[rec["validator"]] = staked.get(rec["validator"], 0) + sign * rec["staked_sat"]
        return {"staked": {v: n for v, n in sorted(staked.items()) if n},
                "status": {s: n for s, n in sorted(status.items()) if n}}

    def count_status(self, *statuses: str) -> int:
        """How many delegations are in one of ``statuses``."""
        counts = self.totals()["status"]
        return sum(counts.get(s, 0) for s in statuses)

    def with_status(self, *statuses: str) -> list[str]:
        """Sorted hashes of the delegations in one of ``statuses`` (reads only those with a status index)."""
        if self.status_index is None:
            return [h for h in self.records if self.records[h]["status"] in statuses]
        found = {h for s in statuses for h in self.status_index(s)}
        for h, _, new in self.records.changes():
            if new is not None and new["status"] in statuses:
                found.add(h)
            else:
                found.discard(h)
        return sorted(found)

    @classmethod
    def from_state(cls, host: MeshHost, data: dict) -> "BtcMeshAdapter":
        return cls(host, AdapterConfig(**data["config"]), data)

    # --- conversion & mapping -------------------------------------------
    def virtual_of(self, sats: int) -> int:
        """Converter formula: ``floor(floor(sats * price) * (1 - discount))``."""
        price = Dec.parse(self.config.price)
        return (Dec.one() - Dec.parse(self.config.discount)).mul_floor(price.mul_floor(sats))

    def validator_for(self, fp_btc_pk: Any) -> str:
        fp = normalize_pk(fp_btc_pk, "fp_btc_pk")
        val = self.config.fp_to_validator.get(fp)
        if val is None:
            raise UnknownFinalityProvider(f"finality provider {fp} is not mapped to a mesh validator")
        return val

    def set_validator(self, fp_btc_pk: Any, validator: str) -> None:
        """Map (or remap, for future delegations) an FP key to a mesh validator."""
        if not isinstance(validator, str) or not validator:
            raise InvalidDelegation("validator must be a non-empty string")
        self.config.fp_to_validator[normalize_pk(fp_btc_pk, "fp_btc_pk")] = validator

    def register_finality_provider(self, fp_btc_pk: Any, validator: str, height: int | None = None) -> None:
        """Map an FP to a mesh validator and mark that validator active on external staking."""
        with self._atomic():
            self.host.execute(self.config.authority, self.config.external_staking, {"test_set_active_validator": {
                "validator": {"valoper": validator, "start_height": height}}})
            self.set_validator(fp_btc_pk, validator)

    def account_for(self, staking_tx_hash: str) -> str:
        return f"{self.config.account_prefix}1{staking_tx_hash}"

    def staked_on(self, validator: str) -> int:
        """Sats currently cross-staked by active delegations on ``validator``."""
        return self.totals()["staked"].get(validator, 0)

    def _fit_under_cap(self, validator: str, value: int) -> int:
        cap = self.config.max_virtual_per_validator
        if cap is None:
            return value
        base = self.staked_on(validator)
        if self.virtual_of(base + value) <= cap:
            return value
        lo, hi = 0, value  # largest s with virtual(base + s) <= cap
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.virtual_of(base + mid) <= cap:
                lo = mid
            else:
                hi = mid - 1
        return lo

    # --- host helpers ---------------------------------------------------
    @contextlib.contextmanager
    def _atomic(self) -> Iterator[None]:
        records = self.records
        depth = records.savepoint(touch_loaded=True)  # records read before the block are changed in it
        atomic = getattr(self.host, "atomic", None)
        try:
            if atomic is not None:
                with atomic():
                    yield
            else:
                yield
        except BaseException:
            records.rollback(depth)
            raise
        records.release(depth)

    def _record(self, staking_tx_hash: Any) -> dict:
        h = normalize_hash(staking_tx_hash.staking_tx_hash if isinstance(staking_tx_hash, DelegationEvent)
                           else staking_tx_hash.get("staking_tx_hash") if isinstance(staking_tx_hash, dict)
                           else staking_tx_hash)
        rec = self.records.get(h)
        if rec is None:
            raise UnknownDelegation(f"unknown delegation {h}")
        return rec

    def _stake(self, rec: dict) -> dict:
        return self.host.query(self.config.external_staking,
                               {"stake": {"user": rec["account"], "validator": rec["validator"]}})

    def _refresh(self, rec: dict) -> None:
        """Re-read collateral, stake and pending unbonds of ``rec`` from the contracts."""
        acct = self.host.query(self.config.vault, {"account": {"account": rec["account"]}})
        stake = self._stake(rec)
        rec["collateral_sat"] = int(acct["bonded"])
        rec["staked_sat"] = int(stake["stake"]["high"])
        rec["pending_sat"] = sum(int(p["amount"]) for p in stake["pending_unbonds"])

    def _unstake_all(self, rec: dict) -> int:
        amount = int(self._stake(rec)["stake"]["low"])
        if amount:
            self.host.execute(rec["account"], self.config.external_staking, {"unstake": {
                "validator": rec["validator"], "amount": coin(amount, self.config.denom)}})
        return amount

    def _withdraw_matured(self, rec: dict) -> int:
        now = self.host.block().time
        pending = self._stake(rec)["pending_unbonds"]
        matured = sum(int(p["amount"]) for p in pending if int(p["release_at"]) <= now)
        if matured:
            self.host.execute(rec["account"], self.config.external_staking, {"withdraw_unbonded": {}})
        return matured

    def _unbond_free(self, rec: dict, limit: int | None = None) -> int:
        """Unbond free collateral (at most ``limit``) back to the account and burn it."""
        acct = self.host.query(self.config.vault, {"account": {"account": rec["account"]}})
        amount = int(acct["free"]["low"])
        if limit is not None:
            amount = min(amount, limit)
        if amount:
            c = [coin(amount, self.config.denom)]
            self.host.execute(rec["account"], self.config.vault, {"unbond": {"amount": c[0]}})
            self.host.burn(rec["account"], c)
        return amount

    def _summary(self, rec: dict) -> dict:
        out = dict(rec)
        out["virtual_stake"] = self.virtual_of(rec["staked_sat"]) if rec["status"] == "ACTIVE" else 0
        return out

    # --- lifecycle ------------------------------------------------------
    def on_delegation_active(self, event: Any) -> dict:
        """Bond ``value_sat`` of collateral and cross-stake what fits under the validator cap."""
        ev = parse_event(event)
        if ev.status != "ACTIVE":
            raise InvalidTransition(f"on_delegation_active got status {ev.status}")
        if ev.staking_tx_hash in self.records:
            raise DuplicateDelegation(f"delegation {ev.staking_tx_hash} already activated")
        validator = self.validator_for(ev.fp_btc_pk)
        state = self._validator_state(validator)
        if state not in ("active", "jailed"):
            raise ValidatorNotActive(f"mesh validator {validator} of FP {ev.fp_btc_pk} is {state or 'unknown'}")
        account = self.account_for(ev.staking_tx_hash)
        rec = {"staking_tx_hash": ev.staking_tx_hash, "staker_btc_pk": ev.staker_btc_pk,
               "fp_btc_pk": ev.fp_btc_pk, "validator": validator, "account": account,
               "value_sat": ev.value_sat, "collateral_sat": ev.value_sat, "staked_sat": 0,
               "pending_sat": 0, "slashed_sat": 0, "status": "WAITING"}
        with self._atomic():
            funds = [coin(ev.value_sat, self.config.denom)]
            self.host.mint(account, funds)
            self.host.execute(account, self.config.vault, {"bond": {}}, funds)
            self.records[ev.staking_tx_hash] = rec
            self._try_stake(rec)  # jailed validator: stays WAITING (collateral only) until unjailed
            self._refresh(rec)
        return self._summary(rec)

    def _validator_state(self, validator: str) -> str | None:
        return self.host.query(self.config.external_staking, {"validator": {"valoper": validator}})["state"]

    def _try_stake(self, rec: dict) -> bool:
        """WAITING → ACTIVE: cross-stake what fits under the cap (``stake_remote``) once the
        validator is active and no earlier unbond of this delegation holds its lien."""
        if rec["status"] != "WAITING" or self._validator_state(rec["validator"]) != "active":
            return False
        self._withdraw_matured(rec)
        if self._stake(rec)["pending_unbonds"]:
            return False
        stake = self._fit_under_cap(rec["validator"], rec["value_sat"])
        if stake:
            self.host.execute(rec["account"], self.config.vault, {"stake_remote": {
                "contract": self.config.external_staking, "amount": coin(stake, self.config.denom),
                "msg": to_binary({"validator": rec["validator"]})}})
        rec["status"] = "ACTIVE"
        self._refresh(rec)
        return True

    def on_delegation_reproven(self, event: Any) -> dict:
        """A delegation whose stake left after a BTC reorg (UNBONDING) is proven again on the best
        chain: reuse its record and collateral (one collateral per staking tx). It is staked again
        at once if its earlier unbond has matured, else WAITING until it does (``process_matured``)."""
        rec = self._record(event)
        if rec["status"] in ("ACTIVE", "WAITING"):
            return self._summary(rec)  # idempotent
        if rec["status"] != "UNBONDING":
            raise InvalidTransition(f"delegation {rec['staking_tx_hash']} is {rec['status']}, not UNBONDING")
        if self._validator_state(rec["validator"]) not in ("active", "jailed"):
            raise ValidatorNotActive(f"mesh validator {rec['validator']} is "
                                     f"{self._validator_state(rec['validator']) or 'unknown'}")
        with self._atomic():
            rec["status"] = "WAITING"
            rec["proofs"] = int(rec.get("proofs", 1)) + 1
            self._try_stake(rec)
            self._refresh(rec)
        return self._summary(rec)

    def stake_waiting(self, validator: str | None = None) -> list[dict]:
        """Stake every WAITING delegation (of ``validator``) that can be staked now, e.g. after an
        unjail. Returns the summaries of those that turned ACTIVE."""
        out = []
        for h in self.with_status("WAITING"):
            rec = self.records[h]
            if rec["status"] == "WAITING" and validator in (None, rec["validator"]):
                with self._atomic():
                    if self._try_stake(rec):
                        out.append(self._summary(rec))
        return out

    def on_delegation_unbonding(self, event: Any) -> dict:
        """Unstake the delegation; its lien is released after the unbonding period."""
        rec = self._record(event)
        if rec["status"] in ("UNBONDING", "SLASHED"):
            return self._summary(rec)  # idempotent
        if rec["status"] not in ("ACTIVE", "WAITING"):
            raise InvalidTransition(f"delegation {rec['staking_tx_hash']} is {rec['status']}, not ACTIVE")
        with self._atomic():
            self._unstake_all(rec)
            rec["status"] = "UNBONDING"
            self._refresh(rec)
        return self._summary(rec)

    on_delegation_expired = on_delegation_unbonding

    def on_delegation_withdrawn(self, event: Any) -> dict:
        """The BTC left the staking script: unstake, release matured liens, unbond and burn."""
        rec = self._record(event)
        if rec["status"] in ("WITHDRAWN", "WITHDRAWING"):
            return self._summary(rec)
        with self._atomic():
            if rec["status"] == "ACTIVE":
                self._unstake_all(rec)
            rec["status"] = "WITHDRAWING"
            self._settle(rec)
        return self._summary(rec)

    def _settle(self, rec: dict) -> None:
        if rec["status"] == "WAITING":
            if not self._try_stake(rec):
                self._refresh(rec)
            return
        self._withdraw_matured(rec)
        if rec["status"] == "WITHDRAWING":
            self._unbond_free(rec)
        self._refresh(rec)
        if rec["status"] == "WITHDRAWING" and rec["collateral_sat"] == 0:
            rec["status"] = "WITHDRAWN"

    def process_matured(self) -> list[dict]:
        """Call once per block: release matured unbonds (oldest first) and finish withdrawals."""
        out = []
        for h in self.with_status(*MATURING_STATUSES):
            rec = self.records[h]
            if rec["status"] not in MATURING_STATUSES:
                continue
            before = (rec["status"], rec["pending_sat"], rec["collateral_sat"])
            with self._atomic():
                self._settle(rec)
            if (rec["status"], rec["pending_sat"], rec["collateral_sat"]) != before:
                out.append(self._summary(rec))
        return out

    def _virtual_request(self, validator: str) -> int | None:
        """The consumer's bond request for ``validator`` (None without a virtual-staking contract)."""
        if not self.config.virtual_staking:
            return None
        reqs = self.host.query(self.config.virtual_staking, {"bond_requests": {}})["requests"]
        return int(reqs.get(validator, "0"))

    def on_finality_provider_slashed(self, fp_btc_pk: Any, height: int, time: int | None = None,
                                     btc_left: dict[str, int] | None = None) -> dict:
        """The FP equivocated: slash its mesh validator and mirror the Bitcoin slashing on collateral.

        ``btc_left`` (staking tx hash → sat): what Bitcoin leaves each delegation, i.e. the change
        output of the slashing tx of the path that is slashed (staking or unbonding), after the
        slash *and* the tx fee. Missing entries default to ``value - floor(value * ratio)``. Each
        account's collateral ends equal to it: ``handle_slashing`` caps the remaining lien at it
        (``collateral_left``) and the free rest is unbonded and burned.

        Then the consumer is told the validator is tombstoned (``virtual_staking``
        ``handle_valset_update``) and its epoch force-unbonds what virtual stake is left there,
        whatever ``unbond_slashed`` says (that flag only unstakes the provider-side stake, so the
        liens are released after the unbonding period).

        Returns ``{validator, ratio, virtual_slashed, virtual_unbonded, delegations: {hash:
        {collateral_before, collateral_after, stake_before, stake_after, pending_before,
        pending_after, btc_left}}}`` measured right after the contracts' slashing (before any
        ``unbond_slashed`` unstake); ``virtual_*`` are None without a virtual-staking contract.
        """
        validator = self.validator_for(fp_btc_pk)
        if isinstance(height, bool) or not isinstance(height, int) or height < 0:
            raise InvalidDelegation("height must be a non-negative integer")
        when = self.host.block().time if time is None else time
        ratio = Dec.parse(self.host.query(self.config.external_staking, {"max_slash": {}})["slash_ratio_dsign"])
        affected = [h for h in sorted(self.records)
                    if self.records[h]["validator"] == validator and self.records[h]["status"] != "WITHDRAWN"]
        left: dict[str, int] = {}
        for h in affected:
            value = self.records[h]["value_sat"]
            given = (btc_left or {}).get(h)
            if given is not None and (isinstance(given, bool) or not isinstance(given, int) or not 0 <= given <= value):
                raise InvalidDelegation(f"btc_left of {h} must be an integer in 0..{value}, got {given!r}")
            left[h] = value - ratio.mul_floor(value) if given is None else given
        report: dict[str, dict] = {}
        with self._atomic():
            virtual_before = self._virtual_request(validator)
            self.host.execute(self.config.authority, self.config.external_staking, {"handle_slashing": {
                "validator": validator, "height": height, "time": when, "tombstone": True,
                "collateral_left": {self.records[h]["account"]: str(left[h]) for h in affected}}})
            virtual_after = self._virtual_request(validator)
            if self.config.virtual_staking:
                self.host.execute(self.config.authority, self.config.virtual_staking, {"handle_valset_update": {
                    "tombstoned": [validator]}})
            for h in affected:
                rec = self.records[h]
                before = (rec["collateral_sat"], rec["staked_sat"], rec["pending_sat"])
                self._refresh(rec)
                # upstream keeps slashed tokens in the vault; here they stand for burned BTC
                cut = before[0] - rec["collateral_sat"]
                if cut > 0:
                    self.host.burn(self.config.vault, [coin(cut, self.config.denom)])
                # mirror the BTC slashing tx: the vault keeps what is left on Bitcoin
                excess = rec["collateral_sat"] - left[h]
                if excess > 0:
                    self._unbond_free(rec, excess)
                    self._refresh(rec)
                rec["slashed_sat"] = rec["value_sat"] - rec["collateral_sat"]
                rec["btc_left_sat"] = left[h]
                report[h] = {"collateral_before": before[0], "collateral_after": rec["collateral_sat"],
                             "stake_before": before[1], "stake_after": rec["staked_sat"],
                             "pending_before": before[2], "pending_after": rec["pending_sat"], "btc_left": left[h]}
                if rec["status"] in ("ACTIVE", "UNBONDING", "WAITING"):
                    if self.config.unbond_slashed and rec["status"] == "ACTIVE":
                        self._unstake_all(rec)
                        self._refresh(rec)
                    rec["status"] = "ACTIVE" if rec["status"] == "ACTIVE" and not self.config.unbond_slashed \
                        else "SLASHED"
        slashed = None if virtual_before is None or virtual_after is None else virtual_before - virtual_after
        return {"validator": validator, "ratio": str(ratio), "virtual_slashed": slashed,
                "virtual_unbonded": virtual_after, "delegations": report}

    def slashing_message(self, fp_btc_pk: Any, height: int, time: int) -> dict:
        """The bare ``WasmMsg`` a slashing hook can return instead of calling
        :meth:`on_finality_provider_slashed` (it must be dispatched with the contract's
        ``authority`` as sender; the collateral mirroring/burn steps are then skipped)."""
        return wasm_execute(self.config.external_staking, {"handle_slashing": {
            "validator": self.validator_for(fp_btc_pk), "height": height, "time": time, "tombstone": True}})

    def on_delegation_event(self, event: Any) -> dict:
        """Dispatch on ``event["status"]`` (ACTIVE, UNBONDING, EXPIRED, WITHDRAWN)."""
        ev = parse_event(event)
        if ev.status == "ACTIVE":
            return self.on_delegation_active(ev)
        if ev.status in ("UNBONDING", "EXPIRED"):
            return self.on_delegation_unbonding(ev)
        if ev.status == "WITHDRAWN":
            return self.on_delegation_withdrawn(ev)
        rec = self._record(ev)  # SLASHED per delegation: the FP-level event does the work
        return self._summary(rec)

    # --- queries --------------------------------------------------------
    def delegation(self, staking_tx_hash: Any) -> dict:
        return self._summary(self._record(staking_tx_hash))

    def delegations_of(self, staker_btc_pk: Any) -> list[dict]:
        pk = normalize_pk(staker_btc_pk, "staker_btc_pk")
        return [self._summary(r) for _, r in sorted(self.records.items()) if r["staker_btc_pk"] == pk]

    def validator_virtual_stake(self, validator: str) -> int:
        """Virtual stake the adapter's active delegations back on ``validator``."""
        return self.virtual_of(self.staked_on(validator))

    def lien(self, staking_tx_hash: Any) -> dict | None:
        """The vault claim of the delegation's account on external staking (None if released)."""
        rec = self._record(staking_tx_hash)
        try:
            return self.host.query(self.config.vault, {"claim": {
                "account": rec["account"], "lienholder": self.config.external_staking}})
        except NoClaim:
            return None
