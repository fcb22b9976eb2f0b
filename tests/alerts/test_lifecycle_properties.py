"""Property tests of the lifecycle: random level paths (observed and forecast) through
``step``, checked against invariants computed independently from the path itself."""

from __future__ import annotations

from datetime import timedelta

from alert_paths import LADDER, S, inp
from hypothesis import given, settings
from hypothesis import strategies as st

from forecast.alerts.lifecycle import StreamState, step
from forecast.alerts.rules import assess
from forecast.catalogue import AlertRules

LOWEST = LADDER[0][1]

levels = st.floats(min_value=0.5, max_value=5.0, allow_nan=False)
ticks = st.lists(st.tuples(st.one_of(st.none(), levels),
                           st.one_of(st.none(), st.lists(levels, min_size=6, max_size=6)),
                           st.floats(min_value=0.0, max_value=1.0)),
                 min_size=1, max_size=60)
rule_sets = st.builds(
    AlertRules, dead_band_m=st.sampled_from([0.0, 0.05, 0.2]),
    min_duration_min=st.sampled_from([0, 30, 60, 120]),
    all_clear_after_min=st.sampled_from([0, 60, 180]),
    renotify_after_min=st.sampled_from([0, 30, 60]),
    rearm_after_min=st.sampled_from([0, 60, 120]),
    probability_within_h=st.integers(1, 6))


@settings(max_examples=400, deadline=None)
@given(ticks, rule_sets)
def test_random_paths_keep_the_lifecycle_invariants(path, rules) -> None:
    state = StreamState()
    raises: dict[str, int] = {}
    new: set[tuple[str, int]] = set()
    nothing_held_since = None
    lowered: dict[tuple[str, int], object] = {}
    for k, (obs, q50, spread) in enumerate(path):
        i = inp(k, obs, q50, spread)
        before = state
        state, notices = step(S, state, assess(LADDER, rules, i), rules, i)
        # independent "anything held" at this tick: observed within the lowest dead band, or
        # any P50 at the lowest threshold, or a probability trigger of some level
        prob_trigger = any(a.basis == "probability" for a in assess(LADDER, rules, i))
        held = ((obs is not None and obs > LOWEST - rules.dead_band_m)
                or (q50 is not None and max(q50) >= LOWEST) or prob_trigger)
        if held:
            nothing_held_since = None
        elif nothing_held_since is None:
            nothing_held_since = i.at
        assert len(notices) <= 1
        for n in notices:
            if n.kind == "raise":
                assert not before.in_event and n.event_key not in raises
                raises[n.event_key] = 1
            else:
                assert before.in_event and n.event_key == before.event_key
            if n.kind in ("raise", "escalate"):
                assert n.level is not None
                assert before.level is None or n.level > before.level
                when = lowered.get((n.event_key, int(n.level)))
                if n.basis != "observed" and when is not None:
                    assert i.at - when >= timedelta(minutes=rules.rearm_after_min), \
                        "a lowered level raised again on a forecast within the re-arm time"
            if n.kind == "lower":
                assert before.level is not None
                assert n.level is None or n.level < before.level
                for lv in range(int(n.level or 0) + 1, int(before.level) + 1):
                    lowered[(n.event_key, lv)] = i.at
            if n.kind == "clear":
                assert not held, "cleared while a level was held"
                assert nothing_held_since is not None
                assert i.at - nothing_held_since >= timedelta(minutes=rules.all_clear_after_min)
                assert state == StreamState()
            if n.new_notification:
                key = (n.event_key, int(n.level or 0))
                assert key not in new, "two notifications for one level and event"
                new.add(key)
        if state.level is not None:
            assert (state.in_event and state.level in state.notified) or state.level <= max(
                state.notified)
