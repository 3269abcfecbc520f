"""``btcmesh devnet up|status|down``: every part as its own OS process, under one directory.

``up`` starts, each with its own directory (``process.toml`` with its command line, the daemon's own
TOML config where it has one, ``<name>.log``, ``pid``, ``state/``): the Bitcoin node
(``btcmesh node``, embedded), the chain (``btcmesh chain``, embedded or ``--comet N`` validators),
the checkpoint service, 3 covenant signers, 2 finality providers (registered first), the slasher
and the staking API. It also writes two staker configs (``staker-1``, ``staker-2``, funded with one
coinbase each) for ``btcmesh stake``. Everything is described in ``DIR/devnet.json``.

``status`` prints one line per process (alive, height, last error); ``down`` stops exactly the
processes whose PID files it wrote (the PID file holds the process start time too, so a recycled
PID is never signalled), SIGTERM first, SIGKILL after a bounded wait. ``mine`` and ``double-sign``
drive a running devnet (``double-sign`` makes fp-1 equivocate on purpose: devnet/demo only).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from btcmesh.daemons.common import ConfigError, devnet_cosmos_secret, init_daemon

__all__ = ["DevnetError", "up", "status", "down", "mine", "process_alive", "PROCESS_ORDER"]

DEVNET_SEED = "btcmesh-devnet"
PROCESS_ORDER = ("node", "chain", "checkpoint", "covenant-1", "covenant-2", "covenant-3", "fp-1", "fp-2",
                 "slasher", "api")


STOPPED = "stopped"  # what `down` leaves in a PID file


class DevnetError(RuntimeError):
    """A devnet part did not start / the directory is not a devnet."""


def _port_free(port: int) -> bool:
    """Nobody listens on 127.0.0.1:``port`` (connections in TIME_WAIT do not count, as for the servers)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_alive(pid_file: Path) -> int | None:
    """The PID in ``pid_file`` if that very process (same start time) is still running, else None."""
    try:
        pid_s, start = pid_file.read_text().split()
        pid = int(pid_s)
    except (OSError, ValueError):
        return None
    st = _start_time(pid)
    if st is None or st != start:
        return None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
    return None if state == "Z" else pid


