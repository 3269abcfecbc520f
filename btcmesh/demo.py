"""``btcmesh demo``: the whole btcmesh story end to end, on embedded defaults or on the real parts.

Defaults run everything in one process; ``DemoConfig(btc_backend="btcd", comet=3)`` (``btcmesh demo
--btc-backend btcd --comet 3``) runs the same scenario, with the same checks, on a btcd v0.26 regtest
process and a 3-validator CometBFT v0.38 chain.

Scenario (every arrow is a real message or a real Bitcoin tx; nothing is simulated):

1. Bitcoin: an :class:`~regtest.embedded.EmbeddedNode` (every block validated by libbitcoinkernel),
   or btcd through :class:`~regtest.rpc.RpcBackend`; coinbases fund a miner and two stakers' key wallets.
2. Cosmos: a :class:`~cosmos_chain.app.ChainApp` in an :class:`~cosmos_chain.node.EmbeddedChain`
   behind a :class:`~cosmos_chain.rest.RestServer` on 127.0.0.1 (random port), or N CometBFT
   validators (each with its own ChainApp) with ``RestServer(CometBackend(...))`` in front of
   validator 0; every tx below is cosmpy-signed and goes through cosmpy's ``LedgerClient`` over REST.
3. The checkpoint service (follows Bitcoin, relays headers, attests k-deep locks) and the staking
   API (FastAPI/uvicorn on 127.0.0.1, random port).
4. Two finality providers register, each mapped to its own mesh validator.
5. Staker A delegates to the FP that will misbehave, honest staker B to the honest FP: both lock
   BTC in Babylon staking outputs and hand their pre-signed material to the checkpoint service.
6. k blocks later the service attests both locks; the covenant committee checks and signs them
   → ACTIVE → the mesh adapter turns them into virtual stake on the two validators.
7. Both FPs commit EOTS public randomness and vote; the bad FP double-signs a forked app hash.
   The chain records the evidence and extracts its key; the FP, its delegations and its mesh
   validator are slashed.
8. The slasher completes staker A's pre-signed slashing tx with the extracted key and the
   covenant adaptor signatures and broadcasts it: mined, ``floor(value × rate)`` burned to the
   slashing pkScript, the change locked for ``unbonding_time`` blocks, then withdrawn by A.
9. Staker B unbonds (covenant-signed unbonding tx), the service attests it → UNBONDING; B waits
   the unbonding time, withdraws, reports it → WITHDRAWN.
10. The summary: delegation states (chain and API over HTTP), BTC staked / burned / returned,
    virtual stake before / after per validator, the extracted key check; libbitcoinkernel against the
    node's chain (btcd: its blocks replayed into a kernel-validated node); CometBFT: every validator's
    app hash at the final height.

``run_demo()`` returns a :class:`DemoResult` with everything the test suite asserts. A part that is
not available (e.g. a chain module not installed) is reported as such, never faked.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

from btc_staking.keys import secret_even_y
from btc_staking.merkle import build_merkle_proof, verify_merkle_proof
from btc_staking.params import StakingParams, mul_f64, regtest_default_params
from btc_staking.signing import sign_pop_bip340
from btc_staking.tx import Tx, TxOut

__all__ = ["DemoConfig", "DemoStep", "SpendRecord", "DelegationOutcome", "DemoResult", "DemoError",
           "run_demo", "format_summary", "demo_params", "demo_secret", "chain_genesis", "DEMO_CHAIN_ID"]

DEMO_CHAIN_ID = "btcmesh-demo-1"
DENOM = "ubbn"
REGISTRY, LIGHT_CLIENT, FINALITY, MESH = "btc_staking", "btc_light_client", "finality", "mesh"
BTC_BACKENDS = ("embedded", "btcd")
TX_SCAN_DEPTH = 500  # blocks searched back from the tip for a tx on a node without a tx→block index
FP_PUB_RAND = 40     # heights of randomness each demo FP commits (< the default max_missed of 50)


class DemoError(RuntimeError):
    """A demo step failed (the message says which and why)."""


class NotAvailable(DemoError):
    """A part the step needs is not installed / not implemented yet."""


# ---------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class DemoConfig:
    """Knobs of the demo (defaults: fast, deterministic keys)."""

    k: int = 3                     # confirmation depth the chain requires
    staking_time: int = 150        # blocks (params allow 100..65535)
    unbonding_time: int = 4        # blocks
    value_a: int = 1_000_000       # sat, staker A (delegates to the FP that double-signs)
    value_b: int = 500_000         # sat, staker B (honest FP)
    fee_rate: float = 2.0          # sat/vB for wallet-funded txs
    seed: str = "btcmesh-demo"     # all keys derive from it
    chain_block_interval: float = 0.2
    with_api: bool = True
    timeout: float = 30.0          # bound of every single wait
    btc_backend: str = "embedded"  # "embedded" (in-process, libbitcoinkernel) | "btcd" (a btcd v0.26 process)
    comet: int = 0                 # 0: embedded chain; N: N CometBFT validators (REST in front of node 0)
    comet_block_time: float = 0.3  # CometBFT timeout_commit (s) when comet > 0
    btcd_binary: str | None = None     # default: found like the tests do ($BTCMESH_TOOLS, .tools/bin, PATH, ~/go/bin)
    cometbft_binary: str | None = None
    api_port: int = 0              # the staking API's (and explorer's) port on 127.0.0.1; 0 = any free port
    mesh: str = "model"            # "upstream": also replay the mesh events on the upstream contracts (harness)

    def __post_init__(self) -> None:
        if self.btc_backend not in BTC_BACKENDS:
            raise ValueError(f"btc_backend must be one of {BTC_BACKENDS}, got {self.btc_backend!r}")
        if not isinstance(self.comet, int) or self.comet < 0:
            raise ValueError(f"comet must be a non-negative int (validators), got {self.comet!r}")
        if self.mesh not in ("model", "upstream"):
            raise ValueError(f"mesh must be 'model' or 'upstream', got {self.mesh!r}")


def refusal_reason(error: str) -> str:
    """The chain's reason in a refusal (``code 4: failed to execute message; message index: 0: mesh: X``
    → ``X``), with hashes and addresses shortened so the whole reason fits on a step line."""
    import re

    reason = error.rsplit("message index: 0: ", 1)[-1].strip()
    reason = reason.split("mesh: ", 1)[1] if reason.startswith("mesh: ") else reason
    reason = re.sub(r"\b([0-9a-f]{8})[0-9a-f]{56}\b", r"\1…", reason)
    return re.sub(r"\b(bbn1[0-9a-z]{6})[0-9a-z]{20,}\b", r"\1…", reason)


def demo_secret(seed: str, label: str) -> bytes:
    """Deterministic even-Y secp256k1 secret for a role (devnet only)."""
    return secret_even_y(hashlib.sha256(f"{seed}/{label}".encode()).digest())


def demo_params(cfg: DemoConfig) -> StakingParams:
    """Regtest staking params: 3 covenants (quorum 2), k and unbonding time from ``cfg``, rate 0.1."""
    return regtest_default_params(confirmation_depth=cfg.k, unbonding_time_blocks=cfg.unbonding_time)


def chain_genesis(params: StakingParams, base_height: int, base_header: bytes, funded: list[str],
                  mesh_admin: str, header_reporters: list[str] | None = None,
                  block_reward: int = 1000) -> dict[str, Any]:
    """ChainApp genesis: funded accounts, light-client base header, staking params, mesh admin.

    ``header_reporters`` is the light client's ``insert_headers_allow_list``: pass the checkpoint
    service's address (devnets, the demo); None or [] leaves header relaying permissionless, which
    on regtest lets any funded account hijack the light client with cheap made-up headers.
    ``block_reward``: what the consumer chain (modelled in the mesh module) pays per block, in its
    staking denom, to validators by power; the virtual stake's share flows to the BTC stakers."""
    from cosmos_chain.genesis import build_genesis

    return build_genesis(
        {a: 10**13 for a in funded}, denom=DENOM,
        btc_light_client={"base": {"height": base_height, "header": base_header.hex()},
                          "params": {"insert_headers_allow_list": list(header_reporters or [])}},
        btc_staking={"params": [params.to_dict()]},
        mesh={"admin": mesh_admin, "block_reward": block_reward},
    )


