"""Replay a flood through the whole service: the scheduled tick every 30 min of replayed time.

    python benchmarks/flood_replay.py [--notify] [--keep DIR]
    python benchmarks/flood_replay.py --typhoon [--days 90] [--notify] [--keep DIR]

**Real flood (default).** The 厚東川 flood of 2023-07-01 at 持世寺 (tests/data/kotogawa, peak
7.47 m at 04:30 JST; thresholds 3.80 / 5.00 / 5.10 / 5.50 m). In a temporary directory: a
SQLite database with the reference catalogue (config/reference_rivers.yaml); the record up to
the training cut-off (2023-06-30 00:00 JST) stored by the import path (source
``kotogawa_csv``: archive → parse → QC → store); a model trained and judged on that June
record only and promoted; then ``run_hindcast`` runs the operational tick for every issue time
from the cut-off to 2023-07-03 00:00 JST (145 ticks), each at its scheduled time T + 20 min,
on a replay of the file (what had arrived by then). Printed: per tick the observed level at
T, P50 at leads 1–6 h, the model variant and the stage seconds; when the observed level first
reached and last fell back below each threshold; the simple rule "first tick whose P50 at any
lead 1–6 h reaches the threshold" on the stored forecasts (``forecast_runs`` /
``forecast_values``) as a cross-check figure, against a gauge-only rule (notify at the first
tick whose observed level at T has reached it); tick timings.

**Simulated typhoon (``--typhoon``).** A small demo (``pipeline.demo.prepare``: 38 rivers,
``--days`` of SIMULATED history, first champions), then the ticks from the typhoon's start
− 3 h to + 36 h on the demo's replay file; per river and level the observed crossing (from the
replayed observations) and the P50 rule.

**Notifications (``--notify``).** Plugs ``forecast.pipeline.notify.notify_stage`` into every
tick when it can be imported and then reads what it stored (``read_notifications``: first
notification per level, messages per channel, levels notified twice within an event, the
all-clear); until the stage exists it says so and the table stays to be filled.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from forecast.catalogue import AlertLevel, load_catalogue
from forecast.clock import FixedClock
from forecast.errors import ForecastError
from forecast.pipeline import models as champions
from forecast.pipeline.context import Context
from forecast.pipeline.hindcast import (
    forecast_crossings,
    import_kotogawa_history,
    jst,
    kotogawa_replay,
    ladder,
    lead_time_table,
    markdown_table,
    observed_crossings,
    observed_recessions,
    run_hindcast,
)
from forecast.pipeline.tick import Notify, TickReport, no_notifications
from forecast.settings import load_settings
from forecast.storage.engine import create_engine, transaction
from forecast.storage.forecasts import forecasts_issued
from forecast.storage.observations import read_observations

ROOT = Path(__file__).resolve().parent.parent
KOTO_CSV = ROOT / "tests/data/kotogawa/kotogawa_jiseiji_level_kotogawa_dam_2023-06_2023-07.csv"
CUTOFF = pd.Timestamp("2023-06-30 00:00", tz="Asia/Tokyo").tz_convert("UTC").to_pydatetime()
"""Training cut-off: the model learns from the record up to here (June only)."""
TRAIN_DAYS = 29
"""Training window (CUTOFF - 29 d, CUTOFF] = 2023-06-01 00:00 → 06-30 00:00 JST: the whole
record before the cut-off (it starts 06-01 00:10 JST)."""
REPLAY_END = pd.Timestamp("2023-07-03 00:00", tz="Asia/Tokyo").tz_convert("UTC").to_pydatetime()
TYPHOON_END = datetime(2024, 9, 1, tzinfo=UTC)
"""The typhoon demo's history end (fixed, so runs are comparable; the demo uses this hour)."""


