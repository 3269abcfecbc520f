"""``btcmesh stake``: the staker's command-line tool (Babylon's btc-staker / stakercli).

It keeps a BTC key and a Cosmos key (mode 0600), its own wallet state (``state/wallet.json``: every
staking tx it made and what it did with it) and talks to a Bitcoin node and the chain::

    btcmesh stake init --config staker.toml --chain-rest URL --btc-rpc URL
    btcmesh stake address --config staker.toml              # fund this P2TR address
    btcmesh stake stake --config staker.toml --fp FP_PK --value 1000000 --time 150
    btcmesh stake status --config staker.toml
    btcmesh stake unbond --config staker.toml [--staking-tx HASH]
    btcmesh stake withdraw --config staker.toml [--staking-tx HASH]
    btcmesh stake rewards|claim --config staker.toml     # consumer rewards (btcmesh.rewards)

Registration follows Babylon's **pre-approval flow**: ``stake`` funds and signs the staking tx,
pre-signs both slashing txs, and submits ``create_btc_delegation`` *without* an inclusion proof
(PoP over the staker's own Cosmos address); the covenant committee signs it (VERIFIED), only then
is the staking tx broadcast, and once it is k deep the checkpoint service adds the inclusion proof
(``add_btc_delegation_inclusion_proof``) → ACTIVE. ``unbond`` broadcasts the covenant-signed
unbonding tx (the checkpoint service reports it), ``withdraw`` spends whatever is left to the
wallet once its timelock is over (staking output, unbonding output, or the slashing change).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from btcmesh.daemons.common import (
    BITCOIN_SPEC,
    BITCOIN_TOML,
    CHAIN_TOML,
    COMMON_SPEC,
    Config,
    ConfigError,
    EventLog,
    chain_connection,
    load_config,
    read_key_file,
)

__all__ = ["SPEC", "DEFAULT_TOML", "StakerTool", "StakerToolError"]

SPEC = {
    **COMMON_SPEC,
    "daemon.state_dir": (str, "state/staker"),  # one directory per daemon: several may share a folder
    **BITCOIN_SPEC,
    "staker.btc_key_file": (str, "staker-btc.key"),
    "staker.cosmos_key_file": (str, "staker-cosmos.key"),
    "staker.fee_rate": (float, 2.0),
    "staker.wait_timeout": (float, 120.0),
}

DEFAULT_TOML = """\
# btcmesh stake: staker tool (`btcmesh stake <command> --config THIS_FILE`)

""" + CHAIN_TOML + "\n" + BITCOIN_TOML + """
[staker]
btc_key_file = "staker-btc.key"        # staker BTC key (32-byte hex, mode 0600): wallet + staking key
cosmos_key_file = "staker-cosmos.key"  # Cosmos account that registers the delegation (pays fees)
fee_rate = 2.0                         # sat/vB of the staking tx
wait_timeout = 120.0                   # seconds `stake` waits for the covenant quorum before broadcasting

