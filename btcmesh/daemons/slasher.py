"""``btcmesh slasher run``: the BTC slasher as a daemon (vigilante's slasher, atomic slasher included).

Each round:

1. **Evidence.** For every FP the chain's finality module lists as slashed, the FP key is extracted
   from the equivocation evidence (and compared with the chain's copy) and every delegation of the
   FP gets its slashing tx completed by :class:`checkpoint.slasher.Slasher` (covenant adaptor
   signatures decrypted with the key; the unbonding path when the unbonding tx is on Bitcoin) and
   broadcast.
2. **Atomic slashing.** Bitcoin's new blocks and mempool are scanned for the slashing tx of any
   registered delegation (its txid is fixed by the registry's unsigned slashing tx). When one
   appears, the FP key is extracted from a covenant's completed signature and its adaptor signature
   (:meth:`btc_staking.adaptor.AdaptorSignature.extract`), and the FP's *other* delegations are
   slashed the same way — even if the chain never saw the equivocation.

What it did is recorded in SQLite (``slasher.sqlite``: one row per delegation with the slashing
txid, state and broadcast count), written around every broadcast; before any broadcast the node is
asked whether it already has the tx. A restart (kill -9 included) therefore neither re-sends a
slashing tx the node has nor forgets one it recorded.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from btcmesh.daemons.common import (
    BITCOIN_SPEC,
    BITCOIN_TOML,
    CHAIN_TOML,
    COMMON_SPEC,
    Config,
    EventLog,
    Metrics,
    SqliteRecords,
    StatusFile,
    chain_connection,
    crash_point,
    load_config,
    run_daemon,
)

__all__ = ["SPEC", "DEFAULT_TOML", "SlasherRecords", "SlasherDaemon", "extract_fp_key_from_slashing_tx"]

SPEC = {
    **COMMON_SPEC,
    "daemon.state_dir": (str, "state/slasher"),  # one directory per daemon: several may share a folder
    **BITCOIN_SPEC,
    "slasher.scan_back": (int, 100),
}

DEFAULT_TOML = """\
# btcmesh slasher: completes and broadcasts slashing txs (`btcmesh slasher run --config THIS_FILE`)

""" + CHAIN_TOML + "\n" + BITCOIN_TOML + """
[slasher]
scan_back = 100                        # atomic slasher: blocks scanned back from the tip on first start

[daemon]
state_dir = "@STATE_DIR@"              # slasher.sqlite (what was broadcast), status.json
poll_interval = 0.5
metrics_port = 0                       # Prometheus /metrics on 127.0.0.1; 0 = any free port, -1 = off
"""


class SlasherRecords(SqliteRecords):
    """``slashings``: one row per delegation; ``meta``: the atomic slasher's last scanned height."""

    SCHEMA = ("CREATE TABLE IF NOT EXISTS slashings (staking_tx_hash TEXT PRIMARY KEY, fp_btc_pk TEXT, "
              "path TEXT, txid TEXT, state TEXT, source TEXT, reason TEXT, broadcasts INTEGER NOT NULL "
              "DEFAULT 0, ts REAL)",
              "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")

    def get(self, h: str) -> dict | None:
        row = self.db.execute("SELECT staking_tx_hash, fp_btc_pk, path, txid, state, source, reason, broadcasts "
                              "FROM slashings WHERE staking_tx_hash = ?", (h,)).fetchone()
        if row is None:
            return None
        return dict(zip(("staking_tx_hash", "fp_btc_pk", "path", "txid", "state", "source", "reason", "broadcasts"),
                        row))

    def set(self, h: str, fp: str, path: str, txid: str, state: str, source: str, reason: str = "",
            broadcast: bool = False) -> None:
        self.db.execute("INSERT INTO slashings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(staking_tx_hash) DO "
                        "UPDATE SET fp_btc_pk = excluded.fp_btc_pk, path = excluded.path, txid = excluded.txid, "
                        "state = excluded.state, source = excluded.source, reason = excluded.reason, "
                        "broadcasts = broadcasts + excluded.broadcasts, ts = excluded.ts",
                        (h, fp, path, txid, state, source, reason, int(broadcast), time.time()))

    def all(self) -> list[dict]:
        hs = [r[0] for r in self.db.execute("SELECT staking_tx_hash FROM slashings ORDER BY ts")]
        return [self.get(h) for h in hs]  # type: ignore[misc]

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        (key, value))


