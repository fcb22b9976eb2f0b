"""CAP 1.2 (OASIS Common Alerting Protocol) messages, their Atom feed, and ``CapSender``.

The profile (``docs/notifications.md``), one ``<alert>`` per payload:

* ``status``: ``Exercise`` for simulated/replayed data and for drills (``status=`` argument),
  ``Test`` for test messages, ``System`` for messages about the service itself (data
  problems, failed deliveries), else ``Actual``. A simulated payload is never ``Actual``.
* ``msgType``: ``Alert`` for an event's first message, ``Update`` for the later ones,
  ``Cancel`` for the all-clear; ``references`` lists the event's earlier messages and
  ``incidents`` the event key, so a portal can group and retire them.
* ``scope`` is ``Restricted``, not ``Public``: these are internal forecast notifications
  (水位予測通知) for flood-control staff. Under the Meteorological Service Act only JMA may
  warn the public (警報・注意報) and others' flood forecasts need a licence, so the
  prefecture's portal must not pass them on to the public; ``restriction`` says so.
* ``category`` ``Met``: CAP 1.2 defines Met as "Meteorological (inc. flood)" (Geo is
  geophysical, landslides; Env is pollution). Messages about the service are ``Other``.
* urgency / severity / certainty (DOMAIN.md 4.4): see ``grading``.
* ``<area>``: the gauge (its place as a 0.5 km circle, which is where the level is
  measured, not a flood extent) and the prefecture (JIS X 0401 code 24, 三重県).
* Times are ``YYYY-MM-DDThh:mm:ss+09:00`` (the schema's pattern: no fraction, offset).

Two ``<info>`` blocks: Japanese (``ja-JP``, the full text) and English (``en``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from typing import TYPE_CHECKING, Any

from forecast.notify.wording import SIMULATED_JA, cap_time, iso_utc, parse_time

if TYPE_CHECKING:   # httpx is imported when something is sent (the tick imports no HTTP)
    import httpx

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
CAP_MEDIA_TYPE = "application/cap+xml"
PROFILE_CODE = "mie-forecast-notification/1"
MIE_JIS_CODE = "24"
RESTRICTION = ("三重県 水防関係者限り: 水位予測通知（内部情報）。一般への伝達・公開には使用しない。"
               " / Flood-control staff of Mie Prefecture only; not for public dissemination.")
STATUSES = ("Actual", "Exercise", "System", "Test", "Draft")
_SEVERITY = {1: "Minor", 2: "Moderate", 3: "Severe", 4: "Severe", 5: "Extreme"}


def status_of(payload: dict[str, Any], status: str | None = None) -> str:
    """The CAP ``status`` (see the module docstring); ``ValueError`` for an unknown value or
    ``Actual``/``System`` asked for simulated data."""
    if status is not None:
        if status not in STATUSES:
            raise ValueError(f"CAP status {status!r}: one of {', '.join(STATUSES)}")
        if payload.get("simulated") and status in ("Actual", "System"):
            raise ValueError("a payload from simulated data cannot be sent as Actual/System: "
                             "use Exercise")
        return status
    if payload["kind"] == "test":
        return "Test"
    if payload.get("simulated"):
        return "Exercise"
    return "Actual" if payload["topic"] == "level" else "System"


def _at_or_above(p: dict[str, Any]) -> bool:
    """Whether the observed level is at or above the message's threshold."""
    obs, level = p.get("observed"), p.get("level")
    return bool(obs and level and level.get("threshold_m") is not None
                and obs["level_m"] >= level["threshold_m"])


def _urgency_by_hours(hours: float | None) -> str:
    if hours is None:
        return "Expected"
    return "Immediate" if hours <= 1.0 else ("Expected" if hours <= 6.0 else "Future")


