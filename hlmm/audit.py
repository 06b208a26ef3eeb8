"""``hlmm audit SESSION_LOG``: a Markdown report with plots for one session log (sim or live).

The report is laid out like the Feb 12 incident document, so a reader can write an incident
report from it: the outcome, a timeline, fills by overlay episode, markout curves and PnL
attribution, the signal table, emergency pulls, order rejections, reconciliation alarms,
changepoint detection scores, and three plots (mid with quotes and fills, inventory with the
cap, cumulative PnL by component).

Every figure comes from :mod:`hlmm.metrics`, the same code the stress runner uses.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hlmm.metrics import (
    ATTRIBUTION_HORIZON_S,
    SessionLogError,
    SessionMetrics,
    SessionSeries,
    alarm_onsets,
    equity_path,
    horizon_values,
    metrics_from_series,
    parse_session,
    true_changepoints,
)
from hlmm.request_budget import NEW_ADDRESS_REQUESTS
from hlmm.sessionlog import locate_record, read_session_log
from hlmm.validation import command_error

TIMELINE_MAX_ROWS = 80
ATTRIBUTION_PARTS = ("spread_capture", "pre_fill_drift", "adverse_selection_5s", "inventory", "fees", "funding")


# ------------------------------------------------------------------ formatting helpers
def _clock(s: SessionSeries, rx: float) -> str:
    """Session time as +h:mm:ss from the first record."""
    sec = max(0.0, rx - s.start_s)
    h, rem = divmod(round(sec), 3600)
    m, sec_i = divmod(rem, 60)
    return f"+{h}:{m:02d}:{sec_i:02d}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _num(x: float | int | None, fmt: str = ".2f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return format(x, fmt)


def _stop_text(m: SessionMetrics) -> str:
    if not m.stopped_by_operator:
        return "no operator stop"
    if m.close_out_s is None:
        return "operator stop, **not confirmed flat**"
    return f"operator stop, flat {m.close_out_s:.1f} s later"


def _usd(x: float | None, signed: bool = True) -> str:
    """-$5.02; below a dollar four decimals, so cents of a short run stay visible."""
    if x is None:
        return "n/a"
    sign = ("-" if x < 0 else "+") if signed else ""
    return f"{sign}${abs(x):.{2 if abs(x) >= 1 else 4}f}"


def _coins(s: SessionSeries, lots: int | None) -> str:
    return "n/a" if lots is None else f"{s.instrument.lots_to_float(lots):.{s.instrument.sz_decimals}f} {s.instrument.coin}"


def _price(s: SessionSeries, ticks: float | None) -> str:
    return "n/a" if ticks is None else f"${s.instrument.ticks_to_float(ticks):.{s.instrument.tick_decimals}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


# ------------------------------------------------------------------ timeline and episodes
def timeline(s: SessionSeries) -> list[tuple[float, str]]:
    """(rx, event) rows in time order: start, first quote, first fill, ground-truth changepoints,
    detector alarms, overlay state changes, kill-switch steps, disconnects, end. Repetitive
    events (emergency pulls by side and reason, alarms by name) appear once, at their first
    occurrence, with their total count, so the rare events are never crowded out."""
    rows: list[tuple[float, str]] = [(s.start_s, "session start")]
    first_quote = next((rx for rx, c in s.cycles if c.get("live_bid") or c.get("live_ask")), None)
    if first_quote is None:
        first_quote = s.first_place_s
    if first_quote is not None:
        rows.append((first_quote, f"first quotes ({first_quote - s.start_s:.1f} s after start)"))
    if s.fills:
        rx0 = s.fills[0][0]
        same = [f for f in s.fills if f[0] == rx0]
        sides = ", ".join("buy" if f[1] > 0 else "sell" for f in same)
        rows.append((rx0, f"first fill{'s' if len(same) > 1 else ''}: {sides}"))
    rows += [(t, f"regime change (ground truth): {name}") for t, name in true_changepoints(s)]
    rows += [(t, "changepoint alarm on (detector)") for t in alarm_onsets(s)]
    # key -> [first rx, text of the first, count]
    repeated: dict[str, list[Any]] = {}
    for rx, o in s.overlays:
        if o.get("pull"):
            key = f"emergency {o['pull']} pull: {o.get('reason', '')}"
            repeated.setdefault(key, [rx, key, 0])[2] += 1
        else:
            rows.append((rx, f"overlay {o.get('from')} -> {o.get('to')}: {o.get('reason', '')}"))
    for rx, a in s.alarms:
        key = f"alarm {a.get('name', '')}"
        repeated.setdefault(key, [rx, f"{key}: {a.get('detail', '')}", 0])[2] += 1
    for rx, text, count in repeated.values():
        rows.append((rx, text if count == 1 else f"first {text} ({count} in total)"))
    for rx, k in s.kills:
        rows.append((rx, f"kill switch {k['step']}: {k.get('reason', '')} (position {_coins(s, k.get('position'))})"))
    rows += [(rx, "operator stop: trading ends, close-out begins") for rx in s.stops]
    rows += [(rx, f"{'reconnected' if up else 'disconnected'} {why}".strip()) for rx, up, why in s.connections]
    rows.append((s.end_s, "session end"))
    rows.sort(key=lambda r: r[0])
    return rows


def episodes(s: SessionSeries) -> list[dict[str, Any]]:
    """Stretches of constant overlay state (from the cycles) with the fills inside each."""
    out: list[dict[str, Any]] = []
    for rx, c in s.cycles:
        state = str(c["state"])
        if not out or out[-1]["state"] != state:
            if out:
                out[-1]["end"] = rx
            out.append({"state": state, "start": rx, "end": s.end_s, "buys": 0, "sells": 0, "position": None})
    path = s.position_path()
    for ep in out:
        inside = [f for f in s.fills if ep["start"] <= f[0] < ep["end"]]
        ep["buys"] = sum(1 for f in inside if f[1] > 0)
        ep["sells"] = len(inside) - ep["buys"]
        ep["position"] = [p for rx, p in path if rx < ep["end"]][-1]
    return out


# ------------------------------------------------------------------ plots
def _plots(s: SessionSeries, m: SessionMetrics, out: Path) -> list[str]:
    """Writes the PNGs and returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inst = s.instrument
    t0 = s.start_s
    names = []

    def minutes(xs: list[float]) -> list[float]:
        return [(x - t0) / 60.0 for x in xs]

    # 1. mid with our quotes and fills
    fig, ax = plt.subplots(figsize=(11, 4.5))
    mids = s.mid_path()
    if mids:
        ax.plot(minutes([r for r, _ in mids]), [inst.ticks_to_float(v) for _, v in mids], color="black", lw=0.8, label="mid (ex-own)")
    for key, live, color, label in (("bid_px", "live_bid", "tab:green", "our bid"), ("ask_px", "live_ask", "tab:red", "our ask")):
        pts = [(rx, c[key]) for rx, c in s.cycles if c.get(live) and c.get(key) is not None]
        if pts:
            ax.scatter(minutes([p[0] for p in pts]), [inst.ticks_to_float(p[1]) for p in pts], s=1, color=color, alpha=0.4, label=label)
    for side, marker, color, label in ((1, "^", "tab:green", "buy fill"), (-1, "v", "tab:red", "sell fill")):
        fs = [f for f in s.fills if f[1] == side]
        if fs:
            ax.scatter(minutes([f[0] for f in fs]), [inst.ticks_to_float(f[2]) for f in fs], marker=marker, s=40,
                       color=color, edgecolor="black", zorder=5, label=label)
    for t, _name in true_changepoints(s):
        ax.axvline((t - t0) / 60.0, color="tab:purple", lw=0.8, ls=":")
    ax.set_xlabel("minutes")
    ax.set_ylabel(f"{inst.coin} price ($)")
    ax.set_title("Mid, our quotes and fills (dotted: ground-truth regime changes)")
    ax.legend(loc="best", fontsize=8, markerscale=3)
    fig.tight_layout()
    fig.savefig(out / "mid_quotes_fills.png", dpi=110)
    plt.close(fig)
    names.append("mid_quotes_fills.png")

    # 2. inventory with the cap, overlay state shaded
    fig, ax = plt.subplots(figsize=(11, 3.5))
    path = s.position_path()
    xs = [rx for rx, _ in path] + [s.end_s]
    ys = [inst.lots_to_float(p) for _, p in path] + [inst.lots_to_float(path[-1][1])]
    ax.step(minutes(xs), ys, where="post", color="tab:blue", label="position")
    if m.cap_lots:
        cap = inst.lots_to_float(m.cap_lots)
        ax.axhline(cap, color="tab:red", ls="--", lw=1, label=f"cap ±{cap:g}")
        ax.axhline(-cap, color="tab:red", ls="--", lw=1)
    for ep in episodes(s):
        if ep["state"] != "ACTIVE":
            ax.axvspan((ep["start"] - t0) / 60, (ep["end"] - t0) / 60, color="orange" if ep["state"] == "REDUCING" else "grey", alpha=0.15, lw=0)
    ax.set_xlabel("minutes")
    ax.set_ylabel(f"position ({inst.coin})")
    ax.set_title("Inventory and the cap (shaded: REDUCING orange, HALTED grey)")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "inventory.png", dpi=110)
    plt.close(fig)
    names.append("inventory.png")

    # 3. cumulative PnL by component
    fig, ax = plt.subplots(figsize=(11, 4))
    comp_t, comps = cumulative_components(s)
    if comp_t:
        xs_pnl = minutes([*comp_t, s.end_s])
        for name, series in comps.items():
            ax.plot(xs_pnl, [*series, series[-1]], drawstyle="steps-post", lw=1.2 if name == "total" else 0.9,
                    color="black" if name == "total" else None, label=name)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("minutes")
    ax.set_ylabel("USD")
    ax.set_title("Cumulative PnL by component")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "pnl_components.png", dpi=110)
    plt.close(fig)
    names.append("pnl_components.png")

    # 4. markout curves
    if m.markout_curves:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        hs = list(m.markout_curves)
        for measure, color in (("markout_bps", "tab:blue"), ("as_bps", "tab:red"), ("edge_bps", "tab:green")):
            pts = [(float(h), m.markout_curves[h][measure]) for h in hs if measure in m.markout_curves[h]]
            if pts:
                ax.errorbar([p[0] for p in pts], [p[1]["mean"] for p in pts], yerr=[p[1]["se"] for p in pts],
                            marker="o", capsize=3, color=color, label=measure)
        ax.set_xscale("log")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xlabel("horizon (s)")
        ax.set_ylabel("bps of placement mid")
        ax.set_title("Markout curves (mean ± SE over fills)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "markouts.png", dpi=110)
        plt.close(fig)
        names.append("markouts.png")
    return names


def cumulative_components(s: SessionSeries) -> tuple[list[float], dict[str, list[float]]]:
    """Cumulative PnL components (USD) at each point of the equity path.

    Spread, pre-fill drift and 5 s adverse selection are booked at the fill's time from its
    markout record, fees at the fill, funding at the payment; inventory is total minus the rest.
    """
    inst = s.instrument
    fill_rx = {f[5]: f[0] for f in s.fills}
    bookings: list[tuple[float, str, float]] = []
    for mk in s.markouts:
        trade_id = mk.get("trade_id")
        rx = fill_rx[trade_id] if isinstance(trade_id, int) and trade_id in fill_rx else float(mk.get("fill_t", s.start_s))
        coins = inst.lots_to_float(float(mk["size"]))
        side = int(mk["side"])
        m0 = float(mk["mid_at_placement"])
        bookings.append((rx, "spread_capture", side * (m0 - float(mk["px"])) * inst.tick * coins))
        if mk.get("mid_at_fill") is not None:
            bookings.append((rx, "pre_fill_drift", side * (float(mk["mid_at_fill"]) - m0) * inst.tick * coins))
        as_bps = horizon_values(mk).get(ATTRIBUTION_HORIZON_S, {}).get("as_bps")
        if as_bps is not None:
            bookings.append((rx, "adverse_selection_5s", -as_bps * 1e-4 * inst.ticks_to_float(m0) * coins))
    bookings += [(f[0], "fees", -f[4]) for f in s.fills]
    bookings += [(rx, "funding", a) for rx, a in s.funding]
    bookings.sort(key=lambda b: b[0])
    eq = equity_path(s)
    names = [p for p in ATTRIBUTION_PARTS if p != "inventory"]
    acc = dict.fromkeys(names, 0.0)
    series: dict[str, list[float]] = {n: [] for n in [*names, "inventory", "total"]}
    i = 0
    for rx, total in eq:
        while i < len(bookings) and bookings[i][0] <= rx:
            acc[bookings[i][1]] += bookings[i][2]
            i += 1
        for n in names:
            series[n].append(acc[n])
        series["inventory"].append(total - sum(acc.values()))
        series["total"].append(total)
    return [rx for rx, _ in eq], series


# ------------------------------------------------------------------ the report
def render_report(s: SessionSeries, m: SessionMetrics, plots: list[str], source: str = "") -> str:
    """The Markdown audit of one session."""
    h = s.header
    inst = s.instrument
    title = " ".join(str(x) for x in (inst.coin, h.get("source", ""), h.get("scenario", ""), f"seed {h['seed']}" if "seed" in h else "") if x)
    lines = [f"# Session audit: {title}", ""]
    if source:
        lines += [f"Log: `{source}`", ""]
    details = [f"{k}: `{h[k]}`" for k in ("scenario", "seed", "agent", "config_hash", "started") if k in h and not isinstance(h[k], dict)]
    if details:
        lines += ["; ".join(details), ""]

    lines += ["## Session outcome", ""]
    move = ""
    if m.start_mid_ticks is not None:
        move = f"{_price(s, m.start_mid_ticks)} → {_price(s, m.end_mid_ticks)} ({_num(m.price_move_bps, '+.0f')} bps)"
    ratio = f" = {_num(m.max_position_ratio, '.2f')}x the cap of {_coins(s, m.cap_lots)}" if m.cap_lots else ""
    kill = f"**yes** ({m.kill_reason})" if m.kill_switch_fired else "no"
    lines += [
        f"- **Duration**: {m.duration_s / 60:.1f} minutes, **PnL**: {_usd(m.pnl_usd)}, max drawdown {_usd(m.max_drawdown_usd, signed=False)}",
        f"- **Fills**: {m.fills} total ({m.buy_fills} buys / {m.sell_fills} sells = {m.fill_imbalance:.1f}:1 imbalance, "
        f"two-sided binomial p = {m.fill_imbalance_p_value:.2g})" + (f"; {m.duplicate_fills} duplicate deliveries ignored" if m.duplicate_fills else ""),
        f"- **Position**: final {_coins(s, m.final_position_lots)}, max {_coins(s, m.max_position_lots)}{ratio}",
        f"- **Market**: {move or 'no mid observed'}",
        f"- **Quoting uptime**: {_pct(m.quoting_uptime)} ({m.quoting_uptime * m.duration_s / 60:.1f} of {m.duration_s / 60:.1f} min), "
        f"two-sided {_pct(m.two_sided_uptime)}; reducing side quoted {_pct(m.reducing_side_uptime_when_pulled)} of "
        f"{m.reducing_time_s / 60:.1f} min in REDUCING with a position",
        f"- **Kill switch**: {kill}; {_stop_text(m)}; "
        + ("the session goes on after the window" if s.window_cut else f"ended flat: {'yes' if m.ended_flat else '**no**'}"),
        f"- **Realized edge (5 s)**: {_num(m.realized_edge_bps_5s, '+.2f')} bps per fill; "
        f"signal skew active in {_pct(m.skew_active_fraction)} of {m.cycles} cycles "
        f"({_pct(m.skew_active_fraction_cascade)} inside directional regimes)",
        "",
    ]

    lines += ["## Session timeline", ""]
    rows = timeline(s)
    # Past the row limit, keep the first rows, the operator's stop, every kill-switch step and the end.
    shown = rows if len(rows) <= TIMELINE_MAX_ROWS else [
        r for i, r in enumerate(rows)
        if i < TIMELINE_MAX_ROWS or r[1].startswith(("kill switch", "operator stop")) or i == len(rows) - 1
    ]
    lines += _table(["Time", "Event"], [[_clock(s, rx), text] for rx, text in shown])
    if len(rows) > len(shown):
        lines += ["", f"({len(rows) - len(shown)} more events not shown; counts by kind are in the sections below.)"]
    lines += ["", "### Fills by overlay episode", ""]
    eps = episodes(s)
    lines += _table(
        ["From", "To", "State", "Buys", "Sells", "Position at end"],
        [[_clock(s, e["start"]), _clock(s, e["end"]), e["state"], str(e["buys"]), str(e["sells"]), _coins(s, e["position"])]
         for e in eps[:TIMELINE_MAX_ROWS]],
    )
    if len(eps) > TIMELINE_MAX_ROWS:
        lines += ["", f"({len(eps) - TIMELINE_MAX_ROWS} more episodes not shown.)"]

    lines += ["", "## Markouts", ""]
    if m.markout_curves:
        mrows = []
        for hz, meas in m.markout_curves.items():
            def cell(name: str, meas: dict[str, Any] = meas) -> str:
                v = meas.get(name)
                return f"{v['mean']:+.2f} ± {v['se']:.2f}" if v else "n/a"
            n = max((v["n"] for v in meas.values()), default=0)
            mrows.append([f"{hz} s", str(n), cell("markout_bps"), cell("as_bps"), cell("edge_bps")])
        lines += _table(["Horizon", "Fills", "Markout (bps)", "Adverse selection (bps)", "Realized edge (bps)"], mrows)
        lines += ["", "Measured from the mid at placement (DESIGN 5.1): depth + drift to fill − AS = markout.", ""]
        if "markouts.png" in plots:
            lines += ["![markouts](markouts.png)", ""]
    else:
        lines += ["No markout records (no fill had all its horizons resolved).", ""]

    lines += ["## PnL attribution", ""]
    att = m.pnl_attribution_usd
    lines += _table(["Component", "USD"], [[k, _usd(att[k])] for k in (*ATTRIBUTION_PARTS, "total")])
    lines += ["", "Inventory is the remainder: the mark-to-market of the position held past each fill's 5 s horizon.", ""]
    lines += ["![pnl](pnl_components.png)", ""]

    lines += ["## Signal status", ""]
    if m.signals:
        srows = []
        for name, sig in m.signals.items():
            srows.append([
                name, _pct(sig["active_fraction"]),
                f"[{sig['spread_bps_min']:+.1f}, {sig['spread_bps_max']:+.1f}] (mean {sig['spread_bps_mean']:+.2f})",
                f"[{sig['skew_bps_min']:+.1f}, {sig['skew_bps_max']:+.1f}] (mean {sig['skew_bps_mean']:+.2f})",
            ])
        lines += _table(["Signal", "Active %", "Spread (bps)", "Skew (bps)"], srows)
    else:
        lines += ["No signal contributions logged."]
    cp = m.changepoint_detection
    lines += [
        "",
        "### Changepoint detection (against the simulator's ground truth)",
        "",
        f"- true changepoints {cp['true_changepoints']}, alarms {cp['detections']}, matched {cp['true_positives']} "
        f"(within {cp['match_window_s']:.0f} s)",
        f"- precision {_pct(cp['precision'])}, recall {_pct(cp['recall'])}, mean delay {_num(cp['mean_delay_s'], '.1f')} s, "
        f"time in alarm {_pct(cp['alarm_time_fraction'])}",
        "",
    ]

    lines += ["## Risk overlay", ""]
    lines += _table(
        ["State", "Minutes", "Share"],
        [[st, f"{sec / 60:.1f}", _pct(sec / m.duration_s if m.duration_s else None)] for st, sec in sorted(m.overlay_time_s_by_state.items())],
    )
    lines += ["", f"Floor binding in {_pct(m.floor_binding_fraction)} of cycles.", "", "### Emergency pulls by reason", ""]
    if m.emergency_pulls_by_reason:
        lines += _table(["Reason", "Pulls"], [[r or "(none given)", str(n)] for r, n in m.emergency_pulls_by_reason.items()])
    else:
        lines += ["None."]

    lines += ["", "## Order rejections", ""]
    if m.rejects_by_reason:
        lines += _table(["Reason", "Count"], [[r, str(n)] for r, n in m.rejects_by_reason.items()])
    else:
        lines += ["None."]
    lines += ["", f"Invalid-order rejects (tick, size or notional rule): **{m.invalid_order_rejects}**.", ""]

    budget = (f"a new address's {NEW_ADDRESS_REQUESTS:,}-request buffer lasts **{m.address_budget_hours:.1f} h** at this pace"
              if m.address_budget_hours is not None else "trading pays for the requests (one per USD traded)")
    lines += ["## Requests", "",
              f"Exchange actions sent: **{m.address_requests}**, for ${m.traded_usd:,.0f} traded; {budget}.", ""]
    if m.requests_left_first is not None:
        lines += [f"Headroom the venue reported (requests before it throttles the address): {m.requests_left_first:,} at "
                  f"the first snapshot, lowest {m.requests_left_min:,}, {m.requests_left_last:,} at the last; orders "
                  f"refused for a spent budget: **{m.address_limited_rejects}**.", ""]

    lines += ["## Reconciliation and alarms", ""]
    lines += [f"Reconciliation mismatches: **{m.reconciliation_mismatches}**.", ""]
    if m.alarms_by_name:
        lines += _table(["Alarm", "Count"], [[a, str(n)] for a, n in m.alarms_by_name.items()])
    else:
        lines += ["No alarms."]
    lines += ["", "## Plots", "", "![mid, quotes and fills](mid_quotes_fills.png)", "", "![inventory](inventory.png)", ""]
    return "\n".join(lines)


def write_audit(s: SessionSeries, out: Path, source: str = "", cap_lots: int | None = None,
                ablation: tuple[str, dict[str, Any]] | None = None) -> SessionMetrics:
    """Write ``report.md``, ``metrics.json`` and the PNGs of one parsed session into ``out``;
    ``ablation`` = (its file, an ``hlmm ablate`` result) adds the signals' ablation table."""
    out.mkdir(parents=True, exist_ok=True)
    m = metrics_from_series(s, cap_lots=cap_lots)
    plots = _plots(s, m, out)
    text = render_report(s, m, plots, source)
    if ablation is not None:
        from hlmm.ablation import format_table

        text += (f"\n## Signal ablation\n\nEach signal's marginal value, from `{ablation[0]}` (`hlmm ablate`: "
                 "the agent with one signal's spread and skew removed against the full agent, same seeds; "
                 "other sessions than this one).\n\n" + format_table(ablation[1]) + "\n")
    (out / "report.md").write_text(text, encoding="utf-8")
    (out / "metrics.json").write_text(json.dumps(m.to_dict(), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return m


def audit_cli(session_log: Path, out: Path, ablation: Path | None = None, from_h: float | None = None,
              to_h: float | None = None) -> int:
    """``hlmm audit``: 0 when the report was written, 2 on a missing or bad log (the error names
    the file and line), ablation file or window. ``from_h``/``to_h`` audit the hours
    ``[from_h, to_h)`` of the session only (see :func:`hlmm.metrics.parse_session`)."""
    window_s: tuple[float, float] | None = None
    if from_h is not None or to_h is not None:
        start, end = from_h or 0.0, math.inf if to_h is None else to_h
        if not (0.0 <= start < end):
            return command_error("audit", f"--from-h {from_h!r} --to-h {to_h!r}: expected 0 <= from < to (hours)")
        window_s = (start * 3600.0, end * 3600.0)
    source = str(session_log) if window_s is None else f"{session_log}, hours {start:g} to {end:g} of the session"
    ablation_result = None
    if ablation is not None:
        from hlmm.ablation import load_ablation

        try:
            ablation_result = (str(ablation), load_ablation(ablation))
        except ValueError as exc:
            return command_error("audit", str(exc))
    try:
        series = parse_session(read_session_log(session_log), window_s=window_s)
    except FileNotFoundError as exc:
        return command_error("audit", f"{exc.filename}: no such file")
    except SessionLogError as exc:
        where = locate_record(session_log, exc.record) if exc.record else str(session_log)
        return command_error("audit", f"{where}: {str(exc).partition(': ')[2] or exc}")
    except ValueError as exc:
        return command_error("audit", str(exc))
    m = write_audit(series, out, source=source, ablation=ablation_result)
    ratio = "n/a (no cap known)" if m.max_position_ratio is None else f"{m.max_position_ratio:.2f}x cap"
    print(
        f"audit: {m.duration_s / 60:.1f} min, PnL {_usd(m.pnl_usd)}, fills {m.buy_fills} buys / {m.sell_fills} sells, "
        f"max position {ratio}, quoting uptime {_pct(m.quoting_uptime)} -> {out / 'report.md'}"
    )
    return 0
