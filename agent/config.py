"""The agent's configuration: one validated TOML file (every field documented in agent/README.md).

Sizes are given in coins (``max_position = 3.24`` HYPE) and converted to lots with the
instrument; everything else carries its unit in its name. Unknown keys and bad values are
rejected before anything runs, naming the file, the field and the value::

    AgentConfigError: agent.toml: risk.toxicity_threshold = 1.5: Input should be less than or equal to 1

:meth:`AgentConfig.digest` is a stable hash of the validated content; a frozen policy records
the digest of the configuration it was trained with and refuses a different one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator

from agent.markouts import MarkoutConfig
from agent.orders import OrderManagerConfig
from agent.quote_engine import GlftConfig
from agent.risk import KillSwitchConfig, RiskConfig
from agent.signals import SignalsConfig
from hlmm.instrument import Instrument
from hlmm.validation import SETTINGS, read_toml, validate


class AgentConfigError(ValueError):
    """A configuration that cannot be used; the message names file, field, value and rule."""


class AgentConfig(BaseModel):
    """Everything the market maker can be told. All fields have defaults."""

    model_config = SETTINGS

    max_position: float = Field(
        default=3.24, gt=0, description="hard position cap, coins (margin may lower it)"
    )
    order_size: float = Field(default=0.5, gt=0, description="size of one quote, coins")
    decision_interval_s: float = Field(
        default=0.25, ge=0, description="book updates closer than this are folded into one decision, seconds"
    )
    dead_mans_switch_s: float = Field(
        default=15.0, ge=5.0, description="schedule-cancel horizon, seconds (the venue needs >= 5)"
    )
    dead_mans_rearm_s: float = Field(
        default=5.0, gt=0, description="re-arm the schedule-cancel this often, seconds"
    )
    risk: RiskConfig = RiskConfig()
    kill: KillSwitchConfig = KillSwitchConfig()
    orders: OrderManagerConfig = OrderManagerConfig()
    glft: GlftConfig = GlftConfig()
    signals: SignalsConfig = SignalsConfig()  # includes the A/kappa/sigma estimators (signals.estimators)
    markouts: MarkoutConfig = MarkoutConfig()

    @model_validator(mode="after")
    def _consistent(self) -> AgentConfig:
        if self.order_size > self.max_position:
            raise ValueError(
                f"order_size={self.order_size}: must not exceed max_position={self.max_position}"
            )
        if self.dead_mans_rearm_s >= self.dead_mans_switch_s:
            raise ValueError(
                f"dead_mans_rearm_s={self.dead_mans_rearm_s}: must be below dead_mans_switch_s={self.dead_mans_switch_s}"
                " (else the switch fires between re-arms)"
            )
        return self

    def max_position_lots(self, instrument: Instrument) -> int:
        """The configured cap in lots, rounded down (a cap is never rounded up)."""
        return instrument.size_to_lots_floor(self.max_position)

    def order_size_lots(self, instrument: Instrument) -> int:
        """The quote size in whole lots of ``instrument``; raises :class:`AgentConfigError` naming
        the field when it is under one lot (the lot is the instrument's, so it is checked here)."""
        try:
            return instrument.size_to_lots_floor(self.order_size)
        except ValueError:  # a positive size under one lot
            raise AgentConfigError(
                f"order_size={self.order_size!r}: under one lot of {instrument.coin} ({instrument.lot_size})"
            ) from None

    def digest(self) -> str:
        """Stable hash of the validated content (not of a file's formatting or key order).

        A frozen policy refuses an agent whose digest differs from its training's. How the
        order manager sends the desired quotes is left out where it changes neither what the
        policy observes nor what its action means: a replace as one modify or as a cancel and a
        place (``replace_with_modify``), and the pacing against the venue's per-address request
        budget (``request_*``, inert where the venue does not report that budget, as in
        training)."""
        content = self.model_dump(mode="json", exclude=_NOT_DIGESTED)
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


_NOT_DIGESTED = {
    "orders": {"replace_with_modify", "request_budget_horizon_s", "request_reserve", "request_burst"}
}


def merge_tables(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, recursively for tables."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge_tables(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_agent_config(data: dict[str, Any], source: str = "<agent config>") -> AgentConfig:
    return validate(AgentConfig, data, source, AgentConfigError)


def load_agent_config(path: Path | None, overrides: dict[str, Any] | None = None) -> AgentConfig:
    """The configuration in ``path`` (defaults when ``None``) with ``overrides`` applied on top
    (e.g. a scenario's ``[agent]`` table). Raises :class:`AgentConfigError`."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        data = read_toml(Path(path), "agent config file", AgentConfigError)
    if overrides:
        data = merge_tables(data, overrides)
        source += " (with overrides)"
    return parse_agent_config(data, source)
