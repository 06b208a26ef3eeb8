"""The bank's one array (:func:`agent.signal_kernels.pack_bank`): each signal's arrays are views
of it, so the signals' own methods and the bank's fused kernels read and write the same state."""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest

from agent import signal_kernels as kernels
from agent.signals import SignalBank, SignalsConfig
from agent.types import MarketState
from hlmm.venue import Trade
from tests.test_signal_kernels import HYPE


def test_every_signal_array_is_a_view_of_the_bank_with_its_values() -> None:
    bank = SignalBank(SignalsConfig(), HYPE)
    signals = (bank.flow, bank.vpin, bank.informed, bank.intensity, bank.volatility, bank.ofi, bank.funding)
    for signal in signals:
        for a in (signal.state, signal.params):
            assert a.base is bank._bank
    assert np.isnan(bank.flow.state[kernels.FLOW_CLOCK])  # the initial values came along
    assert bank.vpin.state[kernels.VPIN_SIZE] == SignalsConfig().vpin.min_bucket_lots


def test_the_bank_kernels_and_the_signals_own_methods_share_the_state() -> None:
    bank = SignalBank(SignalsConfig(), HYPE)
    state = MarketState(t=1.0, best_bid_ticks=30879, best_ask_ticks=30881, mid_ticks=30880.0,
                        microprice_ticks=30880.0, bid_depth_lots=500, ask_depth_lots=400, book_age_s=0.0)
    bank.on_trade(Trade(t=1.0, px_ticks=30881, size_lots=10, aggressor=1, trade_id=1), state)
    assert bank.flow.state[kernels.FLOW_CLOCK] == 1.0
    assert bank.informed.state[kernels.INF_BUYS] == 1.0
    bank.informed.on_trade(2.0, -1)  # the signal's own method, seen by the bank's next cycle
    assert bank._bank[int(bank._bank[kernels.SEG_INF_ST]) + kernels.INF_SELLS] == 1.0
    bank.on_funding_rate(1e-4)
    assert bank.funding.state[kernels.FUND_RATE] == 1e-4
    out = bank.compute(state, 0)
    assert math.isfinite(out.kappa_effective_per_bps)


def test_pack_bank_refuses_a_wrong_count_or_dtype() -> None:
    floats = tuple(np.zeros(2) for _ in range(kernels.N_SEGMENTS))
    with pytest.raises(ValueError, match="float64 segments"):
        kernels.pack_bank(floats[:-1])
    with pytest.raises(ValueError, match="float64 segments"):
        kernels.pack_bank((np.zeros(2, dtype=bool), *floats[1:]))
    bank, views = kernels.pack_bank(floats)
    assert [int(x) for x in bank[: kernels.N_SEGMENTS + 1]] == list(range(18, 18 + 2 * 18, 2))
    assert all(v.base is bank and v.size == 2 for v in views)


def test_a_copied_or_unpickled_bank_shares_its_own_array_and_goes_on_as_the_original() -> None:
    state = MarketState(t=1.0, best_bid_ticks=30879, best_ask_ticks=30881, mid_ticks=30880.0,
                        microprice_ticks=30880.0, bid_depth_lots=500, ask_depth_lots=400, book_age_s=0.0)
    bank = SignalBank(SignalsConfig(), HYPE)
    for k in range(1, 40):
        bank.on_trade(Trade(t=0.5 * k, px_ticks=30881 - 2 * (k % 2), size_lots=5 + k, aggressor=1 - 2 * (k % 2),
                            trade_id=k), state)
    twins = [copy.deepcopy(bank), pickle.loads(pickle.dumps(bank))]
    for twin in twins:
        for signal in (twin.flow, twin.vpin, twin.informed, twin.intensity, twin.volatility, twin.ofi, twin.funding):
            assert signal.state.base is twin._bank and signal.params.base is twin._bank
        assert not np.shares_memory(twin._bank, bank._bank)
        assert np.array_equal(twin._bank, bank._bank, equal_nan=True)
    for k in range(40, 80):  # the same events to all three: the same outputs, bit for bit
        later = MarketState(t=0.5 * k, best_bid_ticks=30879, best_ask_ticks=30881, mid_ticks=30880.0,
                            microprice_ticks=30880.0, bid_depth_lots=500, ask_depth_lots=400, book_age_s=0.0)
        trade = Trade(t=0.5 * k, px_ticks=30881, size_lots=k, aggressor=1, trade_id=k)
        outs = []
        for b in (bank, *twins):
            b.on_trade(trade, later)
            b.informed.on_trade(0.5 * k, -1)  # a signal's own method, seen by its bank's kernels
            outs.append(b.compute(later, 3))
        assert outs[0].skew_bps == outs[1].skew_bps == outs[2].skew_bps
        assert outs[0].toxicity == outs[1].toxicity == outs[2].toxicity
        assert np.array_equal(outs[0].contributions.table, outs[1].contributions.table, equal_nan=True)
        assert np.array_equal(outs[0].contributions.table, outs[2].contributions.table, equal_nan=True)
    assert outs[0].skew_bps != 0.0  # the stream moved the signals
