"""Client for the upstream-contract harness (``conformance/mesh-upstream``).

The harness is a Rust program that runs the pinned upstream Mesh Security contracts
(vault, external-staking, converter, virtual-staking) in cw-multi-test; it reads one JSON
operation per line on stdin and answers one JSON line per operation on stdout
(``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``). See that crate's
``src/main.rs`` for the operations. Subprocess plumbing is hand-written: it is a pipe of JSON
lines, which needs nothing beyond the standard library.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import tempfile
from pathlib import Path
from typing import Any

HARNESS_NAME = "mesh-upstream-harness"


class HarnessError(ValueError):
    """The harness rejected an operation (upstream contract error or bad op)."""


class HarnessUnavailable(RuntimeError):
    """The harness binary is missing, died, or did not answer in time."""


def default_harness_path(repo_root: Path) -> Path:
    """``$CARGO_TARGET_DIR`` (if set) else ``conformance/mesh-upstream/target``, debug profile."""
    target = os.environ.get("BTCMESH_HARNESS_TARGET_DIR") or str(repo_root / "conformance" / "mesh-upstream" / "target")
    return Path(target) / "debug" / HARNESS_NAME


class UpstreamHarness:
    """One harness process; ``call(op)`` sends an op and returns its reply (bounded wait)."""

    def __init__(self, binary: Path | str, timeout: float = 60.0) -> None:
        binary = Path(binary)
        if not binary.is_file():
            raise HarnessUnavailable(f"harness binary not found: {binary}")
        self.timeout = timeout
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True, bufsize=1)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)

    def call(self, op: dict) -> dict:
        """Send ``op``; return the full reply dict (``ok`` plus ``result`` or ``error``)."""
        if self.proc.poll() is not None:
            raise HarnessUnavailable(f"harness exited with {self.proc.returncode}: {self.stderr_tail()}")
        self.proc.stdin.write(json.dumps(op) + "\n")
        self.proc.stdin.flush()
        if not self._sel.select(self.timeout):
            self.close()
            raise HarnessUnavailable(f"harness did not answer within {self.timeout}s: {op!r}")
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=10)
            raise HarnessUnavailable(f"harness closed its output (exit {self.proc.poll()}): {self.stderr_tail()}")
        return json.loads(line)

    def run(self, op: dict) -> Any:
        """``call`` that returns ``result`` or raises :class:`HarnessError`."""
        reply = self.call(op)
        if not reply.get("ok"):
            raise HarnessError(reply.get("error", "harness error"))
        return reply["result"]

    def stderr_tail(self, chars: int = 2000) -> str:
        """The end of what the harness wrote to stderr (a panic message, usually)."""
        self._stderr.seek(0)
        return self._stderr.read()[-chars:]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._sel.close()
        self._stderr.close()

    def __enter__(self) -> "UpstreamHarness":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- a MeshHost over the harness ------------------------------------------------------------

def _rng(r: dict) -> dict:
    """Upstream ``ValueRange`` JSON ``{l, h}`` in our spelling ``{low, high}``."""
    return {"low": r.get("l", r.get("low")), "high": r.get("h", r.get("high"))}


class UpstreamMeshHost:
    """:class:`~mesh_adapter.framework.MeshHost` whose contracts are the upstream ones in the harness.

    The adapter speaks our contracts' JSON; this host turns each message it sends into the
    harness operation that runs the upstream contract(s) (the harness also plays relayer: acks
    and provider packets), and each query reply into our shape (``{low, high}`` ranges,
    ``release_at`` in seconds, validator state by name). ``roles`` maps our contract addresses
    (``BtcMeshParams.vault`` ...) to the harness names (``vault``, ``external_staking``,
    ``converter``, ``virtual_staking``).

    Not upstream, so not forwarded: ``handle_slashing``'s ``collateral_left`` (the lien is not
    capped at the BTC left) and virtual staking's ``handle_valset_update`` (upstream force-unbonds
    a tombstoned validator in its real ``handle_epoch``, which needs the chain's custom bindings;
    the multi-test epoch has none). With ``consumer_slash`` the harness emulates the consumer
    chain's native slash of the virtual delegation (upstream's contracts leave that to the chain).
    """

    def __init__(self, harness: UpstreamHarness, roles: dict[str, str], consumer_slash: bool = True) -> None:
        self.h = harness
        self.roles = dict(roles)
        self.consumer_slash = consumer_slash
        self.log: list[tuple[dict, Any]] = []

    def _run(self, op: dict) -> Any:
        out = self.h.run(op)
        self.log.append((op, out))
        return out

    def _role(self, contract: str) -> str:
        role = self.roles.get(contract)
        if role is None:
            raise HarnessError(f"no upstream contract for {contract!r}")
        return role

    # --- MeshHost ---------------------------------------------------------------------------
    def block(self):
        from .framework import BlockInfo
        b = self.h.run({"op": "block"})
        return BlockInfo(int(b["height"]), int(b["time"]))

    def advance(self, seconds: int, blocks: int = 1) -> None:
        self._run({"op": "advance", "seconds": seconds, "blocks": blocks})

    def mint(self, address: str, coins: list[dict]) -> None:
        for c in coins:
            self._run({"op": "mint", "user": self.roles.get(address, address), "amount": int(c["amount"])})

    def burn(self, address: str, coins: list[dict]) -> None:
        for c in coins:
            self._run({"op": "burn", "user": self.roles.get(address, address), "amount": int(c["amount"])})

    def execute(self, sender: str, contract: str, msg: dict, funds: list[dict] | None = None):
        from .framework import Response, from_binary, split_msg
        role = self._role(contract)
        name, body = split_msg(msg)
        if role == "external_staking" and name == "test_set_active_validator":
            out = self._run({"op": "activate", "validator": body["validator"]["valoper"]})
        elif role == "vault" and name == "stake_remote":
            validator = from_binary(body["msg"])["validator"]
            out = self._run({"op": "stake_remote", "user": sender, "validator": validator,
                             "amount": int(body["amount"]["amount"])})
        elif role == "external_staking" and name == "unstake":
            out = self._run({"op": "unstake", "user": sender, "validator": body["validator"],
                             "amount": int(body["amount"]["amount"])})
        elif role == "external_staking" and name == "withdraw_unbonded":
            out = self._run({"op": "withdraw_unbonded", "user": sender})
        elif role == "vault" and name == "unbond":
            out = self._run({"op": "unbond", "user": sender, "amount": int(body["amount"]["amount"])})
        elif role == "external_staking" and name in ("handle_slashing", "test_handle_slashing"):
            kind = "double_sign" if body.get("tombstone", True) else "offline"
            out = self._run({"op": "slash", "validator": body["validator"], "kind": kind,
                             "infraction_height": int(body["height"]), "infraction_time": int(body["time"]),
                             "consumer_slash": self.consumer_slash})
        elif role == "virtual_staking" and name == "handle_valset_update":
            out = {"skipped": "upstream force-unbonds tombstoned validators in its real epoch"}
        else:
            out = self._run({"op": "exec", "sender": sender, "contract": role, "msg": msg, "funds": list(funds or [])})
        return Response(data=out)

    def query(self, contract: str, msg: dict) -> dict:
        from .framework import split_msg
        role = self._role(contract)
        name, body = split_msg(msg)
        q = lambda m: self.h.run({"op": "query", "contract": role, "msg": m})  # noqa: E731
        if role == "external_staking" and name == "validator":
            vals = q({"list_validators": {"limit": 1000}})["validators"]
            state = next((next(iter(v["state"])) for v in vals if v["validator"] == body["valoper"]), None)
            return {"valoper": body["valoper"], "state": state}
        if role == "external_staking" and name == "stake":
            st = q(msg)
            return {"stake": _rng(st["stake"]), "pending_unbonds": [
                {"amount": p["amount"], "release_at": int(p["release_at"]) // 1_000_000_000}
                for p in st["pending_unbonds"]], "withdrawn_funds": st["withdrawn_funds"]}
        if role == "vault" and name in ("account", "account_details"):
            a = q(msg)
            out = {"denom": a["denom"], "bonded": a["bonded"], "free": _rng(a["free"])}
            for k in ("max_lien", "total_slashable"):
                if k in a:
                    out[k] = _rng(a[k])
            return out
        if role == "vault" and name == "claim":
            body = dict(body, lienholder=self.roles.get(body["lienholder"], body["lienholder"]))
            c = q({"claim": body})
            return {"amount": _rng(c["amount"]), "slashable": c["slashable"]}
        if role == "virtual_staking" and name == "bond_requests":
            stakes = q({"get_all_stake": {}})["stakes"]
            return {"requests": {v: str(a) for v, a in stakes if int(a) > 0}}
        return q(msg)


def upstream_roles(params: Any) -> dict[str, str]:
    """Our contract addresses (a ``BtcMeshParams``) -> the harness's contract names."""
    return {params.vault: "vault", params.external_staking: "external_staking",
            params.converter: "converter", params.virtual_staking: "virtual_staking"}


def deploy_btc_mesh_upstream(harness: UpstreamHarness, params: Any = None, time: int = 1_000_000,
                             height: int = 1, consumer_slash: bool = True):
    """``deploy_btc_mesh`` on the upstream contracts: reset the harness with ``params`` and
    return a :class:`~mesh_adapter.btc_adapter.BtcMeshAdapter` over an :class:`UpstreamMeshHost`."""
    from .btc_adapter import BtcMeshAdapter
    from .deploy import BtcMeshParams, adapter_config
    p = params or BtcMeshParams()
    harness.run({"op": "reset", "denom": p.denom, "local_denom": p.virtual_denom, "rewards_denom": p.rewards_denom,
                 "unbonding_period": p.unbonding_period, "slash_ratio_dsign": p.slashing_rate,
                 "slash_ratio_offline": "0", "price": p.price, "discount": p.discount, "validators": [],
                 "time": time, "height": height})
    host = UpstreamMeshHost(harness, upstream_roles(p), consumer_slash=consumer_slash)
    adapter = BtcMeshAdapter(host, adapter_config(p))
    for fp, val in sorted(adapter.config.fp_to_validator.items()):
        adapter.register_finality_provider(fp, val)
    return adapter
