"""Hyperliquid's price/size/notional rules, against hand cases and a decimal reference."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hlmm.instrument import (
    ERR_INVALID_PRICE,
    ERR_INVALID_SIZE,
    ERR_MIN_NOTIONAL,
    ERR_REDUCE_ONLY,
    ERR_TICK,
    Instrument,
)

HYPE = Instrument.for_price("HYPE", sz_decimals=2, price=30.88)


def reference_price_ok(price: Decimal, sz_decimals: int) -> bool:
    """Hyperliquid's rule stated directly on the decimal string."""
    if price == price.to_integral_value():
        return True
    digits = price.normalize().as_tuple()
    assert isinstance(digits.exponent, int)  # a finite price: no NaN/infinity exponent code
    decimals = -digits.exponent if digits.exponent < 0 else 0
    sig = len(digits.digits)
    return sig <= 5 and decimals <= 6 - sz_decimals


def test_hype_grid():
    assert HYPE.tick_size == Decimal("0.001")
    assert HYPE.lot_size == Decimal("0.01")
    assert HYPE.price_to_ticks("30.88") == 30880
    assert HYPE.price_wire(30880) == "30.88"
    assert HYPE.size_wire(150) == "1.5"
    assert HYPE.size_to_lots("12.81") == 1281


def test_grid_follows_magnitude():
    assert Instrument.for_price("BTC", 5, 97000.0).tick_decimals == 0
    assert Instrument.for_price("X", 0, 0.012345).tick_decimals == 6
    # 6 - szDecimals caps decimals even where 5 significant figures would allow more
    assert Instrument.for_price("Y", 4, 0.5).tick_decimals == 2


def test_off_grid_rejected_with_value():
    with pytest.raises(ValueError, match=r"price='30\.8805'"):
        HYPE.price_to_ticks("30.8805")
    with pytest.raises(ValueError, match="rounds to zero"):
        HYPE.size_to_lots_floor(0.004)
    with pytest.raises(ValueError, match="not a finite"):
        HYPE.size_to_lots_floor(float("nan"))


def test_check_order_hand_cases():
    assert HYPE.check_order(1, 30880, 33) is None  # $10.19
    assert HYPE.check_order(1, 30880, 32) == ERR_MIN_NOTIONAL  # $9.88
    assert HYPE.check_order(1, 30880, 0) == ERR_INVALID_SIZE
    # reduce-only: closing the whole position is exempt from the minimum, a partial close is not
    assert HYPE.check_order(-1, 30880, 20, reduce_only=True, position_lots=20) is None
    assert HYPE.check_order(-1, 30880, 10, reduce_only=True, position_lots=20) == ERR_MIN_NOTIONAL
    assert HYPE.check_order(1, 30880, 20, reduce_only=True, position_lots=20) == ERR_REDUCE_ONLY
    assert HYPE.check_order(-1, 30880, 20, reduce_only=True, position_lots=0) == ERR_REDUCE_ONLY
    # above $100 the 5-significant-figure rule makes 0.001 steps invalid
    assert HYPE.check_order(1, 123_456, 100) == ERR_TICK
    assert HYPE.check_order(1, 123_450, 100) is None


def reference_verdict(
    inst: Instrument, side: int, px_ticks: int, size_lots: int, reduce_only: bool, position_lots: int
) -> str | None:
    """The venue's rules in decimals, in the venue's order (size, price, tick, reduce-only, minimum)."""
    if size_lots <= 0:
        return ERR_INVALID_SIZE
    if px_ticks <= 0:
        return ERR_INVALID_PRICE
    if not reference_price_ok(inst.ticks_to_price(px_ticks), inst.sz_decimals):
        return ERR_TICK
    if reduce_only and (position_lots == 0 or (position_lots > 0) == (side > 0)):
        return ERR_REDUCE_ONLY
    if reduce_only and size_lots >= abs(position_lots):
        return None  # a whole-position close is exempt from the minimum
    notional = float(inst.ticks_to_price(px_ticks) * inst.lots_to_size(size_lots))  # exact, rounded once
    return ERR_MIN_NOTIONAL if notional < inst.min_notional_usd else None


