"""Decoding and signature verification of cosmpy-built txs (TxRaw, SIGN_MODE_DIRECT, secp256k1).

A tx is accepted by :func:`decode_tx` only if it is structurally sound; :func:`verify_signature`
checks one signer's 64-byte compact ECDSA signature (low-S) over sha256(SignDoc).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import coincurve
from coincurve.ecdsa import cdata_to_der, deserialize_compact
from cosmpy.crypto.address import Address
from cosmpy.protos.cosmos.bank.v1beta1.tx_pb2 import MsgSend
from cosmpy.protos.cosmos.crypto.secp256k1.keys_pb2 import PubKey as Secp256k1PubKey
from cosmpy.protos.cosmos.tx.signing.v1beta1.signing_pb2 import SignMode
from cosmpy.protos.cosmos.tx.v1beta1.tx_pb2 import AuthInfo, SignDoc, TxBody, TxRaw
from cosmpy.protos.cosmwasm.wasm.v1.tx_pb2 import MsgExecuteContract
from google.protobuf.message import DecodeError

from .errors import InvalidRequestError, TxDecodeError, UnauthorizedError

__all__ = [
    "MSG_SEND_URL",
    "MSG_EXECUTE_URL",
    "SECP256K1_PUBKEY_URL",
    "DecodedMsg",
    "DecodedTx",
    "decode_tx",
    "tx_hash",
    "pubkey_address",
    "verify_signature",
    "tx_to_json",
]

MSG_SEND_URL = "/cosmos.bank.v1beta1.MsgSend"
MSG_EXECUTE_URL = "/cosmwasm.wasm.v1.MsgExecuteContract"
SECP256K1_PUBKEY_URL = "/cosmos.crypto.secp256k1.PubKey"
MAX_TX_BYTES = 1 << 20
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@dataclass
class DecodedMsg:
    """One message: its type URL, signer address and decoded fields."""

    type_url: str
    signer: str
    proto: Any
    # MsgExecuteContract only:
    contract: str = ""
    msg_json: Any = None
    funds: list[dict[str, str]] = field(default_factory=list)


@dataclass
class SignerInfo:
    """One signer: compressed pubkey, claimed sequence and signature."""

    pubkey: bytes | None
    sequence: int
    signature: bytes


@dataclass
class DecodedTx:
    """A structurally valid tx."""

    raw: bytes
    tx_raw: TxRaw
    body: TxBody
    auth_info: AuthInfo
    msgs: list[DecodedMsg]
    signers: list[str]
    signer_infos: list[SignerInfo]
    fee: list[tuple[str, int]]
    gas_limit: int
    memo: str
    timeout_height: int

    @property
    def hash(self) -> str:
        """Upper-case hex sha256 of the raw bytes (CometBFT tx hash)."""
        return tx_hash(self.raw)


def tx_hash(tx_bytes: bytes) -> str:
    """CometBFT tx hash: upper-case hex sha256."""
    return hashlib.sha256(tx_bytes).hexdigest().upper()


def pubkey_address(pubkey33: bytes, prefix: str) -> str:
    """bech32(prefix, ripemd160(sha256(pubkey33)))."""
    if type(pubkey33) is bytes and type(prefix) is str:
        return _pubkey_address_cached(pubkey33, prefix)
    return _pubkey_address(pubkey33, prefix)


def _pubkey_address(pubkey33: bytes, prefix: str) -> str:
    sha = hashlib.sha256(pubkey33).digest()
    return str(Address(hashlib.new("ripemd160", sha).digest(), prefix=prefix))


_pubkey_address_cached = lru_cache(maxsize=8192)(_pubkey_address)  # once per signer per tx otherwise


def _coins(coins: Any) -> list[dict[str, str]]:
    out = []
    for c in coins:
        try:
            amt = int(c.amount)
        except ValueError as exc:
            raise TxDecodeError(f"invalid coin amount {c.amount!r}") from exc
        if amt < 0 or not c.denom:
            raise TxDecodeError(f"invalid coin {c.amount}{c.denom}")
        out.append({"denom": c.denom, "amount": str(amt)})
    return out


def _decode_msg(any_msg: Any) -> DecodedMsg:
    url = any_msg.type_url
    try:
        if url == MSG_SEND_URL:
            m = MsgSend.FromString(any_msg.value)
            return DecodedMsg(url, m.from_address, m, funds=_coins(m.amount))
        if url == MSG_EXECUTE_URL:
            m = MsgExecuteContract.FromString(any_msg.value)
            try:
                msg_json = json.loads(m.msg.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise TxDecodeError(f"MsgExecuteContract.msg is not valid JSON: {exc}") from exc
            return DecodedMsg(url, m.sender, m, contract=m.contract, msg_json=msg_json, funds=_coins(m.funds))
    except DecodeError as exc:
        raise TxDecodeError(f"cannot decode {url}: {exc}") from exc
    raise TxDecodeError(f"unsupported message type {url!r} (supported: {MSG_SEND_URL}, {MSG_EXECUTE_URL})")


def decode_tx(tx_bytes: bytes) -> DecodedTx:
    """Decode TxRaw → body/auth info/messages; raises TxDecodeError / UnauthorizedError on malformed txs."""
    if not isinstance(tx_bytes, (bytes, bytearray)) or not tx_bytes:
        raise TxDecodeError("empty tx bytes")
    if len(tx_bytes) > MAX_TX_BYTES:
        raise TxDecodeError(f"tx too large: {len(tx_bytes)} > {MAX_TX_BYTES} bytes")
    tx_bytes = bytes(tx_bytes)
    try:
        raw = TxRaw.FromString(tx_bytes)
        if raw.SerializeToString() != tx_bytes:
            raise TxDecodeError("tx bytes are not a canonical TxRaw encoding")
        body = TxBody.FromString(raw.body_bytes)
        auth = AuthInfo.FromString(raw.auth_info_bytes)
    except DecodeError as exc:
        raise TxDecodeError(f"tx parse error: {exc}") from exc
    if not raw.body_bytes or not raw.auth_info_bytes:
        raise TxDecodeError("tx parse error: missing body or auth info")
    if not body.messages:
        raise TxDecodeError("tx has no messages")
    if body.extension_options or body.non_critical_extension_options:
        raise TxDecodeError("tx extension options are not supported")
    msgs = [_decode_msg(m) for m in body.messages]
    signers: list[str] = []
    for m in msgs:
        if not m.signer:
            raise InvalidRequestError(f"{m.type_url}: missing sender")
        if m.signer not in signers:
            signers.append(m.signer)
    if len(auth.signer_infos) != len(signers):
        raise UnauthorizedError(
            f"wrong number of signer infos: got {len(auth.signer_infos)}, expected {len(signers)} ({', '.join(signers)})"
        )
    if len(raw.signatures) != len(signers):
        raise UnauthorizedError(f"wrong number of signatures: got {len(raw.signatures)}, expected {len(signers)}")
    infos: list[SignerInfo] = []
    for si, sig in zip(auth.signer_infos, raw.signatures):
        if not si.mode_info.HasField("single") or si.mode_info.single.mode != SignMode.SIGN_MODE_DIRECT:
            raise UnauthorizedError("only SIGN_MODE_DIRECT single signers are supported")
        pk: bytes | None = None
        if si.HasField("public_key"):
            if si.public_key.type_url != SECP256K1_PUBKEY_URL:
                raise UnauthorizedError(f"unsupported public key type {si.public_key.type_url!r}")
            try:
                pk = Secp256k1PubKey.FromString(si.public_key.value).key
            except DecodeError as exc:
                raise TxDecodeError(f"cannot decode public key: {exc}") from exc
            if len(pk) != 33 or pk[0] not in (2, 3):
                raise UnauthorizedError("public key must be a 33-byte compressed secp256k1 key")
        infos.append(SignerInfo(pk, int(si.sequence), bytes(sig)))
    fee = []
    for c in _coins(auth.fee.amount):
        fee.append((c["denom"], int(c["amount"])))
    return DecodedTx(
        raw=tx_bytes,
        tx_raw=raw,
        body=body,
        auth_info=auth,
        msgs=msgs,
        signers=signers,
        signer_infos=infos,
        fee=fee,
        gas_limit=int(auth.fee.gas_limit),
        memo=body.memo,
        timeout_height=int(body.timeout_height),
    )


def verify_signature(tx: DecodedTx, index: int, pubkey33: bytes, chain_id: str, account_number: int) -> None:
    """Verify signer ``index``'s 64-byte low-S ECDSA signature over sha256(SignDoc); raises UnauthorizedError."""
    sig = tx.signer_infos[index].signature
    if len(sig) != 64:
        raise UnauthorizedError(f"signature must be 64 bytes (r||s), got {len(sig)}")
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    if not (0 < r < _N and 0 < s < _N):
        raise UnauthorizedError("signature verification failed: r or s out of range")
    if s > _N // 2:
        raise UnauthorizedError("signature verification failed: high-S signature (must be canonical low-S)")
    doc = SignDoc(
        body_bytes=tx.tx_raw.body_bytes,
        auth_info_bytes=tx.tx_raw.auth_info_bytes,
        chain_id=chain_id,
        account_number=account_number,
    ).SerializeToString()
    try:
        ok = coincurve.PublicKey(pubkey33).verify(cdata_to_der(deserialize_compact(sig)), doc)
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise UnauthorizedError(
            f"signature verification failed; please verify account number ({account_number}) and chain-id ({chain_id})"
        )


