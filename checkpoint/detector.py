"""Spot staking, unbonding, slashing and withdraw transactions in a block.

* staking: an output whose pkScript and value match a *registered intent*
  (staker / finality providers / staking time / value the service was told
  about), or a V0 OP_RETURN-identified staking tx (tag from the params) whose
  staking output rebuilds from the OP_RETURN fields;
* unbonding: a tx spending a known staking outpoint through the unbonding leaf;
* slashing: a spend through the slashing leaf (reported with ``report_btc_slashing``; its change
  outputs are watched);
* withdraw: a spend of a staking / unbonding output through the timelock leaf
  (reported with ``report_withdrawal``), or any spend of a slashing-change output
  (its only path is the timelock; tracked, not reported: the registry has no
  message for it).

Spend paths are recognised from the Taproot script-path witness
(``[... , leaf_script, control_block(, annex)]``) by comparing the revealed leaf
with the scripts rebuilt from the staking parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from checkpoint.btcparse import ParsedBlock, ParsedTx
from checkpoint.errors import InvalidInputError
from checkpoint.store import CheckpointStore, DetectedTx, Intent, WatchedOutput

OP_RETURN = 0x6A


def _b(x: bytes | str) -> bytes:
    return bytes.fromhex(x) if isinstance(x, str) else bytes(x)


def revealed_leaf(witness: tuple[bytes, ...]) -> bytes | None:
    """The leaf script of a Taproot script-path spend, or None for key-path / non-Taproot."""
    stack = list(witness)
    if len(stack) >= 2 and stack[-1][:1] == b"\x50":  # annex
        stack = stack[:-1]
    if len(stack) < 2:
        return None
    control = stack[-1]
    if len(control) < 33 or (len(control) - 33) % 32 != 0 or control[0] & 0xFE != 0xC0:
        return None
    return bytes(stack[-2])


@dataclass(frozen=True)
class StakingScripts:
    """The three leaves and the output script of a staking or unbonding output."""

    pk_script: bytes
    timelock_script: bytes
    unbonding_script: bytes | None
    slashing_script: bytes


def staking_scripts(params: Any, staker_pk: bytes, fp_pks: list[bytes], staking_time: int,
                    value: int) -> StakingScripts:
    """Rebuild a staking output's scripts with ``btc_staking`` (raises ``InvalidInputError``)."""
    from btc_staking.staking import build_staking_info

    try:
        info = build_staking_info(staker_pk, list(fp_pks), list(params.covenant_pks), params.covenant_quorum,
                                  staking_time, value)
    except ValueError as exc:
        raise InvalidInputError(f"cannot build staking script: {exc}") from exc
    return StakingScripts(bytes(info.pk_script), bytes(info.timelock_script), bytes(info.unbonding_script),
                          bytes(info.slashing_script))


def unbonding_scripts(params: Any, staker_pk: bytes, fp_pks: list[bytes], value: int) -> StakingScripts:
    """Rebuild an unbonding output's scripts with ``btc_staking``."""
    from btc_staking.staking import build_unbonding_info

    try:
        info = build_unbonding_info(staker_pk, list(fp_pks), list(params.covenant_pks), params.covenant_quorum,
                                    params.unbonding_time_blocks, value)
    except ValueError as exc:
        raise InvalidInputError(f"cannot build unbonding script: {exc}") from exc
    return StakingScripts(bytes(info.pk_script), bytes(info.timelock_script), None, bytes(info.slashing_script))


def parse_v0(params: Any, script: bytes) -> tuple[bytes, bytes, int] | None:
    """(staker_pk, fp_pk, staking_time) of a V0 OP_RETURN with our tag, else None."""
    from btc_staking.staking import parse_v0_op_return

    try:
        data = parse_v0_op_return(script)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    tag = data.get("tag")
    if tag is None or _b(tag) != bytes(params.tag):
        return None
    try:
        return _b(data["staker_pk"]), _b(data["fp_pk"]), int(data["staking_time"])
    except (KeyError, TypeError, ValueError):
        return None


