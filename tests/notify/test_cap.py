"""CAP 1.2: every kind of message validated against the OASIS schema (tests/data/cap-1.2),
the profile's choices (status, msgType chain, references, grading, times), the Atom feed."""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any

import pytest
import xmlschema

from forecast.notify.cap import ATOM_NS, CAP_NS, atom_feed, cap_xml, feed_entry, grading
from notify.cases import CAP_DATA, SENDER, T0

DATA = CAP_DATA
NS = {"cap": CAP_NS}
CAP_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+09:00$")
CHAIN = ["raise_observed", "escalate_probability", "escalate_forecast", "remind",
         "acknowledge", "lower", "clear"]

# (status, msgType, urgency, severity, certainty, category): written from DOMAIN.md 4.4 and
# the profile in docs/notifications.md, not from the code.
EXPECTED = {
    "raise_observed": ("Actual", "Alert", "Immediate", "Moderate", "Observed", "Met"),
    "escalate_probability": ("Actual", "Update", "Expected", "Severe", "Possible", "Met"),
    "escalate_forecast": ("Actual", "Update", "Expected", "Severe", "Likely", "Met"),
    "remind": ("Actual", "Update", "Immediate", "Severe", "Observed", "Met"),
    "acknowledge": ("Actual", "Update", "Immediate", "Severe", "Observed", "Met"),
    "lower": ("Actual", "Update", "Immediate", "Moderate", "Observed", "Met"),
    "clear": ("Actual", "Cancel", "Past", "Minor", "Observed", "Met"),
    "forecast_within_1h": ("Actual", "Alert", "Immediate", "Minor", "Likely", "Met"),
    "flooding_crisis": ("Actual", "Alert", "Immediate", "Extreme", "Observed", "Met"),
    "data_problem": ("System", "Alert", "Unknown", "Unknown", "Observed", "Other"),
    "test_message": ("Test", "Alert", "Unknown", "Unknown", "Unknown", "Other"),
    "dead_letter": ("System", "Alert", "Unknown", "Unknown", "Observed", "Other"),
    "simulated_raise": ("Exercise", "Alert", "Immediate", "Moderate", "Observed", "Met"),
}


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(DATA / "CAP-v1.2.xsd"))


def _parse(xml: bytes) -> ET.Element:
    return ET.fromstring(xml)


def _text(el: ET.Element, path: str) -> str:
    found = el.find(path, NS)
    assert found is not None and found.text is not None, path
    return found.text


def test_fixtures_are_the_unmodified_copies() -> None:
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in DATA.glob("*.x*")}
    assert digests == {
        "CAP-v1.2.xsd": "b7798ef25868b068c97b268bda02d067c7d4ba9373adc5638bf37105804ee723",
        "cap_amber_alert_example.xml":
            "134eb065c50fdf178ee1c4c7254c6a4a1a5461bd512a8c58104ec56a26de272f"}