def plug_notify(wanted: bool) -> Notify:
    """The notification stage (``forecast.pipeline.notify.notify_stage``), or the tick's no-op
    when not ``wanted``."""
    if not wanted:
        return no_notifications
    from forecast.pipeline.notify import notify_stage

    print("--notify: forecast.pipeline.notify.notify_stage in every tick; Slack (Web API), the "
          "signed webhook and CAP delivered to a loopback test receiver after each tick")
    stage: Notify = notify_stage
    return stage


RECEIVER_SECRET, RECEIVER_TOKEN = "hindcast-secret", "xoxb-hindcast"
FLAP_WINDOW = timedelta(hours=2)
"""A level raised again within this long of its lowering, in one event, counts as flapping
(a later one is a re-escalation: a second flood pulse)."""


def receiver_settings(receiver: Any) -> dict[str, Any]:
    """Settings pointing every channel at the loopback test ``receiver``."""
    return {"webhook_url": receiver.webhook_url, "webhook_secret": RECEIVER_SECRET,
            "slack_token": RECEIVER_TOKEN, "slack_channel": "C-STAFF",
            "slack_ops_channel": "C-OPS", "slack_api_url": receiver.slack_api_url,
            "cap_url": receiver.cap_url}


def channel_counts(receiver: Any) -> dict[str, int]:
    """Deliveries the receiver accepted, per channel (the webhook after deduplication)."""
    ok = [r for r in receiver.received if 200 <= int(r.get("status", 0)) < 300]
    return {"slack": sum(r["path"].endswith("chat.postMessage") for r in ok),
            "webhook (unique)": len(receiver.unique),
            "cap": sum(r["path"] == "/cap" for r in ok)}


def read_notifications(ctx: Context, river_id: str) -> dict[str, Any]:
    """What the notification stage stored for one river's level streams: the first
    notification per level (when it was made, its basis), levels raised twice within one
    event (flapping), the all-clears, and the number of messages."""
    from forecast.storage.alerts import read_messages

    with transaction(ctx.engine, "reading notifications") as conn:
        msgs = sorted(read_messages(conn, river_id=river_id, limit=100_000),
                      key=lambda m: m["id"])
    first: dict[AlertLevel, datetime] = {}
    basis: dict[AlertLevel, str] = {}
    flapped: list[str] = []
    again: list[str] = []
    seen: set[tuple[str, int]] = set()
    lowered_at: dict[tuple[str, int], datetime] = {}
    clears = []
    for m in msgs:
        if m["topic"] != "level":
            continue
        if m["kind"] in ("raise", "escalate") and m["level"]:
            level = AlertLevel(m["level"])
            key = (m["event_key"], m["level"])
            if key in seen:   # the level again within its event: how long after its lowering?
                gap = m["created_at"] - lowered_at.get(key, m["created_at"])
                line = (f"{level.key} again at {jst(m['occurred_at'])} JST, "
                        f"{gap.total_seconds() / 3600:.1f} h after it was lowered")
                (flapped if gap < FLAP_WINDOW else again).append(line)
            seen.add(key)
            # a notification of a higher level covers the lower ones it jumped over
            for lower in AlertLevel:
                if lower <= level and lower not in first:
                    first[lower] = m["created_at"]
                    basis[lower] = str(m["payload"].get("basis")) + (
                        "" if lower == level else f" (as {level.short_ja})")
        elif m["kind"] == "lower" and m["from_level"]:
            for lv in range((m["level"] or 0) + 1, m["from_level"] + 1):
                lowered_at[(m["event_key"], lv)] = m["created_at"]
        elif m["kind"] == "clear":
            clears.append(m["created_at"])
    return {"first": first, "basis": basis, "flapped": flapped, "again": again,
            "clears": clears, "kinds": pd.Series([m["kind"] for m in msgs
                                                  if m["topic"] == "level"]).value_counts()
            .to_dict(),
            "messages": sum(m["topic"] == "level" for m in msgs)}


