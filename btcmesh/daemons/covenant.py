"""``btcmesh covenant``: one covenant committee member as a daemon (Babylon's covenant-emulator).

Each round it lists the registry's PENDING delegations, and for every one it has not handled:

1. reads the delegation's ``params_version`` and the chain's params of that version (refused if the
   version is unknown or does not list this member's key);
2. verifies it with :func:`btcmesh.covenant.check_delegation` (staking output rebuilt from params,
   staker and FPs; unbonding and both slashing txs; the staker's pre-signatures) — a delegation
   that fails is recorded as refused, with the reason, and never signed;
3. signs (adaptor signatures per FP, the unbonding signature) and submits ``add_covenant_sigs``.

Every decision is recorded in SQLite (``covenant.sqlite``, one row per delegation), and before
submitting the chain is asked whether this member's signature is already there, so a delegation
is signed and submitted once, across kill -9 and restarts.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from btcmesh.daemons.common import (
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
    read_key_file,
    run_daemon,
)

__all__ = ["SPEC", "DEFAULT_TOML", "CovenantRecords", "CovenantDaemon"]

SPEC = {
    **COMMON_SPEC,
    "daemon.state_dir": (str, "state/covenant"),  # one directory per daemon: several may share a folder
    "covenant.btc_key_file": (str, "covenant-btc.key"),
    "covenant.cosmos_key_file": (str, "covenant-cosmos.key"),
}

DEFAULT_TOML = """\
# btcmesh covenant: covenant committee member daemon (`btcmesh covenant run --config THIS_FILE`)

""" + CHAIN_TOML + """
[covenant]
btc_key_file = "covenant-btc.key"      # this member's covenant key (32-byte hex, mode 0600)
cosmos_key_file = "covenant-cosmos.key" # Cosmos account paying for add_covenant_sigs

[daemon]
state_dir = "@STATE_DIR@"              # covenant.sqlite (what was signed), status.json
poll_interval = 0.5
metrics_port = 0                       # Prometheus /metrics on 127.0.0.1; 0 = any free port, -1 = off
"""


class CovenantRecords(SqliteRecords):
    """``handled(staking_tx_hash → state, reason)``: signing | submitted | on_chain | refused."""

    SCHEMA = ("CREATE TABLE IF NOT EXISTS handled (staking_tx_hash TEXT PRIMARY KEY, state TEXT NOT NULL, "
              "reason TEXT NOT NULL DEFAULT '', submissions INTEGER NOT NULL DEFAULT 0, ts REAL)",)

    def state(self, h: str) -> str | None:
        row = self.db.execute("SELECT state FROM handled WHERE staking_tx_hash = ?", (h,)).fetchone()
        return None if row is None else str(row[0])

    def set(self, h: str, state: str, reason: str = "", submitted: bool = False) -> None:
        self.db.execute("INSERT INTO handled VALUES (?, ?, ?, ?, ?) ON CONFLICT(staking_tx_hash) DO UPDATE SET "
                        "state = excluded.state, reason = excluded.reason, "
                        "submissions = submissions + excluded.submissions, ts = excluded.ts",
                        (h, state, reason, int(submitted), time.time()))

    def rows(self) -> list[tuple[str, str, str, int]]:
        return [tuple(r) for r in self.db.execute(  # type: ignore[misc]
            "SELECT staking_tx_hash, state, reason, submissions FROM handled ORDER BY ts")]


class CovenantDaemon:
    """One covenant member: key, chain connection, records."""

    def __init__(self, cfg: Config, log: EventLog | None = None, metrics: Metrics | None = None, *,
                 conn: Any = None) -> None:
        """Connects to ``chain.rest`` unless ``conn`` (a :class:`btcmesh.daemons.common.ChainConnection`
        or anything with its ``query(module, msg)`` / ``execute(module, msg)`` / ``height()``) is given."""
        from btcmesh.covenant import CovenantMember

        self.cfg = cfg
        self.log = log or EventLog("covenant")
        self.metrics = metrics or Metrics("covenant")
        self.member = CovenantMember(read_key_file(cfg.path("covenant.btc_key_file"), "covenant.btc_key_file"))
        cosmos = read_key_file(cfg.path("covenant.cosmos_key_file"), "covenant.cosmos_key_file")
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.records = CovenantRecords(cfg.state_dir / "covenant.sqlite")
        self.status = StatusFile(cfg.state_dir / "status.json", "covenant")
        self.conn = conn if conn is not None else chain_connection(cfg["chain.rest"], cosmos)
        self._params: dict[int, Any] = {}

    def close(self) -> None:
        self.records.close()

    def params(self, version: int) -> Any:
        """Staking params of ``version`` from the chain (cached; None if unknown)."""
        from btc_staking.params import StakingParams

        if version not in self._params:
            for v in self.conn.query("btc_staking", {"params": {}})["params_versions"]:
                body = dict(v)
                ver = int(body.pop("version"))
                self._params[ver] = StakingParams.from_dict(body)
        return self._params.get(version)

    def pending(self) -> list[dict]:
        out: list[dict] = []
        start_after = None
        for _ in range(1000):  # bounded paging
            body: dict[str, Any] = {"status": "PENDING", "limit": 100}
            if start_after:
                body["start_after"] = start_after
            reply = self.conn.query("btc_staking", {"delegations": body})
            out.extend(reply["delegations"])
            start_after = reply.get("next_key")
            if not start_after:
                break
        return out

    def handle(self, d: dict) -> str:
        """Verify, sign and submit one delegation (at most once); returns the recorded state."""
        from btcmesh.covenant import CovenantError

        h = d["staking_tx_hash"]
        state = self.records.state(h)
        if state in ("submitted", "on_chain", "refused"):
            return state
        me = self.member.pk.hex()
        if any(c.get("pk") == me for c in d.get("covenant_sigs", [])):
            self.records.set(h, "on_chain", "signature already on chain")
            self.log.info("already_signed", staking_tx_hash=h)
            return "on_chain"
        version = int(d.get("params_version", -1))
        params = self.params(version)
        try:
            if params is None:
                raise CovenantError(f"unknown params version {version}")
            sigs = self.member.sign(d, params)
        except (CovenantError, ValueError) as exc:
            self.metrics.signatures_refused.inc()
            self.records.set(h, "refused", str(exc))
            self.log.error("refused", staking_tx_hash=h, params_version=version, reason=str(exc))
            return "refused"
        self.metrics.signatures.inc()
        self.records.set(h, "signing")
        tx = self.conn.execute("btc_staking", sigs.to_msg())
        self.metrics.submissions.inc()
        self.log.info("covenant_sigs_submitted", staking_tx_hash=h, covenant_pk=me, params_version=version, tx=tx)
        crash_point("covenant-after-submit", self.log)
        self.records.set(h, "submitted", tx, submitted=True)
        return "submitted"

    def step(self) -> None:
        from checkpoint.errors import ChainError

        tip = self.conn.height()
        self.metrics.chain_height.set(tip)
        pending = self.pending()
        for d in pending:
            try:
                self.handle(d)
            except ChainError as exc:
                (self.metrics.retries if exc.transient else self.metrics.failures).inc()
                self.log.warn("submit_failed", staking_tx_hash=d.get("staking_tx_hash"), error=exc.reason,
                              transient=exc.transient)
        self.metrics.processed_height.set(tip)
        self.status.update(height=tip, pending=len(pending), covenant_pk=self.member.pk.hex())


def cmd_run(args: argparse.Namespace) -> int:
    d = CovenantDaemon(load_config(args.config, SPEC))
    return run_daemon(d, args.max_rounds, log_fields={"covenant_pk": d.member.pk.hex()})