def _any_to_json(type_url: str, m: DecodedMsg | None) -> dict[str, Any]:
    if m is None:
        return {"@type": type_url}
    if type_url == MSG_SEND_URL:
        p = m.proto
        return {"@type": type_url, "from_address": p.from_address, "to_address": p.to_address, "amount": m.funds}
    p = m.proto
    return {"@type": type_url, "sender": p.sender, "contract": p.contract, "msg": m.msg_json, "funds": m.funds}


def tx_to_json(tx: DecodedTx) -> dict[str, Any]:
    """Cosmos REST JSON of a tx (``cosmos.tx.v1beta1.Tx``); MsgExecuteContract.msg as a JSON object,
    which is how the SDK's REST gateway renders wasm messages (cosmpy re-encodes it)."""
    auth = tx.auth_info
    signer_infos = []
    for si, info in zip(auth.signer_infos, tx.signer_infos):
        pk = None
        if info.pubkey is not None:
            pk = {"@type": SECP256K1_PUBKEY_URL, "key": base64.b64encode(info.pubkey).decode()}
        signer_infos.append(
            {
                "public_key": pk,
                "mode_info": {"single": {"mode": "SIGN_MODE_DIRECT"}},
                "sequence": str(info.sequence),
            }
        )
    return {
        "body": {
            "messages": [_any_to_json(m.type_url, m) for m in tx.msgs],
            "memo": tx.memo,
            "timeout_height": str(tx.timeout_height),
            "extension_options": [],
            "non_critical_extension_options": [],
        },
        "auth_info": {
            "signer_infos": signer_infos,
            "fee": {
                "amount": [{"denom": d, "amount": str(a)} for d, a in tx.fee],
                "gas_limit": str(tx.gas_limit),
                "payer": auth.fee.payer,
                "granter": auth.fee.granter,
            },
        },
        "signatures": [base64.b64encode(i.signature).decode() for i in tx.signer_infos],
    }
