"""Query-parameter types: parsing and validation with clear messages.

Each type is an ``Annotated`` string whose validator normalises the value
(lowercase hex, x-only key) or raises ``ValueError`` with a readable reason;
the error handlers turn that into a 400 naming the parameter.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

from api.states import DelegationState

_HEX = re.compile(r"^[0-9a-fA-F]*$")
_SECP_P = 2**256 - 2**32 - 977


def _hex_bytes(value: str, what: str, sizes: tuple[int, ...]) -> bytes:
    if not _HEX.match(value):
        raise ValueError(f"not hex: {what} must contain only 0-9a-f characters")
    if len(value) % 2:
        raise ValueError(f"odd number of hex characters ({len(value)})")
    raw = bytes.fromhex(value)
    if len(raw) not in sizes:
        want = " or ".join(f"{n * 2}" for n in sizes)
        raise ValueError(f"expected {want} hex characters ({what}), got {len(value)}")
    return raw


def _is_on_curve(x: int) -> bool:
    """True if some point on secp256k1 has this x coordinate (BIP-340 lift_x)."""
    if x >= _SECP_P:
        return False
    y2 = (pow(x, 3, _SECP_P) + 7) % _SECP_P
    y = pow(y2, (_SECP_P + 1) // 4, _SECP_P)
    return y * y % _SECP_P == y2


def parse_tx_hash(value: str) -> str:
    """Validate a 32-byte txid in hex; return it lowercase."""
    _hex_bytes(value, "32-byte txid", (32,))
    return value.lower()


def parse_btc_pk(value: str) -> str:
    """Validate a BIP-340 x-only key (or 33-byte compressed key); return x-only lowercase hex."""
    raw = _hex_bytes(value, "32-byte x-only key or 33-byte compressed key", (32, 33))
    if len(raw) == 33:
        if raw[0] not in (2, 3):
            raise ValueError("33-byte key must start with 02 or 03")
        raw = raw[1:]
    if not _is_on_curve(int.from_bytes(raw, "big")):
        raise ValueError("not a valid secp256k1 public key")
    return raw.hex()


def encode_pagination_key(last_staking_tx_hash_hex: str) -> str:
    """Opaque cursor: URL-safe base64 (no padding) of the last returned staking txid."""
    return base64.urlsafe_b64encode(bytes.fromhex(last_staking_tx_hash_hex)).rstrip(b"=").decode()


def parse_pagination_key(value: str) -> str:
    """Decode a cursor from ``encode_pagination_key`` back to the txid hex."""
    if value == "":
        return ""
    if not re.fullmatch(r"[A-Za-z0-9_\-]+={0,2}", value):
        raise ValueError("not a pagination key returned by this API (bad characters)")
    padded = value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded)
    except (binascii.Error, ValueError):
        raise ValueError("not a pagination key returned by this API (bad base64)") from None
    if len(raw) != 32:
        raise ValueError("not a pagination key returned by this API (wrong length)")
    return raw.hex()


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


TxHashHex = Annotated[str, AfterValidator(parse_tx_hash)]
BtcPkHex = Annotated[str, AfterValidator(parse_btc_pk)]
PaginationKey = Annotated[str, AfterValidator(parse_pagination_key)]
StateFilter = Annotated[DelegationState, BeforeValidator(_upper)]
