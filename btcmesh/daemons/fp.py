"""``btcmesh fp``: the finality-provider daemon (Babylon's finality-provider + eotsd in one process).

``run`` keeps EOTS public randomness committed ahead of the chain's height (``[fp] pub_rand_batch``
heights at a time, a new batch when fewer than ``pub_rand_ahead`` remain) and votes on every block's
app hash, several heights per tx when it is behind. Signing goes through the finality-provider client
(:class:`btcmesh.finality_provider.FinalityProvider`: nonces, commitments, vote messages), guarded
by :class:`SigningRecords`, a SQLite table written *before* a signature leaves the process: once
an app hash is recorded for a height, no other app hash is ever signed at that height, across
kill -9 and restarts (eotsd's slashing protection). ``sign`` is the same protected signing as a
command (prints the signature or refuses).

``double-sign`` is the deliberate way to equivocate, for the devnet's slashing scenario and tests
only: it signs a fork app hash at a height this FP already voted on and submits it, bypassing the
protection on purpose (it is recorded in the ``equivocations`` table and logged as a warning).
"""

from __future__ import annotations

import argparse
import hashlib
import time
from typing import Any

from btcmesh.daemons.common import (
    CHAIN_TOML,
    COMMON_SPEC,
    Config,
    ConfigError,
    EventLog,
    Metrics,
    SqliteRecords,
    StatusFile,
    chain_connection,
    crash_point,
    execute_many,
    load_config,
    read_key_file,
    run_daemon,
)

__all__ = ["SPEC", "DEFAULT_TOML", "SigningRecords", "FpDaemon", "UNJAIL_MSG"]

SPEC = {
    **COMMON_SPEC,
    "daemon.state_dir": (str, "state/fp"),  # one directory per daemon: several may share a folder
    "fp.btc_key_file": (str, "fp-btc.key"),
    "fp.cosmos_key_file": (str, "fp-cosmos.key"),
    "fp.moniker": (str, "btcmesh-fp"),
    "fp.commission": (str, "0.05"),
    "fp.pub_rand_batch": (int, 100),
    "fp.pub_rand_ahead": (int, 20),
    "fp.max_votes_per_tx": (int, 10),
}

DEFAULT_TOML = """\
# btcmesh fp: finality provider daemon (`btcmesh fp run --config THIS_FILE`)

""" + CHAIN_TOML + """
[fp]
# 32-byte hex secrets, mode 0600 (relative paths are relative to this file)
btc_key_file = "fp-btc.key"            # the EOTS / BTC key (x-only public key = the FP's identity)
cosmos_key_file = "fp-cosmos.key"      # the Cosmos account that signs the FP's txs (needs fees)
moniker = "@MONIKER@"
commission = "0.05"
pub_rand_batch = 100                   # heights per public-randomness commit
pub_rand_ahead = 20                    # commit the next batch when fewer heights than this remain
max_votes_per_tx = 10                  # catch-up: votes on several heights in one tx

[daemon]
state_dir = "@STATE_DIR@"              # fp.sqlite (signing records), status.json
poll_interval = 0.2                    # seconds between rounds (votes are due within finality_sig_timeout blocks)
metrics_port = 0                       # Prometheus /metrics on 127.0.0.1; 0 = any free port, -1 = off
"""

#: The finality module's unjail message (Babylon's MsgUnjailFinalityProvider; sent by ``FinalityProvider.unjail``).
UNJAIL_MSG = "unjail_finality_provider"


