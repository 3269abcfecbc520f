"""Exact integer math mirroring cosmwasm-std ``Uint128``/``Decimal`` and mesh-sync ``ValueRange``.

No floats anywhere: ``Dec`` is an 18-digit fixed-point number stored as an integer
(like ``cosmwasm_std::Decimal``) and serialised as its canonical string ("0.1").
``Uint128`` values are Python ints, serialised as decimal strings ("100").
"""

from __future__ import annotations

import decimal as _decimal
from dataclasses import dataclass
from typing import Any

from .errors import InsufficientBalance, InvalidAmount, InvalidDecimal, InvalidMessage

UINT128_MAX = (1 << 128) - 1
DEC_FRACTIONAL = 10**18


def parse_uint(value: Any, field: str = "amount") -> int:
    """Parse a Uint128 given as a decimal string (upstream JSON) or an int."""
    if isinstance(value, bool):
        raise InvalidAmount(f"{field}: expected Uint128, got bool")
    if isinstance(value, int):
        out = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        out = int(value)
    else:
        raise InvalidAmount(f"{field}: expected Uint128 string, got {value!r}")
    if out < 0 or out > UINT128_MAX:
        raise InvalidAmount(f"{field}: {out} out of Uint128 range")
    return out


class Dec:
    """Non-negative 18-decimal fixed-point number (``cosmwasm_std::Decimal``)."""

    __slots__ = ("atomics",)

    def __init__(self, atomics: int) -> None:
        if not isinstance(atomics, int) or isinstance(atomics, bool) or atomics < 0:
            raise InvalidDecimal(f"invalid decimal atomics {atomics!r}")
        self.atomics = atomics

    @classmethod
    def parse(cls, value: Any, field: str = "decimal") -> "Dec":
        """Parse "0.1"-style strings (or an existing ``Dec``); ints are whole numbers."""
        if isinstance(value, Dec):
            return value
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise InvalidDecimal(f"{field}: expected decimal string, got {value!r}")
        if isinstance(value, int):
            return cls(value * DEC_FRACTIONAL) if value >= 0 else cls(-1)
        text = value.strip()
        if not text or not all(c.isdigit() or c == "." for c in text) or text.count(".") > 1:
            raise InvalidDecimal(f"{field}: invalid decimal {value!r}")
        whole, _, frac = text.partition(".")
        if len(frac) > 18 or (not whole and not frac):
            raise InvalidDecimal(f"{field}: invalid decimal {value!r} (max 18 fractional digits)")
        atomics = int(whole or "0") * DEC_FRACTIONAL + int((frac or "0").ljust(18, "0"))
        return cls(atomics)

    @classmethod
    def percent(cls, pct: int) -> "Dec":
        """``Decimal::percent``."""
        return cls(pct * DEC_FRACTIONAL // 100)

    @classmethod
    def one(cls) -> "Dec":
        return cls(DEC_FRACTIONAL)

    @classmethod
    def zero(cls) -> "Dec":
        return cls(0)

    @classmethod
    def from_ratio(cls, num: int, den: int) -> "Dec":
        """``Decimal::from_ratio`` (floor)."""
        if den == 0:
            raise InvalidDecimal("division by zero")
        return cls(num * DEC_FRACTIONAL // den)

    def mul_floor(self, amount: int) -> int:
        """``Uint128::mul_floor`` (also what ``Uint128 * Decimal`` does)."""
        return amount * self.atomics // DEC_FRACTIONAL

    def mul_ceil(self, amount: int) -> int:
        """``Uint128::mul_ceil``."""
        return -((-amount * self.atomics) // DEC_FRACTIONAL)

    def inv(self) -> "Dec":
        """``Decimal::inv`` (floor); error on zero."""
        if self.atomics == 0:
            raise InvalidDecimal("cannot invert zero")
        return Dec(DEC_FRACTIONAL * DEC_FRACTIONAL // self.atomics)

    def __add__(self, other: "Dec") -> "Dec":
        return Dec(self.atomics + other.atomics)

    def __sub__(self, other: "Dec") -> "Dec":
        if other.atomics > self.atomics:
            raise InvalidDecimal("decimal subtraction overflow")
        return Dec(self.atomics - other.atomics)

    def __mul__(self, other: "Dec") -> "Dec":
        return Dec(self.atomics * other.atomics // DEC_FRACTIONAL)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dec) and other.atomics == self.atomics

    def __lt__(self, other: "Dec") -> bool:
        return self.atomics < other.atomics

    def __le__(self, other: "Dec") -> bool:
        return self.atomics <= other.atomics

    def __hash__(self) -> int:
        return hash(self.atomics)

    def __str__(self) -> str:
        whole, frac = divmod(self.atomics, DEC_FRACTIONAL)
        if frac == 0:
            return str(whole)
        return f"{whole}.{str(frac).rjust(18, '0').rstrip('0')}"

    def __repr__(self) -> str:
        return f"Dec('{self}')"

    def to_decimal(self) -> _decimal.Decimal:
        """Exact ``decimal.Decimal`` view (for display only)."""
        return _decimal.Decimal(str(self))


@dataclass
class ValueRange:
    """``mesh_sync::ValueRange``: [low, high] bounds of a value with in-flight txs.

    ``prepare_add`` raises ``high`` (the value may grow), ``commit_add`` raises ``low``;
    ``prepare_sub`` lowers ``low``, ``commit_sub`` lowers ``high``; rollbacks undo.
    """

    low: int = 0
    high: int = 0

    @classmethod
    def val(cls, v: int) -> "ValueRange":
        return cls(v, v)

    def is_exact(self) -> bool:
        return self.low == self.high

    def prepare_add(self, amount: int, maximum: int | None) -> None:
        if maximum is not None and self.high + amount > maximum:
            raise InsufficientBalance(f"range overflow: {self.high} + {amount} > {maximum}")
        self.high += amount

    def commit_add(self, amount: int) -> None:
        self.low += amount

    def rollback_add(self, amount: int) -> None:
        self.high -= amount

    def commit_add_saturating(self, amount: int) -> None:
        """``commit_add`` that stays a valid range when a slash cut ``high`` meanwhile (upstream)."""
        self.low += amount
        self.high = max(self.high, self.low)

    def rollback_add_saturating(self, amount: int) -> None:
        """``rollback_add`` that stays a valid range after a slash (upstream)."""
        self.high = max(self.high - amount, self.low)

    def rollback_sub_saturating(self, amount: int) -> None:
        """``rollback_sub`` that stays a valid range after a slash (upstream)."""
        self.low = min(self.low + amount, self.high)

    def prepare_sub(self, amount: int, minimum: int | None) -> None:
        floor = minimum or 0
        if self.low < amount + floor:
            raise InsufficientBalance(f"range underflow: {self.low} - {amount} < {floor}")
        self.low -= amount

    def commit_sub(self, amount: int) -> None:
        self.high -= amount

    def rollback_sub(self, amount: int) -> None:
        self.low += amount

    def add(self, amount: int, maximum: int | None) -> None:
        """Add to both ends (upstream ``ValueRange::add``)."""
        if maximum is not None and self.high + amount > maximum:
            raise InsufficientBalance(f"range overflow: {self.high} + {amount} > {maximum}")
        self.low += amount
        self.high += amount

    def sub(self, amount: int, minimum: int | None) -> None:
        """Subtract from both ends (upstream ``ValueRange::sub``)."""
        floor = minimum or 0
        if self.low < amount + floor:
            raise InsufficientBalance(f"range underflow: {self.low} - {amount} < {floor}")
        self.low -= amount
        self.high -= amount

    def to_json(self) -> dict:
        return {"low": str(self.low), "high": str(self.high)}

    @classmethod
    def from_json(cls, data: dict) -> "ValueRange":
        return cls(parse_uint(data["low"], "low"), parse_uint(data["high"], "high"))

    def copy(self) -> "ValueRange":
        return ValueRange(self.low, self.high)


def max_range(a: ValueRange, b: ValueRange) -> ValueRange:
    """``mesh_sync::max_range``: element-wise maximum."""
    return ValueRange(max(a.low, b.low), max(a.high, b.high))


def coin(amount: int, denom: str) -> dict:
    """A cosmwasm ``Coin`` in JSON form."""
    return {"denom": denom, "amount": str(amount)}


def parse_coin(value: Any, field: str = "amount") -> tuple[int, str]:
    """Parse a JSON ``Coin`` into ``(amount, denom)``."""
    if not isinstance(value, dict) or "denom" not in value or "amount" not in value:
        raise InvalidMessage(f"{field}: expected coin {{denom, amount}}, got {value!r}")
    denom = value["denom"]
    if not isinstance(denom, str) or not denom:
        raise InvalidMessage(f"{field}: invalid denom {denom!r}")
    return parse_uint(value["amount"], f"{field}.amount"), denom
