"""The canonical payload: schema, JST wording, CAP identity chain, refusals, dead letters."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timedelta
from typing import Any

import pytest

from forecast.catalogue import AlertLevel, River
from forecast.notify import messages
from notify.cases import EVENT, SENDER, T0, build_event, make_notice

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
JST_LABEL = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d JST$")
TOP_KEYS = {"schema", "message_id", "sequence", "kind", "topic", "audience", "event_key",
            "new_notification", "summary_ja", "summary_en", "details",
            "stream", "river", "gauge", "level", "from_level", "basis", "issued_at",
            "issued_at_jst", "observed", "crossing", "crest", "probability", "low_confidence",
            "problems", "forecast", "acknowledged", "note", "title_ja", "text_ja", "text_en",
            "url", "simulated", "cap"}
FORBIDDEN = ("警報", "注意報")


def _strings(obj: Any) -> list[str]:
    """Every string in a JSON-like value (keys too)."""
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(obj, list | tuple):
        return [s for v in obj for s in _strings(v)]
    return []


def test_every_payload_has_the_schema_and_survives_json(payloads: dict[str, dict]) -> None:
    for name, p in payloads.items():
        assert set(p) >= TOP_KEYS, f"{name} lacks {sorted(TOP_KEYS - set(p))}"
        assert p["schema"] == "mie-forecast-notification/1"
        assert json.loads(json.dumps(p, ensure_ascii=False)) == p, name
        assert ISO_UTC.match(p["issued_at"]), (name, p["issued_at"])
        assert JST_LABEL.match(p["issued_at_jst"]), (name, p["issued_at_jst"])


def test_no_payload_calls_itself_a_warning(payloads: dict[str, dict]) -> None:
    """Naming rule: 水位予測通知, never 警報/注意報 (JMA's words), in any string."""
    for name, p in payloads.items():
        for s in _strings(p):
            for word in FORBIDDEN:
                assert word not in s, f"{name}: {word} in {s!r}"
    for name in ("raise_observed", "escalate_forecast", "remind", "lower", "clear"):
        assert "水位予測通知" in payloads[name]["title_ja"]
        assert "水位予測通知" in payloads[name]["text_ja"]


def test_the_first_message_of_the_event(payloads: dict[str, dict]) -> None:
    p = payloads["raise_observed"]
    assert (p["kind"], p["topic"], p["audience"], p["sequence"]) == ("raise", "level", "staff", 1)
    assert p["river"] == {"id": "inabe", "name_ja": "員弁川", "name_en": "Inabe River",
                          "office": "桑名建設事務所"}
    assert p["gauge"]["code"] == "MIE-L-001" and p["gauge"]["name_ja"] == "大泉"
    assert (p["gauge"]["lat"], p["gauge"]["lon"]) == (35.118, 136.585)
    assert p["level"] == {"rank": 2, "key": "caution", "name_ja": "氾濫注意水位",
                          "short_ja": "氾濫注意", "name_en": "caution", "colour": "#f2e700",
                          "keikai_level": 2, "threshold_m": 3.0}
    assert p["stream"] == "inabe:MIE-L-001:level" and p["event_key"] == EVENT
    assert p["issued_at"] == "2023-06-30T18:00:00+00:00"
    assert p["issued_at_jst"] == "2023-07-01 03:00 JST"
    assert p["observed"] == {"level_m": 3.05, "at": "2023-06-30T17:50:00+00:00",
                             "at_jst": "2023-07-01 02:50 JST"}
    assert p["forecast"] == {"cycle_id": 41, "run_id": 977, "model_version": "lgbm-2023.06"}
    assert p["url"] == "https://forecast.example.jp/rivers/inabe"
    assert p["cap"] == {"identifier": f"{SENDER}.101", "sender": SENDER,
                        "sent": "2023-07-01T03:00:00+09:00", "msg_type": "Alert",
                        "references": []}
    assert "員弁川（大泉観測所）の水位が氾濫注意水位（3.00 m）に達しました" in p["text_ja"]
    assert "現在水位: 3.05 m（02:50 観測）" in p["text_ja"]
    assert "発表: 2023-07-01 03:00 JST" in p["text_ja"]
    assert "シミュレーション" not in p["text_ja"] + p["title_ja"]


def test_forecast_text_gives_jst_time_lead_crest_probability_and_caveat(
        payloads: dict[str, dict]) -> None:
    p = payloads["escalate_forecast"]
    assert p["from_level"]["key"] == "evacuation" and p["from_level"]["threshold_m"] == 3.6
    assert p["crossing"] == {"lead_h": 2.5, "at": "2023-06-30T21:30:00+00:00",
                             "at_jst": "2023-07-01 06:30 JST"}
    text = p["text_ja"]
    # 21:30 UTC is 06:30 JST; the UTC clock time must not leak into the display text.
    assert "約2.5時間後（06:30頃）に氾濫危険水位（4.10 m）に達する予測です" in text
    assert "21:30" not in text and "23:00" not in text
    assert "予測ピーク: 4.45 m（08:00頃）" in text
    assert "到達確率: 71%（3時間以内）" in text
    assert "信頼度" in text and "雨量計 MIE-R-001 欠測" in text
    assert "避難判断から引き上げ" in text
    assert "in about 2.5 h (06:30 JST)" in p["text_en"]
    assert p["low_confidence"] == ["雨量計 MIE-R-001 欠測"]


def test_probability_and_short_lead_wording(payloads: dict[str, dict]) -> None:
    assert "3時間以内に避難判断水位（3.60 m）に達する確率は62%です" in \
        payloads["escalate_probability"]["text_ja"]
    assert payloads["escalate_probability"]["probability"] == {"value": 0.62, "within_h": 3}
    assert "約40分後（03:40頃）" in payloads["forecast_within_1h"]["text_ja"]


@pytest.mark.parametrize(("lead_h", "ja"), [
    (0.1, "約10分後"), (0.67, "約40分後"), (0.9, "約50分後"), (0.95, "約1時間後"),
    (1.0, "約1時間後"), (2.17, "約2時間後"), (2.3, "約2.5時間後"), (5.9, "約6時間後")])
def test_lead_phrases(lead_h: float, ja: str) -> None:
    from forecast.notify.wording import lead_ja
    assert lead_ja(lead_h) == ja


def test_a_time_on_another_day_carries_its_date(inabe: River) -> None:
    # 14:30 UTC is 23:30 JST; the crossing at 16:00 UTC is 01:00 JST the next day.
    at = datetime.fromisoformat("2023-06-30T14:30:00+00:00")
    n = make_notice("raise", at, level=AlertLevel.DANGER, basis="forecast",
                crossing_at=at + timedelta(hours=1, minutes=30), lead_h=1.5)
    p = messages.build_payload(n, inabe, message_id=1, sequence=1, previous=[], base_url=None,
                               simulated=False, sender=SENDER)
    assert "約1.5時間後（7月1日 01:00頃）" in p["text_ja"]
    assert p["url"] is None


def test_later_kinds_read_as_what_they_are(payloads: dict[str, dict]) -> None:
    assert "継続・未確認" in payloads["remind"]["title_ja"]
    assert "まだ確認されていません" in payloads["remind"]["text_ja"]
    ack = payloads["acknowledge"]
    assert ack["acknowledged"] == {"by": "山田 太郎", "at": "2023-06-30T20:10:00+00:00"}
    assert "山田 太郎さんが" in ack["text_ja"] and "「排水ポンプ起動済み" in ack["text_ja"]
    assert "氾濫危険水位を下回り、氾濫注意水位（3.00 m）の段階に下がりました" in \
        payloads["lower"]["text_ja"]
    clear = payloads["clear"]
    assert clear["level"] is None and clear["from_level"]["key"] == "caution"
    assert "解除" in clear["title_ja"] and "水位予測通知を解除します" in clear["text_ja"]
    assert "予測ピーク" not in clear["text_ja"]


def test_cap_chain_alert_update_cancel_with_references(payloads: dict[str, dict]) -> None:
    names = ["raise_observed", "escalate_probability", "escalate_forecast", "remind",
             "acknowledge", "lower", "clear"]
    chain = [payloads[n] for n in names]
    assert [p["cap"]["msg_type"] for p in chain] == \
        ["Alert", "Update", "Update", "Update", "Update", "Update", "Cancel"]
    assert [p["sequence"] for p in chain] == list(range(1, 8))
    ids = [p["cap"]["identifier"] for p in chain]
    assert len(set(ids)) == len(ids) and all(i.startswith(f"{SENDER}.") for i in ids)
    for i, p in enumerate(chain):
        assert [r["identifier"] for r in p["cap"]["references"]] == ids[:i]
        assert all(r == messages.reference(q) for r, q in zip(p["cap"]["references"], chain,
                                                              strict=False))


def test_data_problem_goes_to_operators(payloads: dict[str, dict]) -> None:
    p = payloads["data_problem"]
    assert (p["topic"], p["audience"], p["level"]) == ("data", "operators", None)
    assert p["problems"][0].startswith("水位計 MIE-L-001")
    assert "データに問題があります" in p["text_ja"] and "雨量計 MIE-R-001 欠測" in p["text_ja"]


def test_simulated_says_so_everywhere(payloads: dict[str, dict]) -> None:
    p = payloads["simulated_raise"]
    assert p["simulated"] is True
    assert "シミュレーション（訓練用）" in p["title_ja"]
    assert "シミュレーション（訓練用）" in p["text_ja"] and "SIMULATED" in p["text_en"]


def test_crisis_gauge_flooding_uses_the_gauge_overflow_level(payloads: dict[str, dict]) -> None:
    p = payloads["flooding_crisis"]
    assert p["gauge"]["code"] == "MIE-C-001" and p["gauge"]["name_ja"] == "波木"
    assert p["level"]["key"] == "flooding" and p["level"]["threshold_m"] == 2.6
    assert "天白川（波木観測所）の水位が氾濫開始水位（2.60 m）に達しました" in p["text_ja"]


def test_test_and_dead_letter_payloads(payloads: dict[str, dict]) -> None:
    t = payloads["test_message"]
    assert (t["kind"], t["topic"], t["message_id"]) == ("test", "test", 0)
    assert "接続テスト" in t["title_ja"] and "slack" in t["text_ja"]
    d = payloads["dead_letter"]
    assert (d["kind"], d["topic"], d["audience"]) == ("dead_letter", "ops", "operators")
    assert d["problems"][0].startswith("delivery to slack failed 5 times: ")
    assert d["delivery"]["identifier"] == f"{SENDER}.101"
    for s in _strings(d):
        assert "XXXXSECRET" not in s and "hooks.slack.com" not in s, s


def test_redact_removes_urls_and_tokens() -> None:
    text = messages.redact("failed: https://hooks.slack.com/services/T/B/abc?x=1, "
                           "token xoxb-1234-abcd, Authorization: Bearer s3cr3t")
    for secret in ("hooks.slack.com", "abc?x=1", "xoxb-1234", "s3cr3t"):
        assert secret not in text
    assert text.count("<redacted>") == 3


def test_refusals(inabe: River) -> None:
    n = make_notice("raise", T0, level=AlertLevel.CAUTION, basis="observed", observed_m=3.1)
    ok = {"message_id": 1, "sequence": 1, "previous": [], "base_url": None,
          "simulated": False, "sender": SENDER}
    with pytest.raises(ValueError, match="naive"):
        messages.build_payload(make_notice("raise", datetime(2023, 7, 1, 3)), inabe, **ok)
    with pytest.raises(ValueError, match="CAP"):
        messages.build_payload(n, inabe, **{**ok, "sender": "forecast mie"})
    with pytest.raises(ValueError, match="previous"):
        messages.build_payload(n, inabe, **{**ok, "sequence": 2,
                                            "previous": [{"identifier": "x"}]})
    with pytest.raises(ValueError, match="sequence"):
        messages.build_payload(n, inabe, **{**ok, "sequence": 0})
    with pytest.raises(ValueError, match="river"):
        messages.build_payload(make_notice("raise", T0, river_id="kushida"), inabe, **ok)


def test_sent_at_defaults_to_the_issue_time_and_can_be_given(inabe: River) -> None:
    made = T0 + timedelta(minutes=21, seconds=7, microseconds=500)
    p = build_event(inabe)["raise_observed"]
    assert p["cap"]["sent"] == "2023-07-01T03:00:00+09:00"
    n = make_notice("raise", T0, level=AlertLevel.CAUTION, basis="observed", observed_m=3.1)
    q = messages.build_payload(n, inabe, message_id=9, sequence=1, previous=[], base_url=None,
                               simulated=False, sender=SENDER, sent_at=made)
    assert q["cap"]["sent"] == "2023-07-01T03:21:07+09:00"


def test_the_package_imports_no_http_library() -> None:
    """The tick may render payloads and CAP without loading httpx or slack-sdk
    (tests/test_imports.py keeps the operational path light)."""
    code = ("import sys, forecast.notify.messages, forecast.notify.cap, forecast.notify.slack, "
            "forecast.notify.webhook, forecast.notify.receiver\n"
            "print(sorted(m for m in ('httpx', 'slack_sdk') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_a_gauge_missing_from_the_catalogue_still_gives_a_message(inabe: River) -> None:
    n = make_notice("raise", T0, gauge="MIE-L-999", level=AlertLevel.CAUTION, basis="observed",
                    observed_m=3.1)
    p = messages.build_payload(n, inabe, message_id=5, sequence=1, previous=[], base_url=None,
                               simulated=False, sender=SENDER)
    assert p["gauge"]["code"] == p["gauge"]["name_ja"] == "MIE-L-999"
    assert (p["gauge"]["lat"], p["gauge"]["lon"]) == (inabe.gauge.lat, inabe.gauge.lon)
    assert p["level"]["threshold_m"] is None    # the ladder belongs to the primary gauge
    assert "員弁川（MIE-L-999観測所）の水位が氾濫注意水位に達しました" in p["text_ja"]