# ---------------------------------------------------------------------------------------- result
@dataclass
class DemoStep:
    """One step: ``status`` is ok | failed | not available | skipped."""

    name: str
    status: str = "skipped"
    detail: str = ""
    seconds: float = 0.0


@dataclass
class SpendRecord:
    """A Bitcoin tx the demo had mined (raw tx + the outputs it spends, for oracle re-checks)."""

    label: str
    txid: str
    raw: bytes
    prevouts: list[TxOut]
    height: int | None


@dataclass
class DelegationOutcome:
    """One staker's delegation at the end of the demo."""

    label: str
    staker_pk: str
    fp_pk: str
    validator: str
    staking_tx_hash: str = ""
    staked_sat: int = 0
    status: str = ""              # chain registry status
    api_state: str = ""           # state answered by the API over HTTP
    burned_sat: int = 0           # sent to the slashing pkScript
    returned_sat: int = 0         # back in the staker's wallet (after fees)
    fees_sat: int = 0             # Bitcoin fees paid out of the staking output
    wallet_before_sat: int = 0
    wallet_after_sat: int = 0
    status_history: list[str] = field(default_factory=list)


@dataclass
class DemoResult:
    """Everything the demo did and measured."""

    ok: bool = False
    error: str = ""
    steps: list[DemoStep] = field(default_factory=list)
    params: StakingParams | None = None
    delegations: dict[str, DelegationOutcome] = field(default_factory=dict)
    virtual_stake_before: dict[str, int] = field(default_factory=dict)
    virtual_stake_after: dict[str, int] = field(default_factory=dict)
    mesh_collateral_before: dict[str, int] = field(default_factory=dict)
    mesh_collateral_after: dict[str, int] = field(default_factory=dict)
    mesh_virtual_slashed: int = 0                  # issue 10: virtual stake burned by the mesh slash
    mesh_virtual_unbonded: int = 0                 # ... force-unbonded from the tombstoned validator
    mesh_btc_left: dict[str, int] = field(default_factory=dict)  # ... BTC left per slashed delegation
    slashing_change_sat: int = 0                   # the change output of A's mined slashing tx
    consensus_power_before: dict[str, int] = field(default_factory=dict)  # valset: operator → power after ACTIVE
    consensus_power_after: dict[str, int] = field(default_factory=dict)   # ... after the slash (issue 10 §1)
    expected_burned_sat: int = 0
    bad_fp_pk: str = ""
    bad_fp_secret: str = ""
    extracted_sk: str = ""
    extracted_key_matches: bool = False
    slasher_key_matches: bool = False
    slashing_txid: str = ""
    chain_slashing_btc_txid: str = ""  # what the registry recorded from report_btc_slashing
    spends: dict[str, SpendRecord] = field(default_factory=dict)
    api_answers: dict[str, dict] = field(default_factory=dict)
    kernel_checked_spent_coins: int = 0
    btc_height: int = 0
    chain_height: int = 0
    withdrawal_reported_by: str = ""
    rest_url: str = ""
    api_url: str = ""
    btc_backend: str = "embedded"
    btc_rpc_url: str = ""                          # btcd's RPC (empty for the embedded node)
    comet_validators: int = 0
    comet_rpc_urls: list[str] = field(default_factory=list)
    app_hash_height: int = 0                       # CometBFT: the height the app hashes below are for
    validator_app_hashes: dict[str, str] = field(default_factory=dict)        # node → header app hash (RPC)
    validator_local_app_hashes: dict[str, str] = field(default_factory=dict)  # node → its own app's hash
    rewards: dict[str, dict] = field(default_factory=dict)        # staker → {earned_at_slash, claimed, pending, ...}
    reward_totals: dict[str, Any] = field(default_factory=dict)   # mesh ``rewards {totals}`` at the end
    finalized_height: int | None = None            # finality module: last finalized chain height
    vote_height: int = 0                           # the block both FPs voted on (and the bad one forked)
    fp_finality: dict[str, dict] = field(default_factory=dict)  # role → {fp_btc_pk, power_at_vote, voting_power, state}
    mesh_upstream: dict[str, Any] = field(default_factory=dict)  # --mesh upstream: btcmesh.mesh_upstream replay
    elapsed_s: float = 0.0

    def step(self, name: str) -> DemoStep | None:
        return next((s for s in self.steps if s.name == name), None)


