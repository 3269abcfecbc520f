"""Build and run the checkpoint service against any Bitcoin backend and a chain's REST URL.

Everything the service needs besides the backend is read from the chain itself:
the chain id (``node_info``), the staking parameters and ``k`` (the registry's
latest ``params`` version, ``confirmation_depth``) and where to start following
Bitcoin (the light client's base height)::

    backend = RpcBackend("http://127.0.0.1:18443", "user", "pass")
    service = build_service(backend, "http://127.0.0.1:1317", "checkpoint.sqlite", mnemonic="...")
    stop = threading.Event()
    run(service, stop)            # until stop.set(); bounded rounds with max_rounds=

``python -m checkpoint.runner --btc-rpc URL --chain-rest URL --store FILE`` runs it as a
process (the signer key comes from ``--private-key-file`` or the ``BTCMESH_CHECKPOINT_KEY``
/ ``BTCMESH_CHECKPOINT_MNEMONIC`` environment variables, never from the command line);
SIGTERM / SIGINT stop it after the current round.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from checkpoint.chain_client import ChainClient, ChainContracts
from checkpoint.errors import ChainError, InvalidInputError
from checkpoint.service import BitcoinBackendLike, CheckpointService

log = logging.getLogger("checkpoint.runner")

DEFAULT_DENOM = "ubbn"
DEFAULT_GAS_PRICE = 0.01


@dataclass(frozen=True)
class ChainInfo:
    """What the runner learned from the chain."""

    chain_id: str
    params: Any  # btc_staking.params.StakingParams
    k: int
    light_client_base: int | None
    light_client_tip: tuple[int, str] | None


def rest_base(url: str) -> str:
    """``http://127.0.0.1:PORT`` from ``rest+http://...`` or ``http://...`` (loopback only)."""
    plain = url.removeprefix("rest+").rstrip("/")
    parts = urlsplit(plain)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(f"chain REST URL must be http(s)://host:port, got {url!r}")
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise InvalidInputError(f"chain REST URL must be on the loopback interface, got {parts.hostname}")
    return plain


