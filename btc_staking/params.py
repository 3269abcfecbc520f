"""Babylon staking parameters (phase-2 `Params` plus confirmation depth and tag)."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import (
    DuplicateKeyError,
    InvalidAmountError,
    InvalidKeyError,
    InvalidParamsError,
    InvalidTimelockError,
)
from .keys import to_xonly, xonly_from_secret
from .tx import TxOut

__all__ = [
    "StakingParams",
    "mul_f64",
    "is_dust",
    "is_witness_program",
    "dust_threshold",
    "covenant_secret",
    "regtest_default_params",
    "SLASHING_RATE_DECIMALS",
    "check_slashing_rate",
]

MAX_UINT16 = 0xFFFF
MAX_SAT = 21_000_000 * 100_000_000
#: Babylon devnet default slashing script: P2PKH to hash160 = 0x01 * 20.
DEFAULT_SLASHING_PK_SCRIPT = bytes.fromhex("76a914" + "01" * 20 + "88ac")


def mul_f64(value: int, rate: Decimal | float | str) -> int:
    """btcutil Amount.MulF64: float64 product, +0.5, truncated toward zero (never Python round())."""
    f = float(value) * float(rate)
    return int(f - 0.5) if f < 0 else int(f + 0.5)


def is_witness_program(script: bytes) -> bool:
    """BIP-141 witness program: version opcode (OP_0, OP_1..OP_16) then one 2..40-byte push."""
    if not 4 <= len(script) <= 42:
        return False
    if script[0] != 0 and not 0x51 <= script[0] <= 0x60:
        return False
    return script[1] + 2 == len(script)


def is_dust(value: int, script_pubkey: bytes, min_relay_fee_per_kvb: int = 1000) -> bool:
    """btcd mempool.IsDust; OP_RETURN (null-data) outputs are never dust."""
    if script_pubkey[:1] == b"\x6a":
        return False
    size = len(TxOut(value, script_pubkey).serialize()) + 41
    size += 107 // 4 if is_witness_program(script_pubkey) else 107
    return value * 1000 // (3 * size) < min_relay_fee_per_kvb


def dust_threshold(script_pubkey: bytes) -> int:
    """Smallest non-dust value for this script (0 for OP_RETURN)."""
    lo, hi = 0, 100_000
    while lo < hi:
        mid = (lo + hi) // 2
        if is_dust(mid, script_pubkey):
            lo = mid + 1
        else:
            hi = mid
    return lo


#: Babylon ``IsSlashingRateValid``: a slashing rate in (0, 1) with at most 2 decimal places.
SLASHING_RATE_DECIMALS = 2


def check_slashing_rate(rate: Decimal | float | str) -> Decimal:
    """The rate as a Decimal if it is in (0, 1) at Babylon's precision (2 decimal places);
    InvalidParamsError otherwise (a finer rate is rejected, never rounded)."""
    try:
        r = Decimal(str(rate))
    except (InvalidOperation, ValueError) as exc:
        raise InvalidParamsError(f"slashing_rate is not a decimal: {rate!r}") from exc
    if not r.is_finite() or not Decimal(0) < r < Decimal(1):
        raise InvalidParamsError(f"slashing_rate must be in (0, 1), got {r}")
    scaled = r.scaleb(SLASHING_RATE_DECIMALS)
    if scaled != scaled.to_integral_value():
        raise InvalidParamsError(f"slashing_rate may have at most {SLASHING_RATE_DECIMALS} decimal places "
                                 f"(Babylon IsSlashingRateValid), got {r}")
    return r


def _int_in(name: str, v: Any, lo: int, hi: int) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise InvalidParamsError(f"{name} must be an int in [{lo}, {hi}], got {v!r}")


@dataclass(frozen=True)
class StakingParams:
    """Staking parameters. Covenant keys are normalised to 32-byte x-only form on construction."""

    covenant_pks: tuple[bytes, ...]
    covenant_quorum: int
    min_staking_value_sat: int
    max_staking_value_sat: int
    min_staking_time_blocks: int
    max_staking_time_blocks: int
    unbonding_time_blocks: int
    unbonding_fee_sat: int
    slashing_rate: Decimal
    slashing_pk_script: bytes
    min_slashing_tx_fee_sat: int
    confirmation_depth: int = 6
    tag: bytes = bytes.fromhex("01020304")
    #: First BTC height at which this params version applies (Babylon ``btc_activation_height``).
    btc_activation_height: int = 0

    def __post_init__(self) -> None:
        try:
            pks = tuple(to_xonly(k) for k in self.covenant_pks)
        except TypeError as exc:
            raise InvalidKeyError("covenant_pks must be a sequence of keys") from exc
        object.__setattr__(self, "covenant_pks", pks)
        try:
            rate = Decimal(str(self.slashing_rate))
        except (InvalidOperation, ValueError) as exc:
            raise InvalidParamsError(f"slashing_rate is not a decimal: {self.slashing_rate!r}") from exc
        object.__setattr__(self, "slashing_rate", rate)
        if not isinstance(self.slashing_pk_script, (bytes, bytearray)):
            raise InvalidParamsError("slashing_pk_script must be bytes")
        if not isinstance(self.tag, (bytes, bytearray)):
            raise InvalidParamsError("tag must be bytes")
        object.__setattr__(self, "slashing_pk_script", bytes(self.slashing_pk_script))
        object.__setattr__(self, "tag", bytes(self.tag))

    def validate(self) -> "StakingParams":
        """Check every rule of Babylon Params.Validate (spec §3.2); returns self or raises."""
        n = len(self.covenant_pks)
        if n == 0:
            raise InvalidParamsError("at least one covenant key is required")
        if len(set(self.covenant_pks)) != n:
            raise DuplicateKeyError("duplicate covenant keys")
        q = self.covenant_quorum
        _int_in("covenant_quorum", q, 1, n)
        if 2 * q <= n:
            raise InvalidParamsError(f"covenant quorum {q} must be more than half of {n} covenants")
        _int_in("min_staking_value_sat", self.min_staking_value_sat, 1, MAX_SAT)
        _int_in("max_staking_value_sat", self.max_staking_value_sat, self.min_staking_value_sat, MAX_SAT)
        _int_in("min_staking_time_blocks", self.min_staking_time_blocks, 1, MAX_UINT16)
        _int_in("max_staking_time_blocks", self.max_staking_time_blocks, self.min_staking_time_blocks, MAX_UINT16)
        _int_in("unbonding_time_blocks", self.unbonding_time_blocks, 1, MAX_UINT16)
        _int_in("unbonding_fee_sat", self.unbonding_fee_sat, 1, self.min_staking_value_sat - 1)
        _int_in("min_slashing_tx_fee_sat", self.min_slashing_tx_fee_sat, 1, MAX_SAT)
        _int_in("confirmation_depth", self.confirmation_depth, 1, 1_000_000)
        if not self.slashing_pk_script:
            raise InvalidParamsError("slashing_pk_script must not be empty")
        if len(self.tag) != 4:
            raise InvalidParamsError(f"tag must be 4 bytes, got {len(self.tag)}")
        rate = check_slashing_rate(self.slashing_rate)
        _int_in("btc_activation_height", self.btc_activation_height, 0, 2**32 - 1)
        min_slash = mul_f64(self.min_staking_value_sat - self.unbonding_fee_sat, rate)
        if min_slash <= 0 or is_dust(min_slash, self.slashing_pk_script):
            raise InvalidParamsError(f"minimum slashing output {min_slash} sat would be dust")
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (bytes as hex, rate as string)."""
        d = dataclasses.asdict(self)
        d["covenant_pks"] = [k.hex() for k in self.covenant_pks]
        d["slashing_rate"] = str(self.slashing_rate)
        d["slashing_pk_script"] = self.slashing_pk_script.hex()
        d["tag"] = self.tag.hex()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StakingParams":
        """Inverse of to_dict (hex strings or bytes accepted)."""

        def b(v: Any) -> bytes:
            return bytes.fromhex(v) if isinstance(v, str) else bytes(v)

        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise InvalidParamsError(f"unknown params fields: {sorted(unknown)}")
        try:
            kw = dict(d)
            kw["covenant_pks"] = tuple(b(k) for k in d["covenant_pks"])
            kw["slashing_rate"] = Decimal(str(d["slashing_rate"]))
            kw["slashing_pk_script"] = b(d["slashing_pk_script"])
            if "tag" in d:
                kw["tag"] = b(d["tag"])
            return cls(**kw)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, (InvalidParamsError, InvalidKeyError)):
                raise
            raise InvalidParamsError(f"bad params dict: {exc}") from exc

    def check_builder_amounts(self) -> None:
        """What every tx builder needs even from unvalidated params: a positive unbonding fee and
        minimum slashing fee (InvalidAmountError; otherwise outputs could be worth more than the
        input) and a slashing rate at Babylon's precision (InvalidParamsError, never rounded)."""
        for name in ("unbonding_fee_sat", "min_slashing_tx_fee_sat"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise InvalidAmountError(f"{name} must be a positive int (sat), got {v!r}")
        check_slashing_rate(self.slashing_rate)

    def check_staking_value(self, value: int) -> None:
        """Raise InvalidAmountError unless min ≤ value ≤ max."""
        if not isinstance(value, int) or not self.min_staking_value_sat <= value <= self.max_staking_value_sat:
            raise InvalidAmountError(
                f"staking value {value!r} outside [{self.min_staking_value_sat}, {self.max_staking_value_sat}]"
            )

    def check_staking_time(self, blocks: int) -> None:
        """Raise InvalidTimelockError unless min ≤ blocks ≤ max."""
        if not isinstance(blocks, int) or not self.min_staking_time_blocks <= blocks <= self.max_staking_time_blocks:
            raise InvalidTimelockError(
                f"staking time {blocks!r} outside [{self.min_staking_time_blocks}, {self.max_staking_time_blocks}]"
            )


def covenant_secret(i: int) -> bytes:
    """Deterministic devnet covenant secret, Babylon DefaultParams style: sk_i = SHA256(bytes([i]))."""
    if not 0 <= i <= 255:
        raise InvalidParamsError("covenant index must be 0..255")
    return hashlib.sha256(bytes([i])).digest()


def regtest_default_params(num_covenants: int = 3, quorum: int | None = None, **overrides: Any) -> StakingParams:
    """Valid params for regtest/devnet: covenant sk_i = SHA256([i]), staking time 100..65535,
    unbonding time 10 blocks, k = 6, slashing rate 0.1. Any field can be overridden by keyword."""
    if quorum is None:
        quorum = num_covenants // 2 + 1
    fields: dict[str, Any] = dict(
        covenant_pks=tuple(xonly_from_secret(covenant_secret(i)) for i in range(num_covenants)),
        covenant_quorum=quorum,
        min_staking_value_sat=10_000,
        max_staking_value_sat=10_000_000_000,
        min_staking_time_blocks=100,
        max_staking_time_blocks=65535,
        unbonding_time_blocks=10,
        unbonding_fee_sat=1_000,
        slashing_rate=Decimal("0.1"),
        slashing_pk_script=DEFAULT_SLASHING_PK_SCRIPT,
        min_slashing_tx_fee_sat=1_000,
        confirmation_depth=6,
        tag=bytes.fromhex("01020304"),
    )
    fields.update(overrides)
    return StakingParams(**fields).validate()
