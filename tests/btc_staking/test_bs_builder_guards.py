"""Builder guards (issue 9): unvalidated params with a non-positive unbonding fee or minimum
slashing fee, or a slashing rate finer than Babylon's 2 decimal places, are refused by every
builder with a typed error instead of yielding outputs worth more than (or equal to) the input."""

from __future__ import annotations

import dataclasses
import os
from decimal import Decimal

import pytest

from btc_staking import errors as E
from btc_staking.keys import generate_secret, xonly_from_secret
from btc_staking.params import check_slashing_rate, regtest_default_params
from btc_staking.staking import build_slashing_tx, build_staking_tx, build_unbonding_tx, slashing_amounts
from btc_staking.tx import OutPoint

PARAMS = regtest_default_params()
STAKER, FP = xonly_from_secret(generate_secret()), xonly_from_secret(generate_secret())
OP = OutPoint(os.urandom(32), 0)
VALUE = 100_000


def _raw(**kw):
    """Params built without validate(), as a caller could."""
    return dataclasses.replace(PARAMS, **kw)


def test_valid_params_build_outputs_below_the_input():
    ub = build_unbonding_tx(OP, VALUE, STAKER, [FP], PARAMS)
    assert ub.outputs[0].value == VALUE - PARAMS.unbonding_fee_sat
    sl = build_slashing_tx(OP, VALUE, STAKER, PARAMS)
    assert sum(o.value for o in sl.outputs) == VALUE - PARAMS.min_slashing_tx_fee_sat
    assert slashing_amounts(VALUE, Decimal("0.1"), 1_000) == (10_000, 89_000)


@pytest.mark.parametrize("fee", [0, -1, -5_000])
def test_non_positive_unbonding_fee_refused_by_every_builder(fee):
    p = _raw(unbonding_fee_sat=fee)
    with pytest.raises(E.InvalidAmountError, match="unbonding_fee_sat"):
        build_unbonding_tx(OP, VALUE, STAKER, [FP], p)
    with pytest.raises(E.InvalidAmountError, match="unbonding_fee_sat"):
        build_slashing_tx(OP, VALUE, STAKER, p)
    with pytest.raises(E.InvalidAmountError, match="unbonding_fee_sat"):
        build_staking_tx(STAKER, FP, p, 500, VALUE)


@pytest.mark.parametrize("fee", [0, -1])
def test_non_positive_min_slashing_fee_refused_by_every_builder(fee):
    p = _raw(min_slashing_tx_fee_sat=fee)
    with pytest.raises(E.InvalidAmountError, match="min_slashing_tx_fee_sat"):
        build_slashing_tx(OP, VALUE, STAKER, p)
    with pytest.raises(E.InvalidAmountError, match="min_slashing_tx_fee_sat"):
        build_slashing_tx(OP, VALUE, STAKER, p, fee=0)
    with pytest.raises(E.InvalidAmountError, match="min_slashing_tx_fee_sat"):
        build_unbonding_tx(OP, VALUE, STAKER, [FP], p)
    with pytest.raises(E.InvalidAmountError):
        slashing_amounts(VALUE, Decimal("0.1"), fee)


@pytest.mark.parametrize("rate", ["0.125", "0.001", "0.1000001", "0.333"])
def test_slashing_rate_finer_than_babylon_precision_rejected_not_rounded(rate):
    with pytest.raises(E.InvalidParamsError, match="decimal places"):
        check_slashing_rate(rate)
    with pytest.raises(E.InvalidParamsError, match="decimal places"):
        slashing_amounts(VALUE, Decimal(rate), 1_000)
    p = _raw(slashing_rate=Decimal(rate))
    with pytest.raises(E.InvalidParamsError, match="decimal places"):
        build_slashing_tx(OP, VALUE, STAKER, p)
    with pytest.raises(E.InvalidParamsError, match="decimal places"):
        build_unbonding_tx(OP, VALUE, STAKER, [FP], p)
    with pytest.raises(E.InvalidParamsError, match="decimal places"):
        p.validate()


@pytest.mark.parametrize("rate", ["0.1", "0.25", "0.98", "0.01", "0.50"])
def test_slashing_rate_at_two_decimals_accepted(rate):
    assert check_slashing_rate(rate) == Decimal(rate)
    slash, _ = slashing_amounts(VALUE, rate, 1_000)
    assert slash == int(VALUE * Decimal(rate))


@pytest.mark.parametrize("rate", ["0", "1", "-0.1", "1.5", "nan"])
def test_slashing_rate_out_of_range_rejected(rate):
    with pytest.raises(E.InvalidParamsError):
        check_slashing_rate(rate)


def test_btc_activation_height_is_a_params_field():
    p = regtest_default_params(btc_activation_height=120)
    assert p.to_dict()["btc_activation_height"] == 120
    assert type(p).from_dict(p.to_dict()) == p
    with pytest.raises(E.InvalidParamsError):
        _raw(btc_activation_height=-1).validate()
