"""The plain-Python reference the signal kernels (:mod:`agent.signal_kernels`) must match bit for bit.

This is the signals' arithmetic as it was before the kernels (commit ac90ec0: agent/estimators.py,
agent/signals/{flow_imbalance,vpin,informed,ofi,funding,__init__}.py), every expression in its
original order, trimmed to what ``SignalBank.on_trade``/``on_book``/``compute`` reach. Caches
that only skipped recomputing the same value (VPIN's value, the fill-imbalance and changepoint
contributions, the binomial p-value) are left out, and so are the input checks the real bank
still makes. The changepoint detector and the configurations are the real ones.
tests/test_signal_kernels.py drives this and :class:`agent.signals.SignalBank` with one event stream.
"""

from __future__ import annotations

import math
from collections import deque

from agent.estimators import EstimatorConfig
from agent.signal_kernels import VOL_VAR_FLOOR
from agent.signals import SignalsConfig
from agent.signals.changepoint import ChangepointDetector
from agent.signals.flow_imbalance import FlowConfig
from agent.signals.funding import HYPERLIQUID_FUNDING_INTERVAL_S, FundingConfig
from agent.signals.informed import InformedConfig
from agent.signals.ofi import OfiConfig
from agent.signals.vpin import VpinConfig
from agent.types import MarketState, SignalContribution
from hlmm.stats import binomial_two_sided_p
from hlmm.venue import Fill, Trade

BPS = 1e4

# (spread_add_bps, skew_bps, kappa_eff, a_eff, sigma, toxicity, contributions) of one cycle
ReferenceOutput = tuple[float, float, float, float, float, float, dict[str, SignalContribution]]


# ------------------------------------------------------------------ estimators
class _Ewma:
    """Exponentially forgotten count, depth sum and exposure time (time constant ``tau_s``)."""

    def __init__(self, tau_s: float, t0: float) -> None:
        self.tau_s = tau_s
        self.t = t0
        self.n = 0.0
        self.sum_depth_bps = 0.0
        self.exposure_s = 0.0

    def advance(self, t: float) -> None:
        dt = t - self.t
        if dt <= 0:
            return
        w = math.exp(-dt / self.tau_s)
        self.n *= w
        self.sum_depth_bps *= w
        self.exposure_s = self.exposure_s * w + self.tau_s * (1.0 - w)
        self.t = t

    def add(self, depth_bps: float) -> None:
        self.n += 1.0
        self.sum_depth_bps += depth_bps


class IntensityEstimator:
    """A and k from the deepest market trade per side and ``bin_s``, with the prior blended in."""

    def __init__(self, cfg: EstimatorConfig) -> None:
        self.cfg = cfg
        self._long: _Ewma | None = None
        self._short: _Ewma | None = None
        self._bin = -1
        self._n0 = 2.0 * cfg.prior_a_per_s * cfg.prior_weight_s
        self._n0_over_k0 = self._n0 / cfg.prior_kappa_per_bps
        # side -> (reference mid, max depth) of the open bin, in the order the sides opened
        self._open: dict[int, tuple[float, float]] = {}

    def on_trade(self, t: float, px_ticks: int, aggressor: int, mid_ticks: float) -> None:
        if self._long is None:
            self._start(t)
        b = math.floor(t / self.cfg.bin_s)
        if b != self._bin:
            self._flush()
            self._bin = b
        ref, deepest = self._open.get(aggressor, (mid_ticks, 0.0))
        depth = aggressor * (px_ticks - ref) / ref * BPS
        self._open[aggressor] = (ref, depth if depth > deepest else deepest)

    def estimate(self, t: float, short: bool = False) -> tuple[float, float]:
        """``(a_per_s, kappa_per_bps)`` at ``t``; ``short`` uses the alarm window."""
        if self._long is None:
            self._start(t)
        if self._open and math.floor(t / self.cfg.bin_s) != self._bin:
            self._flush()
        e = self._short if short else self._long
        assert e is not None
        e.advance(t)
        n0 = self._n0
        kappa = (e.n + n0) / (e.sum_depth_bps + self._n0_over_k0)
        a = (e.n + n0) / (2.0 * (e.exposure_s + self.cfg.prior_weight_s))
        return a, kappa

    def _start(self, t: float) -> None:
        self._long = _Ewma(self.cfg.window_s, t)
        self._short = _Ewma(self.cfg.alarm_window_s, t)

    def _flush(self) -> None:
        if not self._open:
            return
        assert self._long is not None and self._short is not None
        t_bin = self._bin * self.cfg.bin_s
        for e in (self._long, self._short):
            e.advance(t_bin)
            for _, depth in self._open.values():
                e.add(depth)
        self._open.clear()


