"""``hlmm chaos``: a seeded fault campaign through the SDK against the lockstep local venue.

Each run (one seed) is a short session of the production agent on ``feb12_cascade``:

- the account starts with a position the agent did not open (up to 80 % of the cap, long or
  short) and, in half the runs, a stray resting order without a cloid: start-up reconciliation
  must adopt both;
- faults drawn from the seed (:class:`live.localvenue.faults.FaultConfig`) act during the first
  ``duration - QUIET_S`` seconds: dropped, duplicated and reordered websocket messages,
  delayed acks (the action lands later, the client gets a 504), rejected orders, timeouts after
  the venue acted, disconnects (websocket closed, HTTP refused);
- in every :data:`KILL_EVERY`-th run the operator's kill switch fires while the faults act.

Figures (each run checked against the venue's truth, never the agent's view):

- position-cap breaches: steps where ``side * position + resting lots on that side`` exceeds the
  agent's configured cap for either side (resting orders count: they can all fill);
- unreconciled orders: at the end (at least 10 s after the last fault), orders open at the venue
  that the agent does not track as live with the same remaining size, plus live orders of the
  agent the venue does not have, plus 1 if the positions differ;
- kill-switch runs ending flat: no position and no open order at the venue at the end;
- crashes: exceptions out of a run, and the agent's own ``fatal_error`` catches.

Exit code 0 when every figure is as required, 1 when one is off, 2 on bad input.
"""

from __future__ import annotations

import json
import logging
import math
import random
import sys
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from hlmm.validation import command_error

SCENARIO = "feb12_cascade"
DURATION_S = 20.0  # simulated seconds per run: 8 s of faults, then the quiet tail
QUIET_S = 12.0  # fault-free tail: the reconciliation check is >= 10 s after the last fault
MAX_ACK_DELAY_S = 1.5  # a delayed action lands at most this late, so it stays inside the fault window
KILL_EVERY = 4  # every 4th run fires the kill switch
START_POSITION_MAX = 0.8  # of the cap, the largest position the account starts with


def fault_config(seed: int, fault_end_s: float) -> Any:
    """The run's faults: 1 to 4 kinds, each at a seeded rate, all over by ``fault_end_s``."""
    from live.localvenue.faults import FaultConfig

    rng = random.Random(seed * 7919 + 17)
    kinds = rng.sample(["ws", "ack", "reject", "timeout", "disconnect"], rng.randint(1, 4))
    kw: dict[str, Any] = {"active_until_s": fault_end_s}
    if "ws" in kinds:
        kw.update(ws_drop_prob=rng.uniform(0.02, 0.2), ws_dup_prob=rng.uniform(0.0, 0.15),
                  ws_reorder_prob=rng.uniform(0.0, 0.1))
    if "ack" in kinds:
        kw.update(ack_delay_prob=rng.uniform(0.1, 0.5), ack_delay_max_s=rng.uniform(0.2, MAX_ACK_DELAY_S))
    if "reject" in kinds:
        kw.update(reject_prob=rng.uniform(0.05, 0.5))
    if "timeout" in kinds:
        kw.update(timeout_after_act_prob=rng.uniform(0.05, 0.4))
    if "disconnect" in kinds:
        windows = []
        for _ in range(rng.randint(1, 2)):
            dur = rng.uniform(0.5, 3.0)
            windows.append((rng.uniform(1.0, max(1.0, fault_end_s - dur)), dur))
        kw["disconnects"] = tuple(sorted(windows))
    return FaultConfig(**kw)


def is_kill_run(seed: int) -> bool:
    return seed % KILL_EVERY == 1


def _venue_truth(ex: Any) -> tuple[int, list[tuple[int | None, int, int]]]:
    """The venue's position (lots) and open orders as ``(client_id or None, side, remaining lots)``."""
    opens = [(int(o.cloid, 16) if o.cloid else None, o.side, o.remaining_lots) for o in ex.orders.values()
             if o.status == "open"]
    return ex.position_lots, opens


def _breaches(position: int, opens: list[tuple[int | None, int, int]], cap: int) -> int:
    worst = [side * position + sum(lots for _c, s, lots in opens if s == side) for side in (1, -1)]
    return sum(w > cap for w in worst)


def _unreconciled(agent: Any, position: int, opens: list[tuple[int | None, int, int]]) -> int:
    """Orders (and the position) on which the agent's view and the venue's truth disagree."""
    mine = {o.client_id: o.remaining_lots for o in agent.orders.live_orders()}
    theirs = {(cid if cid is not None else -1 - i): lots for i, (cid, _s, lots) in enumerate(opens)}
    bad = sum(1 for cid, lots in theirs.items() if mine.get(cid) != lots)
    bad += sum(1 for cid in mine if cid not in theirs)
    return bad + (agent.position_lots != position)


