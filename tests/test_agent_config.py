"""Agent configuration: defaults, TOML loading, overrides, errors that name field and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import AgentConfig, AgentConfigError, load_agent_config
from hlmm.instrument import Instrument

HYPE = Instrument(coin="HYPE", sz_decimals=2, tick_decimals=3)


def test_defaults_and_lot_conversion() -> None:
    cfg = load_agent_config(None)
    assert cfg == AgentConfig()
    assert cfg.max_position_lots(HYPE) == 324
    assert cfg.order_size_lots(HYPE) == 50


def test_toml_and_overrides(tmp_path: Path) -> None:
    p = tmp_path / "agent.toml"
    p.write_text(
        "max_position = 5.0\n[risk]\ntoxicity_threshold = 0.9\n[kill]\ndaily_loss_limit_usd = 20.0\n"
    )
    cfg = load_agent_config(p, {"risk": {"escalate_after_s": 60.0}, "order_size": 1.0})
    assert cfg.max_position == 5.0 and cfg.order_size == 1.0
    assert cfg.risk.toxicity_threshold == 0.9 and cfg.risk.escalate_after_s == 60.0
    assert cfg.kill.daily_loss_limit_usd == 20.0


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ("max_position = -1.0\n", "max_position", "-1.0"),
        ("[risk]\ntoxicity_threshold = 1.5\n", "risk.toxicity_threshold", "1.5"),
        ("[kill]\nschedule_cancel_s = 2.0\n", "kill.schedule_cancel_s", "2.0"),
        ("[orders]\nrate_budget_weight_per_min = 5000.0\n", "orders.rate_budget_weight_per_min", "5000.0"),
        ("max_postion = 3.0\n", "max_postion", "3.0"),  # a typo is an error, not a silent default
        ("order_size = 10.0\n", "order_size", "10.0"),  # larger than the cap
        # found by fuzzing: accepted before, each stopped the agent (a fatal error, a hang or a crash)
        ("[signals.changepoint]\nmin_dwell_s = inf\n", "signals.changepoint.min_dwell_s", "inf"),
        ("[signals.changepoint]\nprior_alpha = 1e6\n", "signals.changepoint.prior_alpha", "1000000.0"),
        ("[signals.vpin]\nmin_bucket_lots = 1e-300\n", "signals.vpin.min_bucket_lots", "1e-300"),
        ("[signals.estimators]\nsigma_halflife_s = 1e-300\n", "signals.estimators.sigma_halflife_s", "1e-300"),
        ("[signals.estimators]\nprior_sigma_bps_per_sqrt_s = 1e-300\n",
         "signals.estimators.prior_sigma_bps_per_sqrt_s", "1e-300"),
    ],
)
def test_errors_name_file_field_and_value(tmp_path: Path, text: str, field: str, value: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(AgentConfigError) as exc:
        load_agent_config(p)
    msg = str(exc.value)
    assert str(p) in msg and field in msg and value in msg


def test_an_order_size_under_one_lot_names_the_field() -> None:
    with pytest.raises(AgentConfigError, match=r"order_size=1e-300: under one lot of HYPE \(0.01\)"):
        AgentConfig(order_size=1e-300).order_size_lots(HYPE)


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(AgentConfigError, match="no such agent config file"):
        load_agent_config(tmp_path / "nope.toml")
    p = tmp_path / "broken.toml"
    p.write_text("max_position = [\n")
    with pytest.raises(AgentConfigError, match="not valid TOML"):
        load_agent_config(p)


def test_digest_is_stable_and_content_sensitive(tmp_path: Path) -> None:
    a = tmp_path / "a.toml"
    b = tmp_path / "b.toml"
    a.write_text("order_size = 1.0\nmax_position = 4.0\n")
    b.write_text("# same content, other order\nmax_position = 4.0\norder_size = 1.0\n")
    assert load_agent_config(a).digest() == load_agent_config(b).digest()
    assert load_agent_config(a).digest() != AgentConfig().digest()
    assert AgentConfig().digest() == AgentConfig().digest()


def test_digest_leaves_out_how_the_quotes_are_sent() -> None:
    """A policy trained while replaces were a cancel and a place runs with modifies, and the
    other way round, paced or not: the desired quotes are the same. Anything that shapes them
    still counts."""
    from agent.orders import OrderManagerConfig

    modify = AgentConfig(orders=OrderManagerConfig(replace_with_modify=True))
    cancel_place = AgentConfig(orders=OrderManagerConfig(replace_with_modify=False))
    assert modify.digest() == cancel_place.digest()
    paced = AgentConfig(orders=OrderManagerConfig(request_budget_horizon_s=60.0, request_reserve=5, request_burst=2))
    assert paced.digest() == modify.digest()
    assert AgentConfig(orders=OrderManagerConfig(price_tolerance_ticks=3)).digest() != modify.digest()


def test_every_configuration_the_validation_accepts_trades_without_stopping() -> None:
    """Seeded hostile configurations (mutated defaults: NaN, infinities, 1e±300, wrong types):
    each is refused naming a field, or the agent trades two minutes of the flash crash with it
    without a fatal error or an exception. Each case fuzzing found in the validation failed here."""
    import copy
    import random

    from agent.market_maker import MarketMaker
    from sim.scenario import load_scenario
    from sim.venue import SimVenue
    from tests.test_live_fuzz import mutate_leaves

    hostile = [float("nan"), float("inf"), -1, 0, 1e300, 1e-300, "x", True, [], {}, 10**30, 0.5, 3, 1e6]
    base = AgentConfig().model_dump(mode="json")
    sc = load_scenario("flash_crash")
    rng = random.Random(20261130)
    accepted = 0
    for i in range(600):
        data = copy.deepcopy(base)
        changed = mutate_leaves(rng, data, hostile, rng.randint(1, 2))
        try:
            cfg = load_agent_config(None, data)
            mm = MarketMaker(cfg, sc.instrument.instrument(), sc.fees.schedule())
        except AgentConfigError as exc:
            assert any(name in str(exc) for name in changed), f"config {i}: {exc} names none of {changed}"
            continue
        accepted += 1
        venue = SimVenue(sc, 3, mm)
        venue.start()
        venue.run_until(120.0)
        assert not mm.counters.get("fatal_error"), f"config {i} stopped the agent: {data}"
    assert accepted > 50
