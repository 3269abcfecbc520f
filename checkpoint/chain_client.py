"""Chain-client abstraction over cosmpy's ``LedgerClient``.

Every chain module is a built-in CosmWasm-style contract: transactions are
``cosmwasm.wasm.v1.MsgExecuteContract{sender, contract, msg=<json>}`` signed by
a cosmpy ``LocalWallet`` (SIGN_MODE_DIRECT); queries are wasm smart queries.

Failures are normalised to :class:`checkpoint.errors.ChainError`:
``transient=True`` for connection problems, timeouts, sequence races, a full
mempool or a light client that has not caught up yet; ``transient=False`` for
deterministic rejections (bad proof, wrong script, already registered, bad
signature, unknown delegation, ...), which the service dead-letters.
"""

from __future__ import annotations

import ast
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cosmpy.aerial.client import LedgerClient
from cosmpy.aerial.exceptions import NotFoundError
from cosmpy.aerial.tx import SigningCfg, Transaction, TxFee
from cosmpy.aerial.wallet import Wallet
from cosmpy.protos.cosmos.tx.v1beta1.service_pb2 import BroadcastMode, BroadcastTxRequest
from cosmpy.protos.cosmwasm.wasm.v1.query_pb2 import QuerySmartContractStateRequest
from cosmpy.protos.cosmwasm.wasm.v1.tx_pb2 import MsgExecuteContract

from checkpoint.errors import ChainError, InvalidInputError

# Cosmos SDK codes that a retry of the same request may clear.
TRANSIENT_CODES = frozenset({19, 20, 32})  # tx in mempool cache, mempool full, wrong sequence
# Module reasons that only mean "the light client has not caught up yet".
TRANSIENT_REASONS = (
    "not deep enough", "not k-deep", "insufficient confirmations", "not yet deep",
    "header not found", "unknown header", "not in light client", "unknown block",
    "not on the btc main chain",
)
_HTTP_ERROR = re.compile(r"Response: (\d{3}), (b(['\"]).*\3)", re.S)


def query_account(ledger: LedgerClient, address: Any) -> Any:
    """``ledger.query_account(address)``; an account the chain has never seen (never funded) is a
    ``ChainError`` saying so in one line instead of cosmpy's HTTP 404 text."""
    try:
        return ledger.query_account(address)
    except Exception as exc:
        text = str(exc)
        if "account" in text and "not found" in text:
            raise ChainError(f"account {address} not found on chain: fund it first", transient=True) from None
        raise


def _query_failure(exc: Exception) -> tuple[int | None, str]:
    """(HTTP status, message) of a failed cosmpy REST query, or (None, text) when there was no answer."""
    text = str(exc)
    m = _HTTP_ERROR.search(text)
    if m is None:
        return None, text
    try:
        body = ast.literal_eval(m.group(2)).decode("utf-8", "replace")  # cosmpy quotes the raw body bytes
    except (ValueError, SyntaxError):
        return int(m.group(1)), m.group(2)
    try:
        reply = json.loads(body)
    except ValueError:
        return int(m.group(1)), body
    return int(m.group(1)), str(reply.get("message", body)) if isinstance(reply, dict) else body


@dataclass(frozen=True)
class ChainContracts:
    """Bech32 addresses of the built-in contracts the service talks to."""

    light_client: str
    btc_staking: str