def extract_fp_key_from_slashing_tx(delegation: dict, tx: Any, path: str, params: Any) -> tuple[str, bytes] | None:
    """(fp_btc_pk hex, FP secret) from a completed slashing tx of ``delegation`` seen on Bitcoin, or None.

    The covenant signatures in the witness are the covenant adaptor signatures decrypted with the
    FP's key: ``AdaptorSignature.extract(sig)`` gives it back (checked against the FP public key)."""
    from btc_staking.adaptor import AdaptorSignature
    from btc_staking.errors import StakingError
    from btc_staking.keys import xonly_from_secret

    field = "covenant_sigs" if path == "staking" else "covenant_slashing_unbonding_sigs"
    fps = [bytes.fromhex(k) for k in delegation.get("fp_btc_pk_list", [])]
    witness = tx.inputs[0].witness if tx.inputs else []
    items = [w for w in witness[:len(params.covenant_pks)] if len(w) == 64]
    for entry in delegation.get(field) or []:
        for i, raw in enumerate(entry.get("adaptor_sigs", [])):
            if i >= len(fps):
                break
            try:
                adaptor = AdaptorSignature.parse(bytes.fromhex(raw))
            except (StakingError, ValueError):
                continue
            for sig in items:
                try:
                    secret = adaptor.extract(sig)
                except StakingError:
                    continue
                if xonly_from_secret(secret) == fps[i]:
                    return fps[i].hex(), secret
    return None


