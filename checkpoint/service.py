"""The checkpoint service: follow Bitcoin, relay headers, attest k-deep locks.

One :meth:`CheckpointService.run_once` round is deterministic:

1. **Follow** the backend. The stored best chain (``blocks`` table) is compared
   with the backend walking back from the stored tip until a stored hash is
   still on the backend's chain (this also works across a restart, since the
   hashes are in SQLite). Blocks above that fork point are disconnected in one
   transaction: their txs become unconfirmed, their pending submissions go back
   to ``waiting``. New blocks are then fetched, scanned (see
   :mod:`checkpoint.detector`) and stored one block per transaction.
2. **Relay headers** the chain's BTC light client does not have, in batches:
   from the highest height where the light client and our best chain agree up
   to our tip — after a reorg that is the new, heavier branch.
3. **Submit** attestations that are due: the tx's block is at least k deep
   (``depth = tip height - block height``, the tip has depth 0, exactly the
   light client's ``depth`` and the registry's ``not k-deep: depth d < k`` rule;
   the tip is the one followed and relayed in this round, so blocks mined since
   never make the chain answer "not k-deep").
   Right before each submission the tx's block is re-checked to still be on the
   backend's best chain at its height and k deep, so a lock that a reorg removed
   is never attested. Messages (``docs/CHAIN_MESSAGES.md``):
   ``create_btc_delegation`` (the registered intent's material + staking tx,
   output index and inclusion proof), ``btc_undelegate`` (a proven unbonding tx)
   and ``report_withdrawal`` (a proven timelock spend of the staking or unbonding
   output; sent after the delegation and, for the unbonding output, after the
   undelegation are on the chain) and ``report_btc_slashing`` (a proven slashing
   tx, bookkeeping). A delegation the registry already has
   *without* a proof (Babylon's pre-approval flow) gets
   ``add_btc_delegation_inclusion_proof`` instead; a V0 (OP_RETURN) lock without
   an intent is only proven once its staker registered it (asked every
   ``retry_max_s``, given up when its timelock expires). The chain is asked
   first whether it already has the attestation (idempotence; e.g. after a
   crash between broadcast and bookkeeping). Transient failures
   are retried with bounded exponential backoff (``retry_base_s·2^n`` capped at
   ``retry_max_s``, at most ``max_attempts``, each delay jittered into ``[d/2, d]``); deterministic
   rejections go to the dead-letter list with the chain's reason.

**Backoff and the fork alert** (:mod:`checkpoint.backoff`). A failed header relay (RPC down, chain
rejection) backs the relay off exponentially with jitter (``retry_base_s`` .. ``retry_max_s``), and a
round that raises (e.g. the Bitcoin node is down) makes :meth:`CheckpointService.run_forever` wait
exponentially longer (``poll_interval`` .. ``retry_max_s``) before the next. When the chain's light
client already has our best chain's tip but prefers another branch (or still prefers another branch
right after we relayed ours), the chain follows a fork that is heavier than what our node knows: the
service stops relaying (re-sending headers it already has would only burn fees), pauses submissions,
and raises one alert: a single ERROR log line, the ``btcmesh_checkpoint_fork_alert`` gauge and
``status()["fork_alert"]`` (also ``RunReport.fork_alert``). It checks again with backoff, by queries
only, and clears the alert once the light client follows our node's chain again or our chain has
grown heavier (then it relays again).

**An already attested lock removed by a reorg deeper than its confirmations.**
The chain's light client follows the heavier fork as soon as we relay it.
The btc_staking module keeps the delegation record (it has no un-attest
message); the service therefore *flags* it: the submission moves to status
``reorged`` (``CheckpointService.reorged_attestations()``) and a warning is
logged for operators. If the staking tx is mined again on the new branch the
normal flow re-verifies it is k deep and (finding it registered) marks it
``done`` again. The service never attests anything on a branch that is not the
backend's best chain, and with k chosen larger than any plausible reorg this
state is not expected; it is reported, not silently ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Protocol

from checkpoint.backoff import Backoff, ForkAlert, ServiceHealth
from checkpoint.btcparse import ParsedBlock, parse_block
from checkpoint.chain_client import ChainClient
from checkpoint.detector import Detector, staking_scripts
from checkpoint.errors import ChainError, CheckpointError, InvalidInputError, ReorgTooDeepError
from checkpoint.store import BtcTx, CheckpointStore, Intent, Submission, submission_key

log = logging.getLogger("checkpoint")

#: The chain message of each submission kind (docs/CHAIN_MESSAGES.md).
_ACTIONS = {"delegation": "create_btc_delegation", "undelegate": "btc_undelegate", "withdraw": "report_withdrawal",
            "slashing": "report_btc_slashing"}


class BitcoinBackendLike(Protocol):
    """The subset of ``regtest.backend.BitcoinBackend`` the service uses."""

    def get_block_count(self) -> int: ...
    def get_block_hash(self, height: int) -> str: ...
    def get_block(self, hash_hex: str) -> bytes: ...
    def get_block_header(self, hash_hex: str) -> bytes: ...


@dataclass
class RunReport:
    """What one ``run_once`` round did."""

    connected: list[str] = field(default_factory=list)
    disconnected: list[str] = field(default_factory=list)
    headers_relayed: int = 0
    relay_error: str | None = None
    submitted: list[str] = field(default_factory=list)
    already_on_chain: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    dead_lettered: list[str] = field(default_factory=list)
    skipped_not_on_best_chain: list[str] = field(default_factory=list)
    reorged_attested: list[str] = field(default_factory=list)
    awaiting_registration: list[str] = field(default_factory=list)
    relay_deferred: bool = False          # header relay skipped: backing off after a failure
    fork_alert: str | None = None         # the chain's light client prefers a fork (see module docstring)


def _hex(x: bytes | str) -> str:
    return x if isinstance(x, str) else bytes(x).hex()


def params_fingerprint(params: Any, k: int) -> str:
    """A stable fingerprint of the staking parameters and k (binds a store to its config)."""
    if hasattr(params, "to_dict"):
        data = params.to_dict()
    elif is_dataclass(params):
        data = asdict(params)
    else:
        data = dict(vars(params))
    blob = json.dumps({"params": data, "k": k}, sort_keys=True, default=lambda o: o.hex() if isinstance(
        o, (bytes, bytearray)) else str(o))
    return hashlib.sha256(blob.encode()).hexdigest()


#: ``create_btc_delegation`` fields (docs/CHAIN_MESSAGES.md) a registered intent's material may hold;
#: the service adds ``staking_tx``, ``staking_output_index`` and ``inclusion_proof`` itself.
MATERIAL_FIELDS = frozenset({
    "staker_btc_pk", "pop", "fp_btc_pk_list", "staking_time", "staking_value", "slashing_tx",
    "delegator_slashing_sig", "unbonding_time", "unbonding_tx", "unbonding_value", "unbonding_slashing_tx",
    "delegator_unbonding_slashing_sig",
})
_HEX_MATERIAL = ("pop", "slashing_tx", "delegator_slashing_sig", "unbonding_tx", "unbonding_slashing_tx",
                 "delegator_unbonding_slashing_sig")


def check_material(material: dict[str, Any], staker_pk: str, fp_pks: list[str], staking_time: int,
                   staking_value: int) -> dict[str, Any]:
    """Validate an intent's delegation material: known fields only, hex where hex is due, and the
    staker / FPs / time / value (when present) equal to the intent's. Returns the material."""
    unknown = sorted(set(material) - MATERIAL_FIELDS)
    if unknown:
        raise InvalidInputError(f"unknown create_btc_delegation material field(s): {', '.join(unknown)} "
                                "(staking_tx, staking_output_index and inclusion_proof are added by the service)")
    for name in _HEX_MATERIAL:
        if name in material:
            value = material[name]
            try:
                ok = isinstance(value, str) and (bytes.fromhex(value).hex() == value)
            except ValueError:
                ok = False
            if not ok:
                raise InvalidInputError(f"material field {name} must be lowercase hex")
    expected = {"staker_btc_pk": staker_pk, "fp_btc_pk_list": list(fp_pks), "staking_time": staking_time,
                "staking_value": staking_value}
    for name, want in expected.items():
        if name in material and material[name] != want:
            raise InvalidInputError(f"material {name}={material[name]!r} does not match the intent ({want!r})")
    return material