def query_chain_id(url: str, timeout: float = 10.0) -> str:
    """The chain id from the REST server's ``node_info`` (transient ``ChainError`` if unreachable)."""
    import httpx

    base = rest_base(url)
    try:
        reply = httpx.get(f"{base}/cosmos/base/tendermint/v1beta1/node_info", timeout=timeout, trust_env=False)
        reply.raise_for_status()
        return str(reply.json()["default_node_info"]["network"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise ChainError(f"chain REST server at {base} did not answer node_info: {exc}", transient=True) from exc


def make_wallet(*, mnemonic: str | None = None, private_key: bytes | str | None = None,
                prefix: str = "bbn") -> Any:
    """A cosmpy ``LocalWallet`` from exactly one of a BIP-39 mnemonic or a 32-byte private key."""
    from cosmpy.aerial.wallet import LocalWallet
    from cosmpy.crypto.keypairs import PrivateKey

    if (mnemonic is None) == (private_key is None):
        raise InvalidInputError("give exactly one of mnemonic or private_key")
    if mnemonic is not None:
        try:
            return LocalWallet.from_mnemonic(mnemonic.strip(), prefix=prefix)
        except Exception as exc:  # cosmpy raises bare ValueError/KeyError for bad words
            raise InvalidInputError(f"invalid mnemonic: {type(exc).__name__}") from None
    try:
        raw = bytes.fromhex(private_key) if isinstance(private_key, str) else bytes(private_key)  # type: ignore
    except ValueError:
        raise InvalidInputError("private key must be 32 bytes or 64 hex characters") from None
    if len(raw) != 32:
        raise InvalidInputError(f"private key must be 32 bytes, got {len(raw)}")
    try:
        return LocalWallet(PrivateKey(raw), prefix=prefix)
    except Exception as exc:
        raise InvalidInputError(f"invalid private key: {type(exc).__name__}") from None


def connect(url: str, *, chain_id: str | None = None, denom: str = DEFAULT_DENOM,
            gas_price: float = DEFAULT_GAS_PRICE, tx_timeout_s: float = 30.0) -> ChainClient:
    """A :class:`ChainClient` over an unmodified cosmpy ``LedgerClient`` for the REST server at ``url``."""
    from cosmpy.aerial.client import LedgerClient
    from cosmpy.aerial.config import NetworkConfig

    from cosmos_chain.modules.base import module_address

    base = rest_base(url)
    cid = chain_id if chain_id is not None else query_chain_id(base)
    ledger = LedgerClient(NetworkConfig(chain_id=cid, url=f"rest+{base}", fee_minimum_gas_price=gas_price,
                                        fee_denomination=denom, staking_denomination=denom))
    return ChainClient(ledger, ChainContracts(module_address("btc_light_client"), module_address("btc_staking")),
                       tx_timeout_s=tx_timeout_s)


def light_client_base_height(client: ChainClient) -> int | None:
    """Lowest height the light client has a main-chain header for (its genesis base), or None.

    Asks the light client's ``base {}`` query; where that is not available, a binary search
    over ``header {height}`` (the main chain is contiguous from the base to the tip) finds it
    in O(log tip) queries."""
    try:
        res = client.query(client.contracts.light_client, {"base": {}})
        if isinstance(res, dict) and isinstance(res.get("height"), int):
            return int(res["height"])
    except (ChainError, AttributeError):
        pass
    tip = client.light_client_tip()
    if tip is None:
        return None
    lo, hi = 0, tip[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if client.light_client_hash_at(mid) is None:
            lo = mid + 1
        else:
            hi = mid
    return lo


def chain_info(client: ChainClient) -> ChainInfo:
    """Read the staking params (latest version), k and the light client's base/tip from the chain."""
    from btc_staking.params import StakingParams

    reply = client.query(client.contracts.btc_staking, {"params": {}})
    try:
        latest = dict(reply["params_versions"][-1])
        latest.pop("version", None)
        params = StakingParams.from_dict(latest)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ChainError(f"the registry's params reply is not usable: {exc}", transient=False) from exc
    return ChainInfo(chain_id=client.ledger.network_config.chain_id, params=params,
                     k=int(params.confirmation_depth), light_client_base=light_client_base_height(client),
                     light_client_tip=client.light_client_tip())


def light_client_genesis(backend: BitcoinBackendLike, height: int | None = None) -> dict[str, Any]:
    """The ``btc_light_client`` genesis section for a chain starting now: the backend's block at
    ``height`` (default: its tip) as the trusted base."""
    h = backend.get_block_count() if height is None else height
    if not 0 <= h <= backend.get_block_count():
        raise InvalidInputError(f"base height {h} is not on the backend's chain")
    header = bytes(backend.get_block_header(backend.get_block_hash(h)))
    return {"base": {"height": h, "header": header.hex()}}


def build_service(backend: BitcoinBackendLike, chain_url: str, store_path: str | Path, *,
                  mnemonic: str | None = None, private_key: bytes | str | None = None, wallet: Any = None,
                  chain_id: str | None = None, denom: str = DEFAULT_DENOM, gas_price: float = DEFAULT_GAS_PRICE,
                  start_height: int | None = None, poll_interval: float = 1.0,
                  **service_kw: Any) -> CheckpointService:
    """A :class:`CheckpointService` for ``backend`` and the chain at ``chain_url``.

    The signer is ``wallet`` (a cosmpy wallet) or built from ``mnemonic`` / ``private_key``.
    Params and k come from the chain; following starts at ``start_height`` or, by
    default, at the light client's base (nothing below it can be proven)."""
    if wallet is None:
        wallet = make_wallet(mnemonic=mnemonic, private_key=private_key)
    elif mnemonic is not None or private_key is not None:
        raise InvalidInputError("give a wallet or a key, not both")
    client = connect(chain_url, chain_id=chain_id, denom=denom, gas_price=gas_price)
    info = chain_info(client)
    start = start_height if start_height is not None else (info.light_client_base or 0)
    return CheckpointService(backend, client, store_path, info.params, info.k, wallet, poll_interval,
                             start_height=start, **service_kw)


def run(service: CheckpointService, stop_event: threading.Event, max_rounds: int | None = None) -> int:
    """Run rounds every ``poll_interval`` until ``stop_event`` is set (or ``max_rounds``); returns rounds."""
    if max_rounds is not None and max_rounds < 0:
        raise InvalidInputError("max_rounds must be >= 0")
    return service.run_forever(stop_event, max_rounds)


# ---------------------------------------------------------------------------- process entry point
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m checkpoint.runner", description=__doc__.split("\n\n")[0])
    p.add_argument("--btc-rpc", required=True, help="Bitcoin JSON-RPC URL (127.0.0.1)")
    p.add_argument("--btc-user", default="", help="RPC user")
    p.add_argument("--btc-password-env", default="BTCMESH_BTC_RPC_PASSWORD",
                   help="environment variable holding the RPC password")
    p.add_argument("--btc-dialect", default="auto", choices=("auto", "btcd", "bitcoind"))
    p.add_argument("--chain-rest", required=True, help="chain REST URL (cosmpy rest+http://... accepted)")
    p.add_argument("--store", type=Path, required=True, help="SQLite state file")
    p.add_argument("--private-key-file", type=Path, help="file with the signer's 32-byte key as hex")
    p.add_argument("--start-height", type=int, default=None)
    p.add_argument("--poll", type=float, default=1.0, help="seconds between rounds")
    p.add_argument("--max-rounds", type=int, default=None, help="stop after this many rounds")
    p.add_argument("--gas-price", type=float, default=DEFAULT_GAS_PRICE)
    p.add_argument("--denom", default=DEFAULT_DENOM)
    p.add_argument("--report", action="store_true", help="print every round's report as one JSON line")
    p.add_argument("--attest-batch", type=int, default=25, help="attestations per chain tx (1 = one per tx)")
    p.add_argument("--pipeline-depth", type=int, default=4, help="batched txs in flight before waiting")
    return p


def main(argv: list[str] | None = None) -> int:
    """Process entry point; returns the exit status."""
    from regtest.backend import BackendError
    from regtest.rpc import RpcBackend

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()  # SIGTERM / SIGINT while starting up also ends the process cleanly
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: stop.set())
    key: str | None = None
    mnemonic = os.environ.get("BTCMESH_CHECKPOINT_MNEMONIC")
    if args.private_key_file is not None:
        key = args.private_key_file.read_text().strip()
    elif os.environ.get("BTCMESH_CHECKPOINT_KEY"):
        key = os.environ["BTCMESH_CHECKPOINT_KEY"].strip()
    if key is not None:
        mnemonic = None
    try:
        backend = RpcBackend(args.btc_rpc, args.btc_user, os.environ.get(args.btc_password_env, ""),
                             dialect=args.btc_dialect)
    except (BackendError, OSError, ValueError) as exc:
        print(f"checkpoint: Bitcoin RPC did not answer: {exc}", file=sys.stderr)
        return 2
    try:
        service = build_service(backend, args.chain_rest, args.store, mnemonic=mnemonic, private_key=key,
                                start_height=args.start_height, poll_interval=args.poll,
                                gas_price=args.gas_price, denom=args.denom, attest_batch=args.attest_batch,
                                pipeline_depth=args.pipeline_depth)
    except (ChainError, InvalidInputError) as exc:
        print(f"checkpoint: {exc}", file=sys.stderr)
        backend.close()
        return 2
    rounds = 0
    try:
        while not stop.is_set() and (args.max_rounds is None or rounds < args.max_rounds):
            ok = True
            try:
                rep = service.run_once()
                if args.report:
                    print(json.dumps(rep.__dict__, sort_keys=True), flush=True)
            except Exception as exc:  # noqa: BLE001 - a round must never kill the loop
                ok = False
                log.warning("checkpoint round failed: %s: %s", type(exc).__name__, exc)
            rounds += 1
            stop.wait(service.next_round_delay(ok))  # exponential with jitter after failures
    finally:
        service.close()
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