def grading(payload: dict[str, Any]) -> tuple[str, str, str]:
    """``(urgency, severity, certainty)`` of a payload.

    Level messages: urgency from the basis (observed → Immediate; forecast crossing within
    1 h → Immediate, 1–6 h → Expected, later → Future; probability within N h likewise);
    severity from the level (水防団待機 Minor, 氾濫注意 Moderate, 避難判断 and 氾濫危険 Severe,
    氾濫開始 Extreme); certainty observed → Observed, forecast (P50 crossing) → Likely,
    probability → Possible. Without a basis (reminders, lowerings, acknowledgements) the
    observed level decides: at or above the threshold → Immediate/Observed, else
    Expected/Likely. The all-clear: Past, Minor, Observed. Messages about the service
    (data, ops): Unknown, Unknown, Observed; test messages: Unknown throughout.
    """
    p = payload
    if p["kind"] == "test":
        return "Unknown", "Unknown", "Unknown"
    if p["topic"] != "level":
        return "Unknown", "Unknown", "Observed"
    if p["kind"] == "clear":
        return "Past", "Minor", "Observed"
    level = p.get("level")
    severity = _SEVERITY[level["rank"]] if level else "Unknown"
    basis = p.get("basis")
    if basis == "observed":
        return "Immediate", severity, "Observed"
    if basis == "forecast":
        crossing = p.get("crossing")
        return (_urgency_by_hours(crossing["lead_h"] if crossing else None), severity, "Likely")
    if basis == "probability":
        prob = p.get("probability")
        return (_urgency_by_hours(prob["within_h"] if prob else None), severity, "Possible")
    if _at_or_above(p):
        return "Immediate", severity, "Observed"
    return "Expected", severity, "Likely"


def _sub(parent: ET.Element, tag: str, text: object | None = None) -> ET.Element:
    el = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        el.text = str(text)
    return el


def _pair(parent: ET.Element, tag: str, name: str, value: object) -> None:
    el = _sub(parent, tag)
    _sub(el, "valueName", name)
    _sub(el, "value", value)


def _parameters(p: dict[str, Any]) -> list[tuple[str, object]]:
    """``<parameter>`` pairs: identities, levels (m), times (CAP form), probabilities."""
    out: list[tuple[str, object]] = [("kind", p["kind"]), ("sequence", p["sequence"])]
    if p.get("river"):
        out += [("river_id", p["river"]["id"]), ("gauge_code", p["gauge"]["code"])]
    if p.get("level"):
        out.append(("level", p["level"]["key"]))
        if p["level"].get("keikai_level") is not None:
            out.append(("keikai_level", p["level"]["keikai_level"]))
        if p["level"].get("threshold_m") is not None:
            out.append(("threshold_m", f"{p['level']['threshold_m']:.2f}"))
    if p.get("from_level"):
        out.append(("from_level", p["from_level"]["key"]))
    if p.get("basis"):
        out.append(("basis", p["basis"]))
    for key in ("observed", "crest"):
        if p.get(key):
            out += [(f"{key}_m", f"{p[key]['level_m']:.2f}"),
                    (f"{key}_at", cap_time(parse_time(p[key]["at"])))]
    if p.get("crossing"):
        out += [("crossing_at", cap_time(parse_time(p["crossing"]["at"]))),
                ("lead_h", f"{p['crossing']['lead_h']:.2f}")]
    if p.get("probability"):
        out += [("probability", f"{p['probability']['value']:.2f}"),
                ("within_h", p["probability"]["within_h"])]
    out += [("low_confidence", s) for s in p.get("low_confidence", [])]
    out += [("problem", s) for s in p.get("problems", [])]
    fc = p.get("forecast")
    if fc:
        out += [(f"forecast_{k}", v) for k, v in fc.items() if v is not None]
    return out


def _event(p: dict[str, Any], lang: str) -> str:
    ja = lang == "ja"
    if p["kind"] == "test":
        return "水位予測通知（接続テスト）" if ja else "Forecast notification (test)"
    if p["topic"] == "data":
        return "水位予測システム（データ異常）" if ja else "Forecast service (data problem)"
    if p["topic"] != "level":
        return "水位予測システム（配信失敗）" if ja else "Forecast service (delivery failure)"
    if p["kind"] == "clear" or not p.get("level"):
        return "水位予測通知（解除）" if ja else "Water-level forecast notification (all clear)"
    level = p["level"]
    return (f"水位予測通知（{level['short_ja']}）" if ja
            else f"Water-level forecast notification ({level['name_en']})")


