"""The gymnasium environment: the production market maker on the simulated venue, with the
learned part of its quotes as the action.

Registered as ``hlmm/MarketMaking-v0`` when this module is imported::

    import gymnasium as gym
    import sim.env  # noqa: F401  (registers the id)
    env = gym.make("hlmm/MarketMaking-v0", config=EnvConfig(scenarios=("feb12_cascade",)))

## Description
One episode is ``episode_s`` simulated seconds of one scenario drawn from a weighted mix, with
its regime parameters randomized (domain randomization) and its regime path shifted by a random
offset so that changepoints fall anywhere in the episode. The agent is
:class:`agent.market_maker.MarketMaker` exactly as in production: GLFT, signals, the risk
overlay and the order manager all run; the policy only supplies the bounded
:class:`PolicyAdjustment` that GLFT adds to its quotes. The risk overlay applies after it, so
no action can breach the position cap or stop the reducing side from quoting.

## Action space
``Box(-1, 1, (4,), float32)``: half-spread, skew, bid size, ask size, mapped by
:class:`agent.policy.ActionBounds`. A zero action is exactly pure GLFT. The action is held for
one step (``step_s`` simulated seconds, several decision cycles).

## Observation space
``Box(-10, 10, (OBS_DIM,), float32)``, see :mod:`agent.observation` (the same function the
frozen policy uses live).

## Rewards
Per step, in USD, with ``reward = "edge"`` (the default)::

    reward = sum over markouts that resolved during the step at ``reward_horizon_s`` of
                 (edge_bps - edge_hurdle_bps) / 1e4 * size * mid_at_placement
             - inventory_penalty_usd_per_s * (position / cap) ** 2 * step_s

and with ``reward = "pnl"``::

    reward = change of the agent's marked-to-market PnL over the step (fees and funding included)
             - inventory_penalty_usd_per_s * (position / cap) ** 2 * step_s

Both add ``maker_credit_bps / 1e4 * size * price`` for every maker fill of the step (default 0).

The edge term is the realized edge of the fills whose horizon ended inside the step (fee
included), so a fill is rewarded ``reward_horizon_s`` after it happened, once the market has
shown whether it was adverse; nothing is measured at the fill instant. The penalty stands for the
inventory risk beyond the horizon, which the edge term does not see. ``edge_hurdle_bps`` (default
0) charges every fill a fixed opportunity cost, so a policy is paid for better fills rather than
only for more of them (with 0 the reward is the dollars of edge, which more fills at a thinner
edge can raise).
The ``"pnl"`` reward pays what the edge term leaves out: the inventory's gain or loss after the
horizon, e.g. a position carried with a trend. Its sum over an episode is the episode's PnL minus
the penalties.

``maker_credit_bps`` pays for providing liquidity, as a maker rebate would. Away from trends a
market maker's fills earn about their fee or less, so a PnL-seeking policy learns to stop quoting
there; a market maker's job is to keep quoting, and the credit keeps that worth its while.

## Episode end
``truncated`` when ``episode_s`` simulated seconds have passed (the simulator's scenario is cut to
exactly that length, so its end is a time limit too); ``terminated`` only when the kill switch
halted the agent.

## Arguments
``config``: :class:`EnvConfig` (or a dict of its fields).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, Field, model_validator

from agent.config import AgentConfig, load_agent_config
from agent.observation import CLIP, OBS_DIM, build_observation
from agent.policy import ACTION_DIM, ActionBounds
from agent.types import OverlayState, PolicyAdjustment
from hlmm.sessionlog import SessionLog
from hlmm.validation import SETTINGS
from sim.scenario import Scenario, load_scenario, parse_scenario

ENV_ID = "hlmm/MarketMaking-v0"


class RandomizationSpec(BaseModel):
    """Multiplier ranges drawn uniformly per episode; ``[1, 1]`` switches one off."""

    model_config = SETTINGS

    sigma_mult: tuple[float, float] = (0.7, 1.4)
    noise_mult: tuple[float, float] = (0.7, 1.3)
    limit_mult: tuple[float, float] = (0.8, 1.25)
    informed_mult: tuple[float, float] = (0.5, 2.0)
    drift_mult: tuple[float, float] = (0.6, 1.5)
    shift_regimes: bool = Field(default=True, description="start the episode at a random offset of the regime path")

    @model_validator(mode="after")
    def _ranges(self) -> RandomizationSpec:
        for name in ("sigma_mult", "noise_mult", "limit_mult", "informed_mult", "drift_mult"):
            lo, hi = getattr(self, name)
            if not (0 < lo <= hi):
                raise ValueError(f"{name}={[lo, hi]}: must be 0 < low <= high")
        return self


class BoundsSpec(BaseModel):
    model_config = SETTINGS

    half_spread_tighten_bps: float = Field(default=2.0, ge=0)
    half_spread_widen_bps: float = Field(default=10.0, ge=0)
    skew_bps: float = Field(default=5.0, ge=0)
    size_log_mult: float = Field(default=math.log(2.0), ge=0)

    def bounds(self) -> ActionBounds:
        return ActionBounds(**self.model_dump())


class EnvConfig(BaseModel):
    """What an episode is made of. Scenario names are built-ins or TOML paths."""

    model_config = SETTINGS

    scenarios: tuple[str, ...] = Field(default=("feb12_cascade",), min_length=1)
    weights: tuple[float, ...] | None = Field(default=None, description="mix weights; equal when absent")
    episode_s: float = Field(default=900.0, gt=0, le=86400.0, description="simulated seconds per episode (a scenario's most)")
    step_s: float = Field(default=1.0, gt=0, le=60, description="simulated seconds per env step")
    reward_horizon_s: float = Field(default=5.0, gt=0, description="markout horizon of the reward; one the agent tracks")
    inventory_penalty_usd_per_s: float = Field(default=0.002, ge=0, description="penalty at |position| = cap")
    edge_hurdle_bps: float = Field(default=0.0, ge=0, le=20, description="charged per resolved fill, bps of notional")
    maker_credit_bps: float = Field(
        default=0.0, ge=0, le=20, description="credited per maker fill when it happens, bps of its notional"
    )
    reward: Literal["edge", "pnl"] = Field(
        default="edge", description="edge: realized edge at the horizon; pnl: change of marked-to-market PnL"
    )
    agent_config: str | None = Field(default=None, description="agent TOML; defaults when absent")
    randomize: RandomizationSpec = RandomizationSpec()
    bounds: BoundsSpec = BoundsSpec()

    def reward_label(self) -> str:
        """What the reward is, for plots and reports."""
        if self.reward == "pnl":
            what = "change of marked-to-market PnL"
        else:
            what = f"{self.reward_horizon_s:g} s realized edge"
            if self.edge_hurdle_bps:
                what += f" - {self.edge_hurdle_bps:g} bps hurdle per fill"
        if self.maker_credit_bps:
            what += f" + {self.maker_credit_bps:g} bps maker credit"
        return f"{what} - inventory penalty"

    @model_validator(mode="after")
    def _weights(self) -> EnvConfig:
        if self.weights is not None:
            if len(self.weights) != len(self.scenarios):
                raise ValueError(f"weights={list(self.weights)}: need one per scenario ({len(self.scenarios)})")
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError(f"weights={list(self.weights)}: must be >= 0 with a positive sum")
        if self.step_s > self.episode_s:
            raise ValueError(f"step_s={self.step_s}: must not exceed episode_s={self.episode_s}")
        return self

    def resolve(self) -> tuple[list[Scenario], AgentConfig]:
        """The mix's base scenarios and the one agent configuration they run with, or a ValueError
        naming the field: everything building the env would refuse, so a training run can refuse
        it before its workers start (they would die with it)."""
        bases = []
        for i, name in enumerate(self.scenarios):
            try:
                bases.append(load_scenario(name))
            except ValueError as exc:
                raise ValueError(f"env.scenarios[{i}] = {name!r}: {exc}") from None
        # One configuration for the whole mix: the policy is tied to exactly one (its digest).
        configs = {b.name: agent_config_for(self, b) for b in bases}
        digests = {c.digest(): name for name, c in configs.items()}
        if len(digests) != 1:
            raise ValueError(
                f"scenarios {list(self.scenarios)} give different agent configurations "
                f"({', '.join(f'{n}: {d}' for d, n in digests.items())}); a policy is trained for one"
            )
        agent = configs[bases[0].name]
        if self.reward_horizon_s not in agent.markouts.horizons_s:
            raise ValueError(
                f"env.reward_horizon_s = {self.reward_horizon_s}: the agent tracks markouts at "
                f"{list(agent.markouts.horizons_s)} s only"
            )
        return bases, agent


def randomized_scenario(base: Scenario, rng: np.random.Generator, episode_s: float, spec: RandomizationSpec) -> Scenario:
    """One episode's scenario: ``episode_s`` long, regime path shifted, parameters scaled.

    Every draw comes from ``rng``; the result is re-validated, so a randomized scenario obeys
    the same schema as a hand-written one.
    """
    data = base.model_dump(mode="python")
    duration = base.scenario.duration_s
    offset = float(rng.uniform(0.0, max(0.0, duration - episode_s))) if spec.shift_regimes else 0.0
    end = offset + episode_s

    def u(lo_hi: tuple[float, float]) -> float:
        return float(rng.uniform(*lo_hi))

    sigma, noise, limit, informed, drift = (
        u(spec.sigma_mult), u(spec.noise_mult), u(spec.limit_mult), u(spec.informed_mult), u(spec.drift_mult)
    )
    segments = [dict(s) for s in data["regimes"]]
    kept = []
    for i, seg in enumerate(segments):
        seg_end = segments[i + 1]["start_s"] if i + 1 < len(segments) else math.inf
        if seg_end <= offset or seg["start_s"] >= end:
            continue
        seg["start_s"] = max(0.0, seg["start_s"] - offset)
        seg["sigma_mult"] *= sigma
        seg["noise_mult"] *= noise
        seg["limit_mult"] *= limit
        seg["informed_mult"] *= informed
        seg["drift_bps_per_s"] *= drift
        kept.append(seg)
    data["regimes"] = kept

    def shifted(items: Sequence[dict[str, Any]], length_key: str | None) -> list[dict[str, Any]]:
        out = []
        for item in items:
            stop = item["start_s"] + item[length_key] if length_key else item["end_s"]
            if stop <= offset or item["start_s"] >= end:
                continue
            item = dict(item)
            if length_key is None:
                item["end_s"] = min(item["end_s"], end) - offset
            item["start_s"] = max(0.0, item["start_s"] - offset)
            out.append(item)
        return out

    data["faults"]["disconnects"] = shifted(data["faults"]["disconnects"], "duration_s")
    data["funding"]["spikes"] = shifted(data["funding"]["spikes"], None)
    data["scenario"]["duration_s"] = episode_s
    data["scenario"]["name"] = base.scenario.name
    return parse_scenario(data, f"{base.name} (randomized)")


def agent_config_for(env_cfg: EnvConfig, scenario: Scenario) -> AgentConfig:
    """The agent configuration an episode of ``scenario`` runs with (the scenario's ``[agent]``
    overrides on top of the configured file)."""
    path = Path(env_cfg.agent_config) if env_cfg.agent_config else None
    return load_agent_config(path, scenario.agent or None)


class MarketMakingEnv(gym.Env[np.ndarray, np.ndarray]):
    """The production market maker on the simulated venue; the action adjusts its GLFT quotes.

    See the module docstring for spaces, reward and episode end.

    :param config: :class:`EnvConfig` or a dict of its fields.
    :param record: keep the session log in memory (``self.log.records``) for inspection;
        off in training so stepping does no logging work beyond the agent's own.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's convention)

    def __init__(self, config: EnvConfig | dict[str, Any] | None = None, record: bool = False) -> None:
        self.config = config if isinstance(config, EnvConfig) else EnvConfig.model_validate(config or {})
        self.record = record
        self.bounds = self.config.bounds.bounds()
        self.observation_space = gym.spaces.Box(-CLIP, CLIP, (OBS_DIM,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self._bases, self.agent_config = self.config.resolve()
        w = np.asarray(self.config.weights or [1.0] * len(self._bases), dtype=np.float64)
        self._weights = w / w.sum()
        self.config_digest = self.agent_config.digest()
        self._adjustment = PolicyAdjustment()
        self._venue: Any = None
        self.mm: Any = None
        self.log: SessionLog | None = None
        self._t = 0.0
        self._edge_usd = 0.0
        self._maker_credit_usd = 0.0
        self._pnl_usd = 0.0  # the marked-to-market PnL at the end of the last step ("pnl" reward)
        self.scenario: Scenario | None = None

    # ---------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode. ``options["scenario"]`` (a name in the mix) pins the scenario."""
        super().reset(seed=seed)
        from agent.market_maker import MarketMaker
        from sim.venue import SimVenue

        rng = self.np_random
        idx = int(rng.choice(len(self._bases), p=self._weights))
        if options and "scenario" in options:
            names = [b.name for b in self._bases]
            if options["scenario"] not in names:
                raise ValueError(f"options['scenario']={options['scenario']!r}: not in the mix {names}")
            idx = names.index(options["scenario"])
        self.scenario = randomized_scenario(self._bases[idx], rng, self.config.episode_s, self.config.randomize)
        sim_seed = int(rng.integers(0, 2**31 - 1))
        inst = self.scenario.instrument.instrument()
        fees = self.scenario.fees.schedule()
        self.log = SessionLog(None, {"scenario": self.scenario.name, "seed": sim_seed}) if self.record else None
        self._adjustment = PolicyAdjustment()
        self.mm = MarketMaker(self.agent_config, inst, fees, log=self.log, adjustment=self._current_adjustment)
        self._hook_markouts()
        self._venue = SimVenue(self.scenario, sim_seed, self.mm, self.log)
        self._venue.start()
        self._t = 0.0
        self._edge_usd = 0.0
        self._pnl_usd = 0.0
        info = {"scenario": self.scenario.name, "sim_seed": sim_seed}
        return build_observation(self.mm), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.mm is None:
            raise RuntimeError("step() before reset()")
        self._adjustment = self.bounds.adjustment(action)  # it converts to float64 itself
        self._edge_usd = 0.0
        self._maker_credit_usd = 0.0
        self._t = min(self._t + self.config.step_s, self.config.episode_s)
        self._venue.run_until(self._t)
        cap = self.mm.cap_lots
        inv_ratio = self.mm.position_lots / cap if cap > 0 else 0.0
        penalty = self.config.inventory_penalty_usd_per_s * inv_ratio**2 * self.config.step_s
        if self.config.reward == "pnl":
            pnl_usd = self.mm.pnl_usd()
            reward = pnl_usd - self._pnl_usd - penalty
            self._pnl_usd = pnl_usd
        else:
            reward = self._edge_usd - penalty
        if self._maker_credit_usd:  # not += 0.0: that would turn a reward of -0.0 into 0.0
            reward += self._maker_credit_usd
        # the venue's end (duration_s = episode_s) is a time limit, not a terminal state:
        # reporting it as terminated would make PPO/SAC bootstrap a zero value there
        terminated = self.mm.state == OverlayState.HALTED
        truncated = (not terminated) and self._t >= self.config.episode_s
        info = {
            "edge_usd": self._edge_usd,
            "inventory_penalty_usd": penalty,
            "maker_credit_usd": self._maker_credit_usd,
            "position_lots": self.mm.position_lots,
        }
        return build_observation(self.mm), float(reward), terminated, truncated, info

    @property
    def venue(self) -> Any:
        """The current episode's :class:`sim.venue.SimVenue` (``None`` before the first reset)."""
        return self._venue

    # ---------------------------------------------------------------- internals
    def _current_adjustment(self, _mm: Any) -> PolicyAdjustment:
        return self._adjustment

    def _hook_markouts(self) -> None:
        """Collect the realized edge of markouts as they resolve (at the reward horizon only), and
        the maker credit of fills as they happen (the agent registers each new fill once)."""
        tracker = self.mm.markouts  # its horizons include the reward's (EnvConfig.resolve)
        usd_per_tick_lot = tracker.instrument.tick * tracker.instrument.lot
        resolve = tracker.on_mid
        h = self.config.reward_horizon_s
        hurdle_bps = self.config.edge_hurdle_bps

        def on_mid(t: float, mid_ticks: float) -> list[Any]:
            resolved = resolve(t, mid_ticks)
            for rec in resolved:
                if rec.horizon_s == h:
                    notional_usd = rec.size_lots * rec.mid_at_placement_ticks * usd_per_tick_lot
                    self._edge_usd += (rec.edge_bps - hurdle_bps) * 1e-4 * notional_usd
            return resolved

        tracker.on_mid = on_mid
        credit_per_tick_lot = self.config.maker_credit_bps * 1e-4 * usd_per_tick_lot
        if credit_per_tick_lot:
            register = tracker.on_fill

            def on_fill(fill: Any, mid_at_placement_ticks: float, mid_at_fill_ticks: float) -> None:
                register(fill, mid_at_placement_ticks, mid_at_fill_ticks)
                if fill.is_maker:
                    self._maker_credit_usd += credit_per_tick_lot * fill.size_lots * fill.px_ticks

            tracker.on_fill = on_fill


gym.register(id=ENV_ID, entry_point="sim.env:MarketMakingEnv")
