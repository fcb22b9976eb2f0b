"""Payloads of every kind, built by ``build_payload`` from hand-made notices on rivers of
``config/rivers.yaml``.

The flood event on 員弁川 (inabe, gauge 大泉 MIE-L-001; thresholds standby 2.30, caution
3.00, evacuation 3.60, danger 4.10 m) issued on 2023-06-30 18:00 UTC = 2023-07-01 03:00 JST:
raise (observed caution) → escalate (probability of evacuation) → escalate (forecast danger
in 2.5 h) → remind → acknowledge → lower → clear. The ``payloads`` fixture adds a forecast
crossing within 1 h, a data problem, a 氾濫開始 at a crisis gauge (天白川 波木 MIE-C-001,
2.60 m), a test message, a dead letter and a simulated copy of the first message.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from forecast.alerts.notice import Notice
from forecast.catalogue import AlertLevel, River
from forecast.notify import messages

CAP_DATA = Path(__file__).resolve().parent.parent / "data" / "cap-1.2"   # OASIS schema
T0 = datetime(2023, 6, 30, 18, 0, tzinfo=UTC)   # 2023-07-01 03:00 JST
SENDER = "forecast.mie.example"
BASE_URL = "https://forecast.example.jp"
EVENT = "inabe:MIE-L-001:level:20230630T1800Z"
SECRET = b"a-long-random-shared-secret"
TOKEN = "xoxb-test-token-123"


def make_notice(kind: str, at: datetime, **kw: Any) -> Notice:
    base: dict[str, Any] = {"kind": kind, "topic": "level", "river_id": "inabe",
                            "gauge": "MIE-L-001", "at": at, "event_key": EVENT}
    base.update(kw)
    return Notice(**base)


def event_notices() -> list[tuple[str, Notice]]:
    """The inabe flood event, in order (name, notice)."""
    fc = {"cycle_id": 41, "forecast_run_id": 977, "model_version": "lgbm-2023.06"}
    return [
        ("raise_observed", make_notice(
            "raise", T0, level=AlertLevel.CAUTION, basis="observed", new_notification=True,
            observed_m=3.05, observed_at=T0 - timedelta(minutes=10), **fc)),
        ("escalate_probability", make_notice(
            "escalate", T0 + timedelta(minutes=30), level=AlertLevel.EVACUATION,
            from_level=AlertLevel.CAUTION, basis="probability", observed_m=3.40,
            observed_at=T0 + timedelta(minutes=20), probability=0.62, within_h=3,
            crest_m=3.95, crest_at=T0 + timedelta(hours=3), **fc)),
        ("escalate_forecast", make_notice(
            "escalate", T0 + timedelta(hours=1), level=AlertLevel.DANGER,
            from_level=AlertLevel.EVACUATION, basis="forecast", new_notification=True,
            observed_m=3.72, observed_at=T0 + timedelta(minutes=50),
            crossing_at=T0 + timedelta(hours=3, minutes=30), lead_h=2.5, crest_m=4.45,
            crest_at=T0 + timedelta(hours=5), probability=0.71, within_h=3,
            low_confidence=("雨量計 MIE-R-001 欠測",), **fc)),
        ("remind", make_notice(
            "remind", T0 + timedelta(hours=2), level=AlertLevel.DANGER, observed_m=4.20,
            observed_at=T0 + timedelta(hours=1, minutes=50), **fc)),
        ("acknowledge", make_notice(
            "acknowledge", T0 + timedelta(hours=2, minutes=10), level=AlertLevel.DANGER,
            acknowledged_by="山田 太郎", note="排水ポンプ起動済み <!channel>",
            observed_m=4.22, observed_at=T0 + timedelta(hours=2))),
        ("lower", make_notice(
            "lower", T0 + timedelta(hours=6), level=AlertLevel.CAUTION,
            from_level=AlertLevel.DANGER, observed_m=3.20,
            observed_at=T0 + timedelta(hours=5, minutes=50), **fc)),
        ("clear", make_notice(
            "clear", T0 + timedelta(hours=12), from_level=AlertLevel.CAUTION,
            observed_m=2.05, observed_at=T0 + timedelta(hours=11, minutes=50))),
    ]


def build_event(river: River, *, simulated: bool = False) -> dict[str, dict[str, Any]]:
    """Payloads of the event, message ids 101..., each referencing the earlier ones."""
    out: dict[str, dict[str, Any]] = {}
    previous: list[dict[str, str]] = []
    for seq, (name, notice) in enumerate(event_notices(), start=1):
        p = messages.build_payload(notice, river, message_id=100 + seq, sequence=seq,
                                   previous=list(previous), base_url=BASE_URL,
                                   simulated=simulated, sender=SENDER)
        out[name] = p
        previous.append(messages.reference(p))
    return out