class VolatilityEstimator:
    """σ² as long and short EWMAs of squared returns of the mid sampled every ``sigma_sample_s``."""

    def __init__(self, cfg: EstimatorConfig) -> None:
        self.cfg = cfg
        var0 = cfg.prior_sigma_bps_per_sqrt_s**2
        self._var_long = var0
        self._var_short = var0
        self._next_sample_t: float | None = None
        self._last_sample_mid = 0.0
        self._last_sample_t = 0.0
        self._new_returns: list[tuple[float, float]] = []

    def on_mid(self, t: float, mid_ticks: float) -> None:
        if self._next_sample_t is None:
            self._next_sample_t = t + self.cfg.sigma_sample_s
            self._last_sample_mid, self._last_sample_t = mid_ticks, t
            return
        if t < self._next_sample_t:
            return
        dt = t - self._last_sample_t
        r_bps = math.log(mid_ticks / self._last_sample_mid) * BPS
        var_per_s = r_bps * r_bps / dt
        w = math.exp(-math.log(2.0) * dt / self.cfg.sigma_halflife_s)
        self._var_long = max(w * self._var_long + (1.0 - w) * var_per_s, VOL_VAR_FLOOR)
        w = math.exp(-math.log(2.0) * dt / self.cfg.sigma_short_halflife_s)
        self._var_short = max(w * self._var_short + (1.0 - w) * var_per_s, VOL_VAR_FLOOR)
        self._new_returns.append((r_bps, dt))
        self._last_sample_mid, self._last_sample_t = mid_ticks, t
        self._next_sample_t = t + self.cfg.sigma_sample_s

    def sigma_bps_per_sqrt_s(self) -> float:
        return math.sqrt(self._var_long)

    def drain_returns(self) -> list[tuple[float, float]]:
        out, self._new_returns = self._new_returns, []
        return out

    def accept_regime(self) -> None:
        self._var_long = self._var_short


# ------------------------------------------------------------------ signals
class TradeFlowImbalance:
    """EWMA aggressor volume and counts per side at several timescales."""

    def __init__(self, cfg: FlowConfig) -> None:
        self.cfg = cfg
        n = len(cfg.timescales_s)
        self._t: float | None = None
        self._buy_vol = [0.0] * n
        self._sell_vol = [0.0] * n
        self._buy_n = [0.0] * n
        self._sell_n = [0.0] * n
        self._names = tuple(f"flow_{tau:g}s" for tau in cfg.timescales_s)
        self._total_beta = sum(abs(b) for b in cfg.skew_bps_per_imbalance) or 1.0

    def on_trade(self, t: float, size_lots: int, aggressor: int) -> None:
        if aggressor > 0:
            vol, cnt, other_vol, other_cnt = self._buy_vol, self._buy_n, self._sell_vol, self._sell_n
        else:
            vol, cnt, other_vol, other_cnt = self._sell_vol, self._sell_n, self._buy_vol, self._buy_n
        last_t = self._t
        if last_t is None or t <= last_t:
            if last_t is None:
                self._t = t
            for i in range(len(vol)):
                vol[i] += size_lots
                cnt[i] += 1.0
            return
        dt = t - last_t
        for i, tau in enumerate(self.cfg.timescales_s):
            w = math.exp(-dt / tau)
            vol[i] = vol[i] * w + size_lots
            cnt[i] = cnt[i] * w + 1.0
            other_vol[i] *= w
            other_cnt[i] *= w
        self._t = t

    def contributions(self, t: float) -> dict[str, SignalContribution]:
        """``flow`` first, then ``flow_<τ>s`` per timescale and the two average sizes."""
        self._advance(t)
        shrink = self.cfg.shrink_trades
        combined = 0.0
        out = {"flow": SignalContribution(value=0.0)}  # placeholder: fixes the entry's position
        for name, beta, b, s, nb, ns in zip(
            self._names, self.cfg.skew_bps_per_imbalance, self._buy_vol, self._sell_vol, self._buy_n, self._sell_n,
            strict=True,
        ):
            n = nb + ns
            ti = 0.0 if n <= 0 or b + s <= 0 else 0.5 * ((b - s) / (b + s) + (nb - ns) / n) * n / (n + shrink)
            combined += beta * ti
            out[name] = SignalContribution(ti, 0.0, 0.0, ti != 0.0)
        max_skew = self.cfg.max_skew_bps
        skew = max(-max_skew, min(max_skew, combined))
        out["flow"] = SignalContribution(combined / self._total_beta, 0.0, skew, skew != 0.0)
        i = len(self._names) - 1  # the longest timescale
        buy = self._buy_vol[i] / self._buy_n[i] if self._buy_n[i] > 1e-12 else 0.0
        sell = self._sell_vol[i] / self._sell_n[i] if self._sell_n[i] > 1e-12 else 0.0
        out["avg_buy_size_lots"] = SignalContribution(buy, 0.0, 0.0, buy > 0)
        out["avg_sell_size_lots"] = SignalContribution(sell, 0.0, 0.0, sell > 0)
        return out

    def _advance(self, t: float) -> None:
        if self._t is None:
            self._t = t
            return
        dt = t - self._t
        if dt <= 0:
            return
        for i, tau in enumerate(self.cfg.timescales_s):
            w = math.exp(-dt / tau)
            self._buy_vol[i] *= w
            self._sell_vol[i] *= w
            self._buy_n[i] *= w
            self._sell_n[i] *= w
        self._t = t


