"""De-duplication in bounded memory: what a session running for weeks keeps of the fills it saw."""

from __future__ import annotations

import pytest

from agent.orders import OrderManager, OrderManagerConfig
from hlmm.recent_ids import RecentIds
from hlmm.venue import Fill
from tests.test_agent_orders import HYPE


def test_the_window_remembers_the_latest_ids_and_forgets_the_oldest() -> None:
    recent = RecentIds(3)
    for tid in (5, 6, 5, 7):  # the repeated 5 is not remembered twice
        recent.add(tid)
    assert (5 in recent, 6 in recent, 7 in recent, len(recent)) == (True, True, True, 3)
    recent.add(8)
    assert 5 not in recent and {6, 7, 8} == {t for t in range(10) if t in recent}
    with pytest.raises(ValueError, match="maxlen=0"):
        RecentIds(0)


def test_a_fill_resent_within_the_window_is_ignored_and_memory_stays_bounded() -> None:
    """The order manager (and the markouts, and the bridge) keep the last FILL_IDS_KEPT fills' ids:
    a re-sent recent fill moves nothing; the count stays at the window however many fills came."""
    om = OrderManager(OrderManagerConfig(), HYPE)
    om._seen_trade_ids = RecentIds(50)
    for tid in range(1, 201):
        om.on_fill(Fill(tid * 0.1, -1, 9, 1, 30_870, 1, 0.0, trade_id=tid, is_maker=True))
    assert om.position_lots == 200 and len(om._seen_trade_ids) == 50
    om.on_fill(Fill(30.0, -1, 9, 1, 30_870, 1, 0.0, trade_id=190, is_maker=True))  # re-sent
    assert om.position_lots == 200 and om.counters["duplicate_fill"] == 1