def _spawn(d: Path, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    pdir = d / name
    pdir.mkdir(parents=True, exist_ok=True)
    log = open(pdir / f"{name}.log", "ab")
    e = dict(os.environ)
    e.pop("BTCMESH_CRASH_AT", None)
    e.update(env or {})
    proc = subprocess.Popen([sys.executable, "-m", "btcmesh", *argv], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=pdir, start_new_session=True, env=e)
    log.close()
    (pdir / "pid").write_text(f"{proc.pid} {_start_time(proc.pid)}\n")
    return proc.pid


def _write_process_config(d: Path, name: str, argv: list[str]) -> Path:
    """``DIR/<name>/process.toml``: the command line this process is started with (``start_process`` reads it)."""
    pdir = d / name
    pdir.mkdir(parents=True, exist_ok=True)
    file = pdir / "process.toml"
    file.write_text(f"# btcmesh devnet: how `{name}` is started (python -m btcmesh ARGV); edit, then restart it\n"
                    f"argv = {json.dumps(argv)}\n")
    return file


def start_process(d: Path, name: str, env: dict[str, str] | None = None) -> int:
    """(Re)start one devnet process from its ``process.toml`` (tests restart daemons so)."""
    import tomllib

    try:
        argv = tomllib.loads((d / name / "process.toml").read_text())["argv"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise DevnetError(f"{d / name / 'process.toml'}: {exc}") from None
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise DevnetError(f"{d / name / 'process.toml'}: key argv must be a list of strings")
    return _spawn(d, name, argv, env)


def _log_size(d: Path, name: str) -> int:
    log = d / name / f"{name}.log"
    return log.stat().st_size if log.exists() else 0


def _wait_log(d: Path, name: str, needle: str, timeout: float, offset: int = 0) -> str:
    """The first line with ``needle`` written to the process's log after byte ``offset``."""
    log = d / name / f"{name}.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_bytes()[offset:].decode(errors="replace") if log.exists() else ""
        for line in text.splitlines():
            if needle in line:
                return line
        if process_alive(d / name / "pid") is None:
            raise DevnetError(f"{name} exited before it was ready:\n{text[-2000:]}")
        time.sleep(0.1)
    raise DevnetError(f"{name} not ready after {timeout}s (no {needle!r} in its log)")


def _rpc(url: str, method: str, params: list) -> Any:
    import httpx

    try:
        r = httpx.post(url, json={"jsonrpc": "1.0", "id": 1, "method": method, "params": params}, timeout=30,
                       trust_env=False)
        body = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise DevnetError(f"Bitcoin RPC {method}: {exc}") from None
    if body.get("error"):
        raise DevnetError(f"{method}: {body['error']}")
    return body["result"]


def up(d: Path, comet: int = 0, seed: str = DEVNET_SEED, k: int = 3, unbonding_time: int = 4,
       block_interval: float = 1.0, timeout: float = 60.0) -> dict:
    """Start the devnet under ``d`` (which must not hold a running one); returns devnet.json's content."""
    from btcmesh.daemons import covenant as cov_mod, fp as fp_mod, slasher as sl_mod, staker as st_mod
    from btcmesh.demo import demo_secret
    from btc_staking.params import covenant_secret
    from btc_staking.signing import p2tr_key_path_script
    from regtest.rpc import script_to_address

    d = d.resolve()
    if (d / "devnet.json").exists() and any(process_alive(d / n / "pid") for n in PROCESS_ORDER):
        raise DevnetError(f"a devnet is already running in {d} (`btcmesh devnet down --dir {d}` first)")
    d.mkdir(parents=True, exist_ok=True)
    previous = json.loads((d / "devnet.json").read_text()) if (d / "devnet.json").exists() else {}
    if previous.get("ports"):  # a devnet brought up again: same ports and password, so its configs stay valid
        ports, password = dict(previous["ports"]), str(previous["password"])
        for name, port in ports.items():
            if not _port_free(port):
                raise DevnetError(f"port {port} of {name} (from {d / 'devnet.json'}) is in use")
    else:
        ports = {"node": _free_port(), "chain": _free_port(), "api": _free_port(), "grpc": _free_port()}
        password = secrets.token_hex(12)
    btc_rpc = f"http://btcmesh:{password}@127.0.0.1:{ports['node']}"
    rest = f"http://127.0.0.1:{ports['chain']}"
    argv: dict[str, list[str]] = {}
    info: dict[str, Any] = {"dir": str(d), "seed": seed, "comet": comet, "btc_rpc": btc_rpc, "chain_rest": rest,
                            "ports": ports, "password": password,
                            "api": f"http://127.0.0.1:{ports['api']}", "argv": argv, "k": k,
                            "unbonding_time": unbonding_time,
                            # the stakers' coinbases and their maturity were mined (older devnet.json files
                            # have no "funded" but were saved with miner_address only after that)
                            "funded": bool(previous.get("funded") or previous.get("miner_address"))}

    def save() -> None:
        (d / "devnet.json").write_text(json.dumps(info, indent=1, sort_keys=True))

    try:
        # ---- Bitcoin: one coinbase per staker, then maturity for them
        argv["node"] = ["node", "--port", str(ports["node"]), "--password", password, "--datadir", str(d / "node" / "data")]
        save()
        _write_process_config(d, "node", argv["node"])
        offset = _log_size(d, "node")
        start_process(d, "node")
        _wait_log(d, "node", "ready ", timeout, offset)
        stakers = {i: demo_secret(seed, f"staker/{i}") for i in (1, 2)}
        miner = script_to_address(p2tr_key_path_script(demo_secret(seed, "btc/miner"), is_secret=True))
        if not info["funded"]:  # only a new devnet: `up` again on a stopped one keeps its chain as it is
            for secret in stakers.values():
                _rpc(btc_rpc, "generatetoaddress", [1, script_to_address(p2tr_key_path_script(secret, is_secret=True))])
            _rpc(btc_rpc, "generatetoaddress", [101, miner])
            info["funded"] = True
        info["miner_address"] = miner

        # ---- the chain (light client base = the current tip)
        argv["chain"] = ["chain", "--port", str(ports["chain"]), "--btc-rpc", btc_rpc, "--seed", seed, "-k", str(k),
                         "--unbonding-time", str(unbonding_time), "--block-interval", str(block_interval),
                         "--home", str(d / "chain" / "home")]
        if comet:
            argv["chain"] += ["--comet", str(comet)]
        argv["chain"] += ["--grpc-port", str(ports["grpc"])]  # the chain also serves gRPC: never the default 9090
        save()
        _write_process_config(d, "chain", argv["chain"])
        offset = _log_size(d, "chain")
        start_process(d, "chain")
        _wait_log(d, "chain", "ready ", timeout * (2 if comet else 1), offset)

        # ---- checkpoint service
        argv["checkpoint"] = ["checkpoint", "--btc-rpc", btc_rpc, "--btc-dialect", "bitcoind", "--chain-rest", rest,
                              "--store", str(d / "checkpoint" / "checkpoint.sqlite"), "--seed", seed, "--poll", "0.3"]
        save()
        _write_process_config(d, "checkpoint", argv["checkpoint"])
        offset = _log_size(d, "checkpoint")
        start_process(d, "checkpoint")
        _wait_log(d, "checkpoint", "checkpoint: chain", timeout, offset)

        subs = {"CHAIN_REST": rest, "BTC_RPC": btc_rpc, "STATE_DIR": "state"}  # each daemon has its own folder here
        # ---- covenant signers (devnet covenant keys sha256([i]); each its own funded Cosmos account)
        for i in (1, 2, 3):
            name = f"covenant-{i}"
            cfg = d / name / "covenant.toml"
            if not cfg.exists():
                init_daemon(cfg, cov_mod.DEFAULT_TOML, subs, {
                    "covenant-btc.key": covenant_secret(i - 1),
                    "covenant-cosmos.key": devnet_cosmos_secret(seed, "covenant" if i == 1 else name)})
            argv[name] = ["covenant", "run", "--config", str(cfg)]
        # ---- finality providers: register (one-shot), then run
        for i in (1, 2):
            name = f"fp-{i}"
            cfg = d / name / "fp.toml"
            if not cfg.exists():
                init_daemon(cfg, fp_mod.DEFAULT_TOML, dict(subs, MONIKER=name), {
                    "fp-btc.key": demo_secret(seed, f"fp/{i}"),
                    "fp-cosmos.key": devnet_cosmos_secret(seed, name)})
                reg = subprocess.run([sys.executable, "-m", "btcmesh", "fp", "register", "--config", str(cfg)],
                                     capture_output=True, text=True, timeout=timeout)
                if reg.returncode != 0:
                    raise DevnetError(f"{name} register failed: {reg.stderr.strip()[-1000:]}")
            argv[name] = ["fp", "run", "--config", str(cfg)]
        cfg = d / "slasher" / "slasher.toml"
        if not cfg.exists():
            init_daemon(cfg, sl_mod.DEFAULT_TOML, subs, {})
        argv["slasher"] = ["slasher", "run", "--config", str(cfg)]
        argv["api"] = ["api", "--chain-rest", rest, "--port", str(ports["api"]),
                       "--btc-rpc", btc_rpc, "--btc-dialect", "bitcoind"]  # BTC tip on the explorer
        # ---- stakers (tools, not processes)
        for i, secret in stakers.items():
            cfg = d / f"staker-{i}" / "staker.toml"
            if not cfg.exists():
                init_daemon(cfg, st_mod.DEFAULT_TOML, subs, {
                    "staker-btc.key": secret, "staker-cosmos.key": devnet_cosmos_secret(seed, f"staker-{i}")})
        info["stakers"] = {f"staker-{i}": str(d / f"staker-{i}" / "staker.toml") for i in stakers}
        save()
        offsets = {}
        for name in ("covenant-1", "covenant-2", "covenant-3", "fp-1", "fp-2", "slasher", "api"):
            _write_process_config(d, name, argv[name])
            offsets[name] = _log_size(d, name)
            start_process(d, name)
        for name in ("covenant-1", "covenant-2", "covenant-3", "fp-1", "fp-2", "slasher"):
            _wait_log(d, name, "event=started", timeout, offsets[name])
        _wait_log(d, "api", "Uvicorn running", timeout, offsets["api"])
    except BaseException:
        down(d)
        raise
    return info


def _height(d: Path, name: str, info: dict) -> str:
    try:
        if name == "node":
            return str(_rpc(info["btc_rpc"], "getblockcount", []))
        if name == "chain":
            import httpx

            r = httpx.get(f"{info['chain_rest']}/cosmos/base/tendermint/v1beta1/blocks/latest", timeout=5,
                          trust_env=False)
            return str(r.json()["block"]["header"]["height"])
        st = json.loads((d / name / "state" / "status.json").read_text())
        return str(st.get("height", "-"))
    except Exception:  # noqa: BLE001 - unknown while starting / stopped
        return "-"


def _last_error(d: Path, name: str) -> str:
    try:
        st = json.loads((d / name / "state" / "status.json").read_text())
        if st.get("last_error"):
            return str(st["last_error"])
    except (OSError, ValueError):
        pass
    log = d / name / f"{name}.log"
    if not log.exists():
        return ""
    for line in reversed(log.read_text(errors="replace").splitlines()[-200:]):
        if "level=error" in line or "Error" in line or "error:" in line:
            return line.strip()[:200]
    return ""


def _stopped(d: Path, name: str) -> bool:
    """``down`` stopped this process (its PID file says so), as opposed to it dying on its own."""
    try:
        return (d / name / "pid").read_text().strip() == STOPPED
    except OSError:
        return False


def status(d: Path) -> list[str]:
    """One line per process: name, pid, alive, height, last error."""
    d = d.resolve()
    info = _info(d)
    lines = []
    for name in PROCESS_ORDER:
        if name not in info["argv"]:
            continue
        pid = process_alive(d / name / "pid")
        state = "alive" if pid else "stopped" if _stopped(d, name) else "dead"
        err = _last_error(d, name)
        lines.append(f"{name:<11} {state:<7} pid={pid or '-':<8} "
                     f"height={_height(d, name, info) if pid else '-':<6} last_error={json.dumps(err)}")
    return lines


def stop_process(d: Path, name: str, timeout: float = 15.0) -> bool:
    """SIGTERM (then SIGKILL) the process recorded in ``d/name/pid``; True if one was running."""
    pid = process_alive(d / name / "pid")
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process_alive(d / name / "pid") is not None:
        time.sleep(0.1)
    if process_alive(d / name / "pid") is not None:
        os.killpg(pid, signal.SIGKILL)  # its own session: only what it started
    return True


def down(d: Path) -> list[str]:
    """Stop every process this devnet started (reverse order); returns the names stopped."""
    d = d.resolve()
    stopped = []
    for name in reversed(PROCESS_ORDER):
        pid_file = d / name / "pid"
        if pid_file.exists() and pid_file.read_text().strip() != STOPPED:
            if stop_process(d, name):
                stopped.append(name)
            pid_file.write_text(STOPPED + "\n")  # `status` tells a clean stop from a crash
    return stopped


def _info(d: Path) -> dict:
    """``d/devnet.json``; DevnetError when ``d`` holds no devnet."""
    try:
        return json.loads((d / "devnet.json").read_text())
    except OSError:
        raise DevnetError(f"no devnet in {d} (devnet.json missing)") from None


def mine(d: Path, n: int, address: str | None = None) -> list[str]:
    info = _info(d.resolve())
    return list(_rpc(info["btc_rpc"], "generatetoaddress", [n, address or info["miner_address"]]))


# ------------------------------------------------------------------------------------------ commands
def cmd_devnet(args: argparse.Namespace) -> int:
    d = Path(args.dir)
    if args.action == "up":
        info = up(d, comet=args.comet, seed=args.seed, k=args.k, unbonding_time=args.unbonding_time,
                  block_interval=args.block_interval)
        print(f"devnet up in {info['dir']}: chain {info['chain_rest']}, Bitcoin {info['btc_rpc']}, API {info['api']}")
        from api.explorer import explorer_url

        print(f"explorer {explorer_url(info['api'])}")
        print("\n".join(status(d)))
    elif args.action == "status":
        print("\n".join(status(d)))
    elif args.action == "down":
        print("stopped: " + (", ".join(down(d)) or "nothing was running"))
    elif args.action == "mine":
        print("\n".join(mine(d, args.n, args.address)))
    elif args.action == "double-sign":
        cfg = d / f"fp-{args.fp}" / "fp.toml"
        if not cfg.exists():
            raise ConfigError(f"no fp-{args.fp} in {d}")
        out = subprocess.run([sys.executable, "-m", "btcmesh", "fp", "double-sign", "--config", str(cfg)]
                             + (["--height", str(args.height)] if args.height else []), timeout=120,
                             capture_output=True, text=True)
        sys.stdout.write(out.stdout)
        sys.stderr.write(out.stderr.replace("btcmesh fp: error:", "btcmesh devnet: error:"))  # this command's name
        return out.returncode
    return 0
