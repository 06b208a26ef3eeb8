"""The peer: hftbacktest 2.4's backtester with a GLFT market maker at the same cadence, on the
same tape as hlmm's replay mode (converted to hftbacktest's event format).

Matched with hlmm: same closed-form GLFT depths (agent.glft, evaluated in numba here with the same
inputs), same order size and inventory cap, 100 ms cadence, zero latency, risk-averse queue model
(hftbacktest's counterpart of the replay's conservative queue), maker fee 1.5 bps.
"""

from __future__ import annotations

import math
import time

import numpy as np
from hftbacktest import (
    BUY_EVENT,
    DEPTH_EVENT,
    EXCH_EVENT,
    GTX,
    LIMIT,
    LOCAL_EVENT,
    SELL_EVENT,
    TRADE_EVENT,
    BacktestAsset,
    HashMapMarketDepthBacktest,
    event_dtype,
)
from numba import njit

from agent.glft import glft_half_spread_and_skew
from hlmm.instrument import Instrument
from sim.replay import KIND_TRADE, AccountSamples, Tape
from sim.replay_run import GlftReplay


def to_hftbacktest(tape: Tape, instrument: Instrument) -> np.ndarray:
    """The tape as hftbacktest events (float prices and sizes at the edge, as it requires)."""
    ev = np.zeros(len(tape), event_dtype)
    kind = np.where(tape.kind == KIND_TRADE, TRADE_EVENT, DEPTH_EVENT).astype(np.uint64)
    side = np.where(tape.side == 1, BUY_EVENT, SELL_EVENT).astype(np.uint64)
    ev["ev"] = kind | side | np.uint64(EXCH_EVENT) | np.uint64(LOCAL_EVENT)
    ev["exch_ts"] = tape.t_ns
    ev["local_ts"] = tape.t_ns
    ev["px"] = tape.px_ticks * 10.0 ** -instrument.tick_decimals
    ev["qty"] = tape.size_lots * 10.0 ** -instrument.sz_decimals
    return ev


@njit
def _glft_loop(hbt, step_ns, half_bps, skew_bps, order_qty, max_qty, tick, samples):  # pragma: no cover - jitted
    """The GLFT loop; each decision step's (time s, mid, position, cash, traded value) goes to
    ``samples`` (as hlmm's replay samples its account) while there is room."""
    bid_id, ask_id, next_id, decisions = 0, 0, 1, 0
    bid_px, ask_px = 0.0, 0.0
    while hbt.elapse(step_ns) == 0:
        hbt.clear_inactive_orders(0)
        depth = hbt.depth(0)
        if not (depth.best_bid > 0 and depth.best_ask > depth.best_bid):
            continue
        pos = hbt.position(0)
        mid = 0.5 * (depth.best_bid + depth.best_ask)
        if decisions < samples.shape[0]:
            sv = hbt.state_values(0)
            samples[decisions, 0] = hbt.current_timestamp * 1e-9
            samples[decisions, 1] = mid
            samples[decisions, 2] = pos
            samples[decisions, 3] = sv.balance
            samples[decisions, 4] = sv.trading_value
        decisions += 1
        q = pos / order_qty
        nb = min(depth.best_bid, math.floor(mid * (1 - (half_bps + q * skew_bps) * 1e-4) / tick) * tick)
        na = max(depth.best_ask, math.ceil(mid * (1 + (half_bps - q * skew_bps) * 1e-4) / tick) * tick)
        orders = hbt.orders(0)
        if bid_id != 0 and (abs(nb - bid_px) > 0.5 * tick or pos >= max_qty) and orders.get(bid_id) is not None:
            hbt.cancel(0, bid_id, False)
            bid_id = 0
        if ask_id != 0 and (abs(na - ask_px) > 0.5 * tick or pos <= -max_qty) and orders.get(ask_id) is not None:
            hbt.cancel(0, ask_id, False)
            ask_id = 0
        if bid_id != 0 and orders.get(bid_id) is None:
            bid_id = 0
        if ask_id != 0 and orders.get(ask_id) is None:
            ask_id = 0
        if bid_id == 0 and pos < max_qty:
            bid_id = next_id
            next_id += 1
            bid_px = nb
            hbt.submit_buy_order(0, bid_id, nb, order_qty, GTX, LIMIT, False)
        if ask_id == 0 and pos > -max_qty:
            ask_id = next_id
            next_id += 1
            ask_px = na
            hbt.submit_sell_order(0, ask_id, na, order_qty, GTX, LIMIT, False)
    return decisions


def run_peer(tape: Tape, instrument: Instrument, glft: GlftReplay, cadence_s: float) -> dict:
    """events/s (wall, numba warm-up excluded), PnL, fills of hftbacktest's GLFT on ``tape``."""
    half, skew = glft_half_spread_and_skew(glft.gamma, glft.sigma_bps, glft.a_per_s, glft.kappa_per_bps)
    tick = 10.0 ** -instrument.tick_decimals
    lot = 10.0 ** -instrument.sz_decimals
    data = to_hftbacktest(tape, instrument)

    def once(events: np.ndarray) -> tuple[dict, float]:
        asset = (BacktestAsset().data([events]).linear_asset(1.0).constant_order_latency(0, 0)
                 .risk_adverse_queue_model().no_partial_fill_exchange()
                 .trading_value_fee_model(1.5e-4, 4.5e-4).tick_size(tick).lot_size(lot).last_trades_capacity(0))
        hbt = HashMapMarketDepthBacktest([asset])
        span_s = (int(events["exch_ts"][-1]) - int(events["exch_ts"][0])) * 1e-9
        rows = np.zeros((int(span_s / cadence_s) + 2, 5))
        s = time.perf_counter()
        decisions = _glft_loop(hbt, round(cadence_s * 1e9), half, skew, glft.order_lots * lot,
                               glft.max_lots * lot, tick, rows)
        wall = time.perf_counter() - s
        sv = hbt.state_values(0)
        depth = hbt.depth(0)
        mid = 0.5 * (depth.best_bid + depth.best_ask)
        pos = hbt.position(0)
        taken = rows[:min(decisions, len(rows))]
        samples = AccountSamples(taken[:, 0], taken[:, 1], taken[:, 2], taken[:, 3], taken[:, 4])
        out = {"decisions": int(decisions), "fills": int(sv.num_trades), "position_lots": round(pos / lot),
               "pnl_usd": float(sv.balance + pos * mid - sv.fee), "fees_usd": float(sv.fee),
               "filled_lots": round(float(sv.trading_volume) / lot), "samples": samples}
        hbt.close()
        return out, wall

    once(data[:2_000].copy())  # numba warm-up
    out, wall = once(data)
    out.update(events=len(tape), wall_s=wall, events_per_s=len(tape) / wall)
    return out