@dataclass
class ChainClient:
    """Thin, typed wrapper of ``LedgerClient`` for the checkpoint service."""

    ledger: LedgerClient
    contracts: ChainContracts
    gas_limit: int = 2_000_000
    fee_amount: str | None = None
    tx_timeout_s: float = 30.0
    poll_interval_s: float = 0.1
    transient_reasons: tuple[str, ...] = field(default=TRANSIENT_REASONS)

    # ------------------------------------------------------------------ txs
    def insert_headers(self, headers: Sequence[bytes], wallet: Wallet) -> str:
        """Relay 80-byte headers (parent first) to the BTC light client; returns the chain tx hash."""
        if not headers:
            raise InvalidInputError("no headers to insert")
        for h in headers:
            if len(h) != 80:
                raise InvalidInputError(f"header must be 80 bytes, got {len(h)}")
        return self.execute(self.contracts.light_client,
                            {"insert_headers": {"headers": [bytes(h).hex() for h in headers]}}, wallet)

    def submit_delegation(self, delegation: dict[str, Any], wallet: Wallet) -> str:
        """Send ``create_btc_delegation`` with the given fields; returns the chain tx hash."""
        return self.execute(self.contracts.btc_staking, {"create_btc_delegation": delegation}, wallet)

    def submit_undelegate(self, undelegation: dict[str, Any], wallet: Wallet) -> str:
        """Send ``btc_undelegate`` with the given fields; returns the chain tx hash."""
        return self.execute(self.contracts.btc_staking, {"btc_undelegate": undelegation}, wallet)

    def add_inclusion_proof(self, body: dict[str, Any], wallet: Wallet) -> str:
        """Send ``add_btc_delegation_inclusion_proof`` (for a delegation registered without one)."""
        return self.execute(self.contracts.btc_staking, {"add_btc_delegation_inclusion_proof": body}, wallet)

    def report_withdrawal(self, withdrawal: dict[str, Any], wallet: Wallet) -> str:
        """Send ``report_withdrawal`` (a proven timelock spend); returns the chain tx hash."""
        return self.execute(self.contracts.btc_staking, {"report_withdrawal": withdrawal}, wallet)

    def report_slashing(self, slashing: dict[str, Any], wallet: Wallet) -> str:
        """Send ``report_btc_slashing`` (a proven slashing tx); returns the chain tx hash."""
        return self.execute(self.contracts.btc_staking, {"report_btc_slashing": slashing}, wallet)

    def execute(self, contract: str, msg: dict[str, Any], wallet: Wallet) -> str:
        """Sign, broadcast and wait for one ``MsgExecuteContract``; raise ``ChainError`` on failure."""
        tx_hash, _ = self.broadcast_msgs([(contract, msg)], wallet)
        return self._wait(tx_hash)

    def broadcast_msgs(self, msgs: Sequence[tuple[str, dict[str, Any]]], wallet: Wallet,
                       sequence: int | None = None) -> tuple[str, int]:
        """Sign and broadcast (CheckTx only, no wait) one tx carrying one ``MsgExecuteContract`` per
        ``(contract, msg)``; the chain applies all of them or none. ``sequence`` (default: the account's
        committed one) lets a caller pipeline several txs before the first commits. Gas and fee scale with
        the number of messages. Returns (tx hash, the next sequence)."""
        if not msgs:
            raise InvalidInputError("no messages to broadcast")
        tx = Transaction()
        for contract, msg in msgs:
            tx.add_message(MsgExecuteContract(sender=str(wallet.address()), contract=contract,
                                              msg=json.dumps(msg, sort_keys=True).encode()))
        gas = self.gas_limit * len(msgs)
        try:
            account = query_account(self.ledger, wallet.address())
            seq = account.sequence if sequence is None else sequence
            amount = self._fee(gas, len(msgs))
            tx.seal(SigningCfg.direct(wallet.public_key(), seq), fee=TxFee(amount=amount, gas_limit=gas))
            tx.sign(wallet.signer(), self.ledger.network_config.chain_id, account.number)
            tx.complete()
            resp = self.ledger.txs.BroadcastTx(BroadcastTxRequest(
                tx_bytes=tx.tx.SerializeToString(), mode=BroadcastMode.BROADCAST_MODE_SYNC))
        except ChainError:
            raise
        except Exception as exc:  # connection refused, HTTP 5xx, bad JSON: retry later
            raise ChainError(f"chain unreachable while broadcasting: {exc}", transient=True) from exc
        first = self.ledger._parse_tx_response(resp.tx_response)
        if first.code != 0:
            raise self._rejection(first.code, first.raw_log)
        return first.hash, seq + 1

    def wait_tx(self, tx_hash: str) -> str:
        """Wait until a broadcast tx is committed; raise ``ChainError`` if it failed or timed out."""
        return self._wait(tx_hash)

    def _fee(self, gas: int, n_msgs: int) -> str:
        if self.fee_amount is None:
            return self.ledger.estimate_fee_from_gas(gas)
        m = re.fullmatch(r"(\d+)(\D.*)", self.fee_amount.strip())
        return self.fee_amount if m is None or n_msgs == 1 else f"{int(m.group(1)) * n_msgs}{m.group(2)}"

    def _wait(self, tx_hash: str) -> str:
        deadline = time.monotonic() + self.tx_timeout_s
        while True:
            try:
                result = self.ledger.query_tx(tx_hash)
            except NotFoundError:
                result = None
            except Exception as exc:
                raise ChainError(f"chain unreachable while waiting for {tx_hash}: {exc}", transient=True) from exc
            if result is not None:
                if result.code != 0:
                    raise self._rejection(result.code, result.raw_log)
                return tx_hash
            if time.monotonic() >= deadline:
                raise ChainError(f"tx {tx_hash} not included within {self.tx_timeout_s}s", transient=True)
            time.sleep(self.poll_interval_s)

    def _rejection(self, code: int, raw_log: str) -> ChainError:
        low = raw_log.lower()
        transient = code in TRANSIENT_CODES or any(r in low for r in self.transient_reasons)
        return ChainError(raw_log or f"rejected with code {code}", code=code, transient=transient)

    # ------------------------------------------------------------------ queries
    def query(self, contract: str, msg: dict[str, Any]) -> Any:
        """Smart-query a built-in contract; raise transient ``ChainError`` when unreachable."""
        req = QuerySmartContractStateRequest(address=contract, query_data=json.dumps(msg, sort_keys=True).encode())
        try:
            resp = self.ledger.wasm.SmartContractState(req)
        except Exception as exc:
            status, message = _query_failure(exc)
            if status is not None and 400 <= status < 500:  # the contract answered with an error
                raise ChainError(f"query {next(iter(msg))}: {message}", code=status, transient=False) from exc
            raise ChainError(f"query {next(iter(msg))} failed: {exc}", transient=True) from exc
        return json.loads(resp.data) if resp.data else None

    def delegation(self, staking_tx_hash: str) -> dict[str, Any] | None:
        """The chain's delegation record for a staking txid (display hex), or None."""
        try:
            res = self.query(self.contracts.btc_staking, {"delegation": {"staking_tx_hash": staking_tx_hash}})
        except ChainError as exc:
            if not exc.transient and "not found" in exc.reason:
                return None
            raise
        if isinstance(res, dict) and "delegation" in res:
            res = res["delegation"]
        return res if isinstance(res, dict) and res else None

    def delegations(self, staking_tx_hashes: Sequence[str], page: int = 100) -> dict[str, dict[str, Any] | None]:
        """The chain's records for many staking txids (display hex) at once: one ``delegations_by_hash`` query
        per ``page``; a chain without that query is asked one delegation at a time."""
        out: dict[str, dict[str, Any] | None] = {}
        hashes = list(staking_tx_hashes)
        for start in range(0, len(hashes), page):
            part = hashes[start:start + page]
            try:
                res = self.query(self.contracts.btc_staking, {"delegations_by_hash": {"staking_tx_hashes": part}})
            except ChainError as exc:
                if exc.transient:
                    raise
                out.update((h, self.delegation(h)) for h in part)  # an older chain: no batch query
                continue
            records = res.get("delegations") if isinstance(res, dict) else None
            if not isinstance(records, list) or len(records) != len(part):
                raise ChainError("delegations_by_hash: malformed reply", transient=True)
            out.update((h, r if isinstance(r, dict) and r else None) for h, r in zip(part, records))
        return out

    def is_registered(self, staking_tx_hash: str) -> bool:
        """Whether the chain already has a delegation for this staking txid."""
        return self.delegation(staking_tx_hash) is not None

    def light_client_tip(self) -> tuple[int, str] | None:
        """(height, display-hex hash) of the light client's tip, or None when it has none."""
        res = self.query(self.contracts.light_client, {"tip": {}})
        if not isinstance(res, dict) or res.get("hash") is None:
            return None
        return int(res["height"]), str(res["hash"])

    def light_client_header(self, hash_hex: str) -> dict[str, Any] | None:
        """``{height, hash, header, main_chain}`` of a header the light client knows (any branch), or None."""
        res = self.query(self.contracts.light_client, {"header_by_hash": {"hash": hash_hex}})
        if not isinstance(res, dict) or res.get("hash") is None:
            return None
        return res

    def light_client_hash_at(self, height: int) -> str | None:
        """Display-hex hash of the light client's main-chain header at ``height``, or None."""
        res = self.query(self.contracts.light_client, {"header": {"height": height}})
        if not isinstance(res, dict) or res.get("hash") is None:
            return None
        return str(res["hash"])
