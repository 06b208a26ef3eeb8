"""Bench smoke: the bench command runs end to end on tiny sizes, and replay fills where it should."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import run
from hlmm.instrument import Instrument
from sim.replay import NO_QUOTE, AccountSamples, Quotes, Tape, replay

HYPE = Instrument(coin="HYPE", sz_decimals=2, tick_decimals=3)
S = 1_000_000_000  # ns per s


def _tape(rows: list[tuple[float, int, int, int, int]]) -> Tape:
    a = np.array([(round(t * S), k, sd, p, z) for t, k, sd, p, z in rows], dtype=np.int64)
    return Tape(a[:, 0], a[:, 1].astype(np.int8), a[:, 2].astype(np.int8), a[:, 3], a[:, 4])


def _fixed(bid: int, ask: int, lots: int):
    return lambda t, bb, ba, q: Quotes(bid, ask, lots)


BOOK = [(0.0, 0, 1, 999, 30), (0.0, 0, -1, 1001, 40)]


def test_trade_at_our_price_fills_only_beyond_the_queue_ahead() -> None:
    # we join the 999 bid behind 30 lots at t=0.1; a 35-lot sell fills 5 of our 10
    tape = _tape([*BOOK, (0.15, 1, -1, 999, 35), (0.25, 0, 1, 999, 0)])
    r = replay(tape, HYPE, _fixed(999, NO_QUOTE, 10), 0.1)
    assert (r.fills, r.filled_lots, r.position_lots) == (1, 5, 5)


def test_shrinking_level_moves_us_forward_and_trade_through_fills_fully() -> None:
    # level shrinks to 4 lots ahead, then a 6-lot sell at 999 fills 2; a sell at 998 fills the rest
    tape = _tape([*BOOK, (0.12, 0, 1, 999, 4), (0.13, 1, -1, 999, 6), (0.14, 1, -1, 998, 1), (0.25, 0, 1, 999, 0)])
    r = replay(tape, HYPE, _fixed(999, NO_QUOTE, 10), 0.1)
    assert (r.fills, r.filled_lots, r.position_lots) == (2, 10, 10)


def test_trades_away_from_our_quotes_do_not_fill() -> None:
    tape = _tape([*BOOK, (0.15, 1, -1, 999, 500), (0.16, 1, 1, 1001, 500), (0.25, 0, 1, 999, 0)])
    r = replay(tape, HYPE, _fixed(998, 1002, 10), 0.1)
    assert r.fills == 0 and r.position_lots == 0


def test_round_trip_pnl_is_the_spread_minus_fees() -> None:
    tape = _tape([*BOOK, (0.15, 1, -1, 999, 100), (0.16, 1, 1, 1001, 100), (0.25, 0, 1, 999, 30)])
    r = replay(tape, HYPE, _fixed(999, 1001, 10), 0.1, maker_fee_bps=1.0)
    # bought 10 lots at 999, sold 10 at 1001: 2 ticks * 10 lots = 0.002 USD * 0.1 coin
    assert r.position_lots == 0
    assert r.pnl_usd == pytest.approx(2 * 10 * 1e-3 * 1e-2 - r.fees_usd)
    assert r.fees_usd == pytest.approx((999 + 1001) * 10 * 1e-4 * 1e-3 * 1e-2)


def test_realized_edge_marks_each_interval_at_the_mid_a_horizon_later() -> None:
    # t=1: bought 10 at 99.5 (mid 100); t=3: sold 10 at 100 (mid 99)
    s = AccountSamples(t_s=np.array([0.0, 1.0, 2.0, 3.0]), mid=np.array([100.0, 100.0, 101.0, 99.0]),
                       position=np.array([0, 10, 10, 0]), cash=np.array([0, -995, -995, 5]),
                       notional=np.array([0, 995, 995, 1995]))
    # 0 s: the buy is worth 10*100-995 = 5, the sell 1000-10*99 = 10, over 1995 of notional
    assert s.realized_edge_bps(0.0) == pytest.approx(15 / 1995 * 1e4)
    # 1 s: the buy at mid 101 is worth 15; the sell's horizon is past the last sample
    assert s.realized_edge_bps(1.0) == pytest.approx(15 / 995 * 1e4)
    assert np.isnan(s.realized_edge_bps(5.0))
    with pytest.raises(ValueError, match="horizon_s=-1"):
        s.realized_edge_bps(-1)


def test_replay_samples_its_account_at_each_decision() -> None:
    tape = _tape([*BOOK, (0.15, 1, -1, 999, 100), (0.25, 0, 1, 999, 30), (0.35, 0, -1, 1003, 40),
                  (0.35, 0, -1, 1001, 0), (0.45, 0, 1, 999, 30)])
    r = replay(tape, HYPE, _fixed(999, NO_QUOTE, 10), 0.1)
    # bought 10 at 999 (mid 1000), then the ask moved to 1003: mid 1001 from t=0.4 on
    assert r.samples.position.tolist() == [0, 10, 10, 10, 10]
    assert r.samples.realized_edge_bps(0.0) == pytest.approx(10 * (1000 - 999) / (999 * 10) * 1e4)
    assert r.samples.realized_edge_bps(0.2) == pytest.approx(10 * (1001 - 999) / (999 * 10) * 1e4)


def test_bench_command_quick_on_tiny_sizes(tmp_path, monkeypatch, capsys) -> None:
    tiny = run.Sizes(replay_events=5_000, engine_s=2.0, venue_s=5.0, env_steps=3, ppo_steps=16, decisions=20)
    monkeypatch.setitem(run.SIZES, "quick", tiny)
    out = tmp_path / "b.json"
    assert run.bench_cli(quick=True, json_path=out) == 0
    res = json.loads(out.read_text())
    assert res["replay"]["events"] == 5_040 and res["replay"]["events_per_s"] > 0
    assert res["decision"]["p99_us"] >= res["decision"]["p50_us"] > 0
    floor = res["venue_floor"]
    assert floor["seconds_simulated"] == 5.0 and floor["null_agent_us_per_simulated_s"] > 0
    assert floor["production_us_per_simulated_s"] > 0 and floor["messages_us_per_simulated_s"] > 0
    assert 0.0 <= floor["agent_compute_share"] < 1.0
    # PPO with hlmm train's own setup on the real and on the constant env, rollout shrunk to fit
    ppo = res["ppo"]
    assert "na" not in ppo, ppo
    assert (ppo["n_envs"], ppo["n_steps"], ppo["n_epochs"]) == (1, 16, 5)
    assert ppo["real_steps_per_s"] > 0 and ppo["constant_steps_per_s"] > 0
    assert 0.0 <= ppo["env_share_of_training"] < 1.0
    # and on the constant env carrying the production agent's recorded messages through the venue
    assert ppo["messages_steps_per_s"] > 0 and 0.0 <= ppo["messages_share_of_training"] < 1.0
    # and that traffic replayed by the compiled-agent stand-in, spending what the agent's kernels took
    assert ppo["compiled_steps_per_s"] > 0 and 0.0 <= ppo["compiled_share_of_training"] < 1.0
    assert ppo["kernel_book_us"] > ppo["kernel_other_us"] > 0
    # the env's step inside learn, the same env alone, and the learner's time per step around them
    assert ppo["real_step_us"] > 0 and ppo["real_alone_step_us"] > 0 and ppo["constant_step_us"] > 0
    assert ppo["real_learner_us"] > 0 and ppo["constant_learner_us"] > 0
    # an env spinning as long as the real one's step alone, for the learner beside it
    assert ppo["busy_step_us"] >= ppo["real_alone_step_us"] and ppo["busy_learner_us"] > 0
    # the same env's step alone and right after a policy forward pass or a memory sweep, 6 steps each
    inter = res["interference"]
    assert inter["steps_per_mode"] == 6, inter
    assert min(inter[f"{m}_step_us"] for m in ("alone", "after_sweep", "after_forward")) > 0
    printed = capsys.readouterr().out
    assert "replay events/s" in printed and "env step us inside PPO vs alone" in printed
    assert "env step us after a policy forward vs alone" in printed
    assert "PPO steps/s messages + agent's kernels only vs constant" in printed
    try:
        import hftbacktest  # noqa: F401
    except ImportError:  # without the bench extra the peer's row says why, and the run still succeeds
        assert "ModuleNotFoundError" in res["hftbacktest"]["na"] and "hftbacktest" in res["hftbacktest"]["na"]
        return
    assert res["hftbacktest"]["events"] == 5_040 and res["hftbacktest"]["events_per_s"] > 0
    for name in ("replay", "hftbacktest"):  # realized edge for both (null: no fill that far into the tiny tape)
        assert set(res[name]["edge_bps"]) == {f"{h:g}s" for h in run.EDGE_HORIZONS_S}, res[name]


def test_env_fingerprint_is_reproducible_and_sees_a_different_run() -> None:
    from bench.fingerprint import env_fingerprint

    assert env_fingerprint(seed=5, steps=20) == env_fingerprint(seed=5, steps=20)
    assert env_fingerprint(seed=6, steps=20) != env_fingerprint(seed=5, steps=20)


def _recorded_production_run(seed: int, seconds: float):
    from bench.env_speed import RecordingAgent
    from sim.runner import make_agent
    from sim.scenario import load_scenario
    from sim.venue import SimVenue

    scenario = load_scenario("feb12_cascade")
    agent = RecordingAgent(make_agent("production", scenario.instrument.instrument(), scenario.fees.schedule(), None,
                                      scenario)[0])
    venue = SimVenue(scenario, seed, agent)
    venue.start()
    venue.run_until(seconds)
    return scenario, agent, venue.summary()


def test_replayed_messages_carry_the_recorded_agents_traffic() -> None:
    """The venue floor's 'agent's messages' figure times the production agent's own traffic: its
    commands replayed give the same events, trades and agent fills, and a different market fails."""
    from bench.env_speed import ReplayedMessagesAgent
    from sim.venue import SimVenue

    scenario, recorded, summary = _recorded_production_run(seed=2, seconds=200.0)
    assert summary["commands"] > 100 and summary["agent_fills"] > 0  # it quoted and traded
    replayed = SimVenue(scenario, 2, ReplayedMessagesAgent(recorded))
    replayed.start()
    replayed.run_until(200.0)
    assert replayed.summary() == summary
    elsewhere = SimVenue(scenario, 3, ReplayedMessagesAgent(recorded))
    elsewhere.start()
    with pytest.raises(RuntimeError, match="replay diverged at event"):
        elsewhere.run_until(60.0)


def test_replayed_env_traffic_is_the_real_envs() -> None:
    """The PPO figures' 'agent's messages only' env carries the real env's traffic: each recorded
    episode replayed step by step ends with the venue's summary of the real episode, and a reset
    starts the next recording."""
    from bench.env_speed import ReplayedMessagesEnv, record_env_traffic
    from sim.env import MarketMakingEnv

    config = {"scenarios": ["feb12_cascade", "calm"], "episode_s": 60.0}
    episodes = record_env_traffic(config, 2, seed=4)
    assert [e.steps for e in episodes] == [60, 60]
    assert {e.scenario.name for e in episodes} <= {"feb12_cascade", "calm"}
    assert all(e.summary["commands"] > 20 for e in episodes)  # the random adjustments move the quotes
    env = ReplayedMessagesEnv(MarketMakingEnv(config), episodes, first=1)
    for k in (1, 0):
        env.reset()
        truncated, steps = False, 0
        while not truncated:
            _, _, _, truncated, _ = env.step(env.action_space.sample())
            steps += 1
        assert steps == episodes[k].steps
        assert env._venue.summary() == episodes[k].summary


def test_training_split_as_trained_times_env_0_in_the_learner() -> None:
    from bench.env_speed import measure_training

    # two envs as the training config runs them: env 0 in this process, env 1 in a worker
    d = measure_training(32, 0, 2, rollout_steps=16)
    assert (d["n_envs"], d["vec_env"], d["n_steps"]) == (2, "inline", 8)
    assert d["real_step_us"] > 0 and d["real_alone_step_us"] > 0 and d["constant_step_us"] > 0
    # the rest of a vectorized step: its time (two samples) less env 0's step
    for env in ("real", "constant", "messages", "compiled"):
        assert d[f"{env}_learner_us"] == pytest.approx(2e6 / d[f"{env}_steps_per_s"] - d[f"{env}_step_us"])
    rows = run._split_rows(d, vec=True)
    assert [r[0] for r in rows] == ["env 0 step us inside PPO as trained vs alone",
                                    "rest of a vec step us (learner, pipe, worker), real env vs constant"]
    assert rows[0][1:3] == (f"{d['real_step_us']:,.0f}", f"{d['real_alone_step_us']:,.0f}")


def test_compiled_agent_stand_in_replays_the_traffic_and_updates_the_changepoint() -> None:
    """The compiled-agent stand-in carries the recorded traffic unchanged (the venue ends where the
    real episode did) and feeds its changepoint detector once per simulated second."""
    from bench.compiled_agent import CompiledAgentStandIn
    from bench.env_speed import RecordingAgent, ReplayedMessagesEnv, record_env_traffic
    from sim.env import MarketMakingEnv

    config = {"scenarios": ["feb12_cascade"], "episode_s": 40.0}
    episode = record_env_traffic(config, 1, seed=6)[0]
    agents: list[CompiledAgentStandIn] = []

    def stand_in(recorded: RecordingAgent) -> CompiledAgentStandIn:
        agents.append(CompiledAgentStandIn(recorded, book_iterations=50, other_iterations=5))
        return agents[-1]

    env = ReplayedMessagesEnv(MarketMakingEnv(config), [episode], agent=stand_in)
    env.reset()
    truncated = False
    while not truncated:
        _, _, _, truncated, _ = env.step(env.action_space.sample())
    assert env._venue.summary() == episode.summary
    assert len(agents) == 1 and 39 <= agents[0]._observations <= 41


def test_compiled_agent_kernel_cost_splits_by_event_and_restores_the_kernels() -> None:
    from numba.core.dispatcher import Dispatcher

    from agent import decision_kernels, signal_kernels
    from bench.compiled_agent import measure_kernel_cost

    cost = measure_kernel_cost({"scenarios": ["feb12_cascade"], "episode_s": 120.0}, 60, seed=1, action_std=1.0)
    # a book update every 0.5 s and a 1 s step: two a step, each running the decision kernels
    assert cost.books_per_step == pytest.approx(2.0, abs=0.05)
    assert cost.others_per_step > 1.0
    assert cost.book_us > 0 and cost.other_us > 0
    assert isinstance(signal_kernels.bank_compute, Dispatcher) and isinstance(decision_kernels.quote, Dispatcher)


def test_best_of_keeps_each_runs_least_time_and_recomputes_the_agents_share() -> None:
    # the second run was slowed for the production agent only: its share must not be kept
    runs = iter([{"null_agent_us_per_simulated_s": 45.0, "messages_us_per_simulated_s": 70.0,
                  "production_us_per_simulated_s": 140.0, "agent_compute_share": 0.5},
                 {"null_agent_us_per_simulated_s": 44.0, "messages_us_per_simulated_s": 66.0,
                  "production_us_per_simulated_s": 210.0, "agent_compute_share": (210.0 - 66.0) / 210.0}])
    best = run._best_of(lambda: next(runs), 2, ())
    assert (best["null_agent_us_per_simulated_s"], best["messages_us_per_simulated_s"]) == (44.0, 66.0)
    assert best["production_us_per_simulated_s"] == 140.0
    assert best["agent_compute_share"] == pytest.approx((140.0 - 66.0) / 140.0)
