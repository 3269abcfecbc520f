"""Realistic in-memory staking data for the API-layer tests.

Keys are real secp256k1 x-only keys derived from fixed secrets; staking txids
are double-SHA256 values in display order; heights and amounts respect the
params (k = 6, unbonding time 20 blocks) like delegations on a regtest chain.
"""

from __future__ import annotations

import hashlib

import coincurve

from api.memory import InMemorySource
from api.source import DelegationRecord, FinalityProviderRecord, ParamsRecord

BTC_TIP = 1000
UNBONDING_TIME = 20


def xonly(label: str) -> str:
    """Deterministic x-only public key (hex) for a label."""
    secret = hashlib.sha256(label.encode()).digest()
    return coincurve.PrivateKey(secret).public_key.format(compressed=True)[1:].hex()


def compressed(label: str) -> str:
    """33-byte compressed form of ``xonly(label)``'s key."""
    secret = hashlib.sha256(label.encode()).digest()
    return coincurve.PrivateKey(secret).public_key.format(compressed=True).hex()


def txid(label: str) -> str:
    """Display-order txid of a label's double SHA-256."""
    return hashlib.sha256(hashlib.sha256(label.encode()).digest()).digest()[::-1].hex()


FP_ALPHA, FP_BETA, FP_GAMMA, FP_DELTA = (xonly(f"fp-{n}") for n in ("alpha", "beta", "gamma", "delta"))
STAKER_A, STAKER_B, STAKER_C = (xonly(f"staker-{n}") for n in ("a", "b", "c"))
COVENANTS = tuple(xonly(f"covenant-{i}") for i in range(3))

PARAMS = ParamsRecord(
    version=0,
    covenant_pks_hex=COVENANTS,
    covenant_quorum=2,
    min_staking_value_sat=10_000,
    max_staking_value_sat=1_000_000_000,
    min_staking_time_blocks=100,
    max_staking_time_blocks=65_535,
    unbonding_time_blocks=UNBONDING_TIME,
    unbonding_fee_sat=1_000,
    slashing_rate="0.1",
    slashing_pk_script_hex="0014" + "11" * 20,
    min_slashing_tx_fee_sat=1_000,
    btc_confirmation_depth=6,
    btc_activation_height=100,
    tag_hex="62746d31",
)
PARAMS_V1 = ParamsRecord(**{**PARAMS.__dict__, "version": 1, "btc_activation_height": 5000, "unbonding_fee_sat": 2_000})


def delegation(label: str, staker: str, fp: str, amount: int, **kw) -> DelegationRecord:
    """A delegation with sensible defaults (covenant quorum reached, 500-block timelock)."""
    fields = dict(
        staking_tx_hash_hex=txid(label),
        staker_pk_hex=staker,
        fp_pks_hex=(fp,),
        staking_amount=amount,
        staking_time=500,
        unbonding_time=UNBONDING_TIME,
        has_covenant_quorum=True,
        params_version=0,
        cosmos_height=10,
        cosmos_time="2026-11-25T03:00:00Z",
    )
    fields.update(kw)
    if fields.get("start_height") is not None and "end_height" not in kw:
        fields["end_height"] = fields["start_height"] + fields["staking_time"]
    return DelegationRecord(**fields)


# Staker A: one delegation in every state at BTC_TIP = 1000.
A_RECORDS = {
    "ACTIVE": delegation("a-active", STAKER_A, FP_ALPHA, 1_000_000, start_height=900),
    "ACTIVE2": delegation("a-active2", STAKER_A, FP_BETA, 2_500_000, start_height=950),
    "PENDING": delegation("a-pending", STAKER_A, FP_ALPHA, 70_000, has_covenant_quorum=False),
    "VERIFIED": delegation("a-verified", STAKER_A, FP_ALPHA, 80_000),
    # early unbonding tx at 990: timelock passes at tip + 1 >= 1010
    "UNBONDING": delegation("a-unbonding", STAKER_A, FP_ALPHA, 300_000, start_height=800, unbonding_height=990),
    "WITHDRAWABLE_EARLY": delegation("a-wd-early", STAKER_A, FP_BETA, 400_000, start_height=800, unbonding_height=950),
    # staking timelock ends at 1010: fewer than 20 blocks left -> timelock unbonding
    "UNBONDING_TIMELOCK": delegation("a-unb-tl", STAKER_A, FP_BETA, 500_000, start_height=600, staking_time=410),
    "WITHDRAWABLE": delegation("a-wd", STAKER_A, FP_ALPHA, 600_000, start_height=400),
    "WITHDRAWN": delegation("a-withdrawn", STAKER_A, FP_ALPHA, 700_000, start_height=300, withdrawn_height=950),
    "SLASHED": delegation("a-slashed", STAKER_A, FP_GAMMA, 800_000, start_height=900),
}
# Staker B: 25 ACTIVE delegations split between alpha and beta (for pagination).
B_RECORDS = [
    delegation(f"b-{i}", STAKER_B, FP_ALPHA if i % 2 else FP_BETA, 100_000 + i * 1_000, start_height=900 + i)
    for i in range(25)
]

FINALITY_PROVIDERS = [
    FinalityProviderRecord(btc_pk_hex=FP_ALPHA, moniker="alpha", commission="0.05", website="https://alpha.example"),
    FinalityProviderRecord(btc_pk_hex=FP_BETA, moniker="beta", commission="0.10"),
    FinalityProviderRecord(btc_pk_hex=FP_GAMMA, moniker="gamma", commission="0.07", slashed=True),
    FinalityProviderRecord(btc_pk_hex=FP_DELTA, moniker="delta", commission="0.02"),
]


def make_source() -> InMemorySource:
    """A fresh source holding all the records above at BTC_TIP."""
    return InMemorySource(
        delegations=[*A_RECORDS.values(), *B_RECORDS],
        finality_providers=FINALITY_PROVIDERS,
        params=[PARAMS_V1, PARAMS],
        btc_tip=BTC_TIP,
    )