def _disagreement(agent: Any, position: int, opens: list[tuple[int | None, int, int]]) -> str:
    """What the agent and the venue disagree on (empty when nothing), for the JSON."""
    mine = sorted((o.client_id, o.side, o.remaining_lots, o.status.value) for o in agent.orders.live_orders())
    if _unreconciled(agent, position, opens) == 0:
        return ""
    return f"agent position {agent.position_lots} orders {mine}; venue position {position} orders {sorted(opens, key=str)}"


def _seed_account(session: Any, rng: random.Random, cap: int) -> dict[str, int]:
    """Give the account a position (and maybe a stray order) before the agent starts."""
    from live.bridge import NoncedExchange
    from live.wire import px_float, sz_float

    inst = session.instrument
    ex = NoncedExchange(session.wallet, session.server.base_url, meta=session.venue._meta,
                        spot_meta={"universe": [], "tokens": []}, timeout=5.0, nonces=session.venue.nonces)
    mid = session.exchange.engine.mid_ticks()
    lots = rng.randint(inst.min_lots_at(int(mid)) + 1, max(inst.min_lots_at(int(mid)) + 2, int(cap * START_POSITION_MAX)))
    side = rng.choice((1, -1))
    limit = int(mid * (1 + 0.01 * side))
    orders = [{"coin": inst.coin, "is_buy": side > 0, "sz": sz_float(inst, lots), "limit_px": px_float(inst, limit),
               "order_type": {"limit": {"tif": "Ioc"}}, "reduce_only": False}]
    stray = rng.random() < 0.5
    if stray:  # a resting order far from the touch, on the reducing side, without a cloid
        px = int(mid * (1 - 0.02 * side))
        orders.append({"coin": inst.coin, "is_buy": side < 0, "sz": sz_float(inst, inst.min_lots_at(px) + 1),
                       "limit_px": px_float(inst, px), "order_type": {"limit": {"tif": "Alo"}}, "reduce_only": False})
    plan, session.server.faults, session.exchange.faults = session.server.faults, None, None
    try:  # the account's history is not under test: no faults while it is made
        ex.orders(orders)
    finally:
        session.server.faults = session.exchange.faults = plan
    session.venue.sync()
    session.venue.poll()  # history before the session: the agent learns it by reconciliation
    return {"start_position_lots": session.exchange.position_lots, "stray_order": int(stray)}


def run_one(seed: int, duration_s: float = DURATION_S, log_path: str | None = None) -> dict[str, Any]:
    """One chaos run; never raises (a crash is a figure). ``log_path`` keeps its session log."""
    # websocket-client logs every closed socket at ERROR; a campaign closes thousands on purpose
    logging.getLogger("websocket").setLevel(logging.CRITICAL)
    try:
        return _run(seed, duration_s, log_path)
    except Exception as exc:  # the campaign counts crashes rather than stopping
        return {"seed": seed, "kill_switch": is_kill_run(seed), "crash": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=6)[-1500:]}


def _run(seed: int, duration_s: float, log_path: str | None) -> dict[str, Any]:
    from agent.market_maker import MarketMaker
    from hlmm.sessionlog import SessionLog
    from live.localvenue.faults import FaultPlan
    from live.runner import LocalSession, session_header
    from sim.scenario import load_scenario

    sc = load_scenario(SCENARIO)
    fault_end = duration_s - QUIET_S
    plan = FaultPlan(fault_config(seed, fault_end), seed)
    rng = random.Random(seed)
    kill = is_kill_run(seed)
    kill_at = rng.uniform(2.0, fault_end) if kill else math.inf
    out: dict[str, Any] = {"seed": seed, "kill_switch": kill, "position_cap_breaches": 0}
    log = SessionLog(log_path, session_header(sc, seed, "production"), keep_in_memory=False) if log_path else None
    with LocalSession(sc, seed, "production", log, faults=plan) as session:
        agent = session.agent
        assert isinstance(agent, MarketMaker)  # the campaign tests the production agent
        cap = agent.config.max_position_lots(session.instrument)
        out.update(_seed_account(session, rng, cap))
        session.start()
        fired = False

        def check(s: Any) -> None:
            nonlocal fired
            if not fired and s.now >= kill_at:
                agent.operator_halt()
                fired = True
            pos, opens = s.server.call(lambda: _venue_truth(s.exchange))
            out["position_cap_breaches"] += _breaches(pos, opens, cap)

        session.run(duration_s, check)
        pos, opens = session.server.call(lambda: _venue_truth(session.exchange))
        last_fault = plan.last_fault_s
        assert session.venue is not None  # set by start()
        out.update(
            cap_lots=cap,
            end_position_lots=pos,
            end_open_orders=len(opens),
            unreconciled=_unreconciled(agent, pos, opens),
            disagreement=_disagreement(agent, pos, opens),
            checked_after_last_fault_s=None if last_fault is None else session.now - last_fault,
            flat=pos == 0 and not opens,
            agent_fatal_errors=agent.counters.get("fatal_error", 0),
            faults=dict(plan.counts),
            bridge=dict(session.venue.counters),
            fills=session.counts["agent_fills"],
            commands=session.counts["commands"],
        )
    if log is not None:
        log.write(session.now, "summary", **{k: v for k, v in out.items() if k != "traceback"})
        log.close()
    return out