def _instruction(p: dict[str, Any], ja: bool) -> str | None:
    if p["kind"] in ("test", "clear", "acknowledge"):
        return None
    if p["topic"] != "level":
        return ("観測データと配信の状況を確認してください。" if ja
                else "Check the observations and the delivery channels.")
    return ("最新の観測水位と予測を確認し、水防計画に基づいて対応してください。" if ja else
            "Check the latest observed and forecast levels and act on the flood-fighting plan.")


def _info(alert: ET.Element, p: dict[str, Any], lang: str) -> None:
    ja = lang == "ja"
    info = _sub(alert, "info")
    _sub(info, "language", "ja-JP" if ja else "en")
    _sub(info, "category", "Met" if p["topic"] == "level" else "Other")
    _sub(info, "event", _event(p, lang))
    if p["topic"] == "level" and p["kind"] != "test":
        _sub(info, "responseType", "AllClear" if p["kind"] == "clear" else "Monitor")
    for tag, grade in zip(("urgency", "severity", "certainty"), grading(p), strict=True):
        _sub(info, tag, grade)
    staff = p["audience"] == "staff"
    _sub(info, "audience", ("水防担当者" if staff else "運用担当者") if ja
         else ("flood-control staff" if staff else "service operators"))
    if p.get("level"):
        _pair(info, "eventCode", "mie-forecast-level", p["level"]["key"])
    _sub(info, "effective", p["cap"]["sent"])
    onset = (p.get("crossing") if p.get("basis") == "forecast" else None) or p.get("observed")
    if onset and p["topic"] == "level" and p["kind"] != "clear":
        _sub(info, "onset", cap_time(parse_time(onset["at"])))
    office = (p.get("river") or {}).get("office") or ""
    _sub(info, "senderName", (f"三重県 {office} 水位予測システム".replace("  ", " ") if ja
                              else "Mie Prefecture water-level forecast service"))
    _sub(info, "headline", p["title_ja"] if ja else p["summary_en"])
    _sub(info, "description", p["text_ja"] if ja else p["text_en"])
    instruction = _instruction(p, ja)
    if instruction:
        _sub(info, "instruction", instruction)
    if p.get("url"):
        _sub(info, "web", p["url"])
    for name, value in _parameters(p):
        _pair(info, "parameter", name, value)
    area = _sub(info, "area")
    river, gauge = p.get("river"), p.get("gauge")
    if river and gauge:
        _sub(area, "areaDesc", f"{river['name_ja']} {gauge['name_ja']}観測所付近（三重県）" if ja
             else f"{river['name_en']} near the {gauge.get('name_en') or gauge['code']} gauge, "
                  "Mie Prefecture")
        _sub(area, "circle", f"{gauge['lat']:.4f},{gauge['lon']:.4f} 0.5")
    else:
        _sub(area, "areaDesc", "三重県" if ja else "Mie Prefecture")
    _pair(area, "geocode", "JISX0401", MIE_JIS_CODE)