class SigningRecords(SqliteRecords):
    """eotsd-style slashing protection: ``signed(height → app_hash)`` in SQLite, written before signing."""

    SCHEMA = ("CREATE TABLE IF NOT EXISTS signed (height INTEGER PRIMARY KEY, app_hash TEXT NOT NULL, "
              "state TEXT NOT NULL, ts REAL NOT NULL)",
              "CREATE TABLE IF NOT EXISTS equivocations (height INTEGER, app_hash TEXT, ts REAL)")

    def allow(self, height: int, app_hash: bytes) -> bool:
        """Record ``app_hash`` at ``height`` (durably) and return True, or False if another hash is recorded."""
        h = bytes(app_hash).hex()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.db.execute("SELECT app_hash FROM signed WHERE height = ?", (height,)).fetchone()
            if row is None:
                self.db.execute("INSERT INTO signed VALUES (?, ?, 'signing', ?)", (height, h, time.time()))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return row is None or row[0] == h

    def mark(self, heights: list[int], state: str) -> None:
        self.db.executemany("UPDATE signed SET state = ? WHERE height = ?", [(state, h) for h in heights])

    def recorded(self, height: int) -> str | None:
        row = self.db.execute("SELECT app_hash FROM signed WHERE height = ?", (height,)).fetchone()
        return None if row is None else str(row[0])

    def last_height(self) -> int | None:
        row = self.db.execute("SELECT MAX(height) FROM signed").fetchone()
        return None if row[0] is None else int(row[0])

    def last_submitted(self) -> int | None:
        row = self.db.execute("SELECT MAX(height) FROM signed WHERE state = 'submitted'").fetchone()
        return None if row[0] is None else int(row[0])

    def note_equivocation(self, height: int, app_hash: bytes) -> None:
        self.db.execute("INSERT INTO equivocations VALUES (?, ?, ?)", (height, bytes(app_hash).hex(), time.time()))

    def count(self, height: int | None = None) -> int:
        if height is None:
            return int(self.db.execute("SELECT COUNT(*) FROM signed").fetchone()[0])
        return int(self.db.execute("SELECT COUNT(*) FROM signed WHERE height = ?", (height,)).fetchone()[0])


def check_commission(value: str) -> None:
    """ConfigError naming ``fp.commission`` unless it is a decimal in [0, 1] (what the chain accepts)."""
    from decimal import Decimal, InvalidOperation

    try:
        rate = Decimal(value)
    except InvalidOperation:
        raise ConfigError(f"key fp.commission: expected a decimal rate like \"0.05\", got {value!r}") from None
    if not rate.is_finite() or not Decimal(0) <= rate <= Decimal(1):
        raise ConfigError(f"key fp.commission: expected a rate in [0, 1] (0.05 = 5%), got {value!r}")


