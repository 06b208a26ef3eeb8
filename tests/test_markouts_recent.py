"""The recent-fill means read from the float deques equal, bit for bit, the means over the records
(the plain computation), through a long seeded stream that fills and wraps every window, and with
records appended directly as the incident's tracker does."""

from __future__ import annotations

import copy
import operator
import pickle

import numpy as np
import pytest

from agent.markouts import MarkoutConfig, MarkoutRecord, MarkoutTracker, RecentRecords
from hlmm.instrument import Instrument
from hlmm.venue import FeeSchedule, Fill
from scenarios.incident import TautologicalMarkouts

HYPE = Instrument(coin="HYPE", sz_decimals=2, tick_decimals=3)


def _reference_mean(recs: list[MarkoutRecord], name: str) -> float:
    """The mean as first written: the field of each record, summed in order."""
    return sum(map(operator.attrgetter(name), recs)) / len(recs) if recs else 0.0


def _check(tr: MarkoutTracker) -> None:
    cfg = tr.cfg
    for h in cfg.horizons_s:
        recs = list(tr._recent[h])
        assert tr.recent_edge_bps(h) == _reference_mean(recs, "edge_bps")
        assert tr.mean_as_bps(h) == _reference_mean(recs, "as_bps")
    recs = list(tr._recent[cfg.as_horizon_s])
    n = len(recs)
    expected = _reference_mean(recs, "as_bps") * n / (n + cfg.as_prior_fills) if n else 0.0
    assert tr.adverse_selection_estimate_bps() == expected


@pytest.mark.parametrize("tracker", [MarkoutTracker, TautologicalMarkouts])
def test_recent_means_match_the_records_bit_for_bit(tracker: type[MarkoutTracker]) -> None:
    cfg = MarkoutConfig(horizons_s=(1.0, 5.0, 30.0), attribution_horizon_s=5.0, as_horizon_s=5.0, recent_fills=20)
    tr = tracker(cfg, HYPE, FeeSchedule())
    rng = np.random.default_rng(11)
    mid, t = 30_000.0, 0.0
    _check(tr)
    for trade_id in range(400):
        t += float(rng.exponential(2.0))
        mid += float(rng.normal(0.0, 8.0))
        tr.on_mid(t, mid)
        _check(tr)
        side = 1 if rng.random() < 0.5 else -1
        px = round(mid) - side * int(rng.integers(1, 20))
        fill = Fill(t=t, client_id=1, oid=trade_id, side=side, px_ticks=px, size_lots=int(rng.integers(1, 300)),
                    fee_usd=float(rng.uniform(0.0, 0.02)), trade_id=trade_id, is_maker=True)
        tr.on_fill(fill, mid + float(rng.normal(0.0, 3.0)), mid)
        _check(tr)
        if trade_id % 37 == 0:  # a record appended directly, as a subclass may
            h = cfg.horizons_s[trade_id % len(cfg.horizons_s)]
            if tr._recent[h]:
                tr._recent[h].append(tr._recent[h][0])
                _check(tr)
    # every window filled and wrapped many times, and the means are not all zero
    assert all(len(tr._recent[h]) == cfg.recent_fills for h in cfg.horizons_s)
    assert tr.recent_edge_bps(5.0) != 0.0
    if tracker is MarkoutTracker:  # the tautological tracker's AS is 0 by construction
        assert tr.adverse_selection_estimate_bps() != 0.0


def test_recent_records_refuse_every_change_but_append() -> None:
    recs = RecentRecords(3)
    rec = MarkoutRecord(0.0, 1, 1, 100, 1, 5.0, 5.0, 100.0, 100.0, 101.0, 0.0, 0.0, -1.0, 1.0, 0.1, 0.9)
    for _ in range(5):
        recs.append(rec)
    assert len(recs) == len(recs.edge_bps) == len(recs.as_bps) == 3
    for change in (lambda: recs.appendleft(rec), lambda: recs.pop(), lambda: recs.popleft(),
                   lambda: recs.clear(), lambda: recs.remove(rec), lambda: recs.rotate(1), lambda: recs.insert(0, rec),
                   lambda: recs.reverse(), lambda: recs.extendleft([rec]), lambda: recs.__setitem__(0, rec),
                   lambda: recs.__delitem__(0)):
        with pytest.raises(TypeError, match="only appended"):
            change()
    assert list(recs) == [rec] * 3 and list(recs.edge_bps) == [0.9] * 3


def test_recent_records_survive_copy_and_pickle() -> None:
    recs = RecentRecords(3)
    for k in range(5):
        recs.append(MarkoutRecord(0.0, 1, 1, 100, 1, 5.0, 5.0, 100.0, 100.0, 101.0, 0.0, 0.0, -1.0, 1.0, 0.1 * k, 0.9 * k))
    mean_edge, mean_as = recs.mean_edge_bps(), recs.mean_as_bps()
    for twin in (copy.copy(recs), copy.deepcopy(recs), pickle.loads(pickle.dumps(recs))):
        assert type(twin) is RecentRecords and twin.maxlen == 3 and list(twin) == list(recs)
        assert list(twin.edge_bps) == list(recs.edge_bps) and list(twin.as_bps) == list(recs.as_bps)
        assert (twin.mean_edge_bps(), twin.mean_as_bps()) == (mean_edge, mean_as)
        twin.extend([recs[0]])  # extending appends, and the copy is its own
        assert list(twin)[-1] == recs[0] and list(recs.edge_bps) != list(twin.edge_bps)