class CheckpointService:
    """Follows a Bitcoin backend and attests k-deep staking locks to the Cosmos chain."""

    def __init__(self, backend: BitcoinBackendLike, chain_client: ChainClient, store_path: str | Path,
                 params: Any, k: int, signer_wallet: Any, poll_interval: float = 1.0, *,
                 start_height: int = 0, header_batch: int = 50, max_blocks_per_run: int = 500,
                 max_reorg_depth: int = 2016, retry_base_s: float = 1.0, retry_max_s: float = 60.0,
                 max_attempts: int = 8, clock: Callable[[], float] = time.time,
                 submit_kinds: frozenset[str] = frozenset({"delegation", "undelegate", "withdraw", "slashing"}),
                 attest_batch: int = 1, pipeline_depth: int = 4) -> None:
        """Open (or resume from) the SQLite store at ``store_path``. ``attest_batch`` > 1 sends up to that many
        attestations per chain tx (one message each) and keeps up to ``pipeline_depth`` such txs in flight
        before waiting for the oldest to commit (see :meth:`_submit_batched`)."""
        if not isinstance(k, int) or k < 1:
            raise InvalidInputError(f"k must be a positive integer, got {k!r}")
        if poll_interval <= 0 or poll_interval > 3600:
            raise InvalidInputError(f"poll_interval must be in (0, 3600] seconds, got {poll_interval!r}")
        if start_height < 0 or header_batch < 1 or max_blocks_per_run < 1 or max_reorg_depth < 1:
            raise InvalidInputError("start_height must be >= 0 and batch/limit sizes >= 1")
        if retry_base_s <= 0 or retry_max_s < retry_base_s or max_attempts < 1:
            raise InvalidInputError("need 0 < retry_base_s <= retry_max_s and max_attempts >= 1")
        if not isinstance(attest_batch, int) or not isinstance(pipeline_depth, int) or attest_batch < 1 \
                or pipeline_depth < 1:
            raise InvalidInputError("attest_batch and pipeline_depth must be integers >= 1")
        self.attest_batch = attest_batch
        self.pipeline_depth = pipeline_depth
        self._trees: OrderedDict[str, tuple[list[str], Any, bytes]] = OrderedDict()  # block hash → merkle tree
        self.backend = backend
        self.chain = chain_client
        self.params = params
        self.k = k
        self.wallet = signer_wallet
        self.poll_interval = float(poll_interval)
        self.start_height = start_height
        self.header_batch = header_batch
        self.max_blocks_per_run = max_blocks_per_run
        self.max_reorg_depth = max_reorg_depth
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.max_attempts = max_attempts
        self.clock = clock
        self.store = CheckpointStore(store_path)
        self.store.check_config(params_fingerprint(params, k))
        self.detector = Detector(params, self.store, submit_kinds)
        self.health = ServiceHealth()
        self._relay_backoff = Backoff(retry_base_s, retry_max_s, clock=clock)
        self._round_backoff = Backoff(self.poll_interval, max(retry_max_s, self.poll_interval), clock=clock)

    def status(self) -> dict[str, Any]:
        """Fork alert, failure counters and backoff (JSON-friendly; metrics in ``health.registry``)."""
        tip = self.store.tip()
        return self.health.as_dict(relay_backoff_s=round(self._relay_backoff.remaining(), 3),
                                   round_failures_in_a_row=self._round_backoff.failures,
                                   followed_tip=None if tip is None else {"height": tip.height, "hash": tip.hash})

    def close(self) -> None:
        """Close the store."""
        self.store.close()

    # ------------------------------------------------------------------ intents
    def register_intent(self, staker_pk: bytes | str, fp_pks: list[bytes | str], staking_time: int,
                        staking_value: int, material: dict[str, Any] | None = None) -> Intent:
        """Tell the service about a pending staking lock and the staker's delegation material.

        ``material`` holds the extra ``create_btc_delegation`` fields the chain needs
        (proof of possession, slashing/unbonding txs and signatures, ...); the service
        adds the staking tx and its inclusion proof. The staking script is rebuilt
        from the registered parameters (so an out-of-range time/value is refused here).
        """
        try:
            staker = bytes.fromhex(staker_pk) if isinstance(staker_pk, str) else bytes(staker_pk)
            fps = [bytes.fromhex(f) if isinstance(f, str) else bytes(f) for f in fp_pks]
        except ValueError as exc:
            raise InvalidInputError(f"keys must be bytes or hex: {exc}") from exc
        if not fps:
            raise InvalidInputError("at least one finality provider key is required")
        if not isinstance(staking_value, int) or staking_value <= 0:
            raise InvalidInputError(f"staking_value must be a positive integer, got {staking_value!r}")
        if not isinstance(staking_time, int) or not 0 < staking_time <= 0xFFFF:
            raise InvalidInputError(f"staking_time must be in 1..65535 blocks, got {staking_time!r}")
        for check, value in (("check_staking_time", staking_time), ("check_staking_value", staking_value)):
            if hasattr(self.params, check):
                try:
                    getattr(self.params, check)(value)
                except ValueError as exc:
                    raise InvalidInputError(f"intent outside the staking parameters: {exc}") from exc
        scripts = staking_scripts(self.params, staker, fps, staking_time, staking_value)
        material = check_material(dict(material or {}), staker.hex(), [f.hex() for f in fps], staking_time,
                                  staking_value)
        self._check_material_against_config(staker, staking_value, material)
        intent = self.store.add_intent(scripts.pk_script, staking_value, staker.hex(), [f.hex() for f in fps],
                                       staking_time, material)
        # a V0 OP_RETURN lock already seen without material gets its attestation now
        for tx in self.store.btc_txs("staking"):
            if (tx.intent_id is None and tx.staker_pk == intent.staker_pk and tx.fp_pks == intent.fp_pks
                    and tx.staking_time == intent.staking_time and tx.value == intent.value):
                self.store.attach_intent(tx.txid, intent.id)
        return intent

    def _signer_address(self) -> str | None:
        """Bech32 address of the account that submits (None when the signer has no address)."""
        address = getattr(self.wallet, "address", None)
        return str(address()) if callable(address) else None

    def _check_material_against_config(self, staker: bytes, staking_value: int, material: dict[str, Any]) -> None:
        """Early, typed refusals of material the registry would reject for sure: an unbonding time or
        value off the params, or a PoP not made for the service's own (submitting) account."""
        p = self.params
        if "unbonding_time" in material and hasattr(p, "unbonding_time_blocks") \
                and material["unbonding_time"] != p.unbonding_time_blocks:
            raise InvalidInputError(f"material unbonding_time {material['unbonding_time']!r} != params "
                                    f"unbonding_time_blocks {p.unbonding_time_blocks}")
        if "unbonding_value" in material and hasattr(p, "unbonding_fee_sat") \
                and material["unbonding_value"] != staking_value - p.unbonding_fee_sat:
            raise InvalidInputError(f"material unbonding_value {material['unbonding_value']!r} != staking value − "
                                    f"unbonding fee ({staking_value - p.unbonding_fee_sat})")
        address = self._signer_address()
        if "pop" in material and address is not None:
            from cosmpy.crypto.address import Address

            from btc_staking.signing import verify_pop_bip340

            try:  # Babylon types/pop.go: sha256 of the raw address bytes
                ok = verify_pop_bip340(staker, bytes(Address(address)), bytes.fromhex(material["pop"]))
            except (ValueError, RuntimeError):
                ok = False
            if not ok:
                raise InvalidInputError(f"material pop is not the staker's proof of possession for the service's "
                                        f"account {address} (the PoP signs sha256 of the submitter's raw address bytes)")

    # ------------------------------------------------------------------ main loop
    def run_once(self) -> RunReport:
        """One deterministic round: follow blocks, relay headers, submit due attestations."""
        report = RunReport()
        self.follow(report)
        self.relay_headers(report)
        if self.health.fork_alert is not None:
            report.fork_alert = self.health.fork_alert.message()
            return report  # attestations would fail on a light client that follows another branch
        self.submit_due(report)
        return report

    def follow(self, report: RunReport | None = None) -> RunReport:
        """Step 1 alone: disconnect reorged blocks, connect and scan new ones."""
        report = report if report is not None else RunReport()
        self._sync_blocks(report)
        return report

    def relay_headers(self, report: RunReport | None = None) -> RunReport:
        """Step 2 alone: send the light client the headers it lacks."""
        report = report if report is not None else RunReport()
        self._relay_headers(report)
        return report

    def submit_due(self, report: RunReport | None = None) -> RunReport:
        """Step 3 alone: submit attestations that are k deep (re-verified) and due."""
        report = report if report is not None else RunReport()
        self._submit_due(report)
        return report

    def run_forever(self, stop_event: threading.Event, max_rounds: int | None = None) -> int:
        """Call ``run_once`` every ``poll_interval`` seconds until ``stop_event`` is set.

        Errors in a round are logged and the next round waits :meth:`next_round_delay` (exponential
        with jitter, capped at ``retry_max_s``); every wait ends early when ``stop_event`` is set.
        Returns rounds run.
        """
        rounds = 0
        while not stop_event.is_set() and (max_rounds is None or rounds < max_rounds):
            ok = True
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - a round must never kill the loop
                ok = False
                log.warning("checkpoint round failed: %s: %s", type(exc).__name__, exc)
            rounds += 1
            stop_event.wait(self.next_round_delay(ok))
        return rounds

    def next_round_delay(self, ok: bool) -> float:
        """Seconds to wait before the next round: ``poll_interval`` after a round that ran, an
        exponentially growing, jittered wait after consecutive rounds that raised."""
        if ok:
            self._round_backoff.success()
            self.health.backoff_seconds.set(self._relay_backoff.remaining())
            return self.poll_interval
        self.health.round_failures.inc()
        delay = max(self.poll_interval, self._round_backoff.failure())
        self.health.backoff_seconds.set(delay)
        return delay

    # ------------------------------------------------------------------ follow
    def _find_fork(self, stored_tip_height: int, backend_tip: int) -> int:
        """Highest stored height whose hash is still on the backend's best chain."""
        h = min(stored_tip_height, backend_tip)
        lowest = max(stored_tip_height - self.max_reorg_depth, 0)
        while h >= lowest:
            sb = self.store.block_at(h)
            if sb is None:
                break
            if self.backend.get_block_hash(h) == sb.hash:
                return h
            h -= 1
        raise ReorgTooDeepError(
            f"no stored block between heights {lowest} and {stored_tip_height} is on the backend's best chain")

    def _sync_blocks(self, report: RunReport) -> None:
        backend_tip = self.backend.get_block_count()
        stored = self.store.tip()
        if stored is None:
            next_h = self.start_height
        else:
            fork = self._find_fork(stored.height, backend_tip)
            if fork < stored.height:
                gone = self.store.disconnect_above(fork)
                report.disconnected.extend(b.hash for b in gone)
                for sub in self.store.submissions("reorged"):
                    if sub.key not in report.reorged_attested:
                        report.reorged_attested.append(sub.key)
                        log.warning("attested %s was removed by a reorg below height %d", sub.key, fork + 1)
            next_h = fork + 1
        last = min(backend_tip, next_h + self.max_blocks_per_run - 1)
        for h in range(next_h, last + 1):
            bh = self.backend.get_block_hash(h)
            block = parse_block(self.backend.get_block(bh))
            if block.hash != bh:
                raise CheckpointError(f"backend returned block {block.hash} for hash {bh}")
            tip = self.store.tip()
            if tip is not None and block.prev_hash != tip.hash:
                log.info("backend changed while following at height %d; resuming next round", h)
                return
            self.store.connect_block(h, bh, block.prev_hash, block.header, self.detector.scan(block))
            report.connected.append(bh)

    # ------------------------------------------------------------------ headers
    def _hash_at(self, height: int) -> str:
        sb = self.store.block_at(height)
        return sb.hash if sb is not None else self.backend.get_block_hash(height)

    def _header_at(self, height: int) -> bytes:
        sb = self.store.block_at(height)
        if sb is not None:
            return sb.header
        return bytes(self.backend.get_block_header(self.backend.get_block_hash(height)))

    def _relay_headers(self, report: RunReport) -> None:
        ours = self.store.tip()
        if ours is None:
            return
        if not self._relay_backoff.ready():
            report.relay_deferred = True
            return
        try:
            chain_tip = self.chain.light_client_tip()
            if chain_tip is None:
                raise ChainError("the chain's BTC light client has no base header", transient=True)
            ch, chash = chain_tip
            if ch >= ours.height and self.chain.light_client_hash_at(ours.height) == ours.hash:
                self._relay_ok()
                return  # the chain is at or ahead of our tip on our branch
            known = self.chain.light_client_header(ours.hash)
            if known is not None and not known.get("main_chain"):
                self._fork(ch, chash, ours.height, ours.hash, report)  # it has our tip and prefers another
                return
            if ch <= ours.height and self._hash_at(ch) == chash:
                common = ch
            else:
                common = self._common_height(min(ch, ours.height))
            h = common + 1
            while h <= ours.height:
                end = min(ours.height, h + self.header_batch - 1)
                self.chain.insert_headers([self._header_at(x) for x in range(h, end + 1)], self.wallet)
                self.health.relay_txs.inc()
                report.headers_relayed += end - h + 1
                h = end + 1
            after = self.chain.light_client_tip()
            if after is not None and after[1] != ours.hash and \
                    self.chain.light_client_hash_at(ours.height) != ours.hash:
                self._fork(after[0], after[1], ours.height, ours.hash, report)  # ours is lighter
                return
            self._relay_ok()
        except ChainError as exc:
            report.relay_error = str(exc)
            self.health.relay_failures.inc()
            delay = self._relay_backoff.failure()
            self.health.backoff_seconds.set(delay)
            log.warning("header relay failed (next try in %.2fs): %s", delay, exc)

    def _relay_ok(self) -> None:
        """The light client follows our best chain: reset the backoff, clear a fork alert."""
        self._relay_backoff.success()
        if self.health.fork_alert is not None:
            log.warning("fork alert cleared: the chain's BTC light client follows this node's chain again")
            self.health.fork_alert = None
            self.health.fork_gauge.set(0)

    def _fork(self, chain_height: int, chain_hash: str, our_height: int, our_hash: str, report: RunReport) -> None:
        """Raise (once) or keep the fork alert; check again after a backoff (queries only)."""
        if self.health.fork_alert is None:
            self.health.fork_alert = ForkAlert(chain_height, chain_hash, our_height, our_hash, self.clock())
            self.health.fork_gauge.set(1)
            log.error(self.health.fork_alert.message())
        report.fork_alert = self.health.fork_alert.message()
        self.health.backoff_seconds.set(self._relay_backoff.failure())

    def _common_height(self, start: int) -> int:
        """Highest height ≤ start where the light client and our best chain agree."""
        lowest = max(start - self.max_reorg_depth, 0)
        h = start
        while h >= lowest:
            if self.chain.light_client_hash_at(h) == self._hash_at(h):
                return h
            h -= 1
        raise ChainError(f"light client shares no header with our best chain above height {lowest}",
                         transient=False)

    # ------------------------------------------------------------------ submissions
    def _submit_due(self, report: RunReport) -> None:
        # depth counts from the tip we followed (and relayed to the light client), not from the
        # backend's tip now: blocks mined since are unknown to the chain, which would answer
        # "not k-deep" for a lock they make k deep
        ours = self.store.tip()
        if ours is None:
            return
        due = self.store.due_submissions(ours.height, self.k, self.clock())
        if self.attest_batch > 1:
            self._submit_batched(due, report, ours.height)
            return
        for sub in due:
            self._submit_one(sub, report, ours.height)

    def _still_k_deep(self, tx: BtcTx, followed_tip: int) -> bool:
        """Re-verify against the backend that tx's block is on its best chain, and k deep (depth ≥ k)
        below both the followed tip and the backend's tip."""
        if tx.block_hash is None or tx.block_height is None:
            return False
        tip_h = self.backend.get_block_count()
        if tx.block_height > tip_h or self.backend.get_block_hash(tx.block_height) != tx.block_hash:
            return False
        return min(tip_h, followed_tip) - tx.block_height >= self.k

    def _submit_one(self, sub: Submission, report: RunReport, followed_tip: int) -> None:
        prepared = self._prepare(sub, report, followed_tip)
        if prepared is None:
            return
        self._send_one(sub, *prepared, report)

    def _send_one(self, sub: Submission, tx: BtcTx, action: str, body: dict, report: RunReport) -> None:
        """Send one prepared message in a tx of its own and record the outcome."""
        try:
            chain_hash = self._send_action(action, body)
        except ChainError as exc:
            self._failed(sub, exc, report)
            return
        self._done(sub, chain_hash, tx, report)

    def _done(self, sub: Submission, chain_hash: str, tx: BtcTx, report: RunReport) -> None:
        assert tx.block_hash is not None
        self.store.mark_done(sub.key, chain_hash, tx.block_hash)
        report.submitted.append(sub.key)

    def _prepare(self, sub: Submission, report: RunReport, followed_tip: int,
                 known: dict[str, dict | None] | None = None) -> tuple[BtcTx, str, dict] | None:
        """Every check before a submission (k deep on the best chain, prerequisites, the chain's state),
        the in-flight marker, and the message: (tx, chain action, body); None when nothing is to be sent
        (already on chain, waiting, failed: recorded in ``report``)."""
        tx = self.store.btc_tx(sub.btc_txid)
        if tx is None or not self._still_k_deep(tx, followed_tip):
            report.skipped_not_on_best_chain.append(sub.key)
            return None
        assert tx.block_hash is not None
        for parent_key in self._prerequisites(sub, tx):
            parent = self.store.submission(parent_key)
            if parent is not None and parent.status == "dead":
                self.store.dead_letter(sub.key, None, f"{parent_key} was dead-lettered")
                report.dead_lettered.append(sub.key)
                return None
            if parent is not None and parent.status != "done":
                return None  # wait for the delegation (and the undelegation) first
        # crash-safe marker (counts the attempt); a restart re-checks the chain first
        self.store.mark_submitting(sub.key, tx.block_hash)
        try:
            if known is not None and sub.staking_txid in known:  # asked for the whole batch at once
                state = self._chain_state(sub, known[sub.staking_txid])
            else:
                state = self._chain_state(sub)
            if state == "absent" and sub.kind == "delegation" and tx.intent_id is None:
                self._await_registration(sub, tx, report)
                return None
            if state == "present":
                self.store.mark_done(sub.key, None, tx.block_hash, note="already on chain")
                report.already_on_chain.append(sub.key)
                return None
            if state == "needs_proof":  # registered without a proof (pre-approval flow): prove it
                return tx, "add_btc_delegation_inclusion_proof", {"staking_tx_hash": sub.staking_txid,
                                                                  "inclusion_proof": self._proof(tx)}
            action = _ACTIONS.get(sub.kind)
            if action is None:
                raise InvalidInputError(f"the chain has no message for {sub.kind}")
            return tx, action, self._build_message(sub, tx)
        except ChainError as exc:
            self._failed(sub, exc, report)
            return None
        except InvalidInputError as exc:
            self.store.dead_letter(sub.key, None, f"cannot build attestation: {exc}")
            report.dead_lettered.append(sub.key)
            return None

    def _submit_batched(self, due: list[Submission], report: RunReport, followed_tip: int) -> None:
        """Send the due attestations ``attest_batch`` messages per tx, broadcasting up to ``pipeline_depth``
        txs (with locally incremented sequences) before waiting for the oldest to commit. Every submission
        is checked and marked in flight first, exactly as one by one; a tx the chain refuses as a whole
        (one bad message reverts them all) is resent one message per tx, so only the bad one is
        dead-lettered; a transient failure retries its submissions with backoff (the chain is asked
        first next time, so nothing is attested twice)."""
        known: dict[str, dict | None] | None = None
        fetch = getattr(self.chain, "delegations", None)
        if callable(fetch) and due:
            try:  # the chain's state of every due lock in a few queries (idempotence), not one query each
                known = fetch(sorted({s.staking_txid for s in due}))
            except ChainError as exc:
                log.info("batch delegation query failed (%s); asking one by one", exc)
        ready = []
        for sub in due:
            prepared = self._prepare(sub, report, followed_tip, known)
            if prepared is not None:
                ready.append((sub, *prepared))
        inflight: deque[tuple[str, list]] = deque()
        sequence: int | None = None
        for start in range(0, len(ready), self.attest_batch):
            chunk = ready[start:start + self.attest_batch]
            msgs = [(self.chain.contracts.btc_staking, {action: body}) for _, _, action, body in chunk]
            try:
                tx_hash, sequence = self.chain.broadcast_msgs(msgs, self.wallet, sequence)
            except ChainError as exc:
                for sub, *_ in ready[start:]:  # this chunk and every one not sent after it
                    self._failed(sub, exc, report)
                break
            inflight.append((tx_hash, chunk))
            if len(inflight) >= self.pipeline_depth:
                self._settle(*inflight.popleft(), report)
        while inflight:
            self._settle(*inflight.popleft(), report)

    def _settle(self, tx_hash: str, chunk: list, report: RunReport) -> None:
        """Wait for one batched tx and record its submissions (see :meth:`_submit_batched`)."""
        try:
            self.chain.wait_tx(tx_hash)
        except ChainError as exc:
            if exc.transient or len(chunk) == 1:
                for sub, *_ in chunk:
                    self._failed(sub, exc, report)
                return
            log.info("batch tx %s refused (%s); resending its %d messages one by one", tx_hash, exc, len(chunk))
            for sub, tx, action, body in chunk:
                self._send_one(sub, tx, action, body, report)
            return
        for sub, tx, _, _ in chunk:
            self._done(sub, tx_hash, tx, report)

    def _await_registration(self, sub: Submission, tx: BtcTx, report: RunReport) -> None:
        """A V0 lock without intent the chain does not know: its staker may still register it.

        Asked again every ``retry_max_s``; given up (dead-lettered) once its timelock has expired."""
        assert tx.block_height is not None
        tip_h = self.backend.get_block_count()
        if tx.staking_time is not None and tip_h - tx.block_height >= tx.staking_time:
            self.store.dead_letter(sub.key, None, "V0 lock never registered on the chain (and no intent) "
                                                  "before its staking timelock expired")
            report.dead_lettered.append(sub.key)
            return
        self.store.postpone(sub.key, self.clock() + self.retry_max_s,
                            "waiting for the staker to register this V0 lock (or for an intent)")
        report.awaiting_registration.append(sub.key)

    def _prerequisites(self, sub: Submission, tx: BtcTx) -> list[str]:
        """Submission keys that must be on the chain before ``sub`` (delegation, then undelegation)."""
        if sub.kind == "delegation":
            return []
        keys = [submission_key("delegation", sub.staking_txid)]
        if sub.kind == "withdraw" and tx.spent_outpoint is not None:
            spent = self.store.watched_output(tx.spent_outpoint)
            if spent is not None and spent.role == "unbonding":
                keys.append(submission_key("undelegate", spent.created_by))
        return keys

    def _failed(self, sub: Submission, exc: ChainError, report: RunReport) -> None:
        """Dead-letter a permanent failure; retry a transient one with backoff (attempts as stored)."""
        sub = self.store.submission(sub.key) or sub
        if not exc.transient:
            self.store.dead_letter(sub.key, exc.code, exc.reason)
            report.dead_lettered.append(sub.key)
            log.warning("dead-lettered %s: %s", sub.key, exc)
            return
        attempts = max(sub.attempts, 1)
        if attempts >= self.max_attempts:
            self.store.dead_letter(sub.key, exc.code, f"gave up after {attempts} attempts: {exc.reason}")
            report.dead_lettered.append(sub.key)
            return
        step = min(self.retry_base_s * (2 ** (attempts - 1)), self.retry_max_s)
        delay = self._relay_backoff.rng.uniform(step / 2, step)  # jitter: retries of many locks spread out
        self.store.record_transient_failure(sub.key, str(exc), self.clock() + delay)
        report.retried.append(sub.key)

    def _chain_state(self, sub: Submission, record: Any = ...) -> str:
        """``absent`` | ``present`` | ``needs_proof`` (a delegation registered without inclusion proof); ``record``:
        the chain's record when already fetched (None: the chain has none)."""
        if record is ...:
            record = self.chain.delegation(sub.staking_txid)
        if record is None:
            return "absent"
        status = str(record.get("status", "")).upper()
        if sub.kind == "delegation":
            # Babylon's pre-approval flow registers without a proof: no start height yet; a REORGED
            # delegation (its block left the light client's main chain) is proven again
            if status == "REORGED":
                return "needs_proof"
            return "present" if record.get("start_height") else "needs_proof"
        if sub.kind == "undelegate":
            done = status in ("UNBONDING", "WITHDRAWN") or bool(record.get("unbonding_height"))
        elif sub.kind == "slashing":
            done = record.get("slashing_btc_txid") == sub.btc_txid
        else:
            done = status == "WITHDRAWN" or bool(record.get("withdrawn_height"))
        return "present" if done else "absent"

    def _proof(self, tx: BtcTx) -> dict[str, Any]:
        from btc_staking.merkle import verify_merkle_proof

        assert tx.block_hash is not None
        txids, tree, root = self._block_tree(tx.block_hash)
        if tx.txid not in txids:
            raise ChainError(f"tx {tx.txid} not in block {tx.block_hash}", transient=True)
        index = txids.index(tx.txid)
        proof = tree.proof(index)
        if not verify_merkle_proof(tree.levels[0][index], root, index, proof):
            raise InvalidInputError(f"locally built proof for {tx.txid} does not verify")
        return {"block_hash": tx.block_hash, "index": index, "proof": bytes(proof).hex()}

    def _block_tree(self, block_hash: str) -> tuple[list[str], Any, bytes]:
        """(display txids, merkle tree, header merkle root) of a block, parsed once (a few blocks cached:
        a block holding many locks gives many proofs)."""
        from btc_staking.merkle import MerkleTree

        hit = self._trees.get(block_hash)
        if hit is not None:
            self._trees.move_to_end(block_hash)
            return hit
        block: ParsedBlock = parse_block(self.backend.get_block(block_hash))
        txids = list(block.txids)
        entry = (txids, MerkleTree([bytes.fromhex(t)[::-1] for t in txids]), bytes(block.header[36:68]))
        self._trees[block_hash] = entry
        while len(self._trees) > 8:
            self._trees.popitem(last=False)
        return entry

    def _build_message(self, sub: Submission, tx: BtcTx) -> dict[str, Any]:
        proof = self._proof(tx)
        if sub.kind == "delegation":
            intent = self.store.intent(tx.intent_id) if tx.intent_id is not None else None
            if intent is None:
                raise InvalidInputError(f"no registered intent for lock {tx.txid}")
            msg = dict(intent.material)
            msg.update({
                "staker_btc_pk": intent.staker_pk,
                "fp_btc_pk_list": list(intent.fp_pks),
                "staking_time": intent.staking_time,
                "staking_value": intent.value,
                "staking_tx": tx.raw_tx.hex(),
                "staking_output_index": tx.staking_vout,
                "inclusion_proof": proof,
            })
            return msg
        if sub.kind == "undelegate":
            return {"staking_tx_hash": tx.staking_txid, "unbonding_tx": tx.raw_tx.hex(),
                    "inclusion_proof": proof}
        if sub.kind == "slashing":
            return {"staking_tx_hash": tx.staking_txid, "slashing_tx": tx.raw_tx.hex(), "inclusion_proof": proof}
        return {"staking_tx_hash": tx.staking_txid, "spend_tx": tx.raw_tx.hex(), "inclusion_proof": proof}

    def _send(self, sub: Submission, msg: dict[str, Any]) -> str:
        action = _ACTIONS.get(sub.kind)
        if action is None:
            raise InvalidInputError(f"the chain has no message for {sub.kind}")
        return self._send_action(action, msg)

    def _send_action(self, action: str, body: dict[str, Any]) -> str:
        """One attestation in its own tx, through the client's typed methods (waits for the commit)."""
        if action == "create_btc_delegation":
            return self.chain.submit_delegation(body, self.wallet)
        if action == "btc_undelegate":
            return self.chain.submit_undelegate(body, self.wallet)
        if action == "report_withdrawal":
            return self.chain.report_withdrawal(body, self.wallet)
        if action == "report_btc_slashing":
            return self.chain.report_slashing(body, self.wallet)
        if action == "add_btc_delegation_inclusion_proof":
            return self.chain.add_inclusion_proof(body, self.wallet)
        raise InvalidInputError(f"unknown chain action {action}")

    # ------------------------------------------------------------------ views
    def dead_letters(self) -> list[Any]:
        """The dead-letter list (key, code, reason, at)."""
        return self.store.dead_letters()

    def reorged_attestations(self) -> list[Submission]:
        """Attested locks whose block a reorg removed (see module docstring)."""
        return self.store.submissions("reorged")
