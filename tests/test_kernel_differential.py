"""Differential test of the matching kernel (sim/kernel.py) against its reference
(tests/kernel_reference.py, the kernel before its speed changes): both start from the same
warmed-up engine state and one seeded stream drives them (background flow in short runs, agent
orders of every kind near the touch, cancels, value shocks, book snapshots). After every call
the two states and outputs must be the same, byte for byte."""

from __future__ import annotations

from collections import Counter
from types import ModuleType

import numpy as np
import pytest

from sim import kernel
from sim.engine import BUFFER, MatchingEngine
from sim.scenario import load_scenario
from tests import kernel_reference

TIFS = (kernel.TIF_GTC, kernel.TIF_ALO, kernel.TIF_IOC)


class _State:
    """One copy of an engine's kernel arrays (the order table: its first ``rows`` rows)."""

    def __init__(self, eng: MatchingEngine, rows: int) -> None:
        self.si = eng._si.copy()
        self.sf = eng._sf.copy()
        self.rng = eng._rng.copy()
        self.depth_bid = eng._depth_bid.copy()
        self.depth_ask = eng._depth_ask.copy()
        self.orders = eng._orders[:rows].copy()
        self.tr_i = np.zeros((BUFFER, 4), dtype=np.int64)
        self.tr_f = np.zeros(BUFFER)
        self.fl_i = np.zeros((BUFFER, 6), dtype=np.int64)
        self.fl_f = np.zeros((BUFFER, 2))
        self.fin = np.zeros((BUFFER, 2), dtype=np.int64)
        self.book = np.zeros((2, 10, 2), dtype=np.int64)

    def outputs(self) -> tuple[np.ndarray, ...]:
        """The filled part of every output buffer."""
        ntr, nfl, nfin = (int(self.si[k]) for k in (kernel.SI_NTR, kernel.SI_NFL, kernel.SI_NFIN))
        return self.tr_i[:ntr], self.tr_f[:ntr], self.fl_i[:nfl], self.fl_f[:nfl], self.fin[:nfin]

    def arrays(self) -> dict[str, np.ndarray]:
        named = dict(zip(("tr_i", "tr_f", "fl_i", "fl_f", "fin"), self.outputs(), strict=True))
        return {"si": self.si, "sf": self.sf, "rng": self.rng, "depth_bid": self.depth_bid,
                "depth_ask": self.depth_ask, "orders": self.orders, "book": self.book, **named}

    def clear_outputs(self) -> None:
        for k in (kernel.SI_NTR, kernel.SI_NFL, kernel.SI_NFIN):
            self.si[k] = 0


def _flow(k: ModuleType, s: _State, until_s: float, p: np.ndarray) -> int:
    return int(k.run_flow(until_s, BUFFER - 256, s.si, s.sf, p, s.rng, s.depth_bid, s.depth_ask, s.orders,
                          s.tr_i, s.tr_f, s.fl_i, s.fl_f, s.fin))


def _place(k: ModuleType, s: _State, p: np.ndarray, side: int, idx: int, lots: int, reduce_only: bool, tif: int,
           oid: int, slot: int) -> int:
    """Enter an order as MatchingEngine.place does once it has passed the checks; returns
    enter's code."""
    code = int(k.enter(side, idx, lots, reduce_only, tif, oid, slot, s.si, s.depth_bid, s.depth_ask, s.orders))
    if code == kernel.ENTER_CROSSES:
        taken = k.sweep(side, idx, lots, slot, s.si, s.sf, p, s.depth_bid, s.depth_ask, s.orders, s.tr_i, s.tr_f,
                        s.fl_i, s.fl_f, s.fin)
        k._impact(s.sf, p, side, taken, 1.0)
        row = s.orders[slot]
        if row[kernel.O_ACTIVE] == 1:
            if tif == kernel.TIF_IOC:
                row[kernel.O_ACTIVE] = 0
            else:
                row[kernel.O_QA] = (s.depth_bid if side == 1 else s.depth_ask)[idx]
    return code


def _same(new: _State, ref: _State, what: str) -> None:
    a, b = new.arrays(), ref.arrays()
    for name in a:
        assert a[name].tobytes() == b[name].tobytes(), f"{what}: {name} differs"


