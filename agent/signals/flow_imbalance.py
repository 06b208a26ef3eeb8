"""Multi-timescale trade-flow imbalance (theory.md section 4) -> skew.

For each time constant τ_w (default 1, 10, 30, 300 s) exponentially forgotten aggressor buy
and sell volume (B_w, S_w) and counts are kept, so average buy and sell sizes are tracked
(the incident had them hard-coded to 0). TI_w is the mean of the volume and count
imbalances, shrunk towards 0 when few trades were seen; the predicted move is Σ β_w·TI_w bps
and leans with the flow: sell-heavy flow gives a negative skew (quotes move down).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field, model_validator

from agent.types import SignalContribution
from hlmm.validation import SETTINGS

_PENDING = SignalContribution(value=0.0)  # placeholder that fixes the position of ``flow`` in the dict


class FlowConfig(BaseModel):
    model_config = SETTINGS

    timescales_s: tuple[float, ...] = Field(default=(1.0, 10.0, 30.0, 300.0), min_length=1)
    skew_bps_per_imbalance: tuple[float, ...] = Field(
        default=(0.5, 1.0, 1.5, 1.0), description="β_w: bps of skew per unit imbalance at each timescale"
    )
    shrink_trades: float = Field(default=2.0, ge=0, le=1000.0, description="TI is scaled by n/(n + this)")
    max_skew_bps: float = Field(default=6.0, ge=0, le=100.0)

    @model_validator(mode="after")
    def _same_length(self) -> FlowConfig:
        if len(self.timescales_s) != len(self.skew_bps_per_imbalance) or min(self.timescales_s) <= 0:
            raise ValueError(
                f"timescales_s={self.timescales_s!r}, skew_bps_per_imbalance={self.skew_bps_per_imbalance!r}: "
                "need one positive timescale per weight"
            )
        return self


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
        # per-cycle constants: names of the per-timescale contributions and Σ|β|
        self._names = tuple(f"flow_{tau:g}s" for tau in cfg.timescales_s)
        self._total_beta = sum(abs(b) for b in cfg.skew_bps_per_imbalance) or 1.0
        # config fields read on every trade and cycle, as plain attributes
        self._indexed_taus = tuple(enumerate(cfg.timescales_s))
        self._indices = range(n)
        self._betas = cfg.skew_bps_per_imbalance
        self._shrink = cfg.shrink_trades
        self._max_skew = cfg.max_skew_bps

    def on_trade(self, t: float, size_lots: int, aggressor: int) -> None:
        if aggressor > 0:
            vol, cnt, other_vol, other_cnt = self._buy_vol, self._buy_n, self._sell_vol, self._sell_n
        else:
            vol, cnt, other_vol, other_cnt = self._sell_vol, self._sell_n, self._buy_vol, self._buy_n
        last_t = self._t
        if last_t is None or t <= last_t:  # nothing to forget (as in _advance)
            if last_t is None:
                self._t = t
            for i in self._indices:
                vol[i] += size_lots
                cnt[i] += 1.0
            return
        # _advance and the additions in one pass: each entry forgotten, then added to
        dt = t - last_t
        exp = math.exp
        for i, tau in self._indexed_taus:
            w = exp(-dt / tau)
            vol[i] = vol[i] * w + size_lots
            cnt[i] = cnt[i] * w + 1.0
            other_vol[i] *= w
            other_cnt[i] *= w
        self._t = t

    def average_sizes_lots(self, t: float) -> tuple[float, float]:
        """(average buy size, average sell size) in lots over the longest timescale; 0 when none."""
        self._advance(t)
        return self._average_sizes()

    def contributions(self, t: float) -> dict[str, SignalContribution]:
        """``flow`` (combined, carries the skew), ``flow_<τ>s`` per timescale (TI_w in [−1, 1],
        positive = buyers aggress), average sizes (value only)."""
        self._advance(t)
        shrink = self._shrink
        combined = 0.0  # Σ β_w·TI_w, summed in timescale order, in the same pass as the entries
        out = {"flow": _PENDING}  # the combined entry comes first; set once the sum is known
        for name, beta, b, s, nb, ns in zip(
            self._names, self._betas, self._buy_vol, self._sell_vol, self._buy_n, self._sell_n, strict=True
        ):
            n = nb + ns
            ti = 0.0 if n <= 0 or b + s <= 0 else 0.5 * ((b - s) / (b + s) + (nb - ns) / n) * n / (n + shrink)
            combined += beta * ti
            out[name] = SignalContribution(ti, 0.0, 0.0, ti != 0.0)
        skew = max(-self._max_skew, min(self._max_skew, combined))
        out["flow"] = SignalContribution(combined / self._total_beta, 0.0, skew, skew != 0.0)
        buy, sell = self._average_sizes()
        out["avg_buy_size_lots"] = SignalContribution(buy, 0.0, 0.0, buy > 0)
        out["avg_sell_size_lots"] = SignalContribution(sell, 0.0, 0.0, sell > 0)
        return out

    def _average_sizes(self) -> tuple[float, float]:
        """:meth:`average_sizes_lots` at the time of the last advance."""
        i = self._indices[-1]
        buy = self._buy_vol[i] / self._buy_n[i] if self._buy_n[i] > 1e-12 else 0.0
        sell = self._sell_vol[i] / self._sell_n[i] if self._sell_n[i] > 1e-12 else 0.0
        return buy, sell

    def _advance(self, t: float) -> None:
        if self._t is None:
            self._t = t
            return
        dt = t - self._t
        if dt <= 0:
            return
        bv, sv, bn, sn = self._buy_vol, self._sell_vol, self._buy_n, self._sell_n
        exp = math.exp
        for i, tau in self._indexed_taus:
            w = exp(-dt / tau)
            bv[i] *= w
            sv[i] *= w
            bn[i] *= w
            sn[i] *= w
        self._t = t