class FpDaemon:
    """The finality provider's state: keys, chain connection, FP client, signing records."""

    def __init__(self, cfg: Config, log: EventLog | None = None, metrics: Metrics | None = None,
                 connect: bool = True) -> None:
        from btcmesh.finality_provider import ClientChannel, FinalityProvider

        self.cfg = cfg
        self.log = log or EventLog("fp")
        self.metrics = metrics or Metrics("fp")
        for key in ("fp.pub_rand_batch", "fp.pub_rand_ahead", "fp.max_votes_per_tx"):
            if cfg[key] < 1:
                raise ConfigError(f"key {key}: expected a positive integer, got {cfg[key]}")
        check_commission(cfg["fp.commission"])
        self.secret = read_key_file(cfg.path("fp.btc_key_file"), "fp.btc_key_file")
        self.cosmos_secret = read_key_file(cfg.path("fp.cosmos_key_file"), "fp.cosmos_key_file")
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.records = SigningRecords(cfg.state_dir / "fp.sqlite")
        self.status = StatusFile(cfg.state_dir / "status.json", "fp")
        self.conn: Any = None
        self.fp: Any = None
        if connect:
            self.conn = chain_connection(cfg["chain.rest"], self.cosmos_secret)
            self.fp = FinalityProvider(self.secret, ClientChannel(self.conn.client, self.conn.wallet,
                                                                  self.conn.addresses["finality"]),
                                       context=self.conn.chain_id.encode())

    @property
    def btc_pk_hex(self) -> str:
        from btc_staking.keys import xonly_from_secret

        return xonly_from_secret(self.secret).hex()

    def close(self) -> None:
        self.records.close()

    def __enter__(self) -> "FpDaemon":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ registration
    def register(self) -> str:
        """``create_finality_provider`` (PoP over the FP's Cosmos address; mesh validator = that address)."""
        from btc_staking.signing import sign_pop_bip340

        address = str(self.conn.wallet.address())
        pop = sign_pop_bip340(self.secret, bytes(self.conn.wallet.address()))  # raw address bytes (Babylon PoP)
        tx = self.conn.execute("btc_staking", {"create_finality_provider": {
            "btc_pk": self.btc_pk_hex, "pop": pop.hex(),
            "description": {"moniker": self.cfg["fp.moniker"], "identity": "", "website": "", "security_contact": "",
                            "details": "btcmesh fp daemon"},
            "commission": self.cfg["fp.commission"], "validator": address}})
        self.metrics.submissions.inc()
        self.log.info("registered", fp_btc_pk=self.btc_pk_hex, validator=address, tx=tx)
        return tx

    # ------------------------------------------------------------------ randomness
    def sync_commits(self) -> None:
        """Rebuild the client's commitments (and merkle proofs) from the chain's record of them."""
        known = {c.start for c in self.fp.commits}
        for c in self.fp.chain.query({"pub_rand_commits": {"fp_btc_pk": self.btc_pk_hex}})["commits"]:
            start, num = int(c["start_height"]), int(c["num_pub_rand"])
            if start in known:
                continue
            self.fp.pub_rand_commit_msg(start, num)
            if self.fp.commits[-1].root.hex() != c["commitment"]:
                self.fp.commits.pop()
                self.log.error("foreign_commit", start_height=start, reason="commitment was not made by this key")
        self.fp.commits.sort(key=lambda c: c.start)

    def committed_end(self) -> int:
        return max((c.start + c.num for c in self.fp.commits), default=0)

    def commit_ahead(self, tip: int) -> None:
        """Commit the next batch when fewer than ``pub_rand_ahead`` committed heights remain above ``tip``."""
        end = self.committed_end()
        if end - tip > self.cfg["fp.pub_rand_ahead"]:
            return
        start = max(end, tip + 4)  # the commit tx lands a block or two later; start must be above it
        self.fp.commit_pub_rand(start, self.cfg["fp.pub_rand_batch"])
        self.metrics.submissions.inc()
        self.log.info("pub_rand_committed", start_height=start, num=self.cfg["fp.pub_rand_batch"])

    # ------------------------------------------------------------------ signing
    _cursor: int = 0  # heights below it were looked at and had no voting power
    _synced: bool = False

    def voting_power(self, height: int) -> int | None:
        """This FP's voting power at ``height`` per the finality module (None if the chain cannot say)."""
        from checkpoint.errors import ChainError

        try:
            return self.fp.voting_power(height)
        except (ChainError, KeyError, TypeError, ValueError):
            return None

    def protected_vote_msg(self, height: int, app_hash: bytes) -> dict:
        """The vote message, signed only if the records allow it (DoubleSignRefused otherwise)."""
        from btcmesh.finality_provider import DoubleSignRefused

        if not self.records.allow(height, app_hash):
            self.metrics.signatures_refused.inc()
            self.log.error("double_sign_refused", height=height, app_hash=app_hash.hex(),
                           recorded=self.records.recorded(height))
            raise DoubleSignRefused(f"already signed app hash {self.records.recorded(height)} at height {height}; "
                                    f"refusing to sign {app_hash.hex()}")
        crash_point("fp-after-record", self.log)
        msg = self.fp.vote_msg(height, app_hash)
        self.metrics.signatures.inc()
        return msg

    def vote_round(self, tip: int) -> list[int]:
        """Vote on every block up to ``tip`` not voted yet (the chain indexes block h's header app hash
        as soon as block h begins)."""
        from btcmesh.finality_provider import DoubleSignRefused
        from checkpoint.errors import ChainError

        committed = [(c.start, c.start + c.num) for c in self.fp.commits]
        if not committed:
            return []
        last = self.records.last_height()
        first = committed[0][0] if last is None else last + 1
        first = max(first, self._cursor)
        cap = self.cfg["fp.max_votes_per_tx"]
        if tip - first + 1 > cap:  # far behind (e.g. after downtime): vote on the newest heights only
            self.log.warn("heights_skipped", first=first, last=tip - cap)
            first = tip - cap + 1
        msgs, heights = [], []
        for h in range(max(first, 1), tip + 1):
            if not any(s <= h < e for s, e in committed):
                continue
            app_hash = self.fp.block_app_hash(h)
            if app_hash is None:
                break
            if self.voting_power(h) == 0:  # no power at h (nothing delegated, or jailed): nothing to vote
                self._cursor = h + 1
                continue
            try:
                msgs.append(self.protected_vote_msg(h, app_hash))
            except DoubleSignRefused:
                continue
            heights.append(h)
        if not msgs:
            return []
        try:
            tx = execute_many(self.conn, "finality", msgs)
        except ChainError as exc:
            if exc.transient:
                self.metrics.retries.inc()
                # keep the records: the same app hashes are re-signed (identical votes) next round
                self.log.warn("vote_retry", heights=f"{heights[0]}-{heights[-1]}", error=exc.reason)
                return []
            self.metrics.failures.inc()
            self.records.mark(heights, "rejected")
            self.log.error("vote_rejected", heights=f"{heights[0]}-{heights[-1]}", error=exc.reason)
            return []
        self.records.mark(heights, "submitted")
        self.metrics.submissions.inc()
        self.metrics.processed_height.set(heights[-1])
        self.log.info("voted", heights=f"{heights[0]}-{heights[-1]}" if len(heights) > 1 else heights[0], tx=tx)
        return heights

    def step(self) -> None:
        tip = self.conn.height()
        self.metrics.chain_height.set(tip)
        state = self.fp_state()
        if state.get("state", "slashed" if not state else "") == "slashed":  # unknown state: ask directly
            slashed = self.fp.chain.query({"is_slashed": {"fp_btc_pk": self.btc_pk_hex}})
            if slashed.get("slashed"):
                self.status.update(height=tip, state="slashed")
                if not getattr(self, "_said_slashed", False):
                    self.log.error("fp_slashed", fp_btc_pk=self.btc_pk_hex, block_height=slashed.get("block_height"))
                    self._said_slashed = True
                return
        if state.get("state") == "jailed":
            if not getattr(self, "_said_jailed", False):
                self.log.error("fp_jailed", fp_btc_pk=self.btc_pk_hex, jailed_until=state.get("jailed_until"),
                               hint="run `btcmesh fp unjail` once the jail time is over")
                self._said_jailed = True
        else:
            self._said_jailed = False
        if not self._synced:  # the chain's record of our commitments, once; later commits are our own
            self.sync_commits()
            self._synced = True
        self.commit_ahead(tip)
        self.resume_unsent(tip)
        self.vote_round(tip)
        done = self.records.last_submitted() or 0
        self.metrics.lag.set(max(0, tip - done))
        self.status.update(height=tip, voted_height=done, state=state.get("state", "voting"))

    def fp_state(self) -> dict:
        """The finality module's view: ``{voting_power, state: active|standby|jailed|slashed, jailed_until}``."""
        from checkpoint.errors import ChainError

        try:
            reply = self.fp.status()
        except ChainError:
            return {}
        return reply if isinstance(reply, dict) else {}

    def resume_unsent(self, tip: int) -> None:
        """Re-send votes recorded but never confirmed submitted (crash or transient failure): same app hash
        as recorded, so an identical vote (the chain answers ``duplicate`` if it already has it)."""
        from checkpoint.errors import ChainError

        rows = self.records.db.execute("SELECT height, app_hash FROM signed WHERE state = 'signing' "
                                       "ORDER BY height").fetchall()
        rows = [(int(h), bytes.fromhex(a)) for h, a in rows][-self.cfg["fp.max_votes_per_tx"]:]
        if not rows:
            return
        msgs = [self.protected_vote_msg(h, a) for h, a in rows]
        try:
            execute_many(self.conn, "finality", msgs)
        except ChainError as exc:
            self.metrics.retries.inc() if exc.transient else self.metrics.failures.inc()
            if not exc.transient:
                self.records.mark([h for h, _ in rows], "rejected")
            self.log.warn("resend_failed", heights=f"{rows[0][0]}-{rows[-1][0]}", error=exc.reason)
            return
        self.records.mark([h for h, _ in rows], "submitted")
        self.metrics.submissions.inc()
        self.log.info("resent", heights=f"{rows[0][0]}-{rows[-1][0]}")

    # ------------------------------------------------------------------ deliberate equivocation
    def double_sign(self, height: int | None = None, attempts: int = 20) -> dict:
        """Sign and submit a fork app hash at ``height`` (default: the last height voted), bypassing the
        records on purpose (devnet/test only). Returns the chain's finality module answer."""
        from checkpoint.errors import ChainError

        self.sync_commits()
        h = height if height is not None else self.records.last_submitted()
        if h is None:
            raise ConfigError("this FP has not voted yet: nothing to double-sign (pass --height)")
        canonical = self.fp.block_app_hash(h)
        if canonical is None:
            raise ConfigError(f"the chain has no app hash for height {h} yet")
        fork = hashlib.sha256(b"btcmesh/deliberate-fork/" + canonical).digest()
        self.records.note_equivocation(h, fork)
        self.log.warn("deliberate_double_sign", height=h, fork_app_hash=fork.hex())
        msgs = []
        if self.fp.chain.query({"vote": {"fp_btc_pk": self.btc_pk_hex, "height": h}}).get("vote") is None:
            msgs.append(self.fp.vote_msg(h, canonical))
        msgs.append(self.fp.vote_msg(h, fork))
        tx = _retry_sequence(lambda: execute_many(self.conn, "finality", msgs), attempts)
        self.log.warn("double_sign_submitted", height=h, tx=tx)
        return {"height": h, "fork_app_hash": fork.hex(), "tx": tx,
                "slashed": self.fp.chain.query({"is_slashed": {"fp_btc_pk": self.btc_pk_hex}})}


