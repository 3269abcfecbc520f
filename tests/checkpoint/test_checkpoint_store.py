"""CheckpointStore: atomic block connect/disconnect, intents, submissions, dead letters, restart."""

from __future__ import annotations

import sqlite3

import pytest

from checkpoint.errors import InvalidInputError, StoreError
from checkpoint.store import CheckpointStore, DetectedTx, WatchedOutput, submission_key

H = b"\x00" * 80


def _stake(txid: str, index: int = 1) -> DetectedTx:
    return DetectedTx(txid=txid, kind="staking", tx_index=index, raw_tx=b"\x01\x02", staking_txid=txid,
                      staking_vout=0, value=100_000, intent_id=None, staker_pk="aa", fp_pks=("bb",),
                      staking_time=100,
                      new_watched=(WatchedOutput(f"{txid}:0", "staking", txid, txid, b"\x51", b"\x52", b"\x53"),),
                      submission_kind="delegation")


def test_connect_disconnect_and_restart(tmp_path):
    path = tmp_path / "s.sqlite"
    s = CheckpointStore(path)
    s.connect_block(0, "a0", "00" * 32, H, [])
    s.connect_block(1, "a1", "a0", H, [_stake("t1")])
    s.connect_block(2, "a2", "a1", H, [])
    with pytest.raises(StoreError, match="does not extend"):
        s.connect_block(3, "x3", "zz", H, [])
    assert s.tip().hash == "a2"
    key = submission_key("delegation", "t1")
    assert s.submission(key).status == "waiting"
    assert [x.key for x in s.due_submissions(tip_height=3, k=2, now=0)] == [key]   # depth 2 (tip = depth 0)
    assert s.due_submissions(tip_height=2, k=2, now=0) == []          # depth 1 < k
    s.mark_submitting(key, "a1")
    s.mark_done(key, "CHAINTX", "a1")
    s.close()

    s = CheckpointStore(path)  # restart: everything is still there
    assert s.tip().hash == "a2" and s.submission(key).status == "done"
    assert s.watched_output("t1:0").unbonding_script == b"\x52"
    gone = s.disconnect_above(0)
    assert [b.hash for b in gone] == ["a2", "a1"]
    assert s.submission(key).status == "reorged"
    assert s.btc_tx("t1").block_hash is None
    # re-mined on the new branch: back to waiting so the service re-verifies depth
    s.connect_block(1, "b1", "a0", H, [_stake("t1", 2)])
    assert s.submission(key).status == "waiting" and s.btc_tx("t1").block_hash == "b1"
    s.close()


def test_failed_connect_writes_nothing(tmp_path):
    s = CheckpointStore(tmp_path / "s.sqlite")
    s.connect_block(0, "a0", "00" * 32, H, [])
    bad = DetectedTx(txid="t", kind="bogus", tx_index=0, raw_tx=b"", staking_txid="t")
    with pytest.raises(InvalidInputError):
        s.connect_block(1, "a1", "a0", H, [_stake("t0"), bad])
    assert s.tip().hash == "a0" and s.btc_tx("t0") is None and s.submissions() == []
    with pytest.raises(InvalidInputError, match="80 bytes"):
        s.connect_block(1, "a1", "a0", b"\x00", [])


def test_pending_submission_goes_back_to_waiting_on_reorg(tmp_path):
    s = CheckpointStore(tmp_path / "s.sqlite")
    s.connect_block(0, "a0", "00" * 32, H, [])
    s.connect_block(1, "a1", "a0", H, [_stake("t1")])
    key = submission_key("delegation", "t1")
    s.mark_submitting(key, "a1")
    s.record_transient_failure(key, "boom", 1e12)
    s.disconnect_above(0)
    sub = s.submission(key)
    assert sub.status == "waiting" and sub.attempts == 0 and sub.next_attempt_at == 0
    assert s.due_submissions(tip_height=10, k=1, now=0) == []   # unconfirmed: never due


