"""The ``btcmesh`` command.

::

    btcmesh demo                                   # the whole story in-process (< 1 min)
    btcmesh demo --btc-backend btcd --comet 3      # the same on btcd + 3 CometBFT validators
    btcmesh node [--backend embedded|btcd]         # regtest Bitcoin node with JSON-RPC on 127.0.0.1
    btcmesh chain [--comet N]                      # the Cosmos chain + REST (LedgerClient) on 127.0.0.1
    btcmesh checkpoint --btc-rpc URL --chain-rest URL
    btcmesh api --chain-rest URL                   # staking API (uvicorn) on 127.0.0.1

Everything binds and dials 127.0.0.1 only. Long-running commands stop on Ctrl-C / SIGTERM.
Bad arguments exit with status 2 and a one-line reason (argparse); runtime failures exit with
status 1 and ``btcmesh <command>: error: <reason>`` on stderr.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from btcmesh.binaries import find_binary

__all__ = ["main", "build_parser", "CliError", "DEVNET_SEED"]

#: Seed of the devnet accounts ``btcmesh chain`` funds and ``btcmesh checkpoint`` signs with.
DEVNET_SEED = "btcmesh-devnet"
LOOPBACK = ("127.0.0.1", "localhost")


class CliError(Exception):
    """A runtime failure reported as ``btcmesh <cmd>: error: <message>`` (exit status 1)."""


# ---------------------------------------------------------------------------------------- argument types
def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be an integer, got {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535 (0 = pick a free one), got {port}")
    return port


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def _non_negative_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {n}")
    return n


def _positive_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not 0 < x <= 3600:
        raise argparse.ArgumentTypeError(f"expected a number of seconds in (0, 3600], got {x}")
    return x


def _loopback_url(value: str) -> str:
    """An http URL on 127.0.0.1 / localhost (``rest+http://`` accepted for cosmpy-style URLs)."""
    parts = urlsplit(value.strip().removeprefix("rest+"))
    if parts.scheme != "http" or not parts.hostname:
        raise argparse.ArgumentTypeError(f"expected a URL like http://127.0.0.1:PORT, got {value!r}")
    if parts.hostname not in LOOPBACK:
        raise argparse.ArgumentTypeError(f"only 127.0.0.1 is allowed, got host {parts.hostname!r}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        raise argparse.ArgumentTypeError(f"the URL needs an explicit port: {value!r}")
    return value.strip()


# ---------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of every subcommand."""
    p = argparse.ArgumentParser(
        prog="btcmesh",
        description="Babylon-style Bitcoin staking for Cosmos Mesh Security: regtest Bitcoin, a Cosmos "
                    "chain with BTC light client / staking registry / finality / mesh modules, the "
                    "checkpoint service and the staking API. Everything runs on 127.0.0.1.",
        epilog="Start with `btcmesh demo`. `btcmesh <command> --help` describes each command.",
    )
    sub = p.add_subparsers(dest="command", metavar="<command>", required=True)

    d = sub.add_parser("demo", help="run the end-to-end scenario in-process (lock, attest, slash, unbond)",
                       description="Start an embedded regtest node, the chain with its REST server, the "
                                   "checkpoint service and the API; register 2 finality providers; two stakers "
                                   "lock BTC; one FP double-signs and is slashed on Bitcoin and in the mesh; the "
                                   "honest staker unbonds and withdraws. Prints each step and a summary table.")
    d.add_argument("-k", "--confirmations", type=_positive_int, default=3, dest="k",
                   help="confirmation depth k the chain requires (default 3)")
    d.add_argument("--unbonding-time", type=_positive_int, default=4, help="unbonding time in blocks (default 4)")
    d.add_argument("--seed", default="btcmesh-demo", help="seed all demo keys derive from")
    d.add_argument("--no-api", action="store_true", help="do not start the staking API")
    d.add_argument("--btc-backend", choices=("embedded", "btcd"), default="embedded",
                   help="Bitcoin node: the in-process node validated by libbitcoinkernel (default) or a btcd "
                        "v0.26 regtest process")
    d.add_argument("--comet", type=_non_negative_int, default=0, metavar="N",
                   help="run the chain as N CometBFT v0.38 validators (0 = the embedded chain, default)")
    d.add_argument("--btcd", type=Path, help="path of the btcd binary (default: found like the tests do)")
    d.add_argument("--cometbft", type=Path, help="path of the cometbft binary (default: found like the tests do)")
    d.add_argument("--json", action="store_true", help="print the result as JSON instead of tables")
    d.add_argument("-q", "--quiet", action="store_true", help="only print the summary")
    d.add_argument("--serve", action="store_true",
                   help="after the scenario keep every part running and print the web explorer's URL (Ctrl-C stops)")
    d.add_argument("--api-port", type=_non_negative_int, default=0,
                   help="port of the staking API and explorer on 127.0.0.1 (default: any free port)")
    d.add_argument("--mesh", choices=("model", "upstream"), default="model",
                   help="upstream: also drive the upstream Mesh Security contracts (cw-multi-test harness, "
                        "built by scripts/setup.sh --daemons) with the same events and compare with the model")
    d.set_defaults(func=cmd_demo)

    n = sub.add_parser("node", help="run a regtest Bitcoin node with JSON-RPC on 127.0.0.1",
                       description="`--backend embedded` (default): the in-process node validated by "
                                   "libbitcoinkernel, served with bitcoind-dialect JSON-RPC. `--backend btcd`: "
                                   "start btcd (v0.26) in regtest mode. Prints `ready <url> ...` once it answers; "
                                   "stops on Ctrl-C, SIGTERM or the `stop` RPC.")
    n.add_argument("--backend", choices=("embedded", "btcd"), default="embedded", help="node implementation")
    n.add_argument("--port", type=_port, default=18443, help="RPC port (default 18443; 0 = any free port)")
    n.add_argument("--user", default="btcmesh", help="RPC user (default btcmesh; embedded only)")
    n.add_argument("--password", help="RPC password (default: random, printed on the ready line; embedded only)")
    n.add_argument("--datadir", type=Path, help="persist the chain here (embedded: default in memory; "
                                                  "btcd: default a temporary directory)")
    n.add_argument("--mine", type=_non_negative_int, default=0, metavar="N", help="mine N blocks right after start")
    n.add_argument("--wall-clock", action="store_true", help="embedded: block times from the wall clock")
    n.add_argument("--btcd", type=Path, help="path of the btcd binary (default: found like the tests do)")
    n.set_defaults(func=cmd_node)

    c = sub.add_parser("chain", help="run the Cosmos chain with its REST server on 127.0.0.1",
                       description="An embedded single-node chain (or `--comet N` validators under CometBFT) "
                                   "with the REST subset cosmpy's LedgerClient uses. Genesis funds the devnet "
                                   "accounts (checkpoint signer, covenant, FPs) derived from --seed and takes "
                                   "the BTC light-client base header from --btc-rpc (its tip) or the regtest "
                                   "genesis block.")
    c.add_argument("--port", type=_port, default=1317, help="REST port (default 1317; 0 = any free port)")
    c.add_argument("--grpc-port", type=_port, default=None,
                   help="gRPC port for the same LedgerClient subset (default 9090, or any free port with --port 0)")
    c.add_argument("--chain-id", default="btcmesh-devnet-1", help="chain id")
    c.add_argument("--home", type=Path, help="state directory (default: in memory / temporary)")
    c.add_argument("--block-interval", type=_positive_float, default=1.0, help="seconds per block (default 1)")
    c.add_argument("--comet", type=_positive_int, metavar="N", help="run N validators under CometBFT instead")
    c.add_argument("--btc-rpc", type=_loopback_url, help="node to take the light-client base header from")
    c.add_argument("--btc-dialect", choices=("btcd", "bitcoind"), default="bitcoind")
    c.add_argument("-k", "--confirmations", type=_positive_int, default=6, dest="k", help="k (default 6)")
    c.add_argument("--unbonding-time", type=_positive_int, default=10, help="unbonding time in blocks")
    c.add_argument("--seed", default=DEVNET_SEED, help="seed of the funded devnet accounts")
    c.set_defaults(func=cmd_chain)

    k = sub.add_parser("checkpoint", help="follow Bitcoin and attest k-deep staking locks to the chain",
                       description="Follows the Bitcoin node, relays headers to the chain's BTC light client "
                                   "and attests k-deep staking/unbonding txs (cosmpy-signed). Parameters and k "
                                   "come from the chain's staking registry.")
    k.add_argument("--btc-rpc", type=_loopback_url, required=True,
                   help="Bitcoin JSON-RPC URL, e.g. http://user:pass@127.0.0.1:18443")
    k.add_argument("--btc-dialect", choices=("btcd", "bitcoind"), required=True, help="RPC dialect of the node")
    k.add_argument("--btc-user", default="", help="RPC user (if not in the URL)")
    k.add_argument("--btc-password", default="", help="RPC password (if not in the URL)")
    k.add_argument("--chain-rest", type=_loopback_url, required=True, help="chain REST URL, e.g. http://127.0.0.1:1317")
    k.add_argument("--store", type=Path, default=Path("checkpoint.sqlite"), help="SQLite state file")
    k.add_argument("--seed", default=DEVNET_SEED, help="seed of the (funded) devnet signer account (default)")
    k.add_argument("--private-key-file", type=Path,
                   help="sign with the 32-byte hex key in this file instead (or set BTCMESH_CHECKPOINT_KEY)")
    k.add_argument("--poll", type=_positive_float, default=1.0, help="seconds between rounds (default 1)")
    k.add_argument("--start-height", type=int, default=None,
                   help="first Bitcoin height to scan (default: the light client's base)")
    k.add_argument("--once", action="store_true", help="run one round and exit")
    k.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                   help="serve Prometheus metrics (fork alert, relay failures, backoff) on 127.0.0.1:PORT "
                        "(0: any free port; default off)")
    k.set_defaults(func=cmd_checkpoint)

    a = sub.add_parser("api", help="serve the staking API (uvicorn) on 127.0.0.1",
                       description="Babylon staking-api-service v2 style endpoints over the chain's REST server.")
    a.add_argument("--chain-rest", type=_loopback_url, required=True, help="chain REST URL, e.g. http://127.0.0.1:1317")
    a.add_argument("--port", type=_port, default=8000, help="API port (default 8000)")
    a.add_argument("--timeout", type=_positive_float, default=5.0, help="chain query timeout in seconds")
    a.add_argument("--trusted-host", action="append", default=[], metavar="NAME",
                   help="also answer this Host header (127.0.0.1 and localhost always; repeatable; "
                        "or BTCMESH_API_TRUSTED_HOSTS=a,b)")
    a.add_argument("--btc-rpc", type=_loopback_url, help="Bitcoin node RPC (http://user:pass@127.0.0.1:PORT) whose "
                                                          "tip the explorer's overview shows beside the light client's")
    a.add_argument("--btc-dialect", choices=("btcd", "bitcoind"), default="bitcoind", help="RPC dialect of that node")
    a.add_argument("--index-url", default=None, metavar="URL",
                   help="answer /v2 from the API's own index of the chain (sqlite:///FILE or "
                        "postgresql+psycopg://USER@127.0.0.1:PORT/DB), kept up to date in the background")
    a.set_defaults(func=cmd_api)

    from btcmesh.daemons.commands import add_daemon_commands

    add_daemon_commands(sub)  # stake, fp, covenant, slasher, devnet (issue 11)
    return p


# ---------------------------------------------------------------------------------------- helpers
class _StopSignals:
    """SIGINT/SIGTERM set ``event`` while active (installed before a command prints ``ready``)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> threading.Event:
        self._previous = {s: signal.signal(s, lambda *_: self.event.set()) for s in (signal.SIGINT, signal.SIGTERM)}
        return self.event

    def __exit__(self, *exc: object) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)


def _wait_for_signal(stop: threading.Event, check: Callable[[], None] | None = None) -> None:
    """Block until ``stop`` is set (by a signal or the ``stop`` RPC); ``check()`` runs twice a second."""
    while not stop.wait(0.5):
        if check is not None:
            check()


def _say(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------- demo
def _jsonable(obj: Any) -> Any:
    """JSON-friendly copy of dataclasses / dicts / lists (bytes as hex, the rest via str)."""
    from dataclasses import fields, is_dataclass

    if is_dataclass(obj) and not isinstance(obj, type):
        if hasattr(obj, "to_dict"):
            return obj.to_dict()
        return {f.name: _jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).hex()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def cmd_demo(args: argparse.Namespace) -> int:
    from btcmesh.demo import DemoConfig, format_summary, run_demo

    cfg = DemoConfig(k=args.k, unbonding_time=args.unbonding_time, seed=args.seed, with_api=not args.no_api,
                     btc_backend=args.btc_backend, comet=args.comet,
                     btcd_binary=str(args.btcd) if args.btcd else None,
                     cometbft_binary=str(args.cometbft) if args.cometbft else None, api_port=args.api_port,
                     mesh=getattr(args, "mesh", "model"))
    quiet = args.quiet or args.json
    if args.serve and args.no_api:
        raise CliError("--serve shows the explorer, which the API serves: drop --no-api")
    if cfg.mesh == "upstream":
        from btcmesh.mesh_upstream import HarnessMissing, require_harness

        try:
            require_harness()
        except HarnessMissing as exc:
            raise CliError(str(exc)) from None
    if not quiet:
        _say("btcmesh demo: Bitcoin regtest → checkpoint → Cosmos chain → mesh → slashing, all on 127.0.0.1\n")
    hold = _serve_until_interrupted(args.json) if args.serve else None
    result = run_demo(cfg, out=(lambda s: None) if quiet else _say, hold=hold)
    if args.serve:
        return 0 if result.ok else 1
    if args.json:
        print(json.dumps(_jsonable(result), indent=2, sort_keys=True))
    else:
        _say(format_summary(result))
    return 0 if result.ok else 1


def _serve_until_interrupted(as_json: bool) -> Callable[[Any], None]:
    """``run_demo``'s hold: print the summary and the explorer's URL, keep the parts up until Ctrl-C."""

    def hold(result: Any) -> None:
        from api.explorer import explorer_url
        from btcmesh.demo import format_summary

        if as_json:
            print(json.dumps(_jsonable(result), indent=2, sort_keys=True), flush=True)
        else:
            _say(format_summary(result))
        if not result.api_url:
            _say("the API did not start: nothing to serve")
            return
        _say(f"\nExplorer: {explorer_url(result.api_url)}\nAPI:      {result.api_url}/docs   "
             f"chain REST: {result.rest_url}\nServing until Ctrl-C ...")
        with _StopSignals(threading.Event()) as stop:  # SIGINT/SIGTERM: stop the parts cleanly
            _wait_for_signal(stop)
        _say("stopping")

    return hold


# ---------------------------------------------------------------------------------------- node
def cmd_node(args: argparse.Namespace) -> int:
    from regtest.rpc import script_to_address

    from btcmesh.demo import demo_secret
    from btc_staking.signing import p2tr_key_path_script

    mining_script = p2tr_key_path_script(demo_secret(DEVNET_SEED, "btc/miner"), is_secret=True)
    stop = getattr(args, "stop", None) or threading.Event()
    if args.backend == "btcd":
        return _node_btcd(args, mining_script, script_to_address(mining_script), stop)
    from regtest.embedded import EmbeddedNode
    from regtest.rpc_server import RpcServer

    node = EmbeddedNode(args.datadir, clock=time.time if args.wall_clock else None)
    try:
        server = RpcServer(node, port=args.port, user=args.user, password=args.password, on_stop=stop.set)
        try:
            server.start()
        except OSError as exc:
            raise CliError(f"cannot bind 127.0.0.1:{args.port}: {exc.strerror or exc}") from exc
        try:
            if args.mine:
                node.mine_blocks(args.mine, mining_script)
            _say(f"ready {server.url} height={node.get_block_count()} backend=embedded dialect=bitcoind")
            _wait_for_signal(stop)
        finally:
            server.stop()
    finally:
        node.close()
    _say("stopped")
    return 0


def _node_btcd(args: argparse.Namespace, mining_script: bytes, mining_address: str, stop: threading.Event) -> int:
    import tempfile

    from regtest.btcd import BtcdError, BtcdProcess

    binary = args.btcd or find_binary("btcd")
    if binary is None:
        raise CliError("btcd not found: run `scripts/setup.sh --daemons`, set BTCMESH_TOOLS or pass --btcd PATH")
    with tempfile.TemporaryDirectory(prefix="btcmesh-btcd-") as tmp:
        datadir = args.datadir or Path(tmp)
        try:
            proc = BtcdProcess(binary, datadir, mining_address, rpc_port=args.port or None).start()
        except BtcdError as exc:
            raise CliError(str(exc)) from exc
        try:
            if args.mine:
                proc.backend().mine_blocks(args.mine, mining_script)
            _say(f"ready http://{proc.rpc_user}:{proc.rpc_password}@127.0.0.1:{proc.rpc_port} "
                 f"height={proc.backend().get_block_count()} backend=btcd dialect=btcd")

            def alive() -> None:
                code = None if proc.proc is None else proc.proc.poll()
                if code == 0:  # stopped through its own `stop` RPC
                    stop.set()
                elif proc.proc is None or code is not None:
                    raise CliError(f"btcd exited with status {code}:\n{proc.log_tail()}")

            _wait_for_signal(stop, alive)
        finally:
            proc.stop()
    _say("stopped")
    return 0


# ---------------------------------------------------------------------------------------- chain
def devnet_accounts(seed: str) -> dict[str, Any]:
    """The funded devnet accounts (cosmpy wallets) by role."""
    from cosmos_chain.genesis import deterministic_wallet

    roles = ("checkpoint", "covenant", "mesh-admin", "fp-1", "fp-2", "staker-1", "staker-2",
             "covenant-2", "covenant-3")  # covenant-2/3: the devnet's other covenant signers (issue 11)
    return {r: deterministic_wallet(f"{seed}/{r}") for r in roles}


REGTEST_GENESIS_HEADER = bytes.fromhex(
    "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e"
    "67768f617fc81bc3888a51323a9fb8aa4b1e5e4adae5494dffff7f2002000000")


def _base_header(args: argparse.Namespace) -> tuple[int, bytes]:
    if not args.btc_rpc:
        return 0, REGTEST_GENESIS_HEADER
    from regtest.backend import BackendError
    from regtest.rpc import RpcBackend

    try:
        with RpcBackend(args.btc_rpc.removeprefix("rest+"), dialect=args.btc_dialect, timeout=10) as b:
            h = b.get_block_count()
            return h, b.get_block_header(b.get_block_hash(h))
    except (BackendError, OSError) as exc:
        raise CliError(f"cannot read the tip of {urlsplit(args.btc_rpc).hostname}:{urlsplit(args.btc_rpc).port}: "
                       f"{exc}") from exc


def cmd_chain(args: argparse.Namespace) -> int:
    from btcmesh.demo import chain_genesis
    from btc_staking.params import regtest_default_params
    from cosmos_chain.modules.base import module_address

    params = regtest_default_params(confirmation_depth=args.k, unbonding_time_blocks=args.unbonding_time)
    height, header = _base_header(args)
    accounts = devnet_accounts(args.seed)
    genesis = chain_genesis(params, height, header, [str(w.address()) for w in accounts.values()],
                            str(accounts["mesh-admin"].address()),
                            header_reporters=[str(accounts["checkpoint"].address())])
    genesis["chain_id"] = args.chain_id

    def banner(rest_url: str, extra: str = "") -> None:
        _say(f"ready {rest_url} chain_id={args.chain_id} light_client_base={height}{extra}")
        for name in ("btc_light_client", "btc_staking", "finality", "mesh"):
            _say(f"  contract {name:<17} {module_address(name)}")
        for role, w in accounts.items():
            _say(f"  account  {role:<17} {w.address()}")

    stop = getattr(args, "stop", None) or threading.Event()
    if args.comet:
        if args.home is not None:
            stored_base = _check_stored_comet_genesis(args.home, args)
            if stored_base is not None:
                height = stored_base
        return _chain_comet(args, genesis, banner, stop)
    from cosmos_chain.app import ChainApp
    from cosmos_chain.node import EmbeddedChain
    from cosmos_chain.rest import RestServer

    from cosmos_chain.app import ChainIdMismatchError

    try:
        app = ChainApp(args.chain_id, args.home)
    except ChainIdMismatchError as exc:
        raise CliError(f"--chain-id {args.chain_id} differs from the chain stored in {args.home}: {exc.stored} "
                       f"(start with --chain-id {exc.stored}, or use a new --home)") from None
    try:
        stored_base = _check_stored_genesis(app, args)
    except BaseException:
        app.close()
        raise
    if stored_base is not None:
        height = stored_base  # the banner shows the light client's real base, not today's node tip
    missing = [m for m in ("btc_light_client", "btc_staking", "finality", "mesh") if m not in app.modules]
    if missing:
        print(f"btcmesh chain: warning: chain modules not installed: {', '.join(missing)}", file=sys.stderr)
    try:
        node = EmbeddedChain(app, args.block_interval, genesis=genesis)
        try:
            try:
                rest = RestServer(node, port=args.port).start()
            except OSError as exc:
                raise CliError(f"cannot bind 127.0.0.1:{args.port}: {exc.strerror or exc}") from exc
            try:
                grpc = _start_grpc(node, args)
            except BaseException:
                rest.stop()
                raise
            try:
                banner(rest.url, f" grpc={grpc.cosmpy_url}")

                def alive() -> None:
                    if node.error is not None:
                        raise CliError(f"block production failed: {node.error!r}")

                _wait_for_signal(stop, alive)
            finally:
                grpc.stop()
                rest.stop()
        finally:
            node.close()
    finally:
        app.close()
    _say("stopped")
    return 0


def _check_stored_genesis(app: Any, args: argparse.Namespace) -> int | None:
    """On a restart (``--home`` holds a chain) the genesis flags must match what the chain stored:
    raise CliError naming the first flag that differs and the stored value. Returns the light client's
    stored base height (None for a fresh home)."""
    if app.last_height == 0 and not app.root.data:
        return None
    _check_stored_params(app.smart_query("btc_staking", {"params": {}})["params_versions"][0], args)
    base = app.smart_query("btc_light_client", {"base": {}})
    return base.get("height")


def _check_stored_params(params: dict, args: argparse.Namespace) -> None:
    for flag, key, wanted in (("-k/--confirmations", "confirmation_depth", args.k),
                              ("--unbonding-time", "unbonding_time_blocks", args.unbonding_time)):
        if int(params[key]) != wanted:
            raise CliError(f"{flag} {wanted} differs from the value stored in {args.home}: {params[key]} "
                           f"(genesis params are fixed; pass {params[key]} or use a new --home)")


def _check_stored_comet_genesis(home: Path, args: argparse.Namespace) -> int | None:
    """``--comet`` restart: the same checks against the CometBFT genesis in ``home`` (None if new)."""
    path = Path(home) / "node0" / "config" / "genesis.json"
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
        chain_id, app_state = stored["chain_id"], stored["app_state"]
    except (OSError, ValueError, KeyError) as exc:
        raise CliError(f"cannot read the stored genesis {path}: {exc}") from None
    if chain_id != args.chain_id:
        raise CliError(f"--chain-id {args.chain_id} differs from the chain stored in {home}: {chain_id} "
                       f"(start with --chain-id {chain_id}, or use a new --home)")
    _check_stored_params(app_state["btc_staking"]["params"][0], args)
    return int(app_state["btc_light_client"]["base"]["height"])


def _start_grpc(node_or_backend: Any, args: argparse.Namespace) -> Any:
    """The gRPC server (same subset as REST) on ``--grpc-port`` (default 9090; any free port with --port 0)."""
    from cosmos_chain.grpc_server import GrpcServer

    port = args.grpc_port if args.grpc_port is not None else (0 if args.port == 0 else 9090)
    try:
        return GrpcServer(node_or_backend, port=port).start()
    except (OSError, RuntimeError) as exc:
        raise CliError(f"cannot bind the gRPC port 127.0.0.1:{port}: {exc}") from exc


def _chain_comet(args: argparse.Namespace, genesis: dict, banner: Callable[..., None],
                 stop: threading.Event) -> int:
    import tempfile

    from cosmos_chain.comet import CometError, run_comet_chain
    from cosmos_chain.comet_backend import CometBackend
    from cosmos_chain.rest import RestServer

    with tempfile.TemporaryDirectory(prefix="btcmesh-comet-") as tmp:
        home = args.home or Path(tmp)
        try:
            net = run_comet_chain(home, args.comet, genesis, chain_id=args.chain_id,
                                  block_time=args.block_interval)
        except CometError as exc:
            raise CliError(str(exc)) from exc
        try:
            backend = CometBackend(net.rpc_urls[0], chain_id=args.chain_id)
            rest = RestServer(backend, port=args.port).start()
            try:
                grpc = _start_grpc(backend, args)
            except BaseException:
                rest.stop()
                raise
            try:
                banner(rest.url, f" grpc={grpc.cosmpy_url} validators={args.comet} "
                                 f"comet_rpc={','.join(net.rpc_urls)}")
                _wait_for_signal(stop, net.check_alive)
            finally:
                grpc.stop()
                rest.stop()
        finally:
            net.stop()
    _say("stopped")
    return 0


# ---------------------------------------------------------------------------------------- checkpoint
def cmd_checkpoint(args: argparse.Namespace) -> int:
    import os

    from checkpoint.errors import ChainError, InvalidInputError
    from checkpoint.runner import build_service, make_wallet, query_chain_id, rest_base
    from regtest.backend import BackendError
    from regtest.rpc import RpcBackend

    try:
        rest = rest_base(args.chain_rest)
        chain_id = query_chain_id(rest)
    except (ChainError, InvalidInputError) as exc:
        raise CliError(str(exc)) from exc
    try:
        if args.private_key_file is not None:
            signer = make_wallet(private_key=args.private_key_file.read_text().strip())
        elif os.environ.get("BTCMESH_CHECKPOINT_KEY"):
            signer = make_wallet(private_key=os.environ["BTCMESH_CHECKPOINT_KEY"].strip())
        else:
            signer = devnet_accounts(args.seed)["checkpoint"]
    except (OSError, InvalidInputError) as exc:
        raise CliError(f"cannot load the signer key: {exc}") from exc
    port = urlsplit(args.btc_rpc).port
    try:
        backend = RpcBackend(args.btc_rpc, args.btc_user, args.btc_password, dialect=args.btc_dialect, timeout=30)
        backend.get_block_count()
    except (BackendError, OSError, ValueError) as exc:
        raise CliError(f"Bitcoin RPC 127.0.0.1:{port} did not answer: {exc}") from exc
    try:
        try:
            service = build_service(backend, rest, args.store, wallet=signer, chain_id=chain_id,
                                    start_height=args.start_height, poll_interval=args.poll)
        except (ChainError, InvalidInputError, ValueError) as exc:
            raise CliError(f"cannot set up the checkpoint service: {exc}") from exc
        try:
            _say(f"checkpoint: chain {chain_id} at {rest}, Bitcoin {args.btc_dialect} at 127.0.0.1:{port}, "
                 f"k={service.k}, from height {service.start_height}, signer {signer.address()}")
            if getattr(args, "metrics_port", None) is not None:
                _, mport = service.health.serve_metrics(args.metrics_port)
                _say(f"checkpoint: metrics on http://127.0.0.1:{mport}/metrics")
            if args.once:
                _say(json.dumps(_jsonable(service.run_once()), sort_keys=True))
                return 0
            with _StopSignals(threading.Event()) as stop:
                rounds = service.run_forever(stop)
            _say(f"stopped after {rounds} rounds")
            return 0
        finally:
            service.close()
    finally:
        backend.close()


# ---------------------------------------------------------------------------------------- api
def _check_bindable(port: int) -> None:
    """CliError ``cannot bind 127.0.0.1:PORT: ...`` if a server could not listen there (as uvicorn binds it)."""
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise CliError(f"cannot bind 127.0.0.1:{port}: {exc.strerror or exc}") from None


def cmd_api(args: argparse.Namespace) -> int:
    from api.server import serve

    btc_tip = None
    if args.btc_rpc:
        from regtest.rpc import RpcBackend

        btc_tip = RpcBackend(args.btc_rpc, dialect=args.btc_dialect, timeout=args.timeout).get_block_count
    if args.port:
        _check_bindable(args.port)  # one line, like node/chain, instead of uvicorn's multi-line log
    _say(f"staking API on http://127.0.0.1:{args.port} (docs at /docs, explorer at /explorer) over {args.chain_rest}")
    serve(args.chain_rest, "127.0.0.1", args.port, timeout=args.timeout, extra_hosts=args.trusted_host,
          btc_tip=btc_tip, index_url=args.index_url)
    return 0


# ---------------------------------------------------------------------------------------- main
def _innermost_parser(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser of the deepest subcommand named in ``argv`` (``btcmesh fp run`` → ``fp run``'s)."""
    for token in argv:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs and token in subs[0].choices:
            parser = subs[0].choices[token]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``btcmesh`` script; returns the exit status."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:  # the usage of the (sub)command the unknown arguments were given to, not the top level's
        _innermost_parser(parser, list(sys.argv[1:] if argv is None else argv)).error(
            f"unrecognized arguments: {' '.join(extras)}")
    try:
        if args.func in (cmd_node, cmd_chain):
            args.stop = threading.Event()
            with _StopSignals(args.stop):
                return int(args.func(args) or 0)
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"btcmesh {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `btcmesh demo --json | head`
        sys.stderr.close()
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