def _drive(scenario: str, seed: int, duration_s: float) -> Counter[str]:
    """Run one stream through both kernels, comparing after every call; returns how often it
    reached each situation (so the test cannot pass vacuously)."""
    eng = MatchingEngine(load_scenario(scenario), seed)
    rows = 6
    new, ref = _State(eng, rows), _State(eng, rows)
    params = [p.copy() for p in eng._params]
    rng = np.random.default_rng(seed)
    seen: Counter[str] = Counter()
    t = 0.0
    oid = 1
    while t < duration_s:
        p = params[int(t / 60.0) % len(params)]  # every regime's flow, a minute each
        t += float(rng.exponential(0.4))
        lo_bid = int(new.si[kernel.SI_LO_BID])
        informed = int(new.si[kernel.SI_INFORMED])
        rcs = [_flow(k, s, t, p) for k, s in ((kernel, new), (kernel_reference, ref))]
        assert rcs[0] == rcs[1], f"t={t}: run_flow returned {rcs}"
        _same(new, ref, f"t={t}: run_flow")
        if rcs[0] == 2:
            seen["out_of_window"] += 1
            break
        seen["prune"] += int(new.si[kernel.SI_LO_BID]) != lo_bid
        seen["informed"] += int(new.si[kernel.SI_INFORMED]) != informed
        u = rng.random()
        free = np.flatnonzero(new.orders[:, kernel.O_ACTIVE] == 0)
        if u < 0.45 and free.size:
            side = 1 if rng.random() < 0.5 else -1
            touch = int(new.si[kernel.SI_BEST_BID if side == 1 else kernel.SI_BEST_ASK])
            idx = touch + side * int(rng.integers(-4, 4))  # behind the touch, at it, or crossing
            lots = int(rng.integers(1, 120))
            reduce_only = bool(rng.random() < 0.15)
            tif = TIFS[int(rng.integers(0, 3))]
            codes = [_place(k, s, p, side, idx, lots, reduce_only, tif, oid, int(free[0]))
                     for k, s in ((kernel, new), (kernel_reference, ref))]
            assert codes[0] == codes[1], f"t={t}: enter returned {codes}"
            seen[f"enter_{codes[0]}"] += 1
            oid += 1
            _same(new, ref, f"t={t}: place")
        elif u < 0.6:
            live = np.flatnonzero(new.orders[:, kernel.O_ACTIVE] == 1)
            if live.size:
                k = int(live[int(rng.integers(0, live.size))])
                new.orders[k, kernel.O_ACTIVE] = ref.orders[k, kernel.O_ACTIVE] = 0
        elif u < 0.7:
            # a shock to the value (a large taker's impact): quotes left on the wrong side are cleared
            side, lots = (1 if rng.random() < 0.5 else -1), int(rng.integers(1, 400_000))
            kernel._impact(new.sf, p, side, lots, 1.0)
            kernel_reference._impact(ref.sf, p, side, lots, 1.0)
            v = new.sf[kernel.SF_V]
            seen["stale"] += bool(new.si[kernel.SI_BEST_BID] > v or new.si[kernel.SI_BEST_ASK] < v)
            _same(new, ref, f"t={t}: impact")
        elif u < 0.8:
            base = eng.base_ticks
            levels = [k.book_levels(s.si, s.orders, s.depth_bid, s.depth_ask, base, s.book)
                      for k, s in ((kernel, new), (kernel_reference, ref))]
            assert levels[0] == levels[1]
            _same(new, ref, f"t={t}: book")
        _, _, fl_i, _, fin = new.outputs()
        seen["trade"] += int(new.si[kernel.SI_NTR])
        seen["maker_fill"] += int((fl_i[:, 4] == 1).sum())
        seen["taker_fill"] += int((fl_i[:, 4] == 0).sum())
        for reason in fin[:, 1].tolist():
            seen[f"finished_{reason}"] += 1
        new.clear_outputs()
        ref.clear_outputs()
    return seen


@pytest.mark.parametrize(("scenario", "seed"), [("feb12_cascade", 3), ("flash_crash", 4), ("calm", 5)])
def test_kernel_matches_its_reference(scenario: str, seed: int) -> None:
    seen = _drive(scenario, seed, 900.0)
    for situation in ("trade", "maker_fill", "taker_fill", "prune", "stale", f"enter_{kernel.ENTER_RESTS}",
                      f"enter_{kernel.ENTER_CROSSES}", f"enter_{kernel.ENTER_WOULD_CROSS}",
                      f"enter_{kernel.ENTER_NO_MATCH}", f"finished_{kernel.FIN_FILLED}",
                      f"finished_{kernel.FIN_REDUCE_ONLY}", f"finished_{kernel.FIN_SELF_TRADE}"):
        assert seen[situation] > 0, f"{scenario}: the stream never reached {situation}: {dict(seen)}"
    if scenario != "calm":
        assert seen["informed"] > 0, dict(seen)