# ---------------------------------------------------------------------------------------- helpers
def _wait(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``pred`` until truthy (bounded); DemoError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise DemoError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def tx_block(node: Any, txid_hex: str) -> tuple[str, int, int] | None:
    """(block hash, position, height) of a confirmed tx, or None.

    Uses the node's own tx index where it has one (``EmbeddedNode.get_tx_block``); on any other
    ``BitcoinBackend`` (btcd over RPC) it searches the active chain back from the tip, at most
    ``TX_SCAN_DEPTH`` blocks (the demo's txs are all recent)."""
    from checkpoint.btcparse import parse_block

    if hasattr(node, "get_tx_block"):
        where = node.get_tx_block(txid_hex)
        return None if where is None else (where[0], where[1], node.get_tx_height(txid_hex))
    tip = node.get_block_count()
    for height in range(tip, max(-1, tip - TX_SCAN_DEPTH), -1):
        block_hash = node.get_block_hash(height)
        txids = parse_block(node.get_block(block_hash)).txids
        if txid_hex in txids:
            return block_hash, txids.index(txid_hex), height
    return None


def tx_height(node: Any, txid_hex: str) -> int | None:
    """Height of the active-chain block holding the tx, or None (see :func:`tx_block`)."""
    if hasattr(node, "get_tx_height"):
        return node.get_tx_height(txid_hex)
    where = tx_block(node, txid_hex)
    return None if where is None else where[2]


def inclusion_proof(node: Any, txid_hex: str) -> dict[str, Any]:
    """``{block_hash, index, proof}`` of a confirmed tx (merkle proof checked locally)."""
    from checkpoint.btcparse import parse_block

    where = tx_block(node, txid_hex)
    if where is None:
        raise DemoError(f"tx {txid_hex} is not confirmed")
    block_hash = where[0]
    block = parse_block(node.get_block(block_hash))
    index = block.txids.index(txid_hex)
    internal = [bytes.fromhex(t)[::-1] for t in block.txids]
    proof = build_merkle_proof(internal, index)
    if not verify_merkle_proof(internal[index], block.header[36:68], index, proof):
        raise DemoError("locally built merkle proof does not verify")
    return {"block_hash": block_hash, "index": index, "proof": bytes(proof).hex()}


class _Run:
    """The demo's state while it runs (kept out of the public result)."""

    def __init__(self, cfg: DemoConfig, out: Callable[[str], None], workdir: Path) -> None:
        self.cfg = cfg
        self.out = out
        self.workdir = workdir
        self.result = DemoResult()
        self.stack = contextlib.ExitStack()
        self.t0 = time.monotonic()

    # -- progress ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[DemoStep]:
        st = DemoStep(name, "running")
        self.result.steps.append(st)
        n = len(self.result.steps)
        self.out(f"[{n:2d}] {name} ...")
        t = time.monotonic()
        try:
            yield st
        except NotAvailable as exc:
            st.status, st.detail = "not available", str(exc)
            raise
        except BaseException as exc:
            st.status = "failed"
            st.detail = st.detail or f"{type(exc).__name__}: {exc}"
            raise
        else:
            st.status = "ok"
        finally:
            st.seconds = time.monotonic() - t
            self.out(f"     {st.status}{' — ' + st.detail if st.detail else ''} ({st.seconds:.1f} s)")

    def note(self, msg: str) -> None:
        self.out(f"     · {msg}")


# ---------------------------------------------------------------------------------------- demo
def run_demo(cfg: DemoConfig | None = None, out: Callable[[str], None] | None = None,
             workdir: str | Path | None = None,
             hold: Callable[[DemoResult], None] | None = None) -> DemoResult:
    """Run the whole scenario; always returns a :class:`DemoResult` (``ok`` tells if it all worked).

    ``hold(result)``, when given, is called after the scenario while every part still runs (node,
    chain, checkpoint service, API with the explorer); the parts stop when it returns
    (``btcmesh demo --serve`` waits there for Ctrl-C; the explorer's browser test drives the pages)."""
    cfg = cfg or DemoConfig()
    out = out or (lambda s: None)
    with contextlib.ExitStack() as outer:
        if workdir is None:
            workdir = outer.enter_context(tempfile.TemporaryDirectory(prefix="btcmesh-demo-"))
        run = _Run(cfg, out, Path(workdir))
        with run.stack:
            try:
                _scenario(run)
                run.result.ok = all(s.status == "ok" for s in run.result.steps)
            except Exception as exc:  # noqa: BLE001 - reported in the result, never half-silent
                run.result.ok = False
                run.result.error = f"{type(exc).__name__}: {exc}"
                if not isinstance(exc, DemoError):
                    run.result.error += "\n" + traceback.format_exc(limit=6)
            if hold is not None:
                run.result.elapsed_s = time.monotonic() - run.t0
                hold(run.result)
        run.result.elapsed_s = time.monotonic() - run.t0
        return run.result


# ---------------------------------------------------------------------------------------- parts
def _binary(name: str, given: str | None) -> Path:
    """An external binary: ``given``, else found like the tests do; NotAvailable if missing."""
    from btcmesh.binaries import find_binary

    path = Path(given).expanduser() if given else find_binary(name)
    if path is None or not path.is_file():
        raise NotAvailable(f"{name} binary not found{f' at {given}' if given else ''}: run "
                           "`scripts/setup.sh --daemons` or set BTCMESH_TOOLS")
    return path


def _start_bitcoin(run: _Run, miner_secret: bytes) -> Any:
    """The Bitcoin node: an EmbeddedNode, or a fresh btcd process (``--miningaddr`` = the miner's
    address, so the miner's blocks come from btcd's own ``generate``) behind an ``RpcBackend``."""
    if run.cfg.btc_backend == "embedded":
        from regtest.embedded import EmbeddedNode

        node = EmbeddedNode()
        run.stack.callback(node.close)
        return node
    from btc_staking.signing import p2tr_key_path_script
    from regtest.btcd import BtcdProcess
    from regtest.rpc import script_to_address

    address = script_to_address(p2tr_key_path_script(miner_secret, is_secret=True))
    proc = BtcdProcess(_binary("btcd", run.cfg.btcd_binary), run.workdir / "btcd", address,
                       start_timeout=run.cfg.timeout)
    proc.start()
    run.stack.callback(proc.stop)
    run.result.btc_rpc_url = proc.url
    proc.check_softforks()
    return proc.backend(timeout=run.cfg.timeout)


@dataclass
class _Chain:
    """The running chain as the demo sees it: REST URL, cosmpy client, height (backend-neutral)."""

    rest_url: str
    ledger: Any
    height: Callable[[], int]
    network: Any = None  # CometNetwork when running under CometBFT


#: consensus validators of the demo chain (issue 10 §1): own bond 10 power units each
VALSET_TOKENS_PER_POWER = 100_000
VALSET_SELF_BOND = 1_000_000
VALSET_SIZE = 4


def demo_valset(cfg: DemoConfig, operators: list[str]) -> dict[str, Any]:
    """``valset`` genesis: the FPs' mesh validators first (their operator addresses), then extra
    validators up to ``VALSET_SIZE`` (CometBFT: one per node). Embedded mode has no consensus engine:
    its keys are labels derived from the seed; under CometBFT :func:`_comet_genesis` puts the nodes'
    keys in."""
    n = cfg.comet or VALSET_SIZE
    names = (operators + [f"demo-val-{i}" for i in range(len(operators), n)])[:n]
    return {"tokens_per_power": str(VALSET_TOKENS_PER_POWER), "validators": [
        {"operator": op, "self_bond": str(VALSET_SELF_BOND),
         "pub_key": base64.b64encode(hashlib.sha256(f"{cfg.seed}/valset/{i}".encode()).digest()).decode()}
        for i, op in enumerate(names)]}


def _comet_genesis(genesis: dict[str, Any]) -> Any:
    """The app genesis for ``CometNetwork``: the ``valset`` keys become the generated node keys."""
    if "valset" not in genesis:
        return genesis

    def with_keys(pub_keys: list[str]) -> dict[str, Any]:
        vals = [dict(v, pub_key=pk) for v, pk in zip(genesis["valset"]["validators"], pub_keys)]
        return dict(genesis, valset=dict(genesis["valset"], validators=vals))

    return with_keys


def _start_chain(run: _Run, genesis: dict[str, Any]) -> _Chain:
    """EmbeddedChain + REST (``cfg.comet == 0``) or ``cfg.comet`` CometBFT validators with a
    ``RestServer(CometBackend(...))`` in front of validator 0; stopped by the run's exit stack."""
    cfg = run.cfg
    if not cfg.comet:
        from cosmos_chain.rest import LocalChain

        local = LocalChain(DEMO_CHAIN_ID, genesis, home=str(run.workdir / "chain"),
                           block_interval=cfg.chain_block_interval)
        run.stack.callback(local.close)
        ledger = local.ledger_client(query_interval_secs=0.05, query_timeout_secs=cfg.timeout)
        return _Chain(local.rest.url, ledger, lambda: local.node.height)

    from cosmpy.aerial.client import LedgerClient
    from cosmpy.aerial.config import NetworkConfig

    from cosmos_chain.comet import run_comet_chain
    from cosmos_chain.comet_backend import CometBackend
    from cosmos_chain.rest import RestServer

    net = run_comet_chain(run.workdir / "comet", cfg.comet, _comet_genesis(genesis), chain_id=DEMO_CHAIN_ID,
                          binary=_binary("cometbft", cfg.cometbft_binary), block_time=cfg.comet_block_time,
                          timeout=max(60.0, cfg.timeout))
    run.stack.callback(net.stop)
    backend = CometBackend(net.rpc_urls[0], chain_id=DEMO_CHAIN_ID, timeout=cfg.timeout)
    run.stack.callback(backend.close)
    rest = RestServer(backend).start()
    run.stack.callback(rest.stop)
    run.result.comet_rpc_urls = list(net.rpc_urls)
    fees = genesis["fees"]
    ledger = LedgerClient(NetworkConfig(chain_id=DEMO_CHAIN_ID, url=rest.cosmpy_url,  # type: ignore[arg-type]
                                        fee_denomination=fees["denom"], staking_denomination=fees["denom"],
                                        fee_minimum_gas_price=float(fees["min_gas_price"])),
                          query_interval_secs=0.05, query_timeout_secs=cfg.timeout)  # type: ignore[arg-type]
    return _Chain(rest.url, ledger, backend.latest_height, net)


def _kernel_cross_check(run: _Run, node: Any) -> int:
    """libbitcoinkernel against the node's chain; returns the number of spent coins compared.

    Embedded node: its own ``verify_against_kernel``. Any other node (btcd): every block of its
    active chain is replayed into a fresh kernel-validated ``EmbeddedNode`` (full consensus checks,
    scripts included), the tips must match, then the replica is cross-checked the same way."""
    if hasattr(node, "verify_against_kernel"):
        return int(node.verify_against_kernel())
    from regtest.embedded import EmbeddedNode

    tip = node.get_block_count()
    with EmbeddedNode(clock=time.time) as replica:
        if replica.get_block_hash(0) != node.get_block_hash(0):
            raise DemoError("the node's genesis block is not the regtest genesis libbitcoinkernel knows")
        for height in range(1, tip + 1):
            replica.submit_block(node.get_block(node.get_block_hash(height)))
        if replica.get_best_block_hash() != node.get_best_block_hash():
            raise DemoError(f"libbitcoinkernel's tip {replica.get_best_block_hash()} != the node's "
                            f"{node.get_best_block_hash()}")
        compared = int(replica.verify_against_kernel())
    run.note(f"{tip} {run.cfg.btc_backend} blocks re-validated by libbitcoinkernel, same tip; "
             f"{compared} spent coins cross-checked")
    return compared


def _check_validator_app_hashes(run: _Run, chain: _Chain) -> None:
    """Every CometBFT validator reports the same app hash at one final height: in the block header its
    own RPC serves (height + 1 carries the state after ``height``) and as its own app computed it."""
    net, res = chain.network, run.result
    height = min(net.heights())
    net.wait_for_height(height + 1, timeout=run.cfg.timeout)
    res.app_hash_height = height
    for node in net.nodes:
        name = f"node{node.index}"
        res.validator_app_hashes[name] = node.client.block_app_hash(height + 1).hex()
        if node.server is not None:
            local = node.server.committed_hashes().get(height)
            res.validator_local_app_hashes[name] = local.hex() if local is not None else ""
    seen = set(res.validator_app_hashes.values()) | set(res.validator_local_app_hashes.values())
    if len(seen) != 1 or "" in seen:
        raise DemoError(f"validators disagree on the app hash at height {height}: "
                        f"headers {res.validator_app_hashes}, apps {res.validator_local_app_hashes}")


def _scenario(run: _Run) -> None:  # noqa: C901 - one linear story, step by step
    cfg, res = run.cfg, run.result
    if cfg.mesh == "upstream":  # checked up front, not after 18 steps
        from btcmesh.mesh_upstream import HarnessMissing, require_harness

        try:
            require_harness()
        except HarnessMissing as exc:
            raise NotAvailable(str(exc)) from None
    params = demo_params(cfg)
    res.params = params
    sec = lambda label: demo_secret(cfg.seed, label)  # noqa: E731

    # ---------------------------------------------------------------- 1. Bitcoin
    res.btc_backend, res.comet_validators = cfg.btc_backend, cfg.comet
    btc_what = "the embedded regtest node" if cfg.btc_backend == "embedded" else "btcd (v0.26, regtest)"
    with run.step(f"start {btc_what} and fund the wallets") as st:
        from regtest.wallet import Wallet

        node = _start_bitcoin(run, sec("btc/miner"))
        miner = Wallet(node, sec("btc/miner"))
        wallet_a = Wallet(node, sec("btc/staker-a"))
        wallet_b = Wallet(node, sec("btc/staker-b"))
        node.mine_blocks(1, wallet_a.script_pubkey)
        node.mine_blocks(1, wallet_b.script_pubkey)
        node.mine_blocks(100, miner.script_pubkey)
        for w in (miner, wallet_a, wallet_b):
            w.scan()
        st.detail = (f"height {node.get_block_count()}, staker A {wallet_a.balance()} sat, "
                     f"staker B {wallet_b.balance()} sat spendable")

    def mine(n: int = 1) -> list[str]:
        if n <= 0:  # RpcBackend refuses n = 0
            return []
        hashes = node.mine_blocks(n, miner.script_pubkey)
        for w in (miner, wallet_a, wallet_b):
            w.scan()
        return hashes

    def confirm(label: str, tx: Tx, prevouts: list[TxOut]) -> SpendRecord:
        txid = node.send_raw_transaction(tx.serialize())
        mine(1)
        rec = SpendRecord(label, txid, tx.serialize(), list(prevouts), tx_height(node, txid))
        if rec.height is None:
            raise DemoError(f"{label} {txid} was not mined")
        res.spends[label] = rec
        return rec

    # ---------------------------------------------------------------- 2. Cosmos chain + REST
    from cosmos_chain.genesis import deterministic_wallet
    from cosmos_chain.modules.base import module_address

    cp_wallet = deterministic_wallet(f"{cfg.seed}/checkpoint")
    cov_wallet = deterministic_wallet(f"{cfg.seed}/covenant")
    fp_wallets = {"bad": deterministic_wallet(f"{cfg.seed}/fp-bad"),
                  "honest": deterministic_wallet(f"{cfg.seed}/fp-honest")}
    staker_wallets = {"A": deterministic_wallet(f"{cfg.seed}/staker-a"),
                      "B": deterministic_wallet(f"{cfg.seed}/staker-b")}
    admin = deterministic_wallet(f"{cfg.seed}/mesh-admin")
    addr = {n: module_address(n) for n in (REGISTRY, LIGHT_CLIENT, FINALITY, MESH, "valset")}

    chain_what = ("EmbeddedChain" if not cfg.comet
                  else f"{cfg.comet} CometBFT validator{'s' if cfg.comet > 1 else ''}")
    with run.step(f"start the chain ({chain_what} + REST on 127.0.0.1)") as st:
        from cosmos_chain.app import ChainApp

        probe = ChainApp(DEMO_CHAIN_ID, None)
        missing = [m for m in (LIGHT_CLIENT, REGISTRY, FINALITY, MESH) if m not in probe.modules]
        probe.close()
        if missing:
            raise NotAvailable(f"chain modules not installed: {', '.join(missing)} "
                               "(cosmos_chain/modules/btc_light_client.py, btc_staking.py)")
        base_h = node.get_block_count()
        base_header = node.get_block_header(node.get_block_hash(base_h))
        funded = [str(w.address()) for w in (cp_wallet, cov_wallet, admin, *fp_wallets.values(),
                                              *staker_wallets.values())]
        genesis = chain_genesis(params, base_h, base_header, funded, str(admin.address()),
                                header_reporters=[str(cp_wallet.address())])
        genesis["valset"] = demo_valset(cfg, [str(fp_wallets[r].address()) for r in ("bad", "honest")])
        chain = _start_chain(run, genesis)
        res.rest_url = chain.rest_url
        ledger = chain.ledger
        st.detail = f"{DEMO_CHAIN_ID} at {chain.rest_url}, light client base = BTC height {base_h}"
        if cfg.comet:
            st.detail += f"; CometBFT RPC {', '.join(res.comet_rpc_urls)}"

    from checkpoint.chain_client import ChainClient, ChainContracts

    client = ChainClient(ledger, ChainContracts(addr[LIGHT_CLIENT], addr[REGISTRY]), tx_timeout_s=cfg.timeout,
                         poll_interval_s=0.05)

    def q(module: str, msg: dict) -> Any:
        return client.query(addr[module], msg)

    def delegation(h: str) -> dict:
        d = client.delegation(h)
        if d is None:
            raise DemoError(f"delegation {h} not on chain")
        return d

    # ---------------------------------------------------------------- 3. checkpoint service + API
    with run.step("start the checkpoint service and the staking API") as st:
        from checkpoint.service import CheckpointService

        service = CheckpointService(node, client, run.workdir / "checkpoint.sqlite", params, cfg.k, cp_wallet,
                                    poll_interval=0.2, start_height=base_h, retry_base_s=0.05, retry_max_s=0.2)
        run.stack.callback(service.close)
        api_url = ""
        if cfg.with_api:
            from api.app import BackgroundServer
            from api.explorer import set_btc_tip_source
            from api.server import app_for_url

            api_app = app_for_url(chain.rest_url)
            set_btc_tip_source(api_app, node.get_block_count)  # the explorer shows the BTC tip too
            api = BackgroundServer(api_app, port=cfg.api_port).start(timeout=cfg.timeout)
            run.stack.callback(api.stop)
            api_url = res.api_url = api.url
        st.detail = f"k = {cfg.k}; API {api_url or 'disabled'}"

    def checkpoint_round() -> Any:
        rep = service.run_once()
        for key in rep.dead_lettered:
            reason = next((str(d) for d in service.dead_letters() if key in str(d)), "")
            run.note(f"checkpoint dead-lettered {key}: {reason}")
        return rep

    # ---------------------------------------------------------------- 4. finality providers
    from btcmesh.finality_provider import ClientChannel, FinalityProvider

    fps: dict[str, FinalityProvider] = {}
    validators = {"bad": "", "honest": ""}
    with run.step("register 2 finality providers (each mapped to a mesh validator)") as st:
        for role in ("bad", "honest"):
            w = fp_wallets[role]
            fp = FinalityProvider(sec(f"fp/{role}"), ClientChannel(client, w), context=DEMO_CHAIN_ID.encode())
            validators[role] = str(w.address())
            pop = sign_pop_bip340(fp.secret, bytes(w.address()))  # over the raw address bytes (Babylon)
            client.execute(addr[REGISTRY], {"create_finality_provider": {
                "btc_pk": fp.btc_pk_hex, "pop": pop.hex(),
                "description": {"moniker": f"fp-{role}", "identity": "", "website": "", "security_contact": "",
                                "details": f"{role} finality provider of the btcmesh demo"},
                "commission": "0.05", "validator": validators[role]}}, w)
            fps[role] = fp
        listed = q(REGISTRY, {"finality_providers": {}})["finality_providers"]
        if {f["btc_pk"] for f in listed} != {fp.btc_pk_hex for fp in fps.values()}:
            raise DemoError(f"registry lists {listed}")
        res.bad_fp_pk = fps["bad"].btc_pk_hex
        res.bad_fp_secret = fps["bad"].secret.hex()
        st.detail = ", ".join(f"{r} {fp.btc_pk_hex[:12]}… → validator {validators[r][:16]}…"
                              for r, fp in fps.items())

    # ---------------------------------------------------------------- 5. stakers lock BTC
    from btcmesh.staker import Staker, StakingDelegation

    stakers = {"A": Staker(sec("staker/A"), params), "B": Staker(sec("staker/B"), params)}
    wallets = {"A": wallet_a, "B": wallet_b}
    fp_of = {"A": "bad", "B": "honest"}
    values = {"A": cfg.value_a, "B": cfg.value_b}
    dels: dict[str, StakingDelegation] = {}
    with run.step("stakers A (→ bad FP) and B (→ honest FP) lock BTC") as st:
        for who, staker in stakers.items():
            fp_pk = fps[fp_of[who]].btc_pk
            out = DelegationOutcome(who, staker.pk.hex(), fp_pk.hex(), validators[fp_of[who]],
                                    staked_sat=values[who], wallet_before_sat=wallets[who].balance())
            res.delegations[who] = out
            tx = staker.fund_staking_tx(wallets[who], fp_pk, cfg.staking_time, values[who], cfg.fee_rate)
            d = staker.delegation(tx, [fp_pk], cfg.staking_time)
            dels[who] = d
            out.staking_tx_hash = d.staking_tx_hash
            # Babylon's pre-approval flow: the staker registers the delegation itself (its PoP binds
            # its own Cosmos address, where its consumer rewards are paid); the checkpoint service
            # only adds the k-deep inclusion proof (the intent's material carries no PoP)
            sw = staker_wallets[who]
            client.execute(addr[REGISTRY], {"create_btc_delegation": d.create_msg(staker.pop(str(sw.address())))},
                           sw)
            material = d.material(b"")
            material.pop("pop")
            service.register_intent(staker.pk, [fp_pk], cfg.staking_time, values[who], material)
            node.send_raw_transaction(tx.serialize())
            res.spends[f"staking tx {who}"] = SpendRecord(f"staking tx {who}", tx.txid_hex(), tx.serialize(),
                                                          wallets[who].prevouts(tx), None)
        mine(1)
        for who, d in dels.items():
            rec = res.spends[f"staking tx {who}"]
            rec.height = tx_height(node, rec.txid)
            if rec.height is None:
                raise DemoError(f"staking tx {who} not mined")
        st.detail = "; ".join(f"{w}: {values[w]} sat in {dels[w].staking_tx_hash[:16]}… "
                              f"(block {res.spends[f'staking tx {w}'].height})" for w in dels)

    # ---------------------------------------------------------------- 6. k deep → attest → covenant → ACTIVE
    with run.step(f"mine k={cfg.k} blocks; the checkpoint service attests the locks") as st:
        mine(cfg.k)  # depth = tip - block height >= k (the tip has depth 0)
        rep = checkpoint_round()
        for who, d in dels.items():
            _wait(lambda: client.delegation(d.staking_tx_hash), cfg.timeout, f"delegation {who} on chain")
            res.delegations[who].status_history.append(delegation(d.staking_tx_hash)["status"])
        st.detail = (f"headers relayed {rep.headers_relayed}, attested {len(rep.submitted)}; status "
                     + ", ".join(f"{w}={res.delegations[w].status_history[-1]}" for w in dels))

    from btcmesh.covenant import CovenantCommittee

    committee = CovenantCommittee.regtest(params)
    with run.step("covenant committee verifies and signs (adaptor sigs per FP) → ACTIVE") as st:
        for who, d in dels.items():
            on_chain = delegation(d.staking_tx_hash)
            for sigs in committee.sign(on_chain):
                client.execute(addr[REGISTRY], sigs.to_msg(), cov_wallet)
        for who, d in dels.items():
            status = _wait(lambda: (s := delegation(d.staking_tx_hash)["status"]) == "ACTIVE" and s,
                           cfg.timeout, f"delegation {who} ACTIVE")
            res.delegations[who].status_history.append(status)
        st.detail = f"{len(committee.members)} members signed each delegation (quorum {committee.quorum})"

    def virtual_stake(validator: str) -> int:
        r = q(MESH, {"adapter": {"validator_virtual_stake": {"validator": validator}}})
        return int(r["virtual_stake"])

    def collateral(h: str) -> int:
        rec = q(MESH, {"adapter": {"delegation": {"staking_tx_hash": h}}})["delegation"]
        return int(rec["collateral_sat"]) if rec else 0

    with run.step("mesh: virtual stake on the validators") as st:
        for who in dels:
            v = validators[fp_of[who]]
            res.virtual_stake_before[v] = virtual_stake(v)
            res.mesh_collateral_before[who] = collateral(dels[who].staking_tx_hash)
        if not all(res.virtual_stake_before.values()):
            raise DemoError(f"no virtual stake after ACTIVE: {res.virtual_stake_before}")
        res.consensus_power_before = _settled_power(q, cfg.timeout)
        st.detail = ", ".join(f"{v[:16]}… {s}" for v, s in res.virtual_stake_before.items())

    # ---------------------------------------------------------------- 7. finality: commit, vote, double-sign
    with run.step("FPs commit EOTS public randomness and vote") as st:
        # randomness for heights above the chain's (the chain refuses heights already past), a
        # short range: no FP has power (or can miss votes) outside it, so the FPs, which vote only
        # here, stay under the liveness limit (max_missed of the signed-blocks window)
        for fp in fps.values():
            fp.commit_pub_rand_ahead(FP_PUB_RAND, lead=10)  # widens the lead if the chain outruns it
        start = max(fp.commits[-1].start for fp in fps.values())
        vote_h = _wait(lambda: chain.height() >= start + 1 and start, cfg.timeout, "a block to vote on")
        for fp in fps.values():
            _wait(lambda: fp.block_app_hash(vote_h) is not None, cfg.timeout, f"app hash of block {vote_h}")
            fp.vote_pending(vote_h)  # every height it has power for, up to vote_h
        votes = q(FINALITY, {"votes_at_height": {"height": vote_h}})["votes"]
        res.vote_height = vote_h
        for role, fp in fps.items():
            res.fp_finality[role] = {"fp_btc_pk": fp.btc_pk_hex, "power_at_vote": fp.voting_power(vote_h)}
        res.finalized_height = _wait(lambda: q(FINALITY, {"last_finalized_height": {}})["height"], cfg.timeout,
                                     "a finalized block")
        st.detail = (f"pub rand from height {start} ({FP_PUB_RAND} heights); {len(votes)} votes on block {vote_h}; "
                     f"finalized up to {res.finalized_height}")

    with run.step("the bad FP double-signs → evidence, key extracted, FP slashed") as st:
        fork_hash = hashlib.sha256(b"btcmesh-demo/forked-app-hash").digest()
        fps["bad"].double_sign(vote_h, fork_hash)
        sl = q(FINALITY, {"is_slashed": {"fp_btc_pk": fps["bad"].btc_pk_hex}})
        if not sl.get("slashed"):
            raise DemoError(f"the chain did not slash the FP: {sl}")
        res.extracted_sk = str(sl.get("extracted_btc_sk") or "")
        res.extracted_key_matches = res.extracted_sk == fps["bad"].secret.hex()
        evidence = q(FINALITY, {"evidence": {"fp_btc_pk": fps["bad"].btc_pk_hex}})["evidence"]
        res.delegations["A"].status_history.append(delegation(dels["A"].staking_tx_hash)["status"])
        st.detail = (f"{len(evidence)} evidence record(s) at height {vote_h}; extracted key "
                     f"{'==' if res.extracted_key_matches else '!='} FP secret; "
                     f"delegation A {res.delegations['A'].status_history[-1]}")

    with run.step("mesh: the bad FP's validator is slashed") as st:
        for v in validators.values():
            res.virtual_stake_after[v] = virtual_stake(v)
        report = q(MESH, {"slash_report": {"validator": validators["bad"]}})["report"] or {}
        res.consensus_power_after = _settled_power(q, cfg.timeout)
        res.mesh_virtual_slashed = int(report.get("virtual_slashed") or 0)
        res.mesh_virtual_unbonded = int(report.get("virtual_unbonded") or 0)
        res.mesh_btc_left = {who: int(report["delegations"][d.staking_tx_hash]["btc_left"])
                             for who, d in dels.items() if d.staking_tx_hash in report.get("delegations", {})}
        for who in dels:
            res.mesh_collateral_after[who] = collateral(dels[who].staking_tx_hash)
            res.rewards[who] = {"earned_at_slash": _earned(q(MESH, {"rewards": {"delegation": {
                "staking_tx_hash": dels[who].staking_tx_hash}}}))}
        st.detail = ", ".join(f"{v[:16]}… {res.virtual_stake_before[v]} → {res.virtual_stake_after[v]}"
                              for v in validators.values())
        st.detail += "; consumer rewards earned so far: " + ", ".join(
            f"{w} {r['earned_at_slash']}" for w, r in res.rewards.items())

    # ---------------------------------------------------------------- 8. Bitcoin slashing
    with run.step("slasher completes staker A's slashing tx and broadcasts it on regtest") as st:
        from btc_staking.staking import validate_slashing_tx
        from checkpoint.slasher import QuerySlasherChain, Slasher

        slasher = Slasher(QuerySlasherChain(query=client.query, finality=addr[FINALITY], registry=addr[REGISTRY],
                                            params=params), node)
        results = [r for r in slasher.poll() if r.staking_tx_hash == dels["A"].staking_tx_hash]
        if not results or results[0].status not in ("broadcast", "in_mempool"):
            raise DemoError(f"slasher did not broadcast A's slashing tx: {results}")
        res.slasher_key_matches = slasher.keys.get(fps["bad"].btc_pk_hex) == fps["bad"].secret
        txid = results[0].txid
        slash_tx = Tx.parse(node.get_raw_transaction(txid))
        d = dels["A"]
        validate_slashing_tx(slash_tx, d.staking_outpoint, d.staking_value, d.staker_pk, params)
        mine(1)
        res.slashing_txid = txid
        res.spends["slashing tx A"] = SpendRecord("slashing tx A", txid, slash_tx.serialize(), [d.staking_output],
                                                  tx_height(node, txid))
        if res.spends["slashing tx A"].height is None:
            raise DemoError("slashing tx not mined")
        res.expected_burned_sat = mul_f64(d.staking_value, params.slashing_rate)
        res.delegations["A"].burned_sat = slash_tx.outputs[0].value
        res.slashing_change_sat = slash_tx.outputs[1].value
        if res.mesh_collateral_after.get("A") != res.slashing_change_sat:
            raise DemoError(f"mesh collateral of A {res.mesh_collateral_after.get('A')} != the slashing tx's "
                            f"change output {res.slashing_change_sat}")
        st.detail = (f"{txid[:16]}… mined at {res.spends['slashing tx A'].height}: "
                     f"{slash_tx.outputs[0].value} sat burned to the slashing script, "
                     f"{slash_tx.outputs[1].value} sat change timelocked {params.unbonding_time_blocks} blocks")

    with run.step("staker A withdraws the slashing change after its timelock") as st:
        slash_rec = res.spends["slashing tx A"]
        slash_tx = Tx.parse(slash_rec.raw)
        back = stakers["A"].withdraw_tx(dels["A"], wallet_a.script_pubkey, path="slashing_change",
                                        slashing_tx=slash_tx)
        mine(max(0, slash_rec.height + params.unbonding_time_blocks - node.get_block_count() - 1))
        confirm("slashing change withdrawal A", back, [slash_tx.outputs[1]])
        st.detail = f"{back.outputs[0].value} sat back to staker A"

    with run.step("the slashing tx, k deep, is reported to the registry") as st:
        slash_rec = res.spends["slashing tx A"]
        mine(max(0, slash_rec.height + cfg.k - node.get_block_count()))
        checkpoint_round()  # relays the headers up to the tip
        client.execute(addr[REGISTRY], {"report_btc_slashing": {
            "staking_tx_hash": dels["A"].staking_tx_hash, "slashing_tx": slash_rec.raw.hex(),
            "inclusion_proof": inclusion_proof(node, slash_rec.txid)}}, cp_wallet)
        res.chain_slashing_btc_txid = str(delegation(dels["A"].staking_tx_hash).get("slashing_btc_txid") or "")
        if res.chain_slashing_btc_txid != slash_rec.txid:
            raise DemoError(f"registry records slashing tx {res.chain_slashing_btc_txid!r}, not {slash_rec.txid}")
        st.detail = f"registry: delegation A slashed on Bitcoin by {slash_rec.txid[:16]}… (block {slash_rec.height})"

    # ---------------------------------------------------------------- 9. rewards claim, honest unbonding
    with run.step("staker B claims its consumer rewards (to the address its PoP bound)") as st:
        from btcmesh.rewards import claim_rewards
        from checkpoint.chain_client import ChainError

        h_b = dels["B"].staking_tx_hash
        try:  # staker A's account may not take B's rewards
            client.execute(addr[MESH], {"claim_rewards": {"staking_tx_hash": h_b}}, staker_wallets["A"])
            raise DemoError("the chain let staker A's account claim B's rewards")
        except ChainError as exc:
            refused = str(exc)
        out = claim_rewards(client, staker_wallets["B"], h_b)
        if out["claimed"] <= 0:
            raise DemoError(f"staker B claimed nothing: {out}")
        res.rewards["B"]["claimed_in_step"] = out["claimed"]
        st.detail = (f"{out['claimed']} to {str(staker_wallets['B'].address())[:16]}…; "
                     f"a claim by A's account refused ({refusal_reason(refused)})")

    with run.step("staker B unbonds (covenant-signed unbonding tx) → UNBONDING") as st:
        d = dels["B"]
        cov_sigs = _covenant_unbonding_sigs(delegation(d.staking_tx_hash))
        if len(cov_sigs) < params.covenant_quorum:
            raise DemoError(f"registry holds {len(cov_sigs)} covenant unbonding sigs for B, "
                            f"quorum is {params.covenant_quorum}")
        ub = stakers["B"].signed_unbonding_tx(d, cov_sigs)
        confirm("unbonding tx B", ub, [d.staking_output])
        mine(cfg.k)
        checkpoint_round()
        status = _wait(lambda: (s := delegation(d.staking_tx_hash)["status"]) == "UNBONDING" and s,
                       cfg.timeout, "delegation B UNBONDING")
        res.delegations["B"].status_history.append(status)
        st.detail = f"unbonding tx {ub.txid_hex()[:16]}… (covenant sigs from the registry); status {status}"

    with run.step("staker B waits out the unbonding time, withdraws → WITHDRAWN") as st:
        d = dels["B"]
        ub_rec = res.spends["unbonding tx B"]
        mine(max(0, ub_rec.height + params.unbonding_time_blocks - node.get_block_count() - 1))
        back = stakers["B"].withdraw_tx(d, wallet_b.script_pubkey, path="unbonding")
        rec = confirm("withdrawal B", back, [d.unbonding_info.output])
        mine(cfg.k)
        checkpoint_round()  # the service spots the timelock spend and sends report_withdrawal
        reporter = "the checkpoint service"
        if delegation(d.staking_tx_hash)["status"] != "WITHDRAWN":
            # not reported by the service (e.g. an older service without withdraw reports): the staker
            # reports the proven spend itself (same message, same checks on chain)
            client.execute(addr[REGISTRY], {"report_withdrawal": {
                "staking_tx_hash": d.staking_tx_hash, "spend_tx": rec.raw.hex(),
                "inclusion_proof": inclusion_proof(node, rec.txid)}}, staker_wallets["B"])
            reporter = "staker B"
        status = _wait(lambda: (s := delegation(d.staking_tx_hash)["status"]) == "WITHDRAWN" and s,
                       cfg.timeout, "delegation B WITHDRAWN")
        res.delegations["B"].status_history.append(status)
        res.withdrawal_reported_by = reporter
        st.detail = f"{back.outputs[0].value} sat back to staker B; reported by {reporter}; status {status}"

    # ---------------------------------------------------------------- 10. summary data
    with run.step("final state: chain registry, API over HTTP, balances") as st:
        for who, outc in res.delegations.items():
            outc.status = delegation(dels[who].staking_tx_hash)["status"]
            outc.wallet_after_sat = wallets[who].balance()
        a, b = res.delegations["A"], res.delegations["B"]
        a.returned_sat = Tx.parse(res.spends["slashing change withdrawal A"].raw).outputs[0].value
        a.fees_sat = a.staked_sat - a.burned_sat - a.returned_sat
        b.returned_sat = Tx.parse(res.spends["withdrawal B"].raw).outputs[0].value
        b.fees_sat = b.staked_sat - b.returned_sat
        if cfg.with_api:
            import httpx

            with httpx.Client(base_url=res.api_url, timeout=cfg.timeout, trust_env=False) as http:
                for who, outc in res.delegations.items():
                    r = http.get("/v2/delegation", params={"staking_tx_hash_hex": outc.staking_tx_hash})
                    body = r.json()
                    res.api_answers[who] = body
                    outc.api_state = str(body.get("data", {}).get("state", f"HTTP {r.status_code}"))
        res.btc_height = node.get_block_count()
        res.kernel_checked_spent_coins = _kernel_cross_check(run, node)
        res.chain_height = chain.height()
        for who in dels:
            r = q(MESH, {"rewards": {"delegation": {"staking_tx_hash": dels[who].staking_tx_hash}}})
            res.rewards[who].update({
                "fp": fp_of[who], "pending": int(r["pending"]), "claimed": int(r["claimed"]),
                "earned_after_slash": _earned(r) - res.rewards[who]["earned_at_slash"],
                "balance": int(q(MESH, {"balance": {"address": str(staker_wallets[who].address()),
                                                    "denom": r["denom"]}})["amount"]["amount"])})
        if res.rewards["A"]["earned_after_slash"] != 0:
            raise DemoError(f"staker A earned {res.rewards['A']['earned_after_slash']} after the slash")
        res.reward_totals = q(MESH, {"rewards": {"totals": {}}})
        if res.reward_totals["totals"]["balanced"] is not True:
            raise DemoError(f"rewards do not reconcile: {res.reward_totals['totals']}")
        res.finalized_height = q(FINALITY, {"last_finalized_height": {}})["height"]
        for role, fp in fps.items():
            res.fp_finality[role].update({k: v for k, v in fp.status().items() if k in ("voting_power", "state")})
        if cfg.comet:
            _check_validator_app_hashes(run, chain)
            st.detail += (f"; {len(res.validator_app_hashes)} validators agree on the app hash "
                          f"at height {res.app_hash_height}")
        st.detail = ", ".join(f"{w}: chain {o.status} / API {o.api_state or '-'}" for w, o in res.delegations.items())

    if cfg.mesh == "upstream":
        with run.step("mesh: the same events on the upstream contracts (harness)") as st:
            from btcmesh.mesh_upstream import replay_on_upstream
            from mesh_adapter.upstream import HarnessUnavailable

            recs = [q(MESH, {"adapter": {"delegation": {"staking_tx_hash": d.staking_tx_hash}}})["delegation"]
                    for d in dels.values()]
            try:
                res.mesh_upstream = replay_on_upstream(q(MESH, {"config": {}})["params"], recs,
                                                       fps["bad"].btc_pk_hex)
            except HarnessUnavailable as exc:  # died or hung: its reason, no traceback
                raise DemoError(f"upstream-contract harness: {exc}") from None
            unnamed = [d for d in res.mesh_upstream["differences"] if not d["named"]]
            if unnamed or res.mesh_upstream["model"]["final"] != res.mesh_upstream["chain_final"]:
                raise DemoError(f"upstream contracts, model replay and chain disagree: {unnamed} "
                                f"{res.mesh_upstream['model']['final']} {res.mesh_upstream['chain_final']}")
            st.detail = (f"upstream = model = chain at the end, {len(res.mesh_upstream['differences'])} named "
                         "difference(s) on the way: "
                         + (", ".join(sorted({d['named'] for d in res.mesh_upstream['differences']})) or "none"))


def _settled_power(q: Callable[[str, dict], Any], timeout: float) -> dict[str, int]:
    """The consensus set once the valset reached its target (changes are spread over blocks, each
    under 1/3 of the power, and sign from two blocks later): operator → power."""
    def settled() -> dict[str, int] | None:
        target = {op: p for op, p in q("valset", {"target": {}})["powers"].items() if p > 0}
        now = {v["operator"]: v["power"] for v in q("valset", {"validator_set": {}})["validators"]}
        return now if now == target else None

    return _wait(settled, timeout, "the consensus power to settle")


def _earned(r: dict) -> int:
    """Pending + claimed of a mesh ``rewards {delegation}`` reply."""
    return int(r["pending"]) + int(r["claimed"])


def _covenant_unbonding_sigs(d: dict) -> dict[bytes, bytes]:
    """``{cov_pk: sig}`` from a registry delegation's ``covenant_unbonding_sigs`` (list of {pk, sig})."""
    return {bytes.fromhex(item["pk"]): bytes.fromhex(item["sig"]) for item in d["covenant_unbonding_sigs"]}


# ---------------------------------------------------------------------------------------- summary
def _table(rows: list[list[str]]) -> str:
    """Plain-text table: numeric columns right-aligned, text columns left-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    numeric = [all(re.fullmatch(r"-?[\d.]+|-", r[i]) for r in rows[1:]) for i in range(len(widths))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join(c.rjust(w) if num else c.ljust(w)
                               for c, w, num in zip(r, widths, numeric)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_summary(res: DemoResult) -> str:
    """The human-readable summary (steps + tables)."""
    parts = ["", "Steps", _table([["#", "step", "status", "s"]] + [
        [str(i + 1), s.name, s.status, f"{s.seconds:.1f}"] for i, s in enumerate(res.steps)])]
    if res.delegations:
        parts += ["", "Delegations (BTC amounts in sat)", _table(
            [["staker", "FP", "staking tx", "chain status", "API state", "staked", "burned", "returned", "fees"]] + [
                [o.label, o.fp_pk[:12] + "…", o.staking_tx_hash[:12] + "…", o.status or "-", o.api_state or "-",
                 str(o.staked_sat), str(o.burned_sat), str(o.returned_sat), str(o.fees_sat)]
                for o in res.delegations.values()])]
    if res.virtual_stake_before:
        parts += ["", "Virtual stake per validator (mesh)", _table(
            [["validator", "before", "after", "change"]] + [
                [v, str(b), str(res.virtual_stake_after.get(v, "-")),
                 str(res.virtual_stake_after[v] - b) if v in res.virtual_stake_after else "-"]
                for v, b in res.virtual_stake_before.items()])]
    if res.bad_fp_pk:
        rate = res.params.slashing_rate if res.params else Decimal(0)
        parts += ["", f"Slashing: FP {res.bad_fp_pk[:16]}…  extracted key matches the FP secret: "
                      f"{'yes' if res.extracted_key_matches else 'NO'}",
                  f"          slashing tx {res.slashing_txid or '-'}; burned "
                  f"{res.delegations.get('A', DelegationOutcome('', '', '', '')).burned_sat} sat "
                  f"(expected floor(value × {rate}) = {res.expected_burned_sat})",
                  f"Mesh:     virtual stake slashed {res.mesh_virtual_slashed}; unbonded from the tombstoned "
                  f"validator {res.mesh_virtual_unbonded}; BTC left (vault collateral of A) "
                  f"{res.mesh_collateral_after.get('A', '-')} sat = slashing tx change {res.slashing_change_sat or '-'}"]
    if res.fp_finality:
        parts += ["", f"Finality: last finalized chain height {res.finalized_height if res.finalized_height else '-'}"
                      f" (both FPs voted on block {res.vote_height})", _table(
                          [["FP", "key", f"power at {res.vote_height}", "power now", "state"]] + [
                              [role, f["fp_btc_pk"][:12] + "…", str(f.get("power_at_vote", "-")),
                               str(f.get("voting_power", "-")), str(f.get("state", "-"))]
                              for role, f in res.fp_finality.items()])]
    if res.mesh_upstream:
        m, u = res.mesh_upstream["model"], res.mesh_upstream["upstream"]
        parts += ["", "Mesh on the upstream contracts (cw-multi-test harness) vs our model", _table(
            [["figure", "model", "upstream"]]
            + [[f"virtual stake {v[:16]} after slash", str(m["virtual_stake_after"][v]),
                str(u["virtual_stake_after"][v])] for v in m["virtual_stake_after"]]
            + [["virtual stake slashed", str(m["virtual_slashed"]), str(u["virtual_slashed"])],
               ["virtual stake unbonded", str(m["virtual_unbonded"]), str(u["virtual_unbonded"])]]
            + [[f"collateral {h[:12]}… after slash", str(c), str(u["collateral_after"][h])]
               for h, c in m["collateral_after"].items()])]
        parts += [f"  differs: {d['what']} model {d['model']} upstream {d['upstream']} ({d['named'] or 'NOT NAMED'})"
                  for d in res.mesh_upstream["differences"]]
        parts.append("  end of the demo: chain records " + ("=" if m["final"] == res.mesh_upstream["chain_final"]
                                                            else "!=") + " the model replay's")
    if res.reward_totals:
        parts += _rewards_summary(res)
    if res.consensus_power_before:
        names = {o.validator: f"{o.validator[:16]}… (FP of {o.label})" for o in res.delegations.values()}
        parts += ["", f"Consensus power (valset: (own bond + virtual stake) // {VALSET_TOKENS_PER_POWER})", _table(
            [["validator", "after ACTIVE", "after slash"]] + [
                [names.get(v, v), str(p), str(res.consensus_power_after.get(v, 0))]
                for v, p in res.consensus_power_before.items()])]
    if res.kernel_checked_spent_coins:
        node = "embedded node" if res.btc_backend == "embedded" else f"{res.btc_backend} node"
        parts.append(f"Bitcoin ({node}): {res.btc_height} blocks; chain state and {res.kernel_checked_spent_coins} "
                     f"spent coins cross-checked with libbitcoinkernel. Cosmos chain height {res.chain_height}")
    if res.validator_app_hashes:
        hashes = set(res.validator_app_hashes.values())
        n = len(res.validator_app_hashes)
        parts.append(f"CometBFT: {n} validator{'s' if n > 1 else ''}, app hash at height {res.app_hash_height} "
                     f"{'identical on every validator' if len(hashes) == 1 else 'DIFFERS'}: {min(hashes)[:16]}…")
    parts += ["", f"{'OK' if res.ok else 'FAILED'} in {res.elapsed_s:.1f} s" + (f": {res.error}" if res.error else "")]
    return "\n".join(parts)


def _rewards_summary(res: DemoResult) -> list[str]:
    """The rewards table (per staker, per FP) and the reconciliation line."""
    tot, denom = res.reward_totals["totals"], res.reward_totals.get("denom", "")
    rows = [["staker", "FP", "earned before slash", "earned after", "claimed", "pending", "in wallet"]] + [
        [f"staker {who}", r.get("fp", "-"), str(r["earned_at_slash"]), str(r.get("earned_after_slash", "-")),
         str(r.get("claimed", "-")), str(r.get("pending", "-")), str(r.get("balance", "-"))]
        for who, r in res.rewards.items()]
    fps = [["validator (FP)", "commission rate", "distributed", "commission"]] + [
        [f"{v['validator'][:16]}… ({(v.get('fp_btc_pk') or '-')[:8]}…)", v["commission_rate"], v["distributed"],
         v["commission"]] for v in res.reward_totals.get("validators", [])]
    extra = int(tot["undistributed"]) + int(tot["carried"])
    line = (f"Reconciliation: paid by the consumer {tot['paid_by_consumer']} = claimed {tot['claimed']} + pending "
            f"{tot['pending']} + FP commission {tot['commission']}"
            + (f" + remainder {extra} (sub-unit points carried + undistributed)" if extra else "")
            + f"  {'OK, to the unit' if tot['balanced'] else 'MISMATCH'}")
    c = res.reward_totals.get("consumer", {})
    consumer = (f"Consumer: minted {c.get('minted', '-')} + fees {c.get('fees', '-')} = to the mesh's virtual stake "
                f"{c.get('to_delegators', '-')} + native validators {c.get('to_native', '-')} + community pool "
                f"{c.get('community_pool', '-')} (power-split rounding) + fee pool {c.get('fee_pool', '-')}")
    return ["", f"Rewards ({denom}; consumer block reward {res.reward_totals.get('block_reward', '-')} per block, "
                f"to validators by power)", _table(rows), "", _table(fps), line, consumer]