class Vpin:
    """Volume buckets sized from the forgotten volume rate; VPIN over the last ``buckets``."""

    def __init__(self, cfg: VpinConfig) -> None:
        self.cfg = cfg
        self._done: deque[tuple[float, float]] = deque(maxlen=cfg.buckets)  # (|S−B|, V) per full bucket
        self._buy = 0.0
        self._sell = 0.0
        self._size_lots = cfg.min_bucket_lots
        self._rate_vol = 0.0
        self._exposure_s = 0.0
        self._t: float | None = None

    def on_trade(self, t: float, size_lots: int, aggressor: int) -> None:
        last_t = self._t
        if last_t is None or t > last_t:
            if last_t is not None:
                tau_s = self.cfg.rate_tau_s
                w = math.exp(-(t - last_t) / tau_s)
                self._rate_vol *= w
                self._exposure_s = self._exposure_s * w + tau_s * (1.0 - w)
            self._t = t
        self._rate_vol += size_lots
        buy, sell, bucket_lots = self._buy, self._sell, self._size_lots
        left = float(size_lots)
        while left > 0:
            room = bucket_lots - buy - sell
            take = room if room < left else left
            if aggressor > 0:
                buy += take
            else:
                sell += take
            left -= take
            if buy + sell >= bucket_lots - 1e-9:
                self._done.append((abs(sell - buy), buy + sell))
                buy = sell = 0.0
                rate = self._rate_vol / self._exposure_s if self._exposure_s > 0 else 0.0
                bucket_lots = self._size_lots = max(self.cfg.min_bucket_lots, rate * self.cfg.bucket_s)
        self._buy, self._sell = buy, sell

    def contribution(self) -> SignalContribution:
        if len(self._done) < self.cfg.min_buckets:
            return SignalContribution(value=0.0)
        # sum() adds left to right on CPython 3.11 (the project's pin), as the kernel's loop does;
        # 3.12's compensated float sum() would not
        v = sum(d for d, _ in self._done) / sum(v for _, v in self._done)
        excess = max(0.0, v - self.cfg.threshold) / (1.0 - self.cfg.threshold)
        spread = self.cfg.widen_bps * excess
        return SignalContribution(value=v, spread_bps=spread, active=spread > 0.0)


