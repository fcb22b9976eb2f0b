"""The alert engine, case by case: triggers, hysteresis, reminders, acknowledgement, data
problems. Expected outcomes are worked out by hand from the rules in the module docstrings."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from alert_paths import LADDER, T0, S, inp, run

from forecast.alerts.lifecycle import Stream, StreamState, acknowledge, step_data
from forecast.alerts.notice import LeadForecast
from forecast.alerts.rules import assess, exceedance, river_ladder
from forecast.catalogue import AlertLevel as L
from forecast.catalogue import AlertRules, default_catalogue_path, load_catalogue


def test_exceedance_is_exact_at_the_quantiles_and_monotone() -> None:
    lf = LeadForecast(1, T0, 2.0, 2.5, 3.5)
    assert exceedance(lf, 2.0) == pytest.approx(0.9)
    assert exceedance(lf, 2.5) == pytest.approx(0.5)
    assert exceedance(lf, 3.5) == pytest.approx(0.1)
    probs = [exceedance(lf, h / 10) for h in range(10, 50)]
    assert all(a >= b for a, b in itertools.pairwise(probs))
    assert exceedance(LeadForecast(1, T0, 2.5, 2.5, 2.5), 2.6) == 0.0


def test_observed_crossing_raises_then_escalates_once_per_level() -> None:
    _, out = run([inp(0, 1.5), inp(1, 2.1), inp(2, 2.4), inp(3, 3.1), inp(4, 3.2)])
    assert [(n.kind, n.level, n.basis) for n in out] == [
        ("raise", L.STANDBY, "observed"), ("escalate", L.CAUTION, "observed")]
    assert out[0].event_key == out[1].event_key == "r1:G1:level:20260701T0030Z"
    assert out[0].crossing_at == out[0].observed_at and out[0].lead_h == 0.0


def test_forecast_crossing_carries_the_interpolated_time_and_the_crest() -> None:
    # observed 2.5 at T; P50 3.0 at +1 h: caution (3.0) is reached at +1 h exactly,
    # evacuation 3.5 at lead 2 (3.6): between +1 h (3.0) and +2 h (3.6) at 5/6 of the way
    _, out = run([inp(0, 2.5, [3.0, 3.6, 3.9, 3.7, 3.2, 3.0])])
    (n,) = out
    assert (n.kind, n.level, n.basis) == ("raise", L.EVACUATION, "forecast")
    assert n.crossing_at == T0 + timedelta(hours=1, minutes=50)
    assert n.lead_h == pytest.approx(1.83, abs=0.01)
    assert (n.crest_m, n.crest_at) == (3.9, T0 + timedelta(hours=3))


def test_probability_trigger_uses_the_band_within_n_hours() -> None:
    rules = AlertRules(probability_within_h=2, levels={"danger": {"probability": 0.2}})
    # P50 3.7 < 4.0 at lead 2 with P90 4.2: P(> 4.0) = 1 - Phi(0.3 / (0.5 / 1.2816)) ≈ 0.221
    i = inp(0, 3.6, [3.65, 3.7, 3.75], spread=0.5)
    levels = {a.level: a for a in assess(LADDER, rules, i)}
    assert levels[L.DANGER].basis == "probability"
    assert levels[L.DANGER].probability == pytest.approx(0.221, abs=0.002)
    off = AlertRules(levels={"danger": {"probability": None}})
    assert {a.level: a for a in assess(LADDER, off, i)}[L.DANGER].triggered is False


def test_dead_band_and_minimum_duration_hold_the_level() -> None:
    path = [inp(0, 3.1),                       # caution raised
            inp(1, 2.95), inp(2, 2.92),        # inside the 0.1 m dead band: held
            inp(3, 2.85), inp(4, 2.84),        # below the band: release clock starts at 3
            inp(5, 3.05),                      # held again: clock stops; no new raise
            inp(6, 2.8), inp(7, 2.8), inp(8, 2.8)]   # 60 min below at k=8: lowered
    state, out = run(path)
    assert [(n.kind, n.level, n.at) for n in out] == [
        ("raise", L.CAUTION, T0), ("remind", L.CAUTION, T0 + timedelta(hours=1)),
        ("remind", L.CAUTION, T0 + timedelta(hours=2)),
        ("remind", L.CAUTION, T0 + timedelta(hours=3)),
        ("lower", L.STANDBY, T0 + timedelta(hours=4))]
    assert state.level is L.STANDBY and state.in_event


def test_all_clear_after_everything_stays_below_for_the_set_time() -> None:
    rules = AlertRules(all_clear_after_min=120, min_duration_min=60, renotify_after_min=0)
    path = [inp(0, 2.2), inp(1, 1.5), inp(2, 1.5), inp(3, 1.5), inp(4, 1.5), inp(5, 1.5)]
    state, out = run(path, rules)
    # below at k=1; lowered below every level at k=3 (60 min), cleared at k=5 (120 min)
    assert [(n.kind, n.level, n.at) for n in out] == [
        ("raise", L.STANDBY, T0), ("lower", None, T0 + timedelta(minutes=90)),
        ("clear", None, T0 + timedelta(minutes=150))]
    assert state == StreamState()


def test_no_clear_while_a_forecast_still_reaches_the_level() -> None:
    rules = AlertRules(all_clear_after_min=60, renotify_after_min=0)
    path = [inp(0, 2.1)] + [inp(k, 1.0, [1.5, 2.0, 1.5]) for k in range(1, 8)]
    state, out = run(path, rules)
    assert [n.kind for n in out] == ["raise"] and state.level is L.STANDBY


def test_reraise_within_an_event_is_not_a_new_notification() -> None:
    rules = AlertRules(min_duration_min=30, all_clear_after_min=600, renotify_after_min=0)
    path = [inp(0, 3.2), inp(1, 2.5), inp(2, 2.5), inp(3, 3.2)]
    _, out = run(path, rules)
    assert [(n.kind, n.level, n.new_notification) for n in out] == [
        ("raise", L.CAUTION, True), ("lower", L.STANDBY, False),
        ("escalate", L.CAUTION, False)]


def test_acknowledgement_stops_reminders_until_the_next_level() -> None:
    state, out = run([inp(0, 3.1)])
    state, ack = acknowledge(S, state, user="suzuki", at=T0 + timedelta(minutes=5))
    assert ack.kind == "acknowledge" and ack.acknowledged_by == "suzuki"
    with pytest.raises(ValueError, match="already acknowledged by suzuki"):
        acknowledge(S, state, user="tanaka", at=T0 + timedelta(minutes=6))
    state, out = run([inp(k, 3.1) for k in range(1, 5)], state=state)
    assert out == []
    state, out = run([inp(5, 3.6)], state=state)
    assert [(n.kind, n.level) for n in out] == [("escalate", L.EVACUATION)]
    assert state.acknowledged_by is None
    with pytest.raises(ValueError, match="nothing to acknowledge"):
        acknowledge(S, StreamState(), user="x", at=T0)


def test_state_round_trips_through_json() -> None:
    state, _ = run([inp(0, 3.1), inp(1, 2.5)])
    assert StreamState.from_json(state.to_json()) == state
    assert StreamState.from_json(None) == StreamState()


def test_data_stream_raises_updates_and_clears() -> None:
    ds = Stream("r1", "G1", "data")
    hold = timedelta(minutes=60)
    st, a = step_data(ds, StreamState(), ["stale G1"], T0, hold)
    st, b = step_data(ds, st, ["stale G1"], T0 + timedelta(minutes=30), hold)
    st, c = step_data(ds, st, ["stale G1", "crisis C1 silent"], T0 + timedelta(hours=1), hold)
    st, d = step_data(ds, st, [], T0 + timedelta(hours=2), hold)
    st, e = step_data(ds, st, [], T0 + timedelta(hours=3), hold)
    assert [n.kind for n in a + b + c + d + e] == ["raise", "escalate", "clear"]
    assert e[0].problems == ("stale G1", "crisis C1 silent") and st == StreamState()


def test_the_demo_ladder_adds_flooding_only_for_a_crisis_primary_gauge() -> None:
    cat = load_catalogue(default_catalogue_path())
    for river in cat.rivers:
        ladder = river_ladder(river)
        assert [lv for lv, _ in ladder] == sorted(lv for lv, _ in ladder)
        assert (L.FLOODING in [lv for lv, _ in ladder]) == (
            river.gauge.overflow_level_m is not None)


def test_a_lowered_level_is_not_raised_again_on_a_swinging_forecast() -> None:
    rules = AlertRules(min_duration_min=30, all_clear_after_min=600, renotify_after_min=0,
                       rearm_after_min=120)
    up, down = [2.5, 3.1, 3.2], [2.5, 2.6, 2.6]   # P50 reaching caution (3.0), or not
    path = [inp(0, 2.5, up), inp(1, 2.5, down), inp(2, 2.5, down),   # lowered at k=2
            inp(3, 2.5, up), inp(4, 2.5, up), inp(5, 2.5, up),       # within 2 h: waits
            inp(6, 2.5, up),                                         # 2 h after: raised
            ]
    _, out = run(path, rules)
    assert [(n.kind, n.level, n.at) for n in out] == [
        ("raise", L.CAUTION, T0), ("lower", L.STANDBY, T0 + timedelta(hours=1)),
        ("escalate", L.CAUTION, T0 + timedelta(hours=3))]
    # an observed crossing is never held back
    _, out = run([*path[:3], inp(3, 3.05, up)], rules)
    assert [(n.kind, n.basis) for n in out][-1] == ("escalate", "observed")


def test_two_lowerings_keep_each_level_rearming() -> None:
    """Evacuation lowered to caution, then caution to standby: a forecast for evacuation 30 min
    later still waits (the first lowering was only 60 min before), as the property test found
    when the engine remembered only the last lowering."""
    rules = AlertRules(min_duration_min=30, all_clear_after_min=600, renotify_after_min=0,
                       rearm_after_min=120, dead_band_m=0.0)
    path = [inp(0, 3.6),                 # evacuation (3.5) observed
            inp(1, 3.2), inp(2, 3.2),    # below it for 30 min: lowered to caution at k=2
            inp(3, 2.5), inp(4, 2.5),    # below caution: lowered to standby at k=4
            inp(5, 2.5, [3.6, 3.6, 3.6])]   # a forecast for evacuation, 90 min after k=2
    _, out = run(path, rules)
    assert [(n.kind, n.level) for n in out] == [
        ("raise", L.EVACUATION), ("lower", L.CAUTION), ("lower", L.STANDBY)]
    _, later = run([*path, inp(6, 2.5, [3.6, 3.6, 3.6])], rules)   # 2 h after k=2
    assert [(n.kind, n.level, n.basis) for n in later][-1] == (
        "escalate", L.EVACUATION, "forecast")