def cap_xml(payload: dict[str, Any], *, status: str | None = None) -> bytes:
    """One CAP 1.2 ``<alert>`` (UTF-8 bytes with an XML declaration) for ``payload``.
    ``status``: override (``Exercise`` for a drill on real data); see ``status_of``."""
    p, cap = payload, payload["cap"]
    st = status_of(p, status)
    alert = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(alert, "identifier", cap["identifier"])
    _sub(alert, "sender", cap["sender"])
    _sub(alert, "sent", cap["sent"])
    _sub(alert, "status", st)
    _sub(alert, "msgType", cap["msg_type"])
    _sub(alert, "scope", "Restricted")
    _sub(alert, "restriction", RESTRICTION)
    _sub(alert, "code", PROFILE_CODE)
    if st in ("Exercise", "Test"):
        _sub(alert, "note", f"{SIMULATED_JA}: 実際の水位ではありません。" if st == "Exercise"
             else "接続テスト: 対応は不要です。")
    if cap["references"]:
        _sub(alert, "references", " ".join(f"{r['sender']},{r['identifier']},{r['sent']}"
                                           for r in cap["references"]))
    if p.get("event_key"):
        _sub(alert, "incidents", p["event_key"])
    _info(alert, p, "ja")
    _info(alert, p, "en")
    xml: bytes = ET.tostring(alert, encoding="utf-8", xml_declaration=True,
                             default_namespace=CAP_NS)
    return xml


def feed_entry(payload: dict[str, Any], cap_url: str) -> dict[str, Any]:
    """An ``atom_feed`` entry for a payload whose CAP XML is served at ``cap_url``."""
    return {"identifier": payload["cap"]["identifier"], "title": payload["title_ja"],
            "updated": parse_time(payload["cap"]["sent"]), "link": cap_url,
            "summary": payload["summary_ja"]}


def _atom_time(t: datetime | str) -> str:
    return iso_utc(parse_time(t) if isinstance(t, str) else t)


def atom_feed(entries: list[dict[str, Any]], *, feed_id: str, feed_url: str, title: str,
              updated: datetime) -> bytes:
    """An Atom 1.0 feed (UTF-8 bytes) of the current CAP messages, newest first.

    ``entries``: dicts with ``identifier`` (the CAP identifier), ``title``, ``updated``
    (datetime or ISO string), ``link`` (URL of the CAP XML), ``summary``; optional ``id``
    (an IRI; default the link, since a CAP identifier need not be an IRI). Each entry links
    to its CAP XML as ``rel="alternate" type="application/cap+xml"``."""
    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, tag, attrs)
        if text is not None:
            el.text = text
        return el

    # Unqualified names under an explicit default namespace: ElementTree's default_namespace
    # option refuses the unqualified attributes (rel, href) that Atom uses.
    feed = ET.Element("feed", {"xmlns": ATOM_NS, "xml:lang": "ja"})
    sub(feed, "id", feed_id)
    sub(feed, "title", title)
    sub(feed, "updated", _atom_time(updated))
    sub(feed, "link", rel="self", href=feed_url, type="application/atom+xml")
    author = sub(feed, "author")
    sub(author, "name", "三重県 水位予測システム")
    sub(feed, "generator", "forecast.notify")
    for e in sorted(entries, key=lambda e: _atom_time(e["updated"]), reverse=True):
        entry = sub(feed, "entry")
        sub(entry, "id", str(e.get("id") or e["link"]))
        sub(entry, "title", str(e["title"]))
        sub(entry, "updated", _atom_time(e["updated"]))
        sub(entry, "link", rel="alternate", href=str(e["link"]), type=CAP_MEDIA_TYPE)
        sub(entry, "category", term=str(e["identifier"]), label="CAP identifier")
        sub(entry, "summary", str(e.get("summary") or ""))
    xml: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return xml


class CapSender:
    """POSTs CAP XML (``application/cap+xml``) to one URL through an injected httpx client."""

    channel = "cap"

    def __init__(self, url: str, client: httpx.Client) -> None:
        self.url = url
        self.client = client

    def __repr__(self) -> str:
        return "CapSender(<url>)"

    def send(self, payload: dict[str, Any], *, status: str | None = None) -> None:
        """Deliver the payload's CAP message; ``DeliveryError`` (with ``retryable``) if the
        endpoint does not answer 2xx."""
        from forecast.notify import _http

        body = cap_xml(payload, status=status)
        _http.post(self.client, self.url, content=body, channel=self.channel,
                   headers={"Content-Type": f"{CAP_MEDIA_TYPE}; charset=utf-8"})