def campaign_figures(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The campaign's figures and whether each is as required."""
    crashes = [r for r in results if "crash" in r] + [r for r in results if r.get("agent_fatal_errors")]
    done = [r for r in results if "crash" not in r]
    kills = [r for r in done if r["kill_switch"]]
    kill_total = sum(r.get("kill_switch", False) for r in results if "crash" in r) + len(kills)
    flat = sum(r["flat"] for r in kills)
    late = [r for r in done if r["checked_after_last_fault_s"] is not None and r["checked_after_last_fault_s"] < 10.0]
    faults: dict[str, int] = {}
    bridge: dict[str, int] = {}
    for r in done:
        for k, v in r["faults"].items():
            faults[k] = faults.get(k, 0) + v
        for k, v in r["bridge"].items():
            bridge[k] = bridge.get(k, 0) + v
    figs = {
        "runs": len(results),
        "position_cap_breaches": sum(r["position_cap_breaches"] for r in done),
        "unreconciled_orders_10s_after_last_fault": sum(r["unreconciled"] for r in done),
        "kill_switch_runs": kill_total,
        "kill_switch_runs_flat": flat,
        "kill_switch_flat_fraction": flat / kill_total if kill_total else 1.0,
        "crashes": len(crashes),
        "checks_earlier_than_10s_after_last_fault": len(late),
        "runs_with_faults": sum(bool(r["faults"]) for r in done),
        "fills": sum(r["fills"] for r in done),
        "faults_injected": dict(sorted(faults.items())),
        "bridge_counters": dict(sorted(bridge.items())),
    }
    figs["passed"] = (figs["position_cap_breaches"] == 0 and figs["unreconciled_orders_10s_after_last_fault"] == 0
                      and figs["kill_switch_runs_flat"] == kill_total and figs["crashes"] == 0
                      and not late)
    return figs


def format_table(f: dict[str, Any]) -> str:
    rows = [
        ("position-cap breaches (venue truth, resting orders included)", f["position_cap_breaches"], "0"),
        ("orders unreconciled 10 s after the last fault", f["unreconciled_orders_10s_after_last_fault"], "0"),
        ("kill-switch runs ending flat", f"{f['kill_switch_runs_flat']}/{f['kill_switch_runs']} "
         f"({f['kill_switch_flat_fraction']:.1%})", "100%"),
        ("crashes", f["crashes"], "0"),
    ]
    lines = ["| figure | measured | required |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines.append("")
    lines.append(f"{f['runs']} runs, {f['runs_with_faults']} with faults that fired, {f['fills']} agent fills; "
                 f"faults injected: {', '.join(f'{k} {v}' for k, v in f['faults_injected'].items()) or 'none'}")
    return "\n".join(lines)


def run_campaign(runs: int, first_seed: int = 0, workers: int = 2, duration_s: float = DURATION_S,
                 progress: bool = True) -> list[dict[str, Any]]:
    """Every run's result, in seed order; ``workers`` processes."""
    from tqdm import tqdm

    seeds = list(range(first_seed, first_seed + runs))
    if workers <= 1:
        return [run_one(s, duration_s) for s in tqdm(seeds, desc="chaos", unit="run", disable=not progress)]
    results = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_one, s, duration_s) for s in seeds]
        for fut in tqdm(as_completed(futures), total=len(futures), desc="chaos", unit="run", disable=not progress):
            results.append(fut.result())
    return sorted(results, key=lambda r: r["seed"])


def chaos_cli(runs: int = 200, first_seed: int = 0, json_path: Path | None = None, workers: int = 2,
              duration_s: float = DURATION_S) -> int:
    """``hlmm chaos``: 0 when every figure is as required, 1 when one is off, 2 on bad input."""
    if runs < 1 or workers < 1:
        return command_error("chaos", f"--runs {runs} / --workers {workers}: both must be at least 1")
    if not duration_s >= QUIET_S + 2.0:
        return command_error("chaos", f"duration_s={duration_s!r}: must leave {QUIET_S} s of quiet after >= 2 s of faults")
    results = run_campaign(runs, first_seed, workers, duration_s)
    figs = campaign_figures(results)
    print(format_table(figs))
    for r in results:
        if "crash" in r:
            print(f"seed {r['seed']} crashed: {r['crash']}", file=sys.stderr)
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        doc = {"scenario": SCENARIO, "duration_s": duration_s, "quiet_s": QUIET_S, "first_seed": first_seed,
               "figures": figs, "runs": results}
        Path(json_path).write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    print(f"chaos: {'PASS' if figs['passed'] else 'FAIL'}", file=sys.stderr)
    return 0 if figs["passed"] else 1
