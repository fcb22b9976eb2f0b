"""The canonical notification payload (pure): every channel renders from it, the outbox stores it.

``build_payload`` turns one alert-engine ``Notice`` and its ``River`` into a JSON-serialisable
dict (schema ``mie-forecast-notification/1``, documented in ``docs/notifications.md``), so
that Slack, the webhook and CAP need no catalogue. Stored times are ISO 8601 UTC with their
offset (``issued_at``); display times are JST (``*_jst`` and the texts); levels are metres at
the gauge; probabilities 0–1.

CAP identity (``payload["cap"]``): identifier ``<sender>.<message_id>``, msgType ``Alert``
for the first message of an event (``sequence`` 1), ``Cancel`` for the all-clear, ``Update``
otherwise, with ``references`` to the earlier messages of the event (the pipeline passes them
as ``previous``: see ``reference``). ``sent`` is in CAP's own form (``+09:00``, whole
seconds) so that a later message can reference it verbatim.

No clock, no I/O: every time is an argument.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from forecast.alerts.notice import Notice
from forecast.catalogue import AlertLevel, Gauge, River
from forecast.notify import wording
from forecast.notify.wording import aware, cap_time, iso_utc, jst_label

SCHEMA = "mie-forecast-notification/1"
_REF_KEYS = ("sender", "identifier", "sent")
# CAP 1.2 (3.2.1): sender and identifier must not contain spaces, commas, < or &; references
# are "sender,identifier,sent" triples separated by spaces.
_CAP_FORBIDDEN = re.compile(r"[\s,<&]")
# What must never leave in a dead letter's text: URLs (an incoming-webhook URL is itself the
# secret; other URLs may carry keys in their query) and Slack tokens / bearer credentials.
_SECRETS = re.compile(r"(https?://\S+|xox[a-z]-[\w-]+|(?i:bearer)\s+\S+)")


def level_info(level: AlertLevel, threshold_m: float | None) -> dict[str, Any]:
    """The payload's ``level`` / ``from_level`` object (threshold in metres at the gauge)."""
    return {"rank": int(level), "key": level.key, "name_ja": level.name_ja,
            "short_ja": level.short_ja, "name_en": level.name_en, "colour": level.colour,
            "keikai_level": level.keikai_level, "threshold_m": threshold_m}


def threshold_of(river: River, gauge: Gauge | None, level: AlertLevel) -> float | None:
    """The level's threshold (m): 氾濫開始 from the gauge's ``overflow_level_m``, the ladder
    from the river's thresholds, which belong to the primary gauge only."""
    if level is AlertLevel.FLOODING:
        return gauge.overflow_level_m if gauge is not None else None
    if gauge is not None and gauge.code != river.primary_gauge:
        return None
    value = getattr(river.thresholds, f"{level.key}_m", None)
    return float(value) if value is not None else None


def reference(payload: dict[str, Any]) -> dict[str, str]:
    """``{"sender", "identifier", "sent"}`` of a payload: what a later message of the same
    event lists in ``previous``."""
    return {k: str(payload["cap"][k]) for k in _REF_KEYS}


def _time_info(t: datetime | None, what: str, **extra: Any) -> dict[str, Any] | None:
    if t is None:
        return None
    aware(t, what)
    return {**extra, "at": iso_utc(t), "at_jst": jst_label(t)}


def _check_identity(sender: str, previous: list[dict[str, Any]]) -> list[dict[str, str]]:
    if not sender or _CAP_FORBIDDEN.search(sender):
        raise ValueError(f"sender {sender!r} must be non-empty without spaces, commas, < or & "
                         "(CAP 1.2), e.g. forecast.mie.example")
    refs = []
    for i, ref in enumerate(previous):
        missing = [k for k in _REF_KEYS if not ref.get(k)]
        if missing:
            raise ValueError(f"previous[{i}] lacks {missing}: pass reference(payload) of each "
                             "earlier message of the event")
        refs.append({k: str(ref[k]) for k in _REF_KEYS})
    return refs