def test_dead_letter_and_config_binding(tmp_path):
    s = CheckpointStore(tmp_path / "s.sqlite")
    s.check_config("cfg-A")
    s.connect_block(0, "a0", "00" * 32, H, [_stake("t1")])
    key = submission_key("delegation", "t1")
    s.dead_letter(key, 7, "bad proof")
    assert s.submission(key).status == "dead"
    assert [(d.key, d.code, d.reason) for d in s.dead_letters()] == [(key, 7, "bad proof")]
    with pytest.raises(StoreError):
        s.mark_done(key, "x", "a0")
    s.close()
    s = CheckpointStore(tmp_path / "s.sqlite")
    with pytest.raises(StoreError, match="another configuration"):
        s.check_config("cfg-B")


def test_intents_idempotent(tmp_path):
    s = CheckpointStore(tmp_path / "s.sqlite")
    a = s.add_intent(b"\x51\x20" + b"\x01" * 32, 1000, "aa", ["bb"], 100, {"pop": "x"})
    assert s.add_intent(b"\x51\x20" + b"\x01" * 32, 1000, "aa", ["bb"], 100, {"pop": "x"}).id == a.id
    with pytest.raises(InvalidInputError, match="different material"):
        s.add_intent(b"\x51\x20" + b"\x01" * 32, 1000, "aa", ["bb"], 100, {"pop": "y"})
    assert s.intent(a.id).material == {"pop": "x"}


def test_schema_constraints_hold(tmp_path):
    s = CheckpointStore(tmp_path / "s.sqlite")
    s.close()
    conn = sqlite3.connect(tmp_path / "s.sqlite")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO submissions(key, kind, btc_txid, staking_txid, status, updated_at) "
                     "VALUES ('k','delegation','t','t','bogus',0)")


def test_schema_1_store_is_migrated_on_open(tmp_path):
    from checkpoint import store as store_mod

    path = tmp_path / "v1.sqlite"
    v1 = store_mod._SCHEMA.replace("CHECK (kind IN ('delegation','undelegate','withdraw','slashing'))",
                                   "CHECK (kind IN ('delegation','undelegate','withdraw'))")
    assert v1 != store_mod._SCHEMA
    con = sqlite3.connect(path)
    con.executescript(v1)
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.execute("INSERT INTO blocks VALUES (0, 'a0', ?, ?)", ("00" * 32, H))
    con.execute("INSERT INTO btc_txs(txid, kind, staking_txid, raw_tx, block_hash, block_height, detected_at) "
                "VALUES ('t1', 'staking', 't1', x'01', 'a0', 0, 1.0)")
    con.execute("INSERT INTO submissions(key, kind, btc_txid, staking_txid, status, updated_at) "
                "VALUES ('delegation:t1', 'delegation', 't1', 't1', 'dead', 1.0)")
    con.execute("INSERT INTO dead_letters VALUES ('delegation:t1', 4, 'bad signature', 1.0)")
    with pytest.raises(sqlite3.IntegrityError):   # schema 1 has no 'slashing' submissions
        con.execute("INSERT INTO submissions(key, kind, btc_txid, staking_txid, status, updated_at) "
                    "VALUES ('slashing:t1', 'slashing', 't1', 't1', 'waiting', 1.0)")
    con.commit()
    con.close()

    s = CheckpointStore(path)
    assert s.get_meta("schema_version") == "2"
    assert s.submission("delegation:t1").status == "dead"
    (dl,) = s.dead_letters()
    assert (dl.key, dl.code, dl.reason) == ("delegation:t1", 4, "bad signature")
    assert s._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    s._conn.execute("INSERT INTO submissions(key, kind, btc_txid, staking_txid, status, updated_at) "
                    "VALUES ('slashing:t1', 'slashing', 't1', 't1', 'waiting', 1.0)")
    assert s.submission("slashing:t1").kind == "slashing"
    s.close()
    s = CheckpointStore(path)                      # reopening a migrated store is a no-op
    assert s.get_meta("schema_version") == "2" and len(s.submissions()) == 2
    s.close()