class Detector:
    """Classifies the txs of one block against intents and watched outputs."""

    def __init__(self, params: Any, store: CheckpointStore,
                 submit_kinds: frozenset[str] = frozenset({"delegation", "undelegate", "withdraw", "slashing"})
                 ) -> None:
        """``submit_kinds``: which detected kinds become chain submissions."""
        self.params = params
        self.store = store
        self.submit_kinds = submit_kinds

    def scan(self, block: ParsedBlock) -> list[DetectedTx]:
        """Everything relevant in ``block``, in block order."""
        intents = {(i.pk_script, i.value): i for i in self.store.intents()}
        local_watch: dict[str, WatchedOutput] = {}
        local_stakes: dict[str, DetectedTx] = {}
        found: list[DetectedTx] = []
        for index, tx in enumerate(block.txs):
            if tx.is_coinbase:
                continue
            det = self._spend(index, tx, local_watch, local_stakes)
            if det is None:
                det = self._staking(index, tx, intents)
                if det is not None:
                    local_stakes[det.txid] = det
            if det is not None:
                for w in det.new_watched:
                    local_watch[w.outpoint] = w
                found.append(det)
        return found

    # -------------------------------------------------------------- staking
    def _staking(self, index: int, tx: ParsedTx, intents: dict[tuple[bytes, int], Intent]) -> DetectedTx | None:
        for vout, out in enumerate(tx.outputs):
            intent = intents.get((out.script_pubkey, out.value))
            if intent is not None:
                return self._stake_det(index, tx, vout, intent.staker_pk, intent.fp_pks, intent.staking_time,
                                       intent.id)
        for out in tx.outputs:
            if not out.script_pubkey or out.script_pubkey[0] != OP_RETURN:
                continue
            v0 = parse_v0(self.params, out.script_pubkey)
            if v0 is None:
                continue
            staker, fp, stime = v0
            for vout, cand in enumerate(tx.outputs):
                if cand.script_pubkey[:1] == bytes([OP_RETURN]):
                    continue
                try:
                    s = staking_scripts(self.params, staker, [fp], stime, cand.value)
                except InvalidInputError:
                    continue
                if s.pk_script == cand.script_pubkey:
                    return self._stake_det(index, tx, vout, staker.hex(), (fp.hex(),), stime, None)
        return None

    def _stake_det(self, index: int, tx: ParsedTx, vout: int, staker_pk: str, fp_pks: tuple[str, ...],
                   staking_time: int, intent_id: int | None) -> DetectedTx:
        value = tx.outputs[vout].value
        s = staking_scripts(self.params, bytes.fromhex(staker_pk), [bytes.fromhex(f) for f in fp_pks],
                            staking_time, value)
        watch = WatchedOutput(f"{tx.txid}:{vout}", "staking", tx.txid, tx.txid, s.timelock_script,
                              s.unbonding_script, s.slashing_script)
        # with an intent the service registers the lock; a V0 lock without one may be registered by
        # the staker itself (pre-approval flow) and then only needs its inclusion proof
        kind = "delegation" if "delegation" in self.submit_kinds else None
        return DetectedTx(txid=tx.txid, kind="staking", tx_index=index, raw_tx=tx.raw, staking_txid=tx.txid,
                          staking_vout=vout, value=value, intent_id=intent_id, staker_pk=staker_pk,
                          fp_pks=tuple(fp_pks), staking_time=staking_time, new_watched=(watch,),
                          submission_kind=kind)

    # -------------------------------------------------------------- spends
    def _spend(self, index: int, tx: ParsedTx, local_watch: dict[str, WatchedOutput],
               local_stakes: dict[str, DetectedTx]) -> DetectedTx | None:
        for inp in tx.inputs:
            op = f"{inp.prev_txid}:{inp.prev_vout}"
            w = local_watch.get(op) or self.store.watched_output(op)
            if w is None:
                continue
            leaf = revealed_leaf(inp.witness)
            if w.role == "slashing_change":
                return self._det(index, tx, "withdraw", w, op)
            if leaf is not None and leaf == w.timelock_script:
                return self._det(index, tx, "withdraw", w, op)
            if leaf is not None and w.role == "staking" and leaf == w.unbonding_script:
                return self._det(index, tx, "unbonding", w, op, self._watch_unbonding(tx, w, local_stakes))
            if leaf is not None and leaf == w.slashing_script:
                return self._det(index, tx, "slashing", w, op, self._watch_slashing_change(tx, w))
        return None

    def _det(self, index: int, tx: ParsedTx, kind: str, w: WatchedOutput, op: str,
             watch: tuple[WatchedOutput, ...] = ()) -> DetectedTx:
        sub = {"unbonding": "undelegate", "withdraw": "withdraw", "slashing": "slashing"}.get(kind)
        if kind == "withdraw" and w.role == "slashing_change":
            sub = None  # the registry only takes withdrawals of the staking / unbonding output
        return DetectedTx(txid=tx.txid, kind=kind, tx_index=index, raw_tx=tx.raw, staking_txid=w.staking_txid,
                          spent_outpoint=op, new_watched=watch,
                          submission_kind=sub if sub in self.submit_kinds else None)

    def _watch_unbonding(self, tx: ParsedTx, w: WatchedOutput,
                         local_stakes: dict[str, DetectedTx]) -> tuple[WatchedOutput, ...]:
        stake = local_stakes.get(w.staking_txid)
        if stake is not None:
            staker, fps = stake.staker_pk, stake.fp_pks
        else:
            row = self.store.btc_tx(w.staking_txid)
            if row is None:
                return ()
            staker, fps = row.staker_pk, row.fp_pks
        if staker is None or not fps or not tx.outputs:
            return ()
        try:
            s = unbonding_scripts(self.params, bytes.fromhex(staker), [bytes.fromhex(f) for f in fps],
                                  tx.outputs[0].value)
        except InvalidInputError:
            return ()
        if s.pk_script != tx.outputs[0].script_pubkey:
            return ()
        return (WatchedOutput(f"{tx.txid}:0", "unbonding", w.staking_txid, tx.txid, s.timelock_script, None,
                              s.slashing_script),)

    def _watch_slashing_change(self, tx: ParsedTx, w: WatchedOutput) -> tuple[WatchedOutput, ...]:
        slash_script = bytes(self.params.slashing_pk_script)
        return tuple(
            WatchedOutput(f"{tx.txid}:{vout}", "slashing_change", w.staking_txid, tx.txid)
            for vout, out in enumerate(tx.outputs)
            if out.script_pubkey != slash_script and out.script_pubkey[:1] != bytes([OP_RETURN])
        )