def _skeleton(*, kind: str, topic: str, audience: str, message_id: int, sequence: int,
              at: datetime, simulated: bool) -> dict[str, Any]:
    """Every key of the schema, empty: test and dead-letter payloads fill what they have."""
    aware(at, "issue time")
    return {"schema": SCHEMA, "message_id": message_id, "sequence": sequence, "kind": kind,
            "topic": topic, "audience": audience, "event_key": "", "stream": "",
            "river": None, "gauge": None, "level": None, "from_level": None, "basis": None,
            "issued_at": iso_utc(at), "issued_at_jst": jst_label(at), "observed": None,
            "crossing": None, "crest": None, "probability": None, "low_confidence": [],
            "problems": [], "forecast": None, "acknowledged": None, "note": None,
            "new_notification": False,
            "details": {}, "title_ja": "", "summary_ja": "", "summary_en": "", "text_ja": "",
            "text_en": "", "url": None,
            "simulated": simulated, "cap": None}


def _summarised(p: dict[str, Any]) -> dict[str, Any]:
    """Fill ``summary_*`` with the first line of ``text_*``."""
    p["summary_ja"] = p["text_ja"].split("\n", 1)[0]
    p["summary_en"] = p["text_en"].split("\n", 1)[0]
    return p


def build_payload(notice: Notice, river: River, *, message_id: int, sequence: int,
                  previous: list[dict[str, Any]], base_url: str | None, simulated: bool,
                  sender: str, sent_at: datetime | None = None) -> dict[str, Any]:
    """The payload of one notice (see the module docstring and ``docs/notifications.md``).

    ``message_id``: the outbox's id of this message (unique per ``sender``); ``sequence``:
    its place in the event (1 = first); ``previous``: ``reference()`` of the event's earlier
    messages, oldest first; ``base_url``: the dashboard (``<base_url>/rivers/<id>``), None
    for no link; ``simulated``: simulated or replayed data (the texts say so, CAP status
    ``Exercise``); ``sent_at``: when the message is made (CAP ``sent``), default the notice's
    issue time. ``ValueError`` for naive times, a notice of another river or a bad sender.
    """
    if notice.river_id != river.id:
        raise ValueError(f"notice of river {notice.river_id!r} built with river {river.id!r}")
    if sequence < 1:
        raise ValueError(f"sequence {sequence} must be >= 1 (1 = the event's first message)")
    refs = _check_identity(sender, previous)
    # A gauge missing from the catalogue must not lose the message: name it by its code, at
    # the primary gauge's place.
    gauge = next((g for g in river.gauges if g.code == notice.gauge), None)
    place = gauge or river.gauge
    p = _skeleton(kind=notice.kind, topic=notice.topic,
                  audience="staff" if notice.topic == "level" else "operators",
                  message_id=message_id, sequence=sequence, at=notice.at, simulated=simulated)
    def threshold(level: AlertLevel) -> float | None:
        # An unknown gauge has no known thresholds (the ladder is the primary gauge's).
        return threshold_of(river, gauge, level) if gauge is not None else None

    thr = notice.threshold_m
    if notice.level is not None and thr is None:
        thr = threshold(notice.level)
    p.update({
        "event_key": notice.event_key, "stream": notice.stream,
        "river": {"id": river.id, "name_ja": river.name_ja, "name_en": river.name_en,
                  "office": river.office},
        "gauge": {"code": notice.gauge, "name_ja": gauge.name_ja if gauge else notice.gauge,
                  "name_en": gauge.name_en if gauge else "", "lat": place.lat, "lon": place.lon,
                  "kind": place.kind},
        "level": level_info(notice.level, thr) if notice.level is not None else None,
        "from_level": (level_info(notice.from_level, threshold(notice.from_level))
                       if notice.from_level is not None else None),
        "basis": notice.basis,
        "observed": (_time_info(notice.observed_at or notice.at, "observed_at",
                                level_m=notice.observed_m)
                     if notice.observed_m is not None else None),
        "crossing": (_time_info(notice.crossing_at, "crossing_at", lead_h=notice.lead_h)
                     if notice.crossing_at is not None and notice.lead_h is not None else None),
        "crest": (_time_info(notice.crest_at, "crest_at", level_m=notice.crest_m)
                  if notice.crest_m is not None and notice.crest_at is not None else None),
        "probability": ({"value": notice.probability, "within_h": notice.within_h}
                        if notice.probability is not None and notice.within_h is not None
                        else None),
        "low_confidence": list(notice.low_confidence), "problems": list(notice.problems),
        "forecast": ({"cycle_id": notice.cycle_id, "run_id": notice.forecast_run_id,
                      "model_version": notice.model_version}
                     if (notice.cycle_id, notice.forecast_run_id, notice.model_version)
                     != (None, None, None) else None),
        "acknowledged": ({"by": notice.acknowledged_by, "at": iso_utc(notice.at)}
                         if notice.acknowledged_by else None),
        "note": notice.note, "details": dict(notice.details),
        "new_notification": notice.new_notification,
        "url": f"{base_url.rstrip('/')}/rivers/{river.id}" if base_url else None,
    })
    p.update(wording.texts(p))
    msg_type = "Alert" if sequence == 1 and notice.kind != "clear" else (
        "Cancel" if notice.kind == "clear" else "Update")
    p["cap"] = {"identifier": f"{sender}.{message_id}", "sender": sender,
                "sent": cap_time(aware(sent_at or notice.at, "sent_at")),
                "msg_type": msg_type, "references": refs}
    return p


