"""The argparse layer of ``btcmesh stake|fp|covenant|slasher|devnet`` (thin: each command calls its
daemon module). Failures a user can fix (bad config, unreachable chain or node, a refused tx)
print one line, ``btcmesh <command>: error: <reason>``, and exit with status 1."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any, Callable

__all__ = ["add_daemon_commands"]


def _one_line_errors(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        from checkpoint.errors import CheckpointError
        from regtest.backend import BackendError

        try:
            return int(func(args) or 0)
        except (ValueError, CheckpointError, BackendError, OSError, RuntimeError) as exc:
            # ConfigError, StakerToolError, CovenantError are ValueErrors; ChainError a CheckpointError
            msg = " ".join(str(exc).split()) or type(exc).__name__
            print(f"btcmesh {args.command}: error: {msg}", file=sys.stderr)
            return 1
    return wrapper


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    def call(args: argparse.Namespace) -> int:
        import importlib

        return int(getattr(importlib.import_module(f"btcmesh.daemons.{module}"), name)(args) or 0)
    call.__name__ = f"{module}.{name}"
    return _one_line_errors(call)


def _init(module: str, keys: Callable[[argparse.Namespace], dict[str, bytes]]) -> Callable[[argparse.Namespace], int]:
    def call(args: argparse.Namespace) -> int:
        import importlib

        from btcmesh.daemons.common import init_daemon

        mod = importlib.import_module(f"btcmesh.daemons.{module}")
        subs = {"CHAIN_REST": args.chain_rest, "BTC_RPC": getattr(args, "btc_rpc", "") or "",
                "MONIKER": getattr(args, "moniker", "") or "btcmesh-fp",
                "STATE_DIR": f"state/{module}"}  # fp, covenant, slasher, staker may share one folder
        for path in init_daemon(args.config, mod.DEFAULT_TOML, subs, keys(args), force=args.force):
            print(f"wrote {path}")
        return 0
    return _one_line_errors(call)


def _secret_or_new(role_seed: tuple[str | None, str | None]) -> bytes:
    from btcmesh.daemons.common import devnet_cosmos_secret, new_secret

    seed, role = role_seed
    return devnet_cosmos_secret(seed, role) if seed and role else new_secret()


def _cosmos(args: argparse.Namespace) -> bytes:
    return _secret_or_new((args.devnet_seed, args.devnet_role))


def _common_init(p: argparse.ArgumentParser, bitcoin: bool = False) -> None:
    p.add_argument("--chain-rest", default="http://127.0.0.1:1317", help="chain REST URL written to the config")
    if bitcoin:
        p.add_argument("--btc-rpc", default="http://btcmesh:password@127.0.0.1:18443",
                       help="Bitcoin JSON-RPC URL (credentials in the URL) written to the config")
    p.add_argument("--devnet-seed", help="derive the Cosmos key of a funded devnet account (with --devnet-role)")
    p.add_argument("--devnet-role", help="devnet account role, e.g. fp-1, covenant-2, staker-1")
    p.add_argument("--force", action="store_true", help="overwrite an existing config / key files")


def _config(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--config", type=Path, default=Path(default), help=f"TOML config file (default {default})")


def _rounds(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-rounds", type=int, default=None, help=argparse.SUPPRESS)


def add_daemon_commands(sub: Any) -> None:
    """Add ``stake``, ``fp``, ``covenant``, ``slasher`` and ``devnet`` to the ``btcmesh`` subparsers."""
    from btcmesh.daemons.common import new_secret

    # ---------------------------------------------------------------- stake
    s = sub.add_parser("stake", help="the staker tool: keys, wallet, stake / unbond / withdraw",
                       description="Stake BTC with Babylon's pre-approval flow: create_btc_delegation without an "
                                   "inclusion proof, covenant signatures, then the staking tx is broadcast and the "
                                   "checkpoint service adds the proof.")
    ss = s.add_subparsers(dest="action", metavar="<action>", required=True)
    p = ss.add_parser("init", help="write a commented default config and 0600 key files")
    _config(p, "staker.toml")
    _common_init(p, bitcoin=True)
    p.set_defaults(func=_init("staker", lambda a: {"staker-btc.key": new_secret(), "staker-cosmos.key": _cosmos(a)}))
    p = ss.add_parser("address", help="print the wallet's P2TR address (fund it)")
    _config(p, "staker.toml")
    p.set_defaults(func=_lazy("staker", "cmd_address"))
    p = ss.add_parser("stake", help="fund, pre-sign, register (no proof), wait for the covenants, broadcast")
    _config(p, "staker.toml")
    p.add_argument("--fp", help="finality provider BTC key (x-only hex)")
    p.add_argument("--value", type=int, help="staking value in sat")
    p.add_argument("--time", type=int, help="staking time in blocks")
    p.add_argument("--no-wait", action="store_true", help="broadcast without waiting for the covenant quorum")
    p.add_argument("--psbt", type=Path, metavar="FILE",
                   help="do not sign: write the BIP-174 PSBTs (BIP-371 taproot fields) of every tx the staker "
                        "signs to FILE (JSON with base64 PSBTs) for an outside wallet")
    p.add_argument("--psbt-signed", type=Path, metavar="FILE", help="finish a --psbt stake with the signed PSBTs")
    p.set_defaults(func=_lazy("staker", "cmd_stake"))
    p = ss.add_parser("status", help="this staker's delegations and their chain status (JSON lines)")
    _config(p, "staker.toml")
    p.set_defaults(func=_lazy("staker", "cmd_status"))
    p = ss.add_parser("rewards", help="pending and claimed consumer rewards of this staker's address (JSON)")
    _config(p, "staker.toml")
    p.set_defaults(func=_lazy("staker", "cmd_rewards"))
    for name, what in (("unbond", "broadcast the covenant-signed unbonding tx"),
                       ("withdraw", "spend the timelock path back to the wallet"),
                       ("claim", "claim pending rewards to this staker's (PoP-bound) address")):
        p = ss.add_parser(name, help=what)
        _config(p, "staker.toml")
        p.add_argument("--staking-tx", help="staking tx hash (default: the latest delegation)")
        p.set_defaults(func=_lazy("staker", f"cmd_{name}"))

    # ---------------------------------------------------------------- fp
    f = sub.add_parser("fp", help="the finality-provider daemon (EOTS randomness, votes, slashing protection)",
                       description="Babylon's finality-provider daemon and eotsd in one: `init` writes a config and "
                                   "keys, `register` creates the FP on the chain (PoP over its Cosmos address), `run` "
                                   "commits EOTS public randomness ahead and votes on every block; signing records in "
                                   "SQLite refuse a second app hash at a height, even after kill -9.")
    fs = f.add_subparsers(dest="action", metavar="<action>", required=True)
    p = fs.add_parser("init", help="write a commented default config and 0600 key files")
    _config(p, "fp.toml")
    _common_init(p)
    p.add_argument("--moniker", default="btcmesh-fp", help="the FP's name shown on the chain (default btcmesh-fp)")
    p.set_defaults(func=_init("fp", lambda a: {"fp-btc.key": new_secret(), "fp-cosmos.key": _cosmos(a)}))
    for name, what in (("register", "create_finality_provider (PoP over the FP's Cosmos address)"),
                       ("run", "commit randomness ahead and vote on every block"),
                       ("unjail", "ask the chain to unjail this FP"),
                       ("status", "registry / finality state of this FP (JSON)")):
        p = fs.add_parser(name, help=what)
        _config(p, "fp.toml")
        if name == "run":
            _rounds(p)
        p.set_defaults(func=_lazy("fp", f"cmd_{name}"))
    p = fs.add_parser("sign", help="eotsd-style protected signing of (height, app hash): prints the signature "
                                   "or refuses if another app hash was signed at that height")
    _config(p, "fp.toml")
    p.add_argument("--height", type=int, required=True, help="block height the app hash belongs to")
    p.add_argument("--app-hash", required=True, help="32-byte app hash, hex")
    p.set_defaults(func=_lazy("fp", "cmd_sign"))
    p = fs.add_parser("double-sign", help="DEVNET/TEST ONLY: equivocate on purpose (vote a fork app hash at a "
                                          "height already voted), bypassing the protection")
    _config(p, "fp.toml")
    p.add_argument("--height", type=int, help="height (default: the last one this FP voted on)")
    p.set_defaults(func=_lazy("fp", "cmd_double_sign"))

    # ---------------------------------------------------------------- covenant
    c = sub.add_parser("covenant", help="a covenant committee member daemon (verifies and signs PENDING delegations)",
                       description="Babylon's covenant emulator: watches PENDING delegations, checks each against the "
                                   "staking params and its pre-signed txs, and adds this member's slashing and "
                                   "unbonding signatures once (recorded in SQLite, so a restart never signs twice).")
    cs = c.add_subparsers(dest="action", metavar="<action>", required=True)
    p = cs.add_parser("init", help="write a commented default config and 0600 key files")
    _config(p, "covenant.toml")
    _common_init(p)
    p.add_argument("--devnet-covenant-index", type=int, help="use the devnet covenant key sha256([i])")

    def cov_keys(a: argparse.Namespace) -> dict[str, bytes]:
        from btc_staking.params import covenant_secret

        btc = covenant_secret(a.devnet_covenant_index) if a.devnet_covenant_index is not None else new_secret()
        return {"covenant-btc.key": btc, "covenant-cosmos.key": _cosmos(a)}
    p.set_defaults(func=_init("covenant", cov_keys))
    p = cs.add_parser("run", help="watch PENDING delegations, verify, sign once each")
    _config(p, "covenant.toml")
    _rounds(p)
    p.set_defaults(func=_lazy("covenant", "cmd_run"))

    # ---------------------------------------------------------------- slasher
    k = sub.add_parser("slasher", help="the BTC slasher daemon (evidence + atomic slashing)",
                       description="Babylon vigilante's slasher: completes and broadcasts the slashing tx of every "
                                   "delegation of a slashed FP (staking or unbonding path), recorded so a restart "
                                   "neither repeats nor skips one; a slashing tx seen on Bitcoin reveals the FP key "
                                   "and its other delegations are slashed too.")
    ks = k.add_subparsers(dest="action", metavar="<action>", required=True)
    p = ks.add_parser("init", help="write a commented default config")
    _config(p, "slasher.toml")
    _common_init(p, bitcoin=True)
    p.set_defaults(func=_init("slasher", lambda a: {}))
    p = ks.add_parser("run", help="complete and broadcast slashing txs of slashed FPs' delegations")
    _config(p, "slasher.toml")
    _rounds(p)
    p.set_defaults(func=_lazy("slasher", "cmd_run"))

    # ---------------------------------------------------------------- devnet
    d = sub.add_parser("devnet", help="every part as a separate process under one directory",
                       description="up: node, chain (embedded or --comet N), checkpoint, 3 covenant signers, 2 FPs, "
                                   "slasher, API, each with config + log + PID file under --dir. status: one line "
                                   "per process. down: stop what up started. mine / double-sign: drive it.")
    d.add_argument("action", choices=("up", "status", "down", "mine", "double-sign"))
    d.add_argument("--dir", type=Path, default=Path("devnet"), help="devnet directory (default ./devnet)")
    d.add_argument("--comet", type=int, default=0, metavar="N", help="chain as N CometBFT validators (up)")
    d.add_argument("--seed", default="btcmesh-devnet", help="seed of the devnet keys (up)")
    d.add_argument("-k", type=int, default=3, help="confirmation depth (up; default 3)")
    d.add_argument("--unbonding-time", type=int, default=4, help="unbonding time in blocks (up; default 4)")
    d.add_argument("--block-interval", type=float, default=1.0,
                   help="chain seconds per block (up; default 1: FPs must vote within finality_sig_timeout = 3 blocks)")
    d.add_argument("-n", type=int, default=1, help="blocks to mine (mine)")
    d.add_argument("--address", help="mine to this address (mine; default the devnet miner)")
    d.add_argument("--fp", type=int, default=1, choices=(1, 2), help="which FP double-signs (double-sign)")
    d.add_argument("--height", type=int, help="height to double-sign (default: its last vote)")
    d.set_defaults(func=_lazy("devnet", "cmd_devnet"))