def _deliverer(ctx: Context) -> Any:
    from forecast.pipeline.deliver import deliver_due, senders_from_settings

    senders = senders_from_settings(ctx.settings)
    return lambda c: deliver_due(c, senders)


def typhoon_notifications(ctx: Context, table: pd.DataFrame, receiver: Any) -> None:
    """The alert engine's first notification per river and level against the observed
    crossing (lead gained = crossing − notification), flapping and all-clears."""
    leads: list[float] = []
    late: list[str] = []
    flapped: list[str] = []
    again: list[str] = []
    missed: list[str] = []
    cleared = 0
    raised_rivers = 0
    for river in ctx.catalogue.rivers:
        got = read_notifications(ctx, river.id)
        flapped += [f"{river.id}: {f}" for f in got["flapped"]]
        again += [f"{river.id}: {f}" for f in got["again"]]
        cleared += bool(got["clears"])
        raised_rivers += bool(got["first"])
        for lv, _h in ladder(river):
            mine = table[(table["river"] == river.id) & (table["level"] == lv.key)]
            crossed = mine["crossed_at"].iloc[0] if len(mine) else None
            first = got["first"].get(lv)
            if crossed is None or pd.isna(crossed):
                continue
            if first is None:
                missed.append(f"{river.id} {lv.key}")
                continue
            lead = (pd.Timestamp(crossed) - pd.Timestamp(first)).total_seconds() / 60
            leads.append(lead)
            if lead < 0:
                late.append(f"{river.id} {lv.key} {lead:+.0f} min")
    s = pd.Series(leads)
    print(f"\nnotifications (the alert engine, all 38 rivers): {len(leads)} observed crossings "
          f"notified, {len(missed)} not notified {missed or ''}; lead gained median "
          f"{s.median():+.0f} min, min {s.min():+.0f}, max {s.max():+.0f}; notified after the "
          f"crossing: {len(late)} {late[:8]}; flapping: {flapped or 'none'}; re-escalations "
          f"{len(again)} {again[:5]}; rivers with a "
          f"notification {raised_rivers}, with an all-clear {cleared}; received per channel "
          f"{channel_counts(receiver) if receiver else 'no receiver'}")


def _context(d: Path, catalogue_path: Path, at: datetime, **settings: Any) -> Context:
    s = load_settings({}, data_dir=str(d), models_dir=str(d / "models"), **settings)
    return Context.of(create_engine(s.db_url), load_catalogue(catalogue_path),
                      clock=FixedClock(at), models_root=d / "models", settings=s)


def _timings(reports: Sequence[TickReport], walls: Sequence[float]) -> None:
    status = pd.Series([r.status for r in reports]).value_counts().to_dict()
    print(f"\nticks: {len(reports)}; status {status}")
    for stage in ("collect", "forecast", "notify", "total"):
        v = [r.stages.get(stage, 0.0) for r in reports]
        print(f"  {stage:8s} median {statistics.median(v):.3f} s, max {max(v):.3f} s")
    print(f"  wall per run_tick: median {statistics.median(walls):.3f} s, max {max(walls):.3f} s,"
          f" sum {sum(walls):.1f} s")


def _p50_table(fc: pd.DataFrame) -> pd.DataFrame:
    first = fc[fc["revision"] == fc.groupby("issued_at")["revision"].transform("min")]
    return first.pivot_table(index="issued_at", columns="horizon_h", values="q50")


def _onset_before(p50: pd.DataFrame, m: float, crossed: datetime | None,
                  delay: timedelta) -> datetime | None:
    """Start of the last unbroken run of ticks with P50 ≥ m (any lead) before ``crossed``."""
    hit = p50.max(axis=1) >= m
    if crossed is not None:
        hit = hit[hit.index + delay <= pd.Timestamp(crossed)]
    if not len(hit) or not hit.iloc[-1]:
        return None
    runs = (~hit).cumsum()
    start = hit.index[(runs == runs.iloc[-1]).to_numpy() & hit.to_numpy()][0]
    return (start + delay).to_pydatetime()