@settings(max_examples=1000, deadline=None)
@given(
    sz=st.integers(min_value=0, max_value=6),
    tick=st.integers(min_value=0, max_value=6),
    side=st.sampled_from([1, -1]),
    # around the 5-significant-figure limit (10**5 ticks) and the $10 minimum
    px_ticks=st.one_of(st.integers(min_value=-2, max_value=10**9), st.integers(min_value=99_990, max_value=100_020)),
    size_lots=st.integers(min_value=-2, max_value=10**7),
    reduce_only=st.booleans(),
    position_lots=st.integers(min_value=-10**7, max_value=10**7),
)
def test_check_order_matches_the_decimal_reference(sz, tick, side, px_ticks, size_lots, reduce_only, position_lots):
    inst = Instrument(coin="T", sz_decimals=sz, tick_decimals=min(tick, 6 - sz))
    assert inst.check_order(side, px_ticks, size_lots, reduce_only, position_lots) == reference_verdict(
        inst, side, px_ticks, size_lots, reduce_only, position_lots
    )


def test_check_order_reference_stream_reaches_every_verdict():
    """The stream above is not vacuous: each verdict, and a whole-position close under the minimum."""
    inst = Instrument(coin="T", sz_decimals=2, tick_decimals=3)
    cases = [(1, 30880, 33, False, 0), (1, 30880, 32, False, 0), (1, 30880, 0, False, 0), (1, 0, 5, False, 0),
             (1, 123_456, 100, False, 0), (1, 30880, 20, True, 20), (-1, 30880, 20, True, 20), (-1, 30880, 10, True, 20)]
    verdicts = {reference_verdict(inst, *c) for c in cases}
    assert verdicts == {None, ERR_MIN_NOTIONAL, ERR_INVALID_SIZE, ERR_INVALID_PRICE, ERR_TICK, ERR_REDUCE_ONLY}
    for c in cases:
        assert inst.check_order(*c) == reference_verdict(inst, *c)


@settings(max_examples=400, deadline=None)
@given(ticks=st.integers(min_value=1, max_value=10**9), sz=st.integers(min_value=0, max_value=5))
def test_price_validity_matches_reference(ticks, sz):
    inst = Instrument(coin="T", sz_decimals=sz, tick_decimals=6 - sz)
    price = inst.ticks_to_price(ticks)
    assert inst.is_valid_price_ticks(ticks) == reference_price_ok(price, sz)


@settings(max_examples=400, deadline=None)
@given(ticks=st.integers(min_value=1, max_value=10**8), side=st.sampled_from([1, -1]))
def test_passive_rounding_is_valid_and_never_more_aggressive(ticks, side):
    rounded = HYPE.round_price_passive(ticks, side)
    assert HYPE.is_valid_price_ticks(rounded)
    assert (rounded <= ticks) if side > 0 else (rounded >= ticks)
    assert abs(rounded - ticks) < HYPE.price_step_ticks(ticks) * 10


@settings(max_examples=200, deadline=None)
@given(ticks=st.integers(min_value=10_000, max_value=99_999))
def test_min_lots_reaches_min_notional(ticks):
    lots = HYPE.min_lots_at(ticks)
    assert HYPE.notional_usd(ticks, lots) >= 10.0
    assert HYPE.notional_usd(ticks, lots - 1) < 10.0


def digit_count_price_step_ticks(inst: Instrument, px_ticks: int) -> int:
    """The step as the digit-counting formula computes it on every price (the reference for
    the below-five-digits shortcut)."""
    if px_ticks <= 0:
        return 1
    int_digits = len(str(px_ticks)) - inst.tick_decimals
    decimals_allowed = min(6 - inst.sz_decimals, max(0, 5 - int_digits))
    return 10 ** max(0, inst.tick_decimals - decimals_allowed)


def test_price_step_matches_digit_count_formula():
    instruments = [
        Instrument(coin="T", sz_decimals=sz, tick_decimals=td) for sz in range(7) for td in range(7 - sz)
    ]
    # every decade boundary and its neighbours, plus a dense sweep around the shortcut's edge
    prices = {-5, 0, 1} | {
        p for d in range(13) for base in (10**d, 2 * 10**d, 5 * 10**d) for p in (base - 1, base, base + 1)
    }
    prices |= set(range(99_000, 101_001)) | set(range(999_990, 1_000_011))
    for inst in instruments:
        for px in sorted(prices):
            step = inst.price_step_ticks(px)
            assert step == digit_count_price_step_ticks(inst, px), (inst, px)
            assert type(step) is int