class SlasherDaemon:
    """Chain + Bitcoin connections, the :class:`checkpoint.slasher.Slasher`, records."""

    def __init__(self, cfg: Config, log: EventLog | None = None, metrics: Metrics | None = None, *,
                 chain: Any = None, btc: Any = None) -> None:
        """Connects to ``chain.rest`` and ``bitcoin.rpc``, unless ``chain`` (a
        :class:`checkpoint.slasher.QuerySlasherChain` with params) and ``btc`` (a BitcoinBackend) are given."""
        from checkpoint.slasher import QuerySlasherChain, Slasher
        from regtest.rpc import RpcBackend

        self.cfg = cfg
        self.log = log or EventLog("slasher")
        self.metrics = metrics or Metrics("slasher")
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.records = SlasherRecords(cfg.state_dir / "slasher.sqlite")
        self.status = StatusFile(cfg.state_dir / "status.json", "slasher")
        self.conn: Any = None
        if chain is None:
            from checkpoint.runner import chain_info

            self.conn = chain_connection(cfg["chain.rest"])
            chain = QuerySlasherChain(query=self.conn.client.query, finality=self.conn.addresses["finality"],
                                      registry=self.conn.addresses["btc_staking"])
            chain.params = chain_info(self.conn.client).params  # latest version (checkpoint.runner reads it so)
        self.chain = chain
        self._own_btc = btc is None
        self.btc = btc if btc is not None else RpcBackend(cfg["bitcoin.rpc"], dialect=cfg["bitcoin.dialect"],
                                                          timeout=30)
        self.slasher = Slasher(self.chain, self.btc)
        self.keys: dict[str, bytes] = {}
        self._said: dict[str, str] = {}

    def close(self) -> None:
        self.records.close()
        if self._own_btc:
            self.btc.close()

    # ------------------------------------------------------------------ slashing one delegation
    def slash_delegation(self, d_json: dict, fp: str, sk: bytes, source: str) -> str:
        """Complete and broadcast one delegation's slashing tx unless the node has it; returns its state."""
        from checkpoint.slasher import SlashableDelegation, SlasherError

        h = str(d_json.get("staking_tx_hash"))
        row = self.records.get(h)
        if row is not None and row["state"] == "confirmed":
            return "confirmed"
        params = self.chain.staking_params()
        try:
            d = SlashableDelegation.from_json(d_json)
            path, tx, _ = self.slasher.build(d, sk, params)
        except SlasherError as exc:
            if self._said.get(h) != str(exc):
                self._said[h] = str(exc)
                self.records.set(h, fp, "", "", "skipped", source, str(exc))
                self.log.warn("slashing_skipped", staking_tx_hash=h, fp_btc_pk=fp, reason=str(exc))
            return "skipped"
        txid = tx.txid_hex()
        known = self.slasher._known(txid)
        if known is not None:
            if row is None or (row["state"] != known and not (row["state"] == "broadcast" and known == "in_mempool")):
                self.records.set(h, fp, path, txid, known, source)
                self.log.info("slashing_confirmed" if known == "confirmed" else "slashing_seen", staking_tx_hash=h,
                              txid=txid, state=known, path=path)
            return known
        self.records.set(h, fp, path, txid, "broadcasting", source, broadcast=True)  # counted before it leaves
        try:
            self.btc.send_raw_transaction(tx.serialize())
        except Exception as exc:  # noqa: BLE001 - TxRejected (e.g. output spent on another path), transport
            self.records.set(h, fp, path, txid, "rejected", source, str(exc))
            if self._said.get(h) != str(exc):
                self._said[h] = str(exc)
                self.metrics.failures.inc()
                self.log.error("slashing_rejected", staking_tx_hash=h, txid=txid, path=path, error=str(exc))
            return "rejected"
        self.metrics.submissions.inc()
        self.metrics.signatures.inc()
        self.log.info("slashing_broadcast", staking_tx_hash=h, fp_btc_pk=fp, txid=txid, path=path, source=source)
        crash_point("slasher-after-broadcast", self.log)
        self.records.set(h, fp, path, txid, "broadcast", source)
        return "broadcast"

    def slash_fp(self, fp: str, sk: bytes, source: str) -> None:
        for d in self.chain.delegations_of_fp(fp):
            self.slash_delegation(d, fp, sk, source)

    # ------------------------------------------------------------------ 1. evidence
    def evidence_round(self) -> None:
        from checkpoint.slasher import KeyMismatchError, recover_fp_secret

        for entry in self.chain.slashed_finality_providers():
            fp = str(entry["fp_btc_pk"]).lower()
            if fp not in self.keys:
                evidence = self.chain.evidence(fp)
                if not evidence:
                    self.log.error("no_evidence", fp_btc_pk=fp)
                    continue
                try:
                    self.keys[fp] = recover_fp_secret(bytes.fromhex(fp), evidence[0], entry.get("extracted_btc_sk"))
                except KeyMismatchError as exc:
                    self.log.error("key_mismatch", fp_btc_pk=fp, error=str(exc))
                    continue
                self.log.info("fp_key_extracted", fp_btc_pk=fp, source="evidence")
            self.slash_fp(fp, self.keys[fp], "evidence")

    # ------------------------------------------------------------------ 2. atomic
    def _watched(self) -> dict[str, tuple[dict, str]]:
        """slashing txid → (delegation, path) for every registered delegation with covenant signatures."""
        out: dict[str, tuple[dict, str]] = {}
        start_after = None
        for _ in range(1000):
            body: dict[str, Any] = {"limit": 100}
            if start_after:
                body["start_after"] = start_after
            reply = self.chain.query(self.chain.registry, {"delegations": body})
            for d in reply["delegations"]:
                if not d.get("covenant_sigs"):
                    continue
                from btc_staking.tx import Tx

                out[Tx.parse(bytes.fromhex(d["slashing_tx"])).txid_hex()] = (d, "staking")
                out[Tx.parse(bytes.fromhex(d["unbonding_slashing_tx"])).txid_hex()] = (d, "unbonding")
            start_after = reply.get("next_key")
            if not start_after:
                break
        return out

    def atomic_round(self, btc_tip: int) -> None:
        from btc_staking.tx import Tx
        from checkpoint.btcparse import parse_block

        last = self.records.meta("scanned_height")
        first = (max(0, btc_tip - self.cfg["slasher.scan_back"]) if last is None else int(last) + 1)
        watched = self._watched()
        if not watched:
            self.records.set_meta("scanned_height", str(btc_tip))
            return
        seen: list[str] = [t for t in self.btc.get_mempool() if t in watched]
        for height in range(first, btc_tip + 1):
            seen += [t for t in parse_block(self.btc.get_block(self.btc.get_block_hash(height))).txids if t in watched]
        params = self.chain.staking_params()
        for txid in seen:
            d, path = watched[txid]
            found = extract_fp_key_from_slashing_tx(d, Tx.parse(self.btc.get_raw_transaction(txid)), path, params)
            if found is None:
                continue
            fp, sk = found
            if fp not in self.keys:
                self.keys[fp] = sk
                self.log.info("fp_key_extracted", fp_btc_pk=fp, source="atomic", slashing_txid=txid,
                              staking_tx_hash=d["staking_tx_hash"])
            self.slash_fp(fp, sk, "atomic")
        self.records.set_meta("scanned_height", str(btc_tip))

    # ------------------------------------------------------------------ round
    def confirm_round(self) -> None:
        """Move broadcast / in-mempool records to confirmed once the node has them in a block."""
        mempool = set(self.btc.get_mempool())
        for row in self.records.all():
            if row["state"] in ("broadcast", "in_mempool", "broadcasting") and row["txid"]:
                if row["txid"] in mempool:
                    continue
                try:
                    self.btc.get_raw_transaction(row["txid"])
                except Exception:  # noqa: BLE001 - not known: the next evidence round rebroadcasts it
                    continue
                self.records.set(row["staking_tx_hash"], row["fp_btc_pk"], row["path"], row["txid"], "confirmed",
                                 row["source"])
                self.log.info("slashing_confirmed", staking_tx_hash=row["staking_tx_hash"], txid=row["txid"])

    def step(self) -> None:
        chain_tip = self.conn.height() if self.conn is not None else 0
        btc_tip = self.btc.get_block_count()
        self.metrics.chain_height.set(chain_tip)
        self.metrics.btc_height.set(btc_tip)
        self.evidence_round()
        self.atomic_round(btc_tip)
        self.confirm_round()
        self.metrics.processed_height.set(btc_tip)
        self.metrics.lag.set(0)
        counts: dict[str, int] = {}
        for row in self.records.all():
            counts[row["state"]] = counts.get(row["state"], 0) + 1
        self.status.update(height=chain_tip, btc_height=btc_tip, slashings=counts)


def cmd_run(args: argparse.Namespace) -> int:
    return run_daemon(SlasherDaemon(load_config(args.config, SPEC)), args.max_rounds)
