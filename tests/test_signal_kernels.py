"""Differential test of the signal kernels (agent/signal_kernels.py) against the plain-Python
signals they replaced (tests/signal_reference.py): one seeded random event stream drives both
banks, and every output of every decision cycle must be the same float, bit for bit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from agent import signal_kernels as kernels
from agent.signals import SignalBank, SignalsConfig
from agent.signals.flow_imbalance import FlowConfig
from agent.signals.vpin import VpinConfig
from agent.types import MarketState, SignalContribution, SignalOutput
from hlmm.instrument import Instrument
from hlmm.venue import Fill, Trade
from tests.signal_reference import ReferenceOutput, ReferenceSignalBank

HYPE = Instrument(coin="HYPE", sz_decimals=2, tick_decimals=3)

# One cycle as (field, value) pairs; floats as float.hex, so a signed zero or a last-bit
# difference shows, and the failure names the field.
Fields = list[tuple[str, object]]


def _fields(
    scalars: tuple[float, float, float, float, float, float, bool, float], contribs: list[tuple[str, SignalContribution]]
) -> Fields:
    names = ("spread_add_bps", "skew_bps", "kappa_effective_per_bps", "a_effective_per_s", "sigma_bps_per_sqrt_s",
             "changepoint_prob", "changepoint_alarm", "toxicity")
    out: Fields = [(n, x if isinstance(x, bool) else float.hex(x)) for n, x in zip(names, scalars, strict=True)]
    for name, c in contribs:
        out += [(f"{name}.value", float.hex(c.value)), (f"{name}.spread_bps", float.hex(c.spread_bps)),
                (f"{name}.skew_bps", float.hex(c.skew_bps)), (f"{name}.active", c.active)]
    return out


def _real_fields(sig: SignalOutput) -> Fields:
    return _fields(
        (sig.spread_add_bps, sig.skew_bps, sig.kappa_effective_per_bps, sig.a_effective_per_s,
         sig.sigma_bps_per_sqrt_s, sig.changepoint_prob, sig.changepoint_alarm, sig.toxicity),
        list(sig.contributions.items()),
    )


def _reference_fields(out: ReferenceOutput, bank: ReferenceSignalBank) -> Fields:
    spread, skew, kappa, a, sigma, toxicity, contribs = out
    cp = bank.changepoint
    return _fields((spread, skew, kappa, a, sigma, cp.cp_prob, cp.alarm, toxicity), list(contribs.items()))


def _drive(cfg: SignalsConfig, seed: int, duration_s: float = 1400.0) -> set[str]:
    """Feed one random stream to the real and the reference bank, compare every cycle; returns
    the names of the situations the stream reached (so the test cannot pass vacuously)."""
    rng = np.random.default_rng(seed)
    real, ref = SignalBank(cfg, HYPE), ReferenceSignalBank(cfg)
    seen: set[str] = set()
    t = last_trade_t = 0.0
    bid, ask = 30879, 30881
    book: MarketState | None = None
    payments = [450.5, 1000.25, 1300.25]  # the last two 300 s apart: the funding interval shrinks to 300 s
    n_trades = n_fills = n_cycles = 0
    while t < duration_s:
        if rng.random() < 0.85:  # else an event at the same timestamp as the last
            t += rng.exponential(0.2)
        if payments and t >= payments[0]:
            pay_t, rate = payments.pop(0), rng.normal(0.0, 2e-4)
            real.on_funding_payment(pay_t, rate)
            ref.on_funding_payment(pay_t, rate)
        u = rng.random()
        if n_trades < 40 or u < 0.5:  # the first 40 trades come before any book
            n_trades += 1
            # now; or (10%) at the previous trade's timestamp; or (5%) up to 3 s before now, out of order
            r = rng.random()
            trade_t = t if r >= 0.15 else last_trade_t if r >= 0.05 else max(0.0, t - rng.uniform(0.0, 3.0))
            last_trade_t = trade_t
            # one-sided phases push VPIN up and the flow signals to their caps
            buy_share = 0.95 if 700.0 <= t < 900.0 else 0.1 if 1150.0 <= t < 1250.0 else 0.5
            aggressor = 1 if rng.random() < buy_share else -1
            size = int(rng.integers(3000, 15000)) if rng.random() < 0.01 else int(min(20000.0, 20.0 * rng.pareto(1.3))) + 1
            # mostly at or through the touch of the aggressor's side; 5% on the other side (negative depth)
            touch = (ask if aggressor > 0 else bid) if rng.random() >= 0.05 else (bid if aggressor > 0 else ask)
            px = touch + aggressor * int(rng.geometric(0.5) - 1)
            state = book if rng.random() >= 0.03 else None  # also some trades with no mid later on
            trade = Trade(t=trade_t, px_ticks=px, size_lots=size, aggressor=aggressor, trade_id=n_trades)
            real.on_trade(trade, state)
            ref.on_trade(trade, state)
        elif u < 0.75 or book is None:
            # A volatility burst: 30 s of 40-tick moves every 60 s from 350 s to 650 s, so the
            # changepoint alarm goes on and, kept on past max dwell, a new regime is accepted.
            burst = 350.0 <= t < 650.0 and int((t - 350.0) // 30.0) % 2 == 0
            bid += round(rng.normal(0.0, 40.0 if burst else 3.0))
            ask = bid + int(rng.integers(1, 4))
            # the first book has no depth: OFI's average depth starts at 0
            depths = (0, 0) if book is None else (int(rng.integers(0, 3000)), int(rng.integers(0, 3000)))
            book = MarketState(t=t, best_bid_ticks=bid, best_ask_ticks=ask, mid_ticks=0.5 * (bid + ask),
                               microprice_ticks=0.5 * (bid + ask), bid_depth_lots=depths[0],
                               ask_depth_lots=depths[1], book_age_s=0.0)
            real.on_book(book)
            ref.on_book(book)
        elif u < 0.93:
            n_cycles += 1
            state = dataclasses.replace(book, t=t)
            position = 0 if rng.random() < 0.2 else int(rng.choice((-1, 1)) * rng.integers(1, 50))
            sig = real.compute(state, position)
            got, want = _real_fields(sig), _reference_fields(ref.compute(state, position), ref)
            assert got == want, f"cycle {n_cycles} at t={t!r}, position {position}"
            c = sig.contributions
            seen.update(name for name, hit in (
                ("changepoint alarm", sig.changepoint_alarm),
                ("vpin", c.value("vpin") != 0.0),
                ("vpin above threshold", c.value("vpin") > cfg.vpin.threshold),
                ("fill imbalance", c["fill_imbalance"].active),
                ("informed flow", c.value("informed_flow") > 0.0),
                ("ofi at its cap", abs(c["ofi"].skew_bps) == cfg.ofi.max_skew_bps),
                ("flow", c.value("flow") != 0.0),
                ("flow at its cap", abs(c["flow"].skew_bps) == cfg.flow.max_skew_bps),
                ("funding proximity", c.value("funding") > 0.0),
                ("funding skew", c["funding"].skew_bps != 0.0),
            ) if hit)
        elif u < 0.97:
            n_fills += 1
            # one-sided own fills from 150 s and from 800 s: the binomial test fires
            buy_share = 0.9 if 150.0 <= t < 450.0 else 0.1 if 800.0 <= t < 1100.0 else 0.5
            side = 1 if rng.random() < buy_share else -1
            fill = Fill(t=t, client_id=1, oid=n_fills, side=side, px_ticks=bid if side > 0 else ask,
                        size_lots=int(rng.integers(1, 100)), fee_usd=0.0, trade_id=n_fills, is_maker=True)
            real.on_fill(fill)
            ref.on_fill(fill)
        elif u < 0.985:
            rate = 0.0 if rng.random() < 0.1 else rng.normal(0.0, 1e-4)
            real.on_funding_rate(rate)
            ref.on_funding_rate(rate)
        else:
            move_bps = rng.normal(2.0, 6.0)  # negative a third of the time: counts as 0
            real.set_adverse_move_bps(move_bps)
            ref.set_adverse_move_bps(move_bps)
    assert real.regimes_accepted == ref.regimes_accepted
    if ref.regimes_accepted:
        seen.add("regime accepted")
    assert n_cycles > 1000
    return seen


EXERCISED = {"changepoint alarm", "regime accepted", "vpin", "fill imbalance", "informed flow", "ofi at its cap",
             "flow", "funding proximity", "funding skew"}


@pytest.mark.parametrize(
    ("cfg", "seed", "also_exercised"),
    [
        pytest.param(SignalsConfig(), 1, set(), id="default"),
        pytest.param(SignalsConfig(disabled=("flow", "regime_kappa", "vpin")), 2, set(), id="disabled"),
        pytest.param(
            SignalsConfig(
                flow=FlowConfig(timescales_s=(2.0, 60.0), skew_bps_per_imbalance=(3.5, 4.5)),
                vpin=VpinConfig(buckets=5, min_buckets=2, min_bucket_lots=5.0),
            ),
            3,
            {"vpin above threshold", "flow at its cap"},
            id="short_flow_small_vpin_buckets",
        ),
    ],
)
def test_signal_kernels_match_the_plain_python_signals_bit_for_bit(
    cfg: SignalsConfig, seed: int, also_exercised: set[str]
) -> None:
    seen = _drive(cfg, seed)
    missing = (EXERCISED | also_exercised) - seen
    assert not missing, f"the stream never reached {sorted(missing)}"


def test_the_bank_compiles_its_kernels_when_built_with_the_types_of_the_real_calls() -> None:
    """Compiling a kernel takes seconds: the bank does it in its constructor, so the first decision
    of a live session does not stall. The warm-up must use the real calls' argument types, or the
    first real call would compile a second specialization anyway."""
    bank = SignalBank(SignalsConfig(), HYPE)
    fused = (kernels.bank_on_trade, kernels.bank_on_book, kernels.bank_compute)
    assert [len(k.signatures) for k in fused] == [1, 1, 1]
    state = MarketState(t=1.0, best_bid_ticks=30879, best_ask_ticks=30881, mid_ticks=30880.0,
                        microprice_ticks=30880.0, bid_depth_lots=500, ask_depth_lots=400, book_age_s=0.0)
    bank.on_trade(Trade(t=0.5, px_ticks=30881, size_lots=10, aggressor=1, trade_id=1), None)
    bank.on_book(state)
    bank.on_trade(Trade(t=1.5, px_ticks=30879, size_lots=20, aggressor=-1, trade_id=2), state)
    bank.set_adverse_move_bps(2.0)
    bank.compute(state, -300)
    assert [len(k.signatures) for k in fused] == [1, 1, 1]