def real_flood(args: argparse.Namespace, d: Path) -> None:
    t_all = time.perf_counter()
    ctx = _context(d, ROOT / "config" / "reference_rivers.yaml", CUTOFF,
                   **(receiver_settings(args.receiver) if args.receiver else {}))
    from forecast.pipeline.demo import init_db

    init_db(ctx)
    river = ctx.catalogue.river("koto")
    levels = ladder(river)
    t0 = time.perf_counter()
    imp = import_kotogawa_history(ctx, KOTO_CSV, until=CUTOFF, workdir=d)
    with transaction(ctx.engine) as conn:
        stored = read_observations(conn, station_ids=list(river.station_codes))
    print(f"history: {imp.total_rows:,} rows imported (source kotogawa_csv, archive → parse → QC"
          f" → store) in {time.perf_counter() - t0:.1f} s; stored readings "
          f"{jst(stored['time'].min())} → {jst(stored['time'].max())} JST "
          f"(cut-off {jst(CUTOFF)} JST; none later: {bool(stored['time'].max() <= CUTOFF)})")
    from forecast.pipeline.training import train_river

    days = TRAIN_DAYS
    t0 = time.perf_counter()
    try:
        version = train_river(ctx, river, end=CUTOFF, days=days, judge=True, actor="hindcast")
        judged = f"judged: {version.score[1]} 3–6 h {version.score[0]:.3f} m"
    except ForecastError as exc:
        print(f"judging refused ({exc}); registering without judging, as the demo does")
        version = train_river(ctx, river, end=CUTOFF, days=days, judge=False, actor="hindcast")
        judged = "not judged"
    w = version.manifest["training_window"]
    print(f"model {version.version}: trained in {time.perf_counter() - t0:.1f} s on "
          f"({jst(pd.Timestamp(w[0]))}, {jst(pd.Timestamp(w[1]))}] JST, future rain "
          f"{version.manifest['future_rain']}, {judged}")
    print(champions.promote(ctx, river.id, version.version, actor="hindcast"))
    notify = plug_notify(args.notify)
    replay = kotogawa_replay(KOTO_CSV)
    delay = timedelta(minutes=ctx.settings.tick_delay_min)
    walls: list[float] = []
    t_last = [time.perf_counter()]

    def wall(_: TickReport) -> None:
        now = time.perf_counter()
        walls.append(now - t_last[0])
        t_last[0] = now

    t0 = time.perf_counter()
    reports = run_hindcast(ctx, replay, CUTOFF, REPLAY_END, notify=notify,
                           deliver=_deliverer(ctx) if args.receiver else None,
                           catch_up_from=CUTOFF, progress=wall)
    t_hind = time.perf_counter() - t0
    with transaction(ctx.engine) as conn:
        fc = forecasts_issued(conn, issued_from=CUTOFF, issued_to=REPLAY_END, river_id="koto")
    obs = replay.observations
    level = obs[(obs["station_id"] == river.primary_gauge) & (obs["variable"] == "level_m")]
    at_t = level.set_index("time")["value"]
    p50 = _p50_table(fc)
    variant = fc.groupby("issued_at")["model_variant"].first()
    print("\n| issued (JST) | status | obs at T (m) | P50 +1h | +2h | +3h | +4h | +5h | +6h |"
          " variant | collect s | forecast s | notify s | total s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for r in reports:
        t = pd.Timestamp(r.issued_at)
        row = p50.loc[t] if t in p50.index else None
        cells = " | ".join("–" if row is None else f"{row[h]:.2f}" for h in range(1, 7))
        o = at_t.get(t)
        print(f"| {jst(t)} | {r.status} | {'–' if o is None or pd.isna(o) else f'{o:.2f}'} | "
              f"{cells} | {variant.get(t, '–')} | {r.stages.get('collect', 0):.3f} | "
              f"{r.stages.get('forecast', 0):.3f} | {r.stages.get('notify', 0):.3f} | "
              f"{r.stages.get('total', 0):.3f} |")
    crossed = observed_crossings(obs, levels, river.primary_gauge, start=CUTOFF,
                                 end=REPLAY_END)
    fell = observed_recessions(obs, levels, river.primary_gauge, start=CUTOFF, end=REPLAY_END)
    print("\nobserved (raw 10-min readings at 持世寺, JST):")
    for lv, m in levels:
        print(f"  {lv.short_ja} {m:.2f} m: first reached {jst(crossed[lv])}, "
              f"fell back below for good {jst(fell[lv])}")
    peak = level.loc[level["value"].idxmax()]
    print(f"  peak {peak['value']:.2f} m at {jst(peak['time'])}")
    thresholds = dict(levels)
    rule = forecast_crossings(fc, levels)
    print("\nP50 rule (cross-check, not the alert engine): first tick whose P50 at any lead "
          "1–6 h reaches the threshold; time = the forecast's creation (T + 20 min)")
    print(markdown_table(lead_time_table(crossed, rule, basis={lv: "forecast P50" for lv in rule
                                                                if rule[lv]},
                                         thresholds=thresholds), notified="P50 rule"))
    onset = {lv: _onset_before(p50, m, crossed[lv], delay) for lv, m in levels}
    print("\nthe same rule, counting only the last unbroken run of such ticks before the "
          "crossing (the first-ever hit can belong to an earlier pulse that stayed below):")
    print(markdown_table(lead_time_table(crossed, onset, thresholds=thresholds),
                         notified="P50 run onset"))
    gauge = {lv: None if c is None else (pd.Timestamp(c).ceil("30min") + delay).to_pydatetime()
             for lv, c in crossed.items()}
    print("\ngauge-only rule (no forecast: first tick whose observed level at T has reached "
          "it, sent at T + 20 min):")
    print(markdown_table(lead_time_table(crossed, gauge, thresholds=thresholds),
                         notified="gauge rule"))
    if notify is not no_notifications:
        got = read_notifications(ctx, river.id)
        print("\nnotifications (the stage's own):")
        print(markdown_table(lead_time_table(crossed, got["first"], basis=got["basis"],
                                             thresholds=thresholds)))
        print(f"level messages {got['messages']} {got['kinds']}; received per channel "
              f"{channel_counts(args.receiver)}; flapping {got['flapped'] or 'none'}; "
              f"re-escalations {got['again'] or 'none'}; "
              f"all-clear {[jst(c) for c in got['clears']] or 'none'}")
    _timings(reports, walls)
    print(f"hindcast {t_hind:.1f} s; whole benchmark {time.perf_counter() - t_all:.1f} s")


def typhoon(args: argparse.Namespace, d: Path) -> None:
    from forecast.pipeline.demo import DEMO_DELAY, load_replay, prepare

    t_all = time.perf_counter()
    ctx = _context(d, ROOT / "config" / "rivers.yaml", TYPHOON_END + DEMO_DELAY,
                   **(receiver_settings(args.receiver) if args.receiver else {}))
    t0 = time.perf_counter()
    demo = prepare(ctx, end=TYPHOON_END, years=args.days / 365.25, say=print)
    print(f"demo prepared in {time.perf_counter() - t0:.1f} s: {len(demo.trained)} champions, "
          f"not trained {demo.not_trained or 'none'}; typhoon at {demo.typhoon_at:%Y-%m-%d %H:%M}Z")
    notify = plug_notify(args.notify)
    replay = load_replay(demo.replay)
    start = demo.typhoon_at - timedelta(hours=3)
    end = demo.typhoon_at + timedelta(hours=36)
    walls: list[float] = []
    t_last = [time.perf_counter()]

    def wall(r: TickReport) -> None:
        now = time.perf_counter()
        walls.append(now - t_last[0])
        t_last[0] = now
        assert r.cycle is not None
        outcomes = pd.Series([o.status for o in r.cycle.outcomes]).value_counts().to_dict()
        st = " ".join(f"{k} {v:.2f}" for k, v in r.stages.items())
        print(f"  tick {jst(r.issued_at)} JST {r.status:7s} rivers {outcomes} | s: {st}",
              flush=True)

    t0 = time.perf_counter()
    reports = run_hindcast(ctx, replay, start, end, notify=notify,
                           deliver=_deliverer(ctx) if args.receiver else None,
                           catch_up_from=demo.end + DEMO_DELAY, progress=wall)
    t_hind = time.perf_counter() - t0
    failed: dict[str, tuple[int, str]] = {}
    for r in reports:
        for o in r.cycle.outcomes if r.cycle is not None else []:
            if o.status in ("failed", "skipped"):
                n, msg = failed.get(o.river_id, (0, o.message or ""))
                failed[o.river_id] = (n + 1, msg)
    for rid, (n, msg) in failed.items():
        print(f"river {rid}: no forecast in {n} of {len(reports)} ticks (first reason: {msg})")
    with transaction(ctx.engine) as conn:
        fc = forecasts_issued(conn, issued_from=start, issued_to=end)
    rows = []
    for river in ctx.catalogue.rivers:
        levels = ladder(river)
        crossed = observed_crossings(replay.observations, levels, river.primary_gauge,
                                     start=start, end=end)
        rule = forecast_crossings(fc[fc["river_id"] == river.id], levels)
        for r in lead_time_table(crossed, rule, thresholds=dict(levels)):
            rows.append({"river": river.id, "level": r.level.key, "threshold_m": r.threshold_m,
                         "observed": jst(r.observed_at), "p50_rule": jst(r.notified_at),
                         "lead_min": r.lead_min, "note": r.note, "crossed_at": r.observed_at})
    table = pd.DataFrame(rows)
    print("\nper river and level: observed crossing against the P50 rule (JST; SIMULATED)")
    print(table.drop(columns="crossed_at").to_string(index=False))
    reached = table[table["observed"] != "–"]
    print(f"\nlevel crossings observed: {len(reached)} on "
          f"{reached['river'].nunique()} of {len(ctx.catalogue.rivers)} rivers; "
          f"{table['note'].value_counts().to_dict()}")
    leads = reached["lead_min"].dropna()
    if len(leads):
        print(f"P50-rule lead where both exist: median {leads.median():+.0f} min, "
              f"min {leads.min():+.0f}, max {leads.max():+.0f}")
    if notify is not no_notifications:
        typhoon_notifications(ctx, table, args.receiver)
    _timings(reports, walls)
    print(f"hindcast {t_hind:.1f} s; whole benchmark {time.perf_counter() - t_all:.1f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--typhoon", action="store_true", help="the simulated typhoon, 38 rivers")
    p.add_argument("--days", type=float, default=90.0,
                   help="--typhoon: days of simulated history (default 90)")
    p.add_argument("--notify", action="store_true",
                   help="plug forecast.pipeline.notify.notify_stage into the ticks")
    p.add_argument("--keep", type=Path, help="build in this directory and keep it")
    args = p.parse_args()
    args.receiver = None
    if args.notify:
        from forecast.notify.receiver import Receiver

        args.receiver = Receiver(webhook_secret=RECEIVER_SECRET,
                                 slack_token=RECEIVER_TOKEN).start()
    # river failures are summarised from the tick reports instead of logged per tick
    logging.basicConfig(level=logging.ERROR)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        (typhoon if args.typhoon else real_flood)(args, args.keep)
        return
    with tempfile.TemporaryDirectory(prefix="flood-replay-") as d:
        (typhoon if args.typhoon else real_flood)(args, Path(d))


if __name__ == "__main__":
    main()