def _retry_sequence(send: Any, attempts: int = 20) -> Any:
    """``send()``, retried on transient chain errors: a running ``fp run`` shares the account, so a
    one-shot command may lose the race for its sequence number."""
    from checkpoint.errors import ChainError

    for i in range(attempts):
        try:
            return send()
        except ChainError as exc:
            if not exc.transient or i == attempts - 1:
                raise
            time.sleep(0.3)
    raise AssertionError("unreachable")


# ------------------------------------------------------------------------------------------ commands
def _daemon(args: argparse.Namespace, connect: bool = True) -> FpDaemon:
    cfg = load_config(args.config, SPEC)
    return FpDaemon(cfg, connect=connect)


def cmd_run(args: argparse.Namespace) -> int:
    d = _daemon(args)
    identity = {"fp_btc_pk": d.btc_pk_hex}
    return run_daemon(d, args.max_rounds, log_fields=identity, status_fields=identity)


def cmd_register(args: argparse.Namespace) -> int:
    with _daemon(args) as d:
        print(d.register())
    return 0


def cmd_unjail(args: argparse.Namespace) -> int:
    with _daemon(args) as d:
        tx = _retry_sequence(d.fp.unjail)
        d.log.info("unjailed", fp_btc_pk=d.btc_pk_hex, tx=tx)
        print(tx)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import json

    with _daemon(args) as d:
        reg = d.conn.query("btc_staking", {"finality_provider": {"btc_pk": d.btc_pk_hex}})
        sl = d.fp.chain.query({"is_slashed": {"fp_btc_pk": d.btc_pk_hex}})
        fin = d.fp_state()
        commits = d.fp.chain.query({"pub_rand_commits": {"fp_btc_pk": d.btc_pk_hex}})["commits"]
        print(json.dumps({"fp_btc_pk": d.btc_pk_hex, "chain_height": d.conn.height(),
                          "active_sat": reg.get("active_sat"), "state": fin.get("state"),
                          "voting_power": fin.get("voting_power"), "jailed_until": fin.get("jailed_until"),
                          "slashed": sl.get("slashed"), "last_voted_height": d.records.last_submitted(),
                          "signed_heights": d.records.count(),
                          "pub_rand_committed_to": max((c["start_height"] + c["num_pub_rand"] - 1 for c in commits),
                                                       default=None)}, sort_keys=True))
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    """eotsd-style protected signing: prints the vote's EOTS signature or refuses (exit 1)."""
    from btcmesh.finality_provider import DoubleSignRefused

    with _daemon(args) as d:
        d.sync_commits()
        try:
            app_hash = bytes.fromhex(args.app_hash)
            if len(app_hash) != 32:
                raise ValueError
        except ValueError:
            raise ConfigError(f"--app-hash must be 64 hex characters, got {args.app_hash!r}") from None
        try:
            msg = d.protected_vote_msg(args.height, app_hash)
        except DoubleSignRefused as exc:
            print(f"refused: {exc}")
            return 1
        print(msg["add_finality_sig"]["finality_sig"])
    return 0


def cmd_double_sign(args: argparse.Namespace) -> int:
    import json

    with _daemon(args) as d:
        print(json.dumps(d.double_sign(args.height), sort_keys=True))
    return 0