def test_the_schema_accepts_the_specification_example_and_refuses_a_broken_one(
        schema: xmlschema.XMLSchema, payloads: dict[str, dict]) -> None:
    schema.validate(str(DATA / "cap_amber_alert_example.xml"))
    good = cap_xml(payloads["raise_observed"]).decode("utf-8")
    assert schema.is_valid(good)
    # The checks below would pass vacuously if the validator accepted anything.
    assert not schema.is_valid(good.replace("+09:00</sent>", "</sent>"))
    assert not schema.is_valid(good.replace("03:00:00+09:00</sent>", "03:00:00.5+09:00</sent>"))
    assert not schema.is_valid(good.replace("<urgency>Immediate", "<urgency>Soon"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_kind_is_valid_cap_with_the_profile(name: str, schema: xmlschema.XMLSchema,
                                                  payloads: dict[str, dict]) -> None:
    p = payloads[name]
    xml = cap_xml(p)
    schema.validate(xml.decode("utf-8"))
    alert = _parse(xml)
    status, msg_type, urgency, severity, certainty, category = EXPECTED[name]
    assert _text(alert, "cap:status") == status
    assert _text(alert, "cap:msgType") == msg_type
    assert _text(alert, "cap:identifier") == p["cap"]["identifier"]
    assert _text(alert, "cap:sender") == SENDER
    assert _text(alert, "cap:scope") == "Restricted"
    assert "水防関係者限り" in _text(alert, "cap:restriction")
    infos = alert.findall("cap:info", NS)
    assert [_text(i, "cap:language") for i in infos] == ["ja-JP", "en"]
    for info in infos:
        assert (_text(info, "cap:urgency"), _text(info, "cap:severity"),
                _text(info, "cap:certainty")) == (urgency, severity, certainty)
        assert _text(info, "cap:category") == category
        assert info.find("cap:area/cap:areaDesc", NS) is not None
        assert _text(info, "cap:area/cap:geocode/cap:value") == "24"
    ja = infos[0]
    assert _text(ja, "cap:description") == p["text_ja"]
    assert _text(ja, "cap:headline") == p["title_ja"]
    assert grading(p) == (urgency, severity, certainty)
    # Every time is YYYY-MM-DDThh:mm:ss+09:00 (elements and time parameters).
    times = [e.text or "" for tag in ("sent", "effective", "onset", "expires")
             for e in alert.iter(f"{{{CAP_NS}}}{tag}")]
    times += [_text(pm, "cap:value") for pm in ja.findall("cap:parameter", NS)
              if _text(pm, "cap:valueName").endswith("_at")]
    assert times and all(CAP_TIME.match(t) for t in times), times
    for word in ("警報", "注意報"):
        assert word not in xml.decode("utf-8")


def test_level_message_details(payloads: dict[str, dict]) -> None:
    p = payloads["escalate_forecast"]
    alert = _parse(cap_xml(p))
    ja, en = alert.findall("cap:info", NS)
    assert _text(ja, "cap:event") == "水位予測通知（氾濫危険）"
    assert _text(en, "cap:event") == "Water-level forecast notification (danger)"
    assert _text(ja, "cap:web") == "https://forecast.example.jp/rivers/inabe"
    assert _text(ja, "cap:onset") == "2023-07-01T06:30:00+09:00"   # the forecast crossing
    assert _text(ja, "cap:area/cap:circle") == "35.1180,136.5850 0.5"
    assert "員弁川" in _text(ja, "cap:area/cap:areaDesc")
    params = {_text(pm, "cap:valueName"): _text(pm, "cap:value")
              for pm in ja.findall("cap:parameter", NS)}
    assert params["river_id"] == "inabe" and params["gauge_code"] == "MIE-L-001"
    assert params["level"] == "danger" and params["threshold_m"] == "4.10"
    assert params["from_level"] == "evacuation" and params["crest_m"] == "4.45"
    assert params["crest_at"] == "2023-07-01T08:00:00+09:00"
    assert params["lead_h"] == "2.50" and params["probability"] == "0.71"
    assert params["forecast_model_version"] == "lgbm-2023.06"
    assert _text(alert, "cap:incidents") == p["event_key"]


def test_references_chain_the_event(payloads: dict[str, dict]) -> None:
    chain = [payloads[n] for n in CHAIN]
    first = _parse(cap_xml(chain[0]))
    assert first.find("cap:references", NS) is None
    clear = _parse(cap_xml(chain[-1]))
    triples = [t.split(",") for t in _text(clear, "cap:references").split(" ")]
    assert [tuple(t) for t in triples] == [
        (SENDER, p["cap"]["identifier"], p["cap"]["sent"]) for p in chain[:-1]]
    # Each reference's sent is the referenced message's own <sent>, verbatim.
    for (_, ident, sent), p in zip(triples, chain, strict=False):
        assert _text(_parse(cap_xml(p)), "cap:sent") == sent and ident.endswith(
            str(p["message_id"]))
    info = clear.find("cap:info", NS)
    assert info is not None and _text(info, "cap:responseType") == "AllClear"


def test_status_override_for_drills_and_refusal_for_simulated_data(
        payloads: dict[str, dict]) -> None:
    drill = _parse(cap_xml(payloads["raise_observed"], status="Exercise"))
    assert _text(drill, "cap:status") == "Exercise"
    assert "シミュレーション" in _text(drill, "cap:note")
    with pytest.raises(ValueError, match="Exercise"):
        cap_xml(payloads["simulated_raise"], status="Actual")
    with pytest.raises(ValueError, match="status"):
        cap_xml(payloads["raise_observed"], status="Real")


def test_atom_feed_lists_the_current_messages(payloads: dict[str, dict]) -> None:
    names = ["raise_observed", "escalate_forecast", "flooding_crisis"]
    entries = [feed_entry(payloads[n], f"https://forecast.example.jp/cap/{n}.xml")
               for n in names]
    xml = atom_feed(entries, feed_id="https://forecast.example.jp/cap/feed.atom",
                    feed_url="https://forecast.example.jp/cap/feed.atom",
                    title="三重県 水位予測通知 (CAP)", updated=T0 + timedelta(hours=1))
    assert xml.startswith(b"<?xml")
    feed = ET.fromstring(xml)    # well-formed
    a = {"a": ATOM_NS}
    assert feed.tag == f"{{{ATOM_NS}}}feed"
    for tag in ("id", "title", "updated", "author/a:name"):
        assert feed.find(f"a:{tag}", a) is not None, tag
    assert feed.findtext("a:updated", namespaces=a) == "2023-06-30T19:00:00+00:00"
    self_link = feed.find("a:link[@rel='self']", a)
    assert self_link is not None and self_link.get("href", "").endswith("feed.atom")
    got = feed.findall("a:entry", a)
    assert len(got) == 3
    updated = [e.findtext("a:updated", namespaces=a) or "" for e in got]
    assert updated == sorted(updated, reverse=True)    # newest first
    by_href = {link.get("href", ""): e for e in got if (link := e.find("a:link", a)) is not None}
    for n in names:
        e = by_href[f"https://forecast.example.jp/cap/{n}.xml"]
        link = e.find("a:link", a)
        assert link is not None and link.get("type") == "application/cap+xml"
        assert link.get("rel") == "alternate"
        assert e.findtext("a:id", namespaces=a) == link.get("href")
        assert e.findtext("a:title", namespaces=a) == payloads[n]["title_ja"]
        assert e.findtext("a:summary", namespaces=a) == payloads[n]["summary_ja"]
        cat = e.find("a:category", a)
        assert cat is not None and cat.get("term") == payloads[n]["cap"]["identifier"]


def test_empty_feed_is_still_a_feed() -> None:
    feed = ET.fromstring(atom_feed([], feed_id="urn:x", feed_url="https://x/f", title="t",
                                   updated=T0))
    assert feed.findall(f"{{{ATOM_NS}}}entry") == []


def _params(info: ET.Element) -> dict[str, Any]:
    return {_text(pm, "cap:valueName"): _text(pm, "cap:value")
            for pm in info.findall("cap:parameter", NS)}


def test_data_problem_lists_its_problems(payloads: dict[str, dict]) -> None:
    info = _parse(cap_xml(payloads["data_problem"])).find("cap:info", NS)
    assert info is not None
    assert _text(info, "cap:event") == "水位予測システム（データ異常）"
    problems = [_text(pm, "cap:value") for pm in info.findall("cap:parameter", NS)
                if _text(pm, "cap:valueName") == "problem"]
    assert problems == payloads["data_problem"]["problems"]
    assert _params(info)["river_id"] == "inabe"