class InformedFlow:
    """Forgotten market trade counts and the own fills of the window."""

    def __init__(self, cfg: InformedConfig) -> None:
        self.cfg = cfg
        self._t: float | None = None
        self._buys = 0.0
        self._sells = 0.0
        self._fills: deque[tuple[float, int]] = deque()
        self._fill_buys = 0
        self._adverse_move_bps = cfg.adverse_move_bps

    def set_adverse_move_bps(self, move_bps: float) -> None:
        self._adverse_move_bps = max(0.0, move_bps)

    def on_trade(self, t: float, aggressor: int) -> None:
        self._advance(t)
        if aggressor > 0:
            self._buys += 1.0
        else:
            self._sells += 1.0

    def on_fill(self, t: float, side: int) -> None:
        self._fills.append((t, side))
        self._fill_buys += side > 0

    def contributions(self, t: float) -> tuple[float, dict[str, SignalContribution]]:
        """(toxicity, {``informed_flow``, ``fill_imbalance``})."""
        self._advance(t)
        n_trades = self._buys + self._sells
        p_flow = 0.0 if n_trades <= 0 else min(
            1.0, max(0.0, abs(self._buys - self._sells) - math.sqrt(n_trades)) / n_trades
        )
        start_t = t - self.cfg.fill_window_s
        while self._fills and self._fills[0][0] < start_t:
            self._fill_buys -= self._fills.popleft()[1] > 0
        buys = self._fill_buys
        sells = len(self._fills) - buys
        n = buys + sells
        significant = n >= self.cfg.fill_min and binomial_two_sided_p(buys, n) < self.cfg.fill_alpha
        signed = (buys - sells) / n if n else 0.0
        pi_hit = abs(signed) if significant else 0.0
        fills = SignalContribution(
            value=signed,
            spread_bps=self.cfg.fill_widen_bps if significant else 0.0,
            skew_bps=-self.cfg.fill_skew_bps * signed if significant else 0.0,
            active=significant,
        )
        toxicity = max(p_flow, pi_hit)
        informed = SignalContribution(toxicity, toxicity * self._adverse_move_bps, 0.0, toxicity > 0.0)
        return toxicity, {"informed_flow": informed, "fill_imbalance": fills}

    def _advance(self, t: float) -> None:
        if self._t is not None and t > self._t:
            w = math.exp(-(t - self._t) / self.cfg.window_s)
            self._buys *= w
            self._sells *= w
        if self._t is None or t > self._t:
            self._t = t


class OrderFlowImbalance:
    """Forgotten Cont–Kukanov–Stoikov OFI over the average depth."""

    def __init__(self, cfg: OfiConfig) -> None:
        self.cfg = cfg
        self._prev: MarketState | None = None
        self._ofi_lots = 0.0
        self._depth_lots = 0.0
        self._t = 0.0

    def on_book(self, state: MarketState) -> None:
        prev = self._prev
        self._prev = state
        depth = 0.5 * (state.bid_depth_lots + state.ask_depth_lots)
        if prev is None:
            self._t, self._depth_lots = state.t, depth
            return
        self._decay(state.t)
        e = 0.0
        if state.best_bid_ticks >= prev.best_bid_ticks:
            e += state.bid_depth_lots
        if state.best_bid_ticks <= prev.best_bid_ticks:
            e -= prev.bid_depth_lots
        if state.best_ask_ticks <= prev.best_ask_ticks:
            e -= state.ask_depth_lots
        if state.best_ask_ticks >= prev.best_ask_ticks:
            e += prev.ask_depth_lots
        self._ofi_lots += e
        w = math.exp(-(state.t - prev.t) / self.cfg.depth_tau_s) if state.t > prev.t else 1.0
        self._depth_lots = w * self._depth_lots + (1.0 - w) * depth

    def contribution(self, state: MarketState) -> SignalContribution:
        self._decay(state.t)
        if self._depth_lots <= 0 or state.mid_ticks <= 0:
            return SignalContribution(value=0.0)
        tick_bps = BPS / state.mid_ticks
        move_bps = tick_bps * self._ofi_lots / (2.0 * self._depth_lots)
        max_skew = self.cfg.max_skew_bps
        skew = max(-max_skew, min(max_skew, self.cfg.weight * move_bps))
        return SignalContribution(self._ofi_lots / self._depth_lots, 0.0, skew, skew != 0.0)

    def _decay(self, t: float) -> None:
        if t > self._t:
            self._ofi_lots *= math.exp(-(t - self._t) / self.cfg.tau_s)
            self._t = t


class FundingProximity:
    """Proximity to the next funding on the grid the payments show."""

    def __init__(self, cfg: FundingConfig) -> None:
        self.cfg = cfg
        self._predicted_rate: float | None = None
        self._paid_rate: float | None = None
        self._grid_t = 0.0
        self._last_payment_t: float | None = None
        self.interval_s = HYPERLIQUID_FUNDING_INTERVAL_S

    def on_payment(self, t: float, rate: float) -> None:
        if self._last_payment_t is not None and t > self._last_payment_t:
            self.interval_s = min(self.interval_s, t - self._last_payment_t)
        self._last_payment_t = t
        self._grid_t = t
        self._paid_rate = rate

    def on_funding_rate(self, rate: float) -> None:
        self._predicted_rate = rate

    def contribution(self, t: float, position_lots: int) -> SignalContribution:
        rate = self._predicted_rate if self._predicted_rate is not None else self._paid_rate
        if rate is None:
            return SignalContribution(value=0.0)
        cfg = self.cfg
        next_t = self._grid_t + (math.floor((t - self._grid_t) / self.interval_s) + 1.0) * self.interval_s
        left = next_t - t
        window = min(cfg.window_s, self.interval_s)
        prox = 1.0 - left / window if left <= window else 0.0
        skew = 0.0
        if position_lots * rate > 0:
            size = min(cfg.max_skew_bps, cfg.skew_per_rate_bps * abs(rate) * BPS * prox)
            skew = -size if position_lots > 0 else size
        return SignalContribution(prox, cfg.widen_bps * prox, skew, prox > 0.0)