def test_payload(channel: str, at: datetime, sender: str, simulated: bool, *,
                 audience: str = "staff") -> dict[str, Any]:
    """A "send a test message" payload (kind ``test``, topic ``test``) for ``channel``
    (``slack``, ``webhook``, ``cap``) at ``at``; CAP status ``Test``."""
    _check_identity(sender, [])
    p = _skeleton(kind="test", topic="test", audience=audience, message_id=0, sequence=1,
                  at=at, simulated=simulated)
    sim_ja = f"［{wording.SIMULATED_JA}］" if simulated else ""
    p.update({
        "title_ja": f"{sim_ja}【水位予測通知 接続テスト】{channel}",
        "text_ja": (f"これは水位予測システムから{channel}への接続テストです。対応は不要です。\n"
                    f"発表: {p['issued_at_jst']}"),
        "text_en": (f"Test message from the water-level forecast service to {channel}. "
                    f"No action needed.\nIssued: {p['issued_at_jst']}"),
        "cap": {"identifier": f"{sender}.test.{at.astimezone(wording.JST):%Y%m%dT%H%M%S}",
                "sender": sender, "sent": cap_time(at), "msg_type": "Alert",
                "references": []},
    })
    return _summarised(p)


def redact(text: str) -> str:
    """``text`` with URLs and tokens replaced by ``<redacted>`` (for operator-facing texts)."""
    return _SECRETS.sub("<redacted>", text)


def dead_letter_payload(original: dict[str, Any], error: str, attempts: int, at: datetime, *,
                        channel: str | None = None) -> dict[str, Any]:
    """The operators' message about a payload that could not be delivered (topic ``ops``).

    ``error``: the last ``DeliveryError`` text (URLs and tokens are redacted all the same);
    ``attempts``: how many times delivery was tried; ``channel``: where it failed (default
    ``original["channel"]`` when the outbox stored one, else ``unknown``).
    """
    where = channel or str(original.get("channel") or "unknown")
    why = redact(error)
    cap = original.get("cap") or {}
    sender = str(cap.get("sender") or "forecast.invalid")
    p = _skeleton(kind="dead_letter", topic="ops", audience="operators",
                  message_id=int(original.get("message_id") or 0), sequence=1, at=at,
                  simulated=bool(original.get("simulated")))
    p.update({
        "event_key": original.get("event_key", ""), "stream": original.get("stream", ""),
        "river": original.get("river"), "gauge": original.get("gauge"),
        "problems": [f"delivery to {where} failed {attempts} times: {why}"],
        "delivery": {"channel": where, "attempts": attempts, "error": why,
                     "message_id": original.get("message_id"),
                     "identifier": cap.get("identifier"), "title_ja": original.get("title_ja")},
        "title_ja": f"【水位予測 配信失敗】{where}",
        "text_ja": (f"{where}への配信が{attempts}回失敗しました: {why}\n"
                    f"対象: {original.get('title_ja') or '(不明)'}\n"
                    f"発表: {p['issued_at_jst']}"),
        "text_en": (f"delivery to {where} failed {attempts} times: {why}\n"
                    f"Message: {cap.get('identifier') or original.get('message_id')}"),
        "cap": {"identifier": f"{sender}.{p['message_id']}.dead-letter.{attempts}",
                "sender": sender, "sent": cap_time(at), "msg_type": "Alert",
                "references": []},
    })
    return _summarised(p)


# Not a test: pytest would collect a module-level ``test_*`` function imported into a test file.
test_payload.__test__ = False  # type: ignore[attr-defined]
