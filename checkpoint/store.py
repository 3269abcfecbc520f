"""SQLite state of the checkpoint service.

Every public method runs in one SQLite transaction (``BEGIN IMMEDIATE`` …
``COMMIT``, rolled back on any error), so the state on disk is never half
written; WAL + ``synchronous=FULL`` make a committed step survive a crash.

Schema (version 2)::

    meta(key TEXT PK, value TEXT)                       -- schema version, config fingerprint
    blocks(height INT PK, hash TEXT UNIQUE, prev_hash TEXT, header BLOB)
        -- the best chain as last processed; used to find the fork point on restart
    intents(id INT PK, pk_script TEXT, value INT, staker_pk TEXT, fp_pks TEXT(json),
            staking_time INT, material TEXT(json), created_at REAL, UNIQUE(pk_script, value))
        -- registered staking intents: the staker's delegation material waiting for its lock
    btc_txs(txid TEXT PK, kind staking|unbonding|withdraw|slashing, staking_txid TEXT,
            staking_vout INT, spent_outpoint TEXT, value INT, intent_id INT, staker_pk TEXT,
            fp_pks TEXT(json), staking_time INT, raw_tx BLOB,
            block_hash TEXT, block_height INT, tx_index INT, detected_at REAL)
        -- every relevant Bitcoin tx seen; block_* are NULL while it is not on the best chain
    watched_outputs(outpoint TEXT PK "txid:vout", role staking|unbonding|slashing_change,
            staking_txid TEXT, created_by TEXT, timelock_script TEXT, unbonding_script TEXT,
            slashing_script TEXT)
        -- outputs whose spends are classified (unbonding / withdraw / slashing)
    submissions(key TEXT PK "<kind>:<btc txid>", kind delegation|undelegate|withdraw|slashing,
            btc_txid TEXT, staking_txid TEXT,
            status waiting|submitting|done|dead|reorged, attempts INT, next_attempt_at REAL,
            last_error TEXT, chain_tx_hash TEXT, attested_block_hash TEXT, updated_at REAL)
        -- one row per attestation; the key makes submission idempotent
    dead_letters(key TEXT PK -> submissions.key, code INT, reason TEXT, at REAL)
        -- deterministic rejections, never retried
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checkpoint.errors import InvalidInputError, StoreError

SCHEMA_VERSION = "2"  # 2: submissions.kind also 'slashing' (v1 stores are migrated on open)

SUBMISSION_KINDS = ("delegation", "undelegate", "withdraw", "slashing")
TX_KINDS = ("staking", "unbonding", "withdraw", "slashing")
WATCH_ROLES = ("staking", "unbonding", "slashing_change")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    prev_hash TEXT NOT NULL,
    header BLOB NOT NULL CHECK (length(header) = 80)
);
CREATE TABLE IF NOT EXISTS intents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pk_script TEXT NOT NULL,
    value INTEGER NOT NULL CHECK (value > 0),
    staker_pk TEXT NOT NULL,
    fp_pks TEXT NOT NULL,
    staking_time INTEGER NOT NULL,
    material TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (pk_script, value)
);
CREATE TABLE IF NOT EXISTS btc_txs (
    txid TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('staking','unbonding','withdraw','slashing')),
    staking_txid TEXT NOT NULL,
    staking_vout INTEGER,
    spent_outpoint TEXT,
    value INTEGER,
    intent_id INTEGER REFERENCES intents(id),
    staker_pk TEXT,
    fp_pks TEXT,
    staking_time INTEGER,
    raw_tx BLOB NOT NULL,
    block_hash TEXT,
    block_height INTEGER,
    tx_index INTEGER,
    detected_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS btc_txs_height ON btc_txs(block_height);
CREATE TABLE IF NOT EXISTS watched_outputs (
    outpoint TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('staking','unbonding','slashing_change')),
    staking_txid TEXT NOT NULL,
    created_by TEXT NOT NULL,
    timelock_script TEXT,
    unbonding_script TEXT,
    slashing_script TEXT
);
CREATE TABLE IF NOT EXISTS submissions (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('delegation','undelegate','withdraw','slashing')),
    btc_txid TEXT NOT NULL REFERENCES btc_txs(txid),
    staking_txid TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('waiting','submitting','done','dead','reorged')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    chain_tx_hash TEXT,
    attested_block_hash TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    key TEXT PRIMARY KEY REFERENCES submissions(key),
    code INTEGER,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class StoredBlock:
    """A processed block on the stored best chain."""

    height: int
    hash: str
    prev_hash: str
    header: bytes


@dataclass(frozen=True)
class Intent:
    """A registered staking intent (the staker's material waiting for its lock)."""

    id: int
    pk_script: bytes
    value: int
    staker_pk: str
    fp_pks: tuple[str, ...]
    staking_time: int
    material: dict[str, Any]


@dataclass(frozen=True)
class WatchedOutput:
    """An output whose spends the follower classifies."""

    outpoint: str
    role: str
    staking_txid: str
    created_by: str
    timelock_script: bytes | None = None
    unbonding_script: bytes | None = None
    slashing_script: bytes | None = None


@dataclass(frozen=True)
class BtcTx:
    """A relevant Bitcoin transaction and where it sits on the best chain."""

    txid: str
    kind: str
    staking_txid: str
    staking_vout: int | None
    spent_outpoint: str | None
    value: int | None
    intent_id: int | None
    staker_pk: str | None
    fp_pks: tuple[str, ...] | None
    staking_time: int | None
    raw_tx: bytes
    block_hash: str | None
    block_height: int | None
    tx_index: int | None


@dataclass(frozen=True)
class Submission:
    """One attestation to the chain and its status."""

    key: str
    kind: str
    btc_txid: str
    staking_txid: str
    status: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    chain_tx_hash: str | None
    attested_block_hash: str | None


@dataclass(frozen=True)
class DeadLetter:
    """A deterministically rejected attestation and the chain's reason."""

    key: str
    code: int | None
    reason: str
    at: float


@dataclass(frozen=True)
class DetectedTx:
    """What the detector found in one block: a tx row plus outputs to watch."""

    txid: str
    kind: str
    tx_index: int
    raw_tx: bytes
    staking_txid: str
    staking_vout: int | None = None
    spent_outpoint: str | None = None
    value: int | None = None
    intent_id: int | None = None
    staker_pk: str | None = None
    fp_pks: tuple[str, ...] | None = None
    staking_time: int | None = None
    new_watched: tuple[WatchedOutput, ...] = ()
    submission_kind: str | None = None


def submission_key(kind: str, btc_txid: str) -> str:
    """The unique idempotency key of an attestation."""
    return f"{kind}:{btc_txid}"


def _hex(b: bytes | None) -> str | None:
    return None if b is None else bytes(b).hex()


def _unhex(s: str | None) -> bytes | None:
    return None if s is None else bytes.fromhex(s)


class CheckpointStore:
    """Persistent state of the checkpoint service (thread-safe, one connection)."""

    def __init__(self, path: str | Path) -> None:
        """Open (creating if needed) the SQLite database at ``path``."""
        self.path = Path(path)
        if self.path.exists() and self.path.is_dir():
            raise InvalidInputError(f"store path {self.path} is a directory")
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=10.0)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._migrate_v1()
        self._conn.execute("PRAGMA foreign_keys=ON")
        with self._tx() as c:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    c.execute(stmt)
            row = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                c.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            elif row["value"] != SCHEMA_VERSION:
                raise StoreError(f"store {self.path} has schema {row['value']}, expected {SCHEMA_VERSION}")

    def _migrate_v1(self) -> None:
        """Schema 1 → 2: rebuild ``submissions`` with the wider ``kind`` check, in one transaction
        (foreign keys off meanwhile, as SQLite's table-rebuild procedure requires)."""
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.OperationalError:  # a new, empty database
            return
        if row is None or row["value"] != "1":
            return
        self._conn.execute("PRAGMA foreign_keys=OFF")
        with self._tx() as c:
            table = _SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS submissions"):]
            table = table[:table.index(";")].replace("IF NOT EXISTS submissions", "submissions_v2")
            c.execute(table)
            c.execute("INSERT INTO submissions_v2 SELECT * FROM submissions")
            c.execute("DROP TABLE submissions")
            c.execute("ALTER TABLE submissions_v2 RENAME TO submissions")
            c.execute("UPDATE meta SET value=? WHERE key='schema_version'", (SCHEMA_VERSION,))
            bad = c.execute("PRAGMA foreign_key_check").fetchall()
            if bad:
                raise StoreError(f"store {self.path}: migration to schema {SCHEMA_VERSION} broke foreign keys")

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """Run the body in one IMMEDIATE transaction; roll back on any exception."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "CheckpointStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ config
    def check_config(self, fingerprint: str) -> None:
        """Bind the store to one configuration; refuse a store made for another."""
        with self._tx() as c:
            row = c.execute("SELECT value FROM meta WHERE key='config'").fetchone()
            if row is None:
                c.execute("INSERT INTO meta(key, value) VALUES ('config', ?)", (fingerprint,))
            elif row["value"] != fingerprint:
                raise StoreError(
                    f"store {self.path} was created for another configuration "
                    f"({row['value'][:16]}… != {fingerprint[:16]}…)"
                )

    def get_meta(self, key: str) -> str | None:
        """Read a metadata value."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def set_meta(self, key: str, value: str) -> None:
        """Write a metadata value."""
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------------ blocks
    def tip(self) -> StoredBlock | None:
        """The highest processed block, or None when nothing was processed."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM blocks ORDER BY height DESC LIMIT 1").fetchone()
        return None if row is None else self._block(row)

    def block_at(self, height: int) -> StoredBlock | None:
        """The processed block at ``height`` on the stored best chain."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM blocks WHERE height=?", (height,)).fetchone()
        return None if row is None else self._block(row)

    def blocks_desc(self, limit: int) -> list[StoredBlock]:
        """Up to ``limit`` stored blocks, highest first."""
        with self._lock:
            rows = self._conn.execute("SELECT * FROM blocks ORDER BY height DESC LIMIT ?", (limit,)).fetchall()
        return [self._block(r) for r in rows]

    def block_count(self) -> int:
        """How many blocks are stored."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM blocks").fetchone()[0])

    @staticmethod
    def _block(row: sqlite3.Row) -> StoredBlock:
        return StoredBlock(int(row["height"]), row["hash"], row["prev_hash"], bytes(row["header"]))

    def connect_block(self, height: int, block_hash: str, prev_hash: str, header: bytes,
                      detected: list[DetectedTx]) -> None:
        """Record a processed block and everything detected in it, atomically.

        The block must extend the stored tip (or be the first block stored).
        """
        if len(header) != 80:
            raise InvalidInputError(f"header must be 80 bytes, got {len(header)}")
        now = time.time()
        with self._tx() as c:
            tip = c.execute("SELECT height, hash FROM blocks ORDER BY height DESC LIMIT 1").fetchone()
            if tip is not None and (tip["height"] + 1 != height or tip["hash"] != prev_hash):
                raise StoreError(
                    f"block {block_hash} at {height} does not extend stored tip {tip['hash']} at {tip['height']}"
                )
            c.execute("INSERT INTO blocks(height, hash, prev_hash, header) VALUES (?,?,?,?)",
                      (height, block_hash, prev_hash, bytes(header)))
            for d in detected:
                if d.kind not in TX_KINDS:
                    raise InvalidInputError(f"unknown tx kind {d.kind!r}")
                existing = c.execute("SELECT txid FROM btc_txs WHERE txid=?", (d.txid,)).fetchone()
                if existing is None:
                    c.execute(
                        "INSERT INTO btc_txs(txid, kind, staking_txid, staking_vout, spent_outpoint, value, "
                        "intent_id, staker_pk, fp_pks, staking_time, raw_tx, block_hash, block_height, "
                        "tx_index, detected_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (d.txid, d.kind, d.staking_txid, d.staking_vout, d.spent_outpoint, d.value, d.intent_id,
                         d.staker_pk, None if d.fp_pks is None else json.dumps(list(d.fp_pks)), d.staking_time,
                         bytes(d.raw_tx), block_hash, height, d.tx_index, now),
                    )
                else:  # re-mined after a reorg (or seen again): move it to this block
                    c.execute(
                        "UPDATE btc_txs SET block_hash=?, block_height=?, tx_index=?, "
                        "intent_id=COALESCE(intent_id, ?) WHERE txid=?",
                        (block_hash, height, d.tx_index, d.intent_id, d.txid),
                    )
                    # an attested lock that a reorg removed is back on the best chain:
                    # let the normal flow re-verify its depth (it will find it registered)
                    c.execute("UPDATE submissions SET status='waiting', updated_at=?, "
                              "last_error='re-mined after reorg' WHERE btc_txid=? AND status='reorged'",
                              (now, d.txid))
                for w in d.new_watched:
                    c.execute(
                        "INSERT OR IGNORE INTO watched_outputs(outpoint, role, staking_txid, created_by, "
                        "timelock_script, unbonding_script, slashing_script) VALUES (?,?,?,?,?,?,?)",
                        (w.outpoint, w.role, w.staking_txid, w.created_by, _hex(w.timelock_script),
                         _hex(w.unbonding_script), _hex(w.slashing_script)),
                    )
                if d.submission_kind is not None:
                    key = submission_key(d.submission_kind, d.txid)
                    c.execute(
                        "INSERT OR IGNORE INTO submissions(key, kind, btc_txid, staking_txid, status, attempts, "
                        "next_attempt_at, updated_at) VALUES (?,?,?,?, 'waiting', 0, 0, ?)",
                        (key, d.submission_kind, d.txid, d.staking_txid, now),
                    )

    def disconnect_above(self, height: int) -> list[StoredBlock]:
        """Undo every stored block above ``height`` (a reorg), atomically.

        Txs in those blocks become unconfirmed; their submissions that were not
        yet done go back to ``waiting`` (attempt counters reset); submissions
        already ``done`` become ``reorged``. Returns the disconnected blocks.
        """
        now = time.time()
        with self._tx() as c:
            rows = c.execute("SELECT * FROM blocks WHERE height>? ORDER BY height DESC", (height,)).fetchall()
            gone = [self._block(r) for r in rows]
            if not gone:
                return []
            c.execute(
                "UPDATE submissions SET status='waiting', attempts=0, next_attempt_at=0, updated_at=?, "
                "last_error='block disconnected by reorg' WHERE status IN ('waiting','submitting') AND btc_txid IN "
                "(SELECT txid FROM btc_txs WHERE block_height>?)",
                (now, height),
            )
            c.execute(
                "UPDATE submissions SET status='reorged', updated_at=?, "
                "last_error='attested block disconnected by reorg' WHERE status='done' AND btc_txid IN "
                "(SELECT txid FROM btc_txs WHERE block_height>?)",
                (now, height),
            )
            c.execute("UPDATE btc_txs SET block_hash=NULL, block_height=NULL, tx_index=NULL WHERE block_height>?",
                      (height,))
            c.execute("DELETE FROM blocks WHERE height>?", (height,))
            return gone

    # ------------------------------------------------------------------ intents
    def add_intent(self, pk_script: bytes, value: int, staker_pk: str, fp_pks: list[str] | tuple[str, ...],
                   staking_time: int, material: dict[str, Any]) -> Intent:
        """Register (idempotently) a staking intent; a different material for the same lock is refused."""
        blob = json.dumps(material, sort_keys=True)
        with self._tx() as c:
            row = c.execute("SELECT * FROM intents WHERE pk_script=? AND value=?",
                            (bytes(pk_script).hex(), value)).fetchone()
            if row is not None:
                if row["material"] != blob:
                    raise InvalidInputError("an intent for this staking script and value is already registered "
                                            "with different material")
                return self._intent(row)
            cur = c.execute(
                "INSERT INTO intents(pk_script, value, staker_pk, fp_pks, staking_time, material, created_at) "
                "VALUES (?,?,?,?,?,?,?)",
                (bytes(pk_script).hex(), value, staker_pk, json.dumps(list(fp_pks)), staking_time, blob, time.time()),
            )
            row = c.execute("SELECT * FROM intents WHERE id=?", (cur.lastrowid,)).fetchone()
            return self._intent(row)

    def intents(self) -> list[Intent]:
        """All registered intents."""
        with self._lock:
            rows = self._conn.execute("SELECT * FROM intents ORDER BY id").fetchall()
        return [self._intent(r) for r in rows]

    def intent(self, intent_id: int) -> Intent | None:
        """One intent by id."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM intents WHERE id=?", (intent_id,)).fetchone()
        return None if row is None else self._intent(row)

    @staticmethod
    def _intent(row: sqlite3.Row) -> Intent:
        return Intent(int(row["id"]), bytes.fromhex(row["pk_script"]), int(row["value"]), row["staker_pk"],
                      tuple(json.loads(row["fp_pks"])), int(row["staking_time"]), json.loads(row["material"]))

    # ------------------------------------------------------------------ txs / watched outputs
    def watched_output(self, outpoint: str) -> WatchedOutput | None:
        """A watched output by ``txid:vout``."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM watched_outputs WHERE outpoint=?", (outpoint,)).fetchone()
        if row is None:
            return None
        return WatchedOutput(row["outpoint"], row["role"], row["staking_txid"], row["created_by"],
                             _unhex(row["timelock_script"]), _unhex(row["unbonding_script"]),
                             _unhex(row["slashing_script"]))

    def btc_tx(self, txid: str) -> BtcTx | None:
        """A stored relevant tx by display-order txid."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM btc_txs WHERE txid=?", (txid,)).fetchone()
        return None if row is None else self._btc_tx(row)

    def btc_txs(self, kind: str | None = None) -> list[BtcTx]:
        """All stored relevant txs (optionally of one kind)."""
        with self._lock:
            if kind is None:
                rows = self._conn.execute("SELECT * FROM btc_txs ORDER BY detected_at, txid").fetchall()
            else:
                rows = self._conn.execute("SELECT * FROM btc_txs WHERE kind=? ORDER BY detected_at, txid",
                                          (kind,)).fetchall()
        return [self._btc_tx(r) for r in rows]

    @staticmethod
    def _btc_tx(row: sqlite3.Row) -> BtcTx:
        return BtcTx(
            txid=row["txid"], kind=row["kind"], staking_txid=row["staking_txid"], staking_vout=row["staking_vout"],
            spent_outpoint=row["spent_outpoint"], value=row["value"], intent_id=row["intent_id"],
            staker_pk=row["staker_pk"],
            fp_pks=None if row["fp_pks"] is None else tuple(json.loads(row["fp_pks"])),
            staking_time=row["staking_time"], raw_tx=bytes(row["raw_tx"]), block_hash=row["block_hash"],
            block_height=row["block_height"], tx_index=row["tx_index"],
        )

    def attach_intent(self, staking_txid: str, intent_id: int) -> None:
        """Give a lock found without material (V0 OP_RETURN) the intent registered later."""
        now = time.time()
        with self._tx() as c:
            c.execute("UPDATE btc_txs SET intent_id=? WHERE txid=? AND kind='staking' AND intent_id IS NULL",
                      (intent_id, staking_txid))
            c.execute(
                "INSERT OR IGNORE INTO submissions(key, kind, btc_txid, staking_txid, status, attempts, "
                "next_attempt_at, updated_at) VALUES (?, 'delegation', ?, ?, 'waiting', 0, 0, ?)",
                (submission_key("delegation", staking_txid), staking_txid, staking_txid, now),
            )
            # a V0 lock postponed while waiting for its registration: the material is here now
            c.execute("UPDATE submissions SET next_attempt_at=0, updated_at=? WHERE key=? AND status='waiting'",
                      (now, submission_key("delegation", staking_txid)))

    # ------------------------------------------------------------------ submissions
    def submission(self, key: str) -> Submission | None:
        """One submission by key."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM submissions WHERE key=?", (key,)).fetchone()
        return None if row is None else self._submission(row)

    def submissions(self, status: str | None = None) -> list[Submission]:
        """All submissions (optionally with one status)."""
        with self._lock:
            if status is None:
                rows = self._conn.execute("SELECT * FROM submissions ORDER BY key").fetchall()
            else:
                rows = self._conn.execute("SELECT * FROM submissions WHERE status=? ORDER BY key",
                                          (status,)).fetchall()
        return [self._submission(r) for r in rows]

    def due_submissions(self, tip_height: int, k: int, now: float) -> list[Submission]:
        """Waiting/in-flight submissions whose tx's block is ≥ k deep (tip depth 0) and whose backoff elapsed."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT s.* FROM submissions s JOIN btc_txs t ON t.txid = s.btc_txid "
                "WHERE s.status IN ('waiting','submitting') AND t.block_height IS NOT NULL "
                "AND ? - t.block_height >= ? AND s.next_attempt_at <= ? "
                "ORDER BY t.block_height, t.tx_index, s.key",
                (tip_height, k, now),
            ).fetchall()
        return [self._submission(r) for r in rows]

    @staticmethod
    def _submission(row: sqlite3.Row) -> Submission:
        return Submission(row["key"], row["kind"], row["btc_txid"], row["staking_txid"], row["status"],
                          int(row["attempts"]), float(row["next_attempt_at"]), row["last_error"],
                          row["chain_tx_hash"], row["attested_block_hash"])

    def _set_status(self, key: str, allowed_from: tuple[str, ...], **fields: Any) -> None:
        fields["updated_at"] = time.time()
        cols = ", ".join(f"{k}=?" for k in fields)
        with self._tx() as c:
            row = c.execute("SELECT status FROM submissions WHERE key=?", (key,)).fetchone()
            if row is None:
                raise StoreError(f"no submission {key!r}")
            if row["status"] not in allowed_from:
                raise StoreError(f"submission {key!r} is {row['status']}, expected one of {allowed_from}")
            c.execute(f"UPDATE submissions SET {cols} WHERE key=?", (*fields.values(), key))

    def mark_submitting(self, key: str, block_hash: str) -> None:
        """Record that a broadcast is about to happen (crash-safe marker)."""
        with self._tx() as c:
            row = c.execute("SELECT status, attempts FROM submissions WHERE key=?", (key,)).fetchone()
            if row is None or row["status"] not in ("waiting", "submitting"):
                raise StoreError(f"submission {key!r} cannot be submitted from state "
                                 f"{None if row is None else row['status']}")
            c.execute("UPDATE submissions SET status='submitting', attempts=attempts+1, attested_block_hash=?, "
                      "updated_at=? WHERE key=?", (block_hash, time.time(), key))

    def mark_done(self, key: str, chain_tx_hash: str | None, block_hash: str, note: str | None = None) -> None:
        """The chain has the attestation."""
        self._set_status(key, ("waiting", "submitting"), status="done", chain_tx_hash=chain_tx_hash,
                         attested_block_hash=block_hash, last_error=note)

    def record_transient_failure(self, key: str, error: str, next_attempt_at: float) -> None:
        """A retryable failure: go back to waiting until ``next_attempt_at``."""
        self._set_status(key, ("waiting", "submitting"), status="waiting", last_error=error,
                         next_attempt_at=next_attempt_at)

    def postpone(self, key: str, next_attempt_at: float, note: str) -> None:
        """Not a failure: wait until ``next_attempt_at`` (attempt counter reset)."""
        self._set_status(key, ("waiting", "submitting"), status="waiting", attempts=0, last_error=note,
                         next_attempt_at=next_attempt_at)

    def dead_letter(self, key: str, code: int | None, reason: str) -> None:
        """Move a submission to the dead-letter list with the chain's reason."""
        now = time.time()
        with self._tx() as c:
            row = c.execute("SELECT status FROM submissions WHERE key=?", (key,)).fetchone()
            if row is None:
                raise StoreError(f"no submission {key!r}")
            c.execute("UPDATE submissions SET status='dead', last_error=?, updated_at=? WHERE key=?",
                      (reason, now, key))
            c.execute("INSERT OR REPLACE INTO dead_letters(key, code, reason, at) VALUES (?,?,?,?)",
                      (key, code, reason, now))

    def dead_letters(self) -> list[DeadLetter]:
        """The dead-letter list."""
        with self._lock:
            rows = self._conn.execute("SELECT * FROM dead_letters ORDER BY at, key").fetchall()
        return [DeadLetter(r["key"], r["code"], r["reason"], float(r["at"])) for r in rows]