# ------------------------------------------------------------------ the bank
class ReferenceSignalBank:
    """The old ``SignalBank``: the same events, one :data:`ReferenceOutput` per cycle."""

    def __init__(self, cfg: SignalsConfig) -> None:
        self.cfg = cfg
        self.intensity = IntensityEstimator(cfg.estimators)
        self.volatility = VolatilityEstimator(cfg.estimators)
        self.flow = TradeFlowImbalance(cfg.flow)
        self.ofi = OrderFlowImbalance(cfg.ofi)
        self.vpin = Vpin(cfg.vpin)
        self.changepoint = ChangepointDetector(cfg.changepoint)
        self.informed = InformedFlow(cfg.informed)
        self.funding = FundingProximity(cfg.funding)
        self.regimes_accepted = 0

    def on_trade(self, trade: Trade, state: MarketState | None) -> None:
        t, size_lots, aggressor = trade.t, trade.size_lots, trade.aggressor
        self.flow.on_trade(t, size_lots, aggressor)
        self.vpin.on_trade(t, size_lots, aggressor)
        self.informed.on_trade(t, aggressor)
        if state is not None:
            self.intensity.on_trade(t, trade.px_ticks, aggressor, state.mid_ticks)

    def on_book(self, state: MarketState) -> None:
        sigma_before = self.volatility.sigma_bps_per_sqrt_s()
        self.volatility.on_mid(state.t, state.mid_ticks)
        self.ofi.on_book(state)
        for r_bps, dt in self.volatility.drain_returns():
            if sigma_before <= 0.0:
                continue
            z = r_bps / (sigma_before * math.sqrt(dt))
            if self.changepoint.update(state.t, z):
                self.volatility.accept_regime()
                self.regimes_accepted += 1
                sigma_before = self.volatility.sigma_bps_per_sqrt_s()

    def on_fill(self, fill: Fill) -> None:
        self.informed.on_fill(fill.t, fill.side)

    def on_funding_rate(self, rate: float) -> None:
        self.funding.on_funding_rate(rate)

    def on_funding_payment(self, t: float, rate: float) -> None:
        self.funding.on_payment(t, rate)

    def set_adverse_move_bps(self, move_bps: float) -> None:
        self.informed.set_adverse_move_bps(move_bps)

    def compute(self, state: MarketState, position_lots: int) -> ReferenceOutput:
        t = state.t
        cp = self.changepoint
        a_eff, kappa_eff = self.intensity.estimate(t, cp.alarm)
        toxicity, informed = self.informed.contributions(t)
        contribs = self.flow.contributions(t)
        contribs["ofi"] = self.ofi.contribution(state)
        contribs["vpin"] = self.vpin.contribution()
        contribs["regime_kappa"] = SignalContribution(kappa_eff, 0.0, 0.0, cp.alarm)
        cc = self.cfg.changepoint
        contribs["changepoint"] = SignalContribution(
            value=cp.cp_prob,
            spread_bps=cc.widen_bps * cp.cp_prob + (cc.alarm_widen_bps if cp.alarm else 0.0),
            active=cp.alarm,
        )
        contribs.update(informed)
        contribs["funding"] = self.funding.contribution(t, position_lots)
        disabled = self.cfg.disabled
        if disabled:
            for name in disabled:
                c = contribs[name]
                contribs[name] = SignalContribution(value=c.value, active=False)
            if "regime_kappa" in disabled:
                a_eff, kappa_eff = self.intensity.estimate(t, short=False)
        spread_add_bps = skew_bps = 0.0
        for c in contribs.values():
            spread_add_bps += c.spread_bps
            skew_bps += c.skew_bps
        return (
            spread_add_bps, skew_bps, kappa_eff, a_eff, self.volatility.sigma_bps_per_sqrt_s(), toxicity, contribs
        )
