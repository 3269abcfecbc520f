"""Fault suite (issue 12): kill -9 the long-running parts at seeded random points, restart, check invariants.

A devnet of separate OS processes (``btcmesh devnet up``: node, chain, checkpoint service, covenant
signers, FPs, slasher, API) carries two locks through attestation, an early unbonding of one and the
slashing of the other (double sign → BTC slashing tx → ``report_btc_slashing``). Meanwhile the node,
the chain and the checkpoint service are each SIGKILLed :data:`KILLS_PER_PART` times, at moments drawn
from a seeded RNG (``BTCMESH_FAULT_SEED``, printed), and restarted from their own state
(``start_process``: the same argv, the same data directories).

After every restart the invariants are asserted:

* **no attestation lost or doubled**: every attestation the checkpoint store calls ``done`` is on the
  chain; per staking tx at most one successful proof / undelegation / slashing report, and no chain
  tx failed because it was a repeat ("already ...");
* **signer sequences consistent**: the committed txs of every account carry the sequences 0..n-1,
  each once, and the account's sequence on the chain is n;
* **BTC conservation**: for every lock, staked = burned + returned + fees + still locked, following
  its outputs through the node's blocks; every output counted as locked is unspent on the node
  (``gettxout``) and every spent one is gone;
* **chain and API agree**: the API's state of each delegation is the one derived from the chain's
  record and light-client tip.

At the end every lock has reached its final state, every spend is checked by both oracles
(libbitcoinkernel, btclib), and the figures (kills survived, checks and operations) are printed.
Bounded: every wait has a deadline; the whole test takes a few minutes on 2 cores.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from btcmesh_testkit.oracles import btclib_verify, kernel_verify

from api.chain_source import delegation_from_json
from api.states import derive_state
from btc_staking.keys import xonly_from_secret
from btc_staking.tx import Tx
from btcmesh.daemons.devnet import down, process_alive, start_process
from btcmesh.demo import demo_secret
from cosmos_chain.txcodec import decode_tx
from regtest.wallet import parse_block

pytestmark = pytest.mark.timeout(600)

SEED = int(os.environ.get("BTCMESH_FAULT_SEED", "12"))
DEVNET_SEED = "btcmesh-devnet"
PARTS = ("node", "chain", "checkpoint")
KILLS_PER_PART = 7  # 21 kills in all
READY = {"node": "ready ", "chain": "ready ", "checkpoint": "checkpoint: chain"}
VALUE_A, VALUE_B, VALUE_C = 1_000_000, 500_000, 300_000
REPEAT_MARKERS = ("already has an inclusion proof", "already registered", "already unbonding", "already UNBONDING",
                  "already reported", "already exists")


def _wait(pred: Callable[[], Any], what: str, timeout: float = 60.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:  # a part restarting
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last})")


def _fp_pk(i: int) -> str:
    return xonly_from_secret(demo_secret(DEVNET_SEED, f"fp/{i}")).hex()


@dataclass
class Figures:
    """What the suite did and checked (printed at the end)."""

    kills: Counter = field(default_factory=Counter)
    restarts: int = 0
    invariant_checks: int = 0
    chain_txs: int = 0
    attestations: int = 0
    signers: int = 0
    btc_spends: int = 0
    api_comparisons: int = 0


class Devnet:
    """The running devnet: kill -9 / restart, mining, and the invariant checks."""

    def __init__(self, d: Path, rng: random.Random) -> None:
        self.d = d
        self.rng = rng
        self.info = json.loads((d / "devnet.json").read_text())
        self.rest = self.info["chain_rest"]
        self.api = self.info["api"]
        self.http = httpx.Client(timeout=10, trust_env=False)
        self.fig = Figures()
        self.scanned_height = 0
        self.txs: list[dict[str, Any]] = []       # every committed chain tx, decoded
        self.btc_scanned = 0
        self.spends: dict[str, tuple[str, int]] = {}  # outpoint "txid:vout" -> (spending txid, height)
        self.btc_txs: dict[str, Tx] = {}
        self._scanned_hash = ""

    # ---------------------------------------------------------------- processes
    def pid(self, name: str) -> int | None:
        return process_alive(self.d / name / "pid")

    def log(self, name: str) -> str:
        return (self.d / name / f"{name}.log").read_text(errors="replace")

    def kill9(self, name: str) -> None:
        pid = self.pid(name)
        assert pid is not None, f"{name} is not running"
        ready_before = self.log(name).count(READY[name])
        os.kill(pid, signal.SIGKILL)
        _wait(lambda: self.pid(name) is None, f"{name} to die", 10, 0.05)
        self.fig.kills[name] += 1
        start_process(self.d, name)
        _wait(lambda: self.log(name).count(READY[name]) > ready_before and self.pid(name), f"{name} restarted", 60)
        self.fig.restarts += 1
        self.wait_up()

    def wait_up(self) -> None:
        """Node RPC and chain REST answer (bounded)."""
        _wait(lambda: self.btc("getblockcount") is not None, "the node's RPC", 60)
        _wait(lambda: self.chain_height() >= 1, "the chain's REST", 60)

    # ---------------------------------------------------------------- Bitcoin
    def btc(self, method: str, *params: Any) -> Any:
        r = self.http.post(self.info["btc_rpc"], json={"jsonrpc": "1.0", "id": 1, "method": method,
                                                      "params": list(params)})
        body = r.json()
        if body.get("error"):
            raise ValueError(f"{method}: {body['error']}")
        return body["result"]

    def mine(self, n: int = 1) -> None:
        self.btc("generatetoaddress", n, self.info["miner_address"])

    # ---------------------------------------------------------------- chain
    def chain_height(self) -> int:
        r = self.http.get(f"{self.rest}/cosmos/base/tendermint/v1beta1/blocks/latest")
        return int(r.json()["block"]["header"]["height"]) if r.status_code == 200 else 0

    def smart(self, contract: str, msg: dict) -> Any:
        q = base64.b64encode(json.dumps(msg).encode()).decode()
        r = self.http.get(f"{self.rest}/cosmwasm/wasm/v1/contract/{contract}/smart/{q}")
        r.raise_for_status()
        return r.json()["data"]

    def contract(self, name: str) -> str:
        from cosmos_chain.modules.base import module_address

        return module_address(name)

    def delegation(self, h: str) -> dict:
        return self.smart(self.contract("btc_staking"), {"delegation": {"staking_tx_hash": h}}).get("delegation") or {}

    def lc_tip(self) -> int:
        return int(self.smart(self.contract("btc_light_client"), {"tip": {}})["height"])

    def account_sequence(self, addr: str) -> int:
        r = self.http.get(f"{self.rest}/cosmos/auth/v1beta1/accounts/{addr}")
        r.raise_for_status()
        return int(r.json()["account"].get("sequence", 0))

    def scan_chain(self) -> int:
        """Decode every committed tx up to the latest block; returns that height."""
        top = self.chain_height()
        for h in range(self.scanned_height + 1, top + 1):
            block = self.http.get(f"{self.rest}/cosmos/base/tendermint/v1beta1/blocks/{h}").json()["block"]
            for raw_b64 in block["data"]["txs"]:
                raw = base64.b64decode(raw_b64)
                dtx = decode_tx(raw)
                res = self.http.get(f"{self.rest}/cosmos/tx/v1beta1/txs/{dtx.hash}").json()["tx_response"]
                msgs = [(m.msg_json if isinstance(m.msg_json, dict) else {}) for m in dtx.msgs]
                self.txs.append({"height": h, "hash": dtx.hash, "code": int(res["code"]), "log": res["raw_log"],
                                 "signers": [(a, i.sequence) for a, i in zip(dtx.signers, dtx.signer_infos)],
                                 "msgs": msgs})
            self.scanned_height = h
        return top

    # ---------------------------------------------------------------- invariants
    def check(self, locks: dict[str, str]) -> None:
        """Every invariant of the module docstring (bounded retries only where the parts race us)."""
        self.fig.invariant_checks += 1
        self._check_sequences()
        self._check_attestations(locks)
        self._check_btc(locks)
        self._check_api(locks)

    def _check_sequences(self) -> None:
        self.scan_chain()
        by_signer: dict[str, list[int]] = defaultdict(list)
        for t in self.txs:
            for addr, seq in t["signers"]:
                by_signer[addr].append(seq)
        for addr, seqs in by_signer.items():
            assert sorted(seqs) == list(range(len(seqs))), f"{addr}: committed sequences {sorted(seqs)}"
            n_before = len(seqs)
            seq = self.account_sequence(addr)
            self.scan_chain()
            n_after = sum(1 for t in self.txs for a, _ in t["signers"] if a == addr)
            assert n_before <= seq <= n_after, f"{addr}: account sequence {seq}, committed txs {n_before}..{n_after}"
        self.fig.chain_txs = len(self.txs)
        self.fig.signers = len(by_signer)

    def _check_attestations(self, locks: dict[str, str]) -> None:
        ok: Counter = Counter()
        for t in self.txs:
            for m in t["msgs"]:
                for action in ("create_btc_delegation", "add_btc_delegation_inclusion_proof", "btc_undelegate",
                               "report_btc_slashing"):
                    body = m.get(action)
                    if not isinstance(body, dict):
                        continue
                    h = body.get("staking_tx_hash") or _staking_txid(body)
                    if action == "create_btc_delegation" and body.get("inclusion_proof") is None:
                        kind = "register"
                    else:
                        kind = {"btc_undelegate": "undelegate", "report_btc_slashing": "slashing"}.get(action, "proof")
                    if t["code"] == 0:
                        ok[(h, kind)] += 1
                    else:
                        assert not any(s in t["log"] for s in REPEAT_MARKERS), \
                            f"a repeated attestation reached the chain: {action} {h}: {t['log']}"
        for key, n in ok.items():
            assert n == 1, f"{key} succeeded {n} times"
        # everything the checkpoint store calls done is on the chain
        db = sqlite3.connect(f"file:{self.d / 'checkpoint' / 'checkpoint.sqlite'}?mode=ro", uri=True, timeout=10)
        try:
            done = db.execute("SELECT kind, staking_txid FROM submissions WHERE status='done'").fetchall()
        finally:
            db.close()
        for kind, h in done:
            rec = self.delegation(h)
            if kind == "delegation":
                assert rec.get("start_height") is not None, f"attestation of {h} lost: {rec.get('status')}"
            elif kind == "undelegate":
                assert rec.get("unbonding_height") is not None, f"undelegation of {h} lost"
            elif kind == "slashing":
                assert rec.get("slashing_btc_txid"), f"slashing report of {h} lost"
        self.fig.attestations = sum(ok.values())

    def _scan_btc(self) -> None:
        top = int(self.btc("getblockcount"))
        if self.btc_scanned and self.btc("getblockhash", self.btc_scanned) != self._scanned_hash:
            self.btc_scanned, self.spends = 0, {}  # a reorg: rescan (none expected here)
        start = self.btc_scanned + 1 if self.btc_scanned else max(0, top - 400)
        for h in range(start, top + 1):
            _, txs = parse_block(bytes.fromhex(self.btc("getblock", self.btc("getblockhash", h), 0)))
            for tx in txs:
                self.btc_txs[tx.txid_hex()] = tx
                for i in tx.inputs:
                    self.spends[f"{i.prevout.txid[::-1].hex()}:{i.prevout.vout}"] = (tx.txid_hex(), h)
        self.btc_scanned = top
        self._scanned_hash = self.btc("getblockhash", top)

    def _check_btc(self, locks: dict[str, str]) -> None:
        self._scan_btc()
        for h in locks:
            rec = self.delegation(h)
            if not rec or h not in self.btc_txs:
                continue  # not mined yet
            staking = self.btc_txs[h]
            vout = int(rec.get("staking_output_index", 0))
            staked = staking.outputs[vout].value
            unbonding = Tx.parse(bytes.fromhex(rec["unbonding_tx"]))
            slashing = Tx.parse(bytes.fromhex(rec["slashing_tx"]))
            ub_slashing = Tx.parse(bytes.fromhex(rec["unbonding_slashing_tx"]))
            locked_scripts = {bytes(unbonding.outputs[0].script_pubkey), bytes(slashing.outputs[1].script_pubkey),
                              bytes(ub_slashing.outputs[1].script_pubkey)}
            burn_script = bytes(slashing.outputs[0].script_pubkey)
            burned = returned = fees = locked = 0
            frontier = [(h, vout, staked)]
            for _ in range(10):  # at most staking → unbonding → slashing → withdrawal
                nxt = []
                for txid, n, value in frontier:
                    spent = self.spends.get(f"{txid}:{n}")
                    utxo = self.btc("gettxout", txid, n, False)
                    if spent is None:
                        assert utxo is not None, f"{txid}:{n} neither spent in a block nor unspent on the node"
                        locked += value
                        continue
                    assert utxo is None, f"{txid}:{n} spent by {spent[0]} but still unspent on the node"
                    tx = self.btc_txs[spent[0]]
                    prevs = [self._prevout(i) for i in tx.inputs]
                    fees += sum(p.value for p in prevs) - sum(o.value for o in tx.outputs)
                    for k, out in enumerate(tx.outputs):
                        script = bytes(out.script_pubkey)
                        if script == burn_script:
                            burned += out.value
                        elif script in locked_scripts:
                            nxt.append((spent[0], k, out.value))
                        else:
                            returned += out.value
                    self.fig.btc_spends += 1
                frontier = nxt
                if not frontier:
                    break
            assert burned + returned + fees + locked == staked, \
                f"{h}: staked {staked} != burned {burned} + returned {returned} + fees {fees} + locked {locked}"

    def _prevout(self, txin: Any) -> Any:
        txid = txin.prevout.txid[::-1].hex()
        tx = self.btc_txs.get(txid) or Tx.parse(bytes.fromhex(self.btc("getrawtransaction", txid, 0)))
        return tx.outputs[txin.prevout.vout]

    def _check_api(self, locks: dict[str, str]) -> None:
        for h in locks:
            def agree() -> bool:
                rec = self.delegation(h)
                if not rec:
                    return True
                tip = self.lc_tip()
                want = derive_state(delegation_from_json(rec), tip).state.value
                r = self.http.get(f"{self.api}/v2/delegation", params={"staking_tx_hash_hex": h},
                                  headers={"Host": "127.0.0.1"})
                got = r.json()["data"]["state"] if r.status_code == 200 else None
                return got == want and self.lc_tip() == tip
            _wait(agree, f"the API to agree with the chain on {h}", 20, 0.3)
            self.fig.api_comparisons += 1

    def all_spends_pass_both_oracles(self) -> int:
        """Every non-coinbase tx spending a lock's outputs: libbitcoinkernel and btclib accept each input."""
        checked = 0
        lock_txids = {txid for txid, _ in self.spends.values()}
        for txid in sorted(lock_txids):
            tx = self.btc_txs[txid]
            if tx.inputs[0].prevout.txid == b"\x00" * 32:
                continue
            prevouts = [self._prevout(i) for i in tx.inputs]
            if not any(self.spends.get(f"{i.prevout.txid[::-1].hex()}:{i.prevout.vout}") for i in tx.inputs):
                continue
            for n in range(len(tx.inputs)):
                assert kernel_verify(tx, prevouts, n), f"{txid} input {n}: libbitcoinkernel refuses it"
                assert btclib_verify(tx, prevouts, n), f"{txid} input {n}: btclib refuses it"
            checked += 1
        return checked