[daemon]
state_dir = "@STATE_DIR@"              # wallet.json (the staker's own record of its delegations)
"""


class StakerToolError(ValueError):
    """A staker command cannot go on (the message says why)."""


#: Chain statuses in which ``unbond`` / ``withdraw`` make no sense, with what to say instead.
UNBOND_REFUSED = {
    "PENDING": "the covenant quorum has not signed its unbonding tx yet; nothing to unbond",
    "SLASHED": "nothing to unbond (`stake withdraw` takes the slashing change once its timelock has passed)",
    "UNBONDING": "its unbonding tx is already on Bitcoin; `stake withdraw` once the unbonding time has passed",
    "EXPIRED": "its staking timelock is ending; nothing to unbond (`stake withdraw` once it has passed)",
    "WITHDRAWN": "nothing to unbond",
}
WITHDRAW_REFUSED = {
    "WITHDRAWN": "nothing left to withdraw",
}


def refuse_in_status(action: str, staking_tx_hash: str, status: str | None, refused: dict[str, str]) -> None:
    """StakerToolError ``delegation H is STATUS; <why>`` when ``action`` makes no sense in ``status``."""
    if status in refused:
        raise StakerToolError(f"delegation {staking_tx_hash} is {status}; {refused[status]}")


class StakerTool:
    """Keys, wallet state, Bitcoin node and chain connection of one staker."""

    def __init__(self, cfg: Config, log: EventLog | None = None) -> None:
        self.cfg = cfg
        self.log = log or EventLog("staker")
        self.secret = read_key_file(cfg.path("staker.btc_key_file"), "staker.btc_key_file")
        self.cosmos_secret = read_key_file(cfg.path("staker.cosmos_key_file"), "staker.cosmos_key_file")
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_file = cfg.state_dir / "wallet.json"
        self._conn: Any = None
        self._btc: Any = None

    # ------------------------------------------------------------------ plumbing
    @property
    def conn(self) -> Any:
        if self._conn is None:
            self._conn = chain_connection(self.cfg["chain.rest"], self.cosmos_secret)
        return self._conn

    @property
    def btc(self) -> Any:
        if self._btc is None:
            from regtest.rpc import RpcBackend

            self._btc = RpcBackend(self.cfg["bitcoin.rpc"], dialect=self.cfg["bitcoin.dialect"], timeout=30)
        return self._btc

    def close(self) -> None:
        if self._btc is not None:
            self._btc.close()

    def __enter__(self) -> "StakerTool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def address(self) -> str:
        from btc_staking.signing import p2tr_key_path_script
        from regtest.rpc import script_to_address

        return script_to_address(p2tr_key_path_script(self.secret, is_secret=True))

    def state(self) -> dict:
        if not self.state_file.exists():
            return {"delegations": []}
        return json.loads(self.state_file.read_text())

    def save(self, state: dict) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        os.replace(tmp, self.state_file)

    def params(self) -> Any:
        from checkpoint.runner import chain_info

        return chain_info(self.conn.client).params

    def wallet(self) -> Any:
        from regtest.wallet import Wallet

        w = Wallet(self.btc, self.secret)
        w.scan()
        return w

    def staker(self, params: Any) -> Any:
        from btcmesh.staker import Staker

        return Staker(self.secret, params)

    def _entry(self, staking_tx_hash: str | None) -> dict:
        dels = self.state()["delegations"]
        if not dels:
            raise StakerToolError("this staker has no delegations (run `stake` first)")
        if staking_tx_hash is None:
            return dels[-1]
        for e in dels:
            if e["staking_tx_hash"] == staking_tx_hash:
                return e
        raise StakerToolError(f"no delegation {staking_tx_hash} in {self.state_file}")

    def _delegation(self, e: dict, params: Any) -> Any:
        from btc_staking.tx import Tx

        return self.staker(params).delegation(Tx.parse(bytes.fromhex(e["staking_tx"])),
                                              [bytes.fromhex(k) for k in e["fp_pks"]], e["staking_time"])

    def _update(self, h: str, **fields: Any) -> None:
        st = self.state()
        for e in st["delegations"]:
            if e["staking_tx_hash"] == h:
                e.update(fields)
        self.save(st)

    def chain_delegation(self, h: str) -> dict | None:
        return self.conn.client.delegation(h)

    # ------------------------------------------------------------------ commands
    def stake(self, fp_pk: str, value: int, staking_time: int, wait: bool = True) -> dict:
        """Fund, pre-sign, register without proof (pre-approval), wait for VERIFIED, broadcast."""
        try:
            fp = bytes.fromhex(fp_pk)
            if len(fp) != 32:
                raise ValueError
        except ValueError:
            raise StakerToolError(f"--fp must be a 32-byte x-only key in hex, got {fp_pk!r}") from None
        params = self.params()
        staker = self.staker(params)
        wallet = self.wallet()
        tx = staker.fund_staking_tx(wallet, fp, staking_time, value, self.cfg["staker.fee_rate"])
        return self.register_and_broadcast(staker.delegation(tx, [fp], staking_time), wait)

    def register_and_broadcast(self, d: Any, wait: bool = True) -> dict:
        """Register ``d`` (a signed :class:`btcmesh.staker.StakingDelegation`) without a proof, wait for
        the covenant quorum (unless ``wait`` is False), then broadcast its staking tx."""
        staker = self.staker(d.params)
        tx, value = d.staking_tx, d.staking_value
        msg = d.create_msg(pop=staker.pop(str(self.conn.wallet.address())))  # no inclusion_proof: pre-approval
        st = self.state()
        st["delegations"].append({"staking_tx_hash": d.staking_tx_hash, "staking_tx": tx.serialize().hex(),
                                  "fp_pks": [k.hex() for k in d.fp_pks], "staking_time": d.staking_time,
                                  "value": value, "registered": False, "broadcast": False, "created": time.time()})
        self.save(st)  # before anything leaves the process: a crash leaves a record to resume from
        tx_hash = self.conn.execute("btc_staking", {"create_btc_delegation": msg})
        self._update(d.staking_tx_hash, registered=True, register_tx=tx_hash)
        self.log.info("registered", staking_tx_hash=d.staking_tx_hash, flow="pre-approval", tx=tx_hash)
        if wait:
            self.wait_status(d.staking_tx_hash, ("VERIFIED", "ACTIVE"), self.cfg["staker.wait_timeout"])
        self.btc.send_raw_transaction(tx.serialize())
        self._update(d.staking_tx_hash, broadcast=True)
        self.log.info("staking_tx_broadcast", staking_tx_hash=d.staking_tx_hash, value=value)
        return {"staking_tx_hash": d.staking_tx_hash, "register_tx": tx_hash,
                "status": (self.chain_delegation(d.staking_tx_hash) or {}).get("status")}

    def wait_status(self, h: str, wanted: tuple[str, ...], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            status = (self.chain_delegation(h) or {}).get("status")
            if status in wanted:
                return status
            if time.monotonic() > deadline:
                raise StakerToolError(f"delegation {h} is {status}, not {'/'.join(wanted)}, after {timeout}s")
            time.sleep(0.2)

    def status(self) -> list[dict]:
        out = []
        for e in self.state()["delegations"]:
            d = self.chain_delegation(e["staking_tx_hash"]) or {}
            out.append({"staking_tx_hash": e["staking_tx_hash"], "value": e["value"], "fp_pks": e["fp_pks"],
                        "status": d.get("status", "NOT REGISTERED"), "broadcast": e["broadcast"],
                        "slashing_btc_txid": d.get("slashing_btc_txid"), "unbonding_tx": e.get("unbonding_txid"),
                        "withdraw_tx": e.get("withdraw_txid")})
        return out

    def unbond(self, h: str | None = None) -> str:
        """Broadcast the covenant-signed unbonding tx (the checkpoint service reports it)."""
        e = self._entry(h)
        rec = self.chain_delegation(e["staking_tx_hash"])
        if rec is None:
            raise StakerToolError(f"delegation {e['staking_tx_hash']} is not on the chain")
        refuse_in_status("unbond", e["staking_tx_hash"], rec.get("status"), UNBOND_REFUSED)  # before any tx
        params = self.params()
        d = self._delegation(e, params)
        sigs = {bytes.fromhex(s["pk"]): bytes.fromhex(s["sig"]) for s in rec.get("covenant_unbonding_sigs", [])}
        try:
            tx = self.staker(params).signed_unbonding_tx(d, sigs)
        except ValueError as exc:
            raise StakerToolError(str(exc)) from exc
        txid = self.btc.send_raw_transaction(tx.serialize())
        self._update(e["staking_tx_hash"], unbonding_txid=txid)
        self.log.info("unbonding_tx_broadcast", staking_tx_hash=e["staking_tx_hash"], txid=txid)
        return txid

    def withdraw(self, h: str | None = None) -> str:
        """Spend the timelock path of what is left (slashing change, unbonding or staking output)."""
        from btc_staking.tx import Tx

        e = self._entry(h)
        rec = self.chain_delegation(e["staking_tx_hash"]) or {}
        refuse_in_status("withdraw", e["staking_tx_hash"], rec.get("status"), WITHDRAW_REFUSED)
        params = self.params()
        d = self._delegation(e, params)
        staker = self.staker(params)
        from btc_staking.signing import p2tr_key_path_script

        dest = p2tr_key_path_script(self.secret, is_secret=True)  # the wallet's own address (no scan needed)
        slashing = self._on_node(d.slashing_tx.txid_hex()) or self._on_node(d.unbonding_slashing_tx.txid_hex())
        if slashing is not None:
            # both slashing txs pay the change to the same timelocked output script
            tx = staker.withdraw_tx(d, dest, path="slashing_change", slashing_tx=Tx.parse(slashing))
        elif self._on_node(d.unbonding_tx.txid_hex()) is not None or rec.get("status") == "UNBONDING":
            tx = staker.withdraw_tx(d, dest, path="unbonding")
        else:
            tx = staker.withdraw_tx(d, dest, path="staking")
        try:
            txid = self.btc.send_raw_transaction(tx.serialize())
        except Exception as exc:  # noqa: BLE001 - e.g. the timelock is not over yet (non-BIP68-final)
            raise StakerToolError(f"the node refused the withdrawal: {exc}") from exc
        self._update(e["staking_tx_hash"], withdraw_txid=txid)
        self.log.info("withdraw_tx_broadcast", staking_tx_hash=e["staking_tx_hash"], txid=txid)
        return txid

    def _on_node(self, txid: str) -> bytes | None:
        try:
            return self.btc.get_raw_transaction(txid)
        except Exception:  # noqa: BLE001 - unknown to the node
            return None


# ------------------------------------------------------------------------------------------ commands
def _tool(args: argparse.Namespace) -> StakerTool:
    return StakerTool(load_config(args.config, SPEC))


def cmd_address(args: argparse.Namespace) -> int:
    print(_tool(args).address())
    return 0


def cmd_stake(args: argparse.Namespace) -> int:
    with _tool(args) as t:
        if args.psbt or args.psbt_signed:
            from btcmesh.daemons import staker_psbt

            out = staker_psbt.stake_with_psbt(t, args)
        else:
            out = t.stake(args.fp, args.value, args.time, wait=not args.no_wait)
        print(json.dumps(out, sort_keys=True))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with _tool(args) as t:
        for row in t.status():
            print(json.dumps(row, sort_keys=True))
    return 0


def cmd_unbond(args: argparse.Namespace) -> int:
    with _tool(args) as t:
        print(t.unbond(args.staking_tx))
    return 0


def cmd_withdraw(args: argparse.Namespace) -> int:
    with _tool(args) as t:
        print(t.withdraw(args.staking_tx))
    return 0


def cmd_rewards(args: argparse.Namespace) -> int:
    """Pending and claimed rewards paid to this staker's Cosmos address (``btcmesh.rewards``)."""
    from btcmesh.rewards import rewards_of

    with _tool(args) as t:
        print(json.dumps(rewards_of(t.conn.client, address=str(t.conn.wallet.address())), sort_keys=True))
    return 0


def cmd_claim(args: argparse.Namespace) -> int:
    """Claim pending rewards to this staker's Cosmos address (the PoP-bound account)."""
    from btcmesh.rewards import claim_rewards

    with _tool(args) as t:
        print(json.dumps(claim_rewards(t.conn.client, t.conn.wallet, args.staking_tx), sort_keys=True))
    return 0

