"""Scenario files: TOML, validated before anything runs.

A scenario describes one simulated session: the contract, the order flow, the hidden regime
path (ground truth for detectors), latency and faults, and the pass criteria a stress run is
judged by. The format is documented in ``scenarios/README.md``; every field has a default
except ``scenario.name`` and ``scenario.duration_s``.

Errors name the file, the field, the value and the allowed range, and nothing runs on a bad
scenario::

    ScenarioError: scenarios/bad.toml: market.sigma_bps_per_sqrt_s = -1.0: Input should be greater than 0
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from hlmm.instrument import Instrument
from hlmm.validation import SETTINGS, read_toml, validate
from hlmm.venue import FeeSchedule

RegimeName = Literal["calm", "trending", "volatile", "cascade", "dead", "squeeze", "flash"]


class ScenarioError(ValueError):
    """A scenario file that cannot be run; the message names file, field, value and rule."""


class _Section(BaseModel):
    model_config = SETTINGS


class ScenarioMeta(_Section):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    description: str = ""
    duration_s: float = Field(gt=0, le=7 * 86400, description="session length, seconds")
    default_seed: int = Field(default=0, ge=0)


# A start price must span this many ticks of its grid: fewer, and one tick is over 10 bps, so no
# quote means what GLFT asks for, and a crash can take the price to zero ticks.
MIN_START_TICKS = 1_000


class InstrumentSpec(_Section):
    coin: str = Field(default="HYPE", min_length=1, max_length=16)
    sz_decimals: int = Field(default=2, ge=0, le=6)
    start_price: float = Field(default=30.88, gt=0, lt=1e6)
    asset_id: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _enough_ticks(self) -> InstrumentSpec:
        inst = self.instrument()
        ticks = round(self.start_price / inst.tick)
        if ticks < MIN_START_TICKS:
            raise ValueError(
                f"start_price={self.start_price!r}: {ticks} ticks of {inst.tick_size} (at most "
                f"{inst.tick_decimals} decimals with sz_decimals={self.sz_decimals}); need at least {MIN_START_TICKS}"
            )
        return self

    def instrument(self) -> Instrument:
        return Instrument.for_price(self.coin, self.sz_decimals, self.start_price, self.asset_id)


class FeeSpec(_Section):
    maker_bps: float = Field(default=1.5, ge=-1.0, le=10.0)
    taker_bps: float = Field(default=4.5, ge=0.0, le=20.0)

    def schedule(self) -> FeeSchedule:
        return FeeSchedule(maker_bps=self.maker_bps, taker_bps=self.taker_bps)


class FundingSpike(_Section):
    start_s: float = Field(ge=0)
    end_s: float = Field(gt=0)
    rate: float = Field(ge=-0.05, le=0.05, description="funding rate per interval while the spike lasts")

    @model_validator(mode="after")
    def _ordered(self) -> FundingSpike:
        if self.end_s <= self.start_s:
            raise ValueError(f"end_s={self.end_s} must be after start_s={self.start_s}")
        return self


class FundingSpec(_Section):
    interval_s: float = Field(default=3600.0, gt=0)
    rate: float = Field(default=0.0000125, ge=-0.05, le=0.05, description="per interval; longs pay when > 0")
    spikes: tuple[FundingSpike, ...] = ()


class AccountSpec(_Section):
    collateral_usd: float = Field(default=100.0, gt=0, le=1e9)
    leverage: float = Field(default=10.0, ge=1, le=50)


class MarketSpec(_Section):
    """Base order flow (the ``calm`` regime); regimes scale it."""

    sigma_bps_per_sqrt_s: float = Field(default=1.6, gt=0, le=100, description="latent value volatility")
    limit_rate_per_s: float = Field(default=30.0, gt=0, le=10_000, description="background limit orders per side")
    limit_depth_ticks_mean: float = Field(default=6.0, gt=0, le=10_000, description="mean depth beyond the touch")
    limit_size_lots_mean: float = Field(default=150.0, ge=1, le=1e9)
    cancel_rate_per_s: float = Field(default=0.2, ge=0, le=1000, description="hazard of each resting background lot")
    half_spread_ticks: int = Field(default=1, ge=1, le=10_000, description="background quotes keep this far from value")
    noise_rate_per_s: float = Field(default=0.75, ge=0, le=10_000, description="noise market orders per side (A)")
    trade_kappa_per_bps: float = Field(default=0.25, gt=0, le=100, description="reach of market orders ~ Exp(kappa)")
    size_min_lots: int = Field(default=33, ge=1)
    size_pareto_alpha: float = Field(default=1.5, gt=0.5, le=5)
    size_max_mult: float = Field(default=200.0, ge=1, le=1e6)
    impact_bps: float = Field(default=0.047, ge=0, le=100, description="permanent impact per sqrt(size/size_min)")


class InformedSpec(_Section):
    """Informed takers who know the coming drift of the value; Hawkes self-excitation."""

    mu_per_s: float = Field(default=0.0, ge=0, le=1000, description="baseline Hawkes intensity")
    branching: float = Field(default=0.9, ge=0, lt=1, description="alpha/beta; stable below 1")
    beta_per_s: float = Field(default=0.05, gt=0, le=1000)
    horizon_s: float = Field(default=60.0, gt=0, le=86400, description="how far ahead they see the value")
    edge_bps: float = Field(default=1.0, ge=0, le=1000, description="required edge over the taker fee")
    size_mult: float = Field(default=1.0, ge=1, le=1000, description="order size, times a market-order size draw")
    impact_mult: float = Field(default=1.0, ge=0, le=1000, description="permanent impact, times a market order's")


class RegimeSegment(_Section):
    """One stretch of the hidden regime path; a new segment is a changepoint (ground truth)."""

    start_s: float = Field(ge=0)
    name: RegimeName = "calm"
    drift_bps_per_s: float = Field(default=0.0, ge=-100, le=100)
    sigma_mult: float = Field(default=1.0, gt=0, le=100)
    noise_mult: float = Field(default=1.0, ge=0, le=100, description="scales noise trade rate (A)")
    kappa_mult: float = Field(default=1.0, gt=0, le=100)
    informed_mult: float = Field(default=1.0, ge=0, le=1000, description="scales the informed baseline")
    limit_mult: float = Field(default=1.0, ge=0, le=100, description="scales background liquidity")


class RegimeState(RegimeSegment):
    """A state of the Markov chain: a segment whose start the chain draws, so ``start_s`` may be
    left out (a given one is validated like a segment's and then ignored)."""

    start_s: float = Field(default=0.0, ge=0, description="ignored: the chain draws when a state starts")


class RandomRegimes(_Section):
    """Markov-switching regimes drawn from the seed (domain randomization for training)."""

    enabled: bool = False
    mean_dwell_s: float = Field(default=900.0, gt=0)
    states: tuple[RegimeState, ...] = ()


class LatencySpec(_Section):
    order_ms: float = Field(default=60.0, ge=0, le=60_000, description="agent -> venue, new orders")
    cancel_ms: float = Field(default=60.0, ge=0, le=60_000, description="agent -> venue, cancels")
    ack_ms: float = Field(default=30.0, ge=0, le=60_000, description="venue -> agent, replies and fills")
    feed_ms: float = Field(default=30.0, ge=0, le=60_000, description="venue -> agent, market data")
    jitter_ms: float = Field(default=15.0, ge=0, le=60_000, description="mean of an exponential jitter")
    book_interval_s: float = Field(default=0.5, gt=0, le=60, description="l2Book snapshot cadence")


class RateLimitSpec(_Section):
    """Hyperliquid's per-IP budget (1200 weight/min; an action weighs 1 + n // 40) and, when
    ``address_requests`` is set, the per-address request budget (``sim/venue.py``)."""

    weight_per_min: float = Field(default=1200.0, gt=0)
    burst_weight: float = Field(default=1200.0, gt=0)
    address_requests: int | None = Field(
        default=None, ge=0,
        description="the address's request headroom at the session's start (cap minus requests used; "
        "a new address has 10 000); the cap grows by one per USD the agent trades; None: not modelled",
    )


class Disconnect(_Section):
    start_s: float = Field(ge=0)
    duration_s: float = Field(gt=0, le=86400)


class FaultSpec(_Section):
    disconnects: tuple[Disconnect, ...] = ()
    random_disconnects_per_hour: float = Field(default=0.0, ge=0, le=3600)
    random_disconnect_s: tuple[float, float] = (1.0, 30.0)
    reject_prob: float = Field(default=0.0, ge=0, le=1, description="orders refused at random")
    ack_delay_max_s: float = Field(default=0.0, ge=0, le=60, description="extra uniform delay on replies")
    feed_drop_prob: float = Field(default=0.0, ge=0, le=1)
    feed_dup_prob: float = Field(default=0.0, ge=0, le=1)


class Criteria(_Section):
    """Pass criteria of a stress run, judged per seed. Absent criteria are not checked."""

    max_position_ratio: float | None = Field(default=1.0, gt=0)
    min_quoting_uptime: float | None = Field(default=None, ge=0, le=1)
    min_reducing_side_uptime_when_pulled: float | None = Field(default=None, ge=0, le=1)
    max_fill_imbalance: float | None = Field(default=None, ge=1, description="max(buys,sells)/max(1,min)")
    fill_imbalance_alpha: float = Field(
        default=0.05, gt=0, le=1,
        description="max_fill_imbalance fails only if balanced flow would split the fills so unevenly "
        "less often than this (two-sided binomial p): 3 buys / 0 sells is chance, 24 / 5 is not",
    )
    min_fills: int | None = Field(default=None, ge=1, description="fills per session: a maker that stops trading fails")
    min_skew_active_fraction: float | None = Field(default=None, ge=0, le=1)
    require_flat_after_kill: bool = True
    require_flat_at_end: bool = Field(default=True, description="flat when the session ends: the operator's stop closes")
    max_invalid_order_rejects: int | None = Field(default=0, ge=0)
    max_address_limited_rejects: int | None = Field(
        default=0, ge=0, description="orders the venue refused because the address's request budget was spent"
    )
    min_pnl_usd: float | None = None
    max_drawdown_usd: float | None = Field(default=None, ge=0)


class Scenario(_Section):
    scenario: ScenarioMeta
    instrument: InstrumentSpec = InstrumentSpec()
    fees: FeeSpec = FeeSpec()
    funding: FundingSpec = FundingSpec()
    account: AccountSpec = AccountSpec()
    market: MarketSpec = MarketSpec()
    informed: InformedSpec = InformedSpec()
    regimes: tuple[RegimeSegment, ...] = (RegimeSegment(start_s=0.0),)
    random_regimes: RandomRegimes = RandomRegimes()
    latency: LatencySpec = LatencySpec()
    rate_limit: RateLimitSpec = RateLimitSpec()
    faults: FaultSpec = FaultSpec()
    criteria: Criteria = Criteria()
    agent: dict[str, Any] = Field(default_factory=dict, description="agent config overrides for this scenario")

    @model_validator(mode="after")
    def _regimes_ordered(self) -> Scenario:
        starts = [seg.start_s for seg in self.regimes]
        if not starts or starts[0] != 0.0:
            raise ValueError(f"regimes[0].start_s={starts[0] if starts else None}: the first segment must start at 0")
        for i in range(1, len(starts)):
            if starts[i] <= starts[i - 1]:
                raise ValueError(f"regimes[{i}].start_s={starts[i]}: must be after regimes[{i - 1}].start_s={starts[i - 1]}")
            if starts[i] >= self.scenario.duration_s:
                raise ValueError(f"regimes[{i}].start_s={starts[i]}: must be before scenario.duration_s={self.scenario.duration_s}")
        if self.random_regimes.enabled and not self.random_regimes.states:
            raise ValueError("random_regimes.states: must list at least one state when random_regimes.enabled = true")
        return self

    @property
    def name(self) -> str:
        return self.scenario.name

    def digest(self) -> str:
        """Stable hash of the validated content (not of the file's formatting).

        ``rate_limit.address_requests`` is left out while unset (not modelled), so adding the
        field left the digest of every scenario without it, and the session logs whose header
        carries it, unchanged."""
        content = self.model_dump(mode="json")
        if self.rate_limit.address_requests is None:
            del content["rate_limit"]["address_requests"]
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def parse_scenario(data: dict[str, Any], source: str = "<scenario>") -> Scenario:
    sc = validate(Scenario, data, source, ScenarioError)
    if sc.agent:
        # The agent reads [agent] only when it is built, where the scenario's file is no longer
        # known; check the table now, on top of the default configuration, so a bad one stops the
        # run before it starts and the message names this file like any other field's.
        from agent.config import AgentConfigError, parse_agent_config  # the simulator alone needs no agent

        try:
            parse_agent_config(sc.agent, f"{source} [agent]")
        except AgentConfigError as exc:
            raise ScenarioError(str(exc)) from None
    return sc


def builtin_scenarios() -> list[str]:
    """Names of the scenarios shipped in the ``scenarios`` package."""
    return sorted(p.name[:-5] for p in resources.files("scenarios").iterdir() if p.name.endswith(".toml"))


def scenario_path(name_or_path: str | Path) -> Path:
    """A file path as given, or a built-in scenario by name (``feb12_cascade``)."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.is_file():
        if not p.is_file():
            raise ScenarioError(f"{p}: no such scenario file")
        return p
    candidate = resources.files("scenarios").joinpath(f"{name_or_path}.toml")
    if not candidate.is_file():
        raise ScenarioError(f"scenario {str(name_or_path)!r}: not a file and not a built-in (built-ins: {', '.join(builtin_scenarios())})")
    return Path(str(candidate))


def load_scenario(name_or_path: str | Path) -> Scenario:
    path = scenario_path(name_or_path)
    return parse_scenario(read_toml(path, "scenario file", ScenarioError), str(path))