def _staking_txid(body: dict) -> str:
    raw = body.get("staking_tx")
    return Tx.parse(bytes.fromhex(raw)).txid_hex() if isinstance(raw, str) else ""


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "btcmesh", *args], capture_output=True, text=True, timeout=timeout,
                          env={k: v for k, v in os.environ.items() if k != "BTCMESH_CRASH_AT"})


def _stake(d: Path, staker: int, fp: int, value: int) -> str:
    r = _cli("stake", "stake", "--config", str(d / f"staker-{staker}" / "staker.toml"), "--fp", _fp_pk(fp),
             "--value", str(value), "--time", "150")
    assert r.returncode == 0, f"stake failed:\n{r.stdout}\n{r.stderr[-3000:]}"
    return str(json.loads(r.stdout)["staking_tx_hash"])


def test_kill9_node_chain_checkpoint_while_locks_unbondings_and_a_slash_are_in_flight(tmp_path: Path) -> None:
    d = tmp_path / "devnet"
    rng = random.Random(SEED)
    schedule = [p for p in PARTS for _ in range(KILLS_PER_PART)]
    rng.shuffle(schedule)
    r = _cli("devnet", "up", "--dir", str(d), "--block-interval", "0.3", timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    net = Devnet(d, rng)
    t0 = time.monotonic()
    try:
        k = int(net.info["k"])
        # lock A (fp-1) becomes ACTIVE, fp-1 votes, then double-signs: the slash is in flight from here on
        # (slasher → BTC slashing tx → mined → k deep → report_btc_slashing by the checkpoint service)
        a = _stake(d, 1, 1, VALUE_A)
        locks = {a: "A"}

        def double_signed() -> bool:
            net.mine(1)
            if net.delegation(a).get("status") != "ACTIVE":
                return False
            r = _cli("devnet", "double-sign", "--dir", str(d), "--fp", "1")  # fails until fp-1 has voted
            return r.returncode == 0
        _wait(double_signed, "lock A ACTIVE and fp-1 double-signed", 120, 0.5)
        # lock B (fp-2) is registered; its proof, later its unbonding, and a third lock C are in flight
        b = _stake(d, 2, 2, VALUE_B)
        locks[b] = "B"
        net.check(locks)
        unbonded = False
        for i, part in enumerate(schedule):
            if net.pid("node"):
                net.mine(rng.randint(1, 2))
            time.sleep(rng.uniform(0.1, 1.0))  # a seeded random point in the processing
            net.kill9(part)
            net.check(locks)
            if not unbonded and net.delegation(b).get("status") == "ACTIVE":
                r = _cli("stake", "unbond", "--config", str(d / "staker-2" / "staker.toml"), "--staking-tx", b)
                assert r.returncode == 0, r.stderr[-2000:]
                unbonded = True
            if i == len(schedule) // 2:
                locks[_stake(d, 1, 2, VALUE_C)] = "C"
        # settle: every part alive, Bitcoin moves on until every lock reaches its final state
        assert all(net.pid(p) for p in PARTS)
        if not unbonded:
            _wait(lambda: net.mine(1) or net.delegation(b).get("status") == "ACTIVE", "lock B ACTIVE", 90, 0.5)
            r = _cli("stake", "unbond", "--config", str(d / "staker-2" / "staker.toml"), "--staking-tx", b)
            assert r.returncode == 0, r.stderr[-2000:]
        c = next(h for h, name in locks.items() if name == "C")

        def final() -> bool:
            net.mine(1)
            ra, rb = net.delegation(a), net.delegation(b)
            return ra.get("status") == "SLASHED" and bool(ra.get("slashing_btc_txid")) \
                and rb.get("unbonding_height") is not None and net.delegation(c).get("status") == "ACTIVE"
        _wait(final, "A slashed and reported, B's unbonding attested, C ACTIVE", 150, 1.0)
        net.mine(k)
        net.check(locks)
        oracle_checked = net.all_spends_pass_both_oracles()
        assert oracle_checked >= 2  # the unbonding tx and the slashing tx at least
        assert sum(net.fig.kills.values()) >= 20 and all(net.fig.kills[p] >= 1 for p in PARTS)
        f = net.fig
        print(f"\nfault suite (seed {SEED}): kills survived {sum(f.kills.values())} "
              f"({', '.join(f'{p} {f.kills[p]}' for p in PARTS)}), restarts {f.restarts}, "
              f"invariant checks {f.invariant_checks}; operations checked: chain txs {f.chain_txs}, "
              f"signers {f.signers}, attestations {f.attestations}, BTC spends followed {f.btc_spends}, "
              f"spends through both oracles {oracle_checked}, chain/API comparisons {f.api_comparisons}; "
              f"{time.monotonic() - t0:.0f}s")
    finally:
        net.http.close()
        down(d)
    for name in PARTS:
        assert process_alive(d / name / "pid") is None
