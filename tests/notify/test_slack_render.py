"""Slack Block Kit rendering: what the staff channel shows (JST times, level, caveat, link),
escaping of free text, and the naming rule over every rendered string."""

from __future__ import annotations

from typing import Any

import pytest

from forecast.notify.slack import render


def _strings(obj: Any) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in (k, *_strings(v))]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return []


def _blocks(msg: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [b for b in msg["blocks"] if b["type"] == kind]


def _all_text(msg: dict[str, Any]) -> str:
    return "\n".join(_strings(msg))


def test_every_rendering_obeys_the_naming_rule_and_block_kit_limits(
        payloads: dict[str, dict]) -> None:
    for name, p in payloads.items():
        msg = render(p)
        for s in _strings(msg):
            assert "警報" not in s and "注意報" not in s, (name, s)
        header = _blocks(msg, "header")
        assert len(header) == 1 and len(header[0]["text"]["text"]) <= 150, name
        assert header[0]["text"]["type"] == "plain_text"
        assert msg["text"], name   # the notification fallback
        for b in msg["blocks"]:
            assert len(b.get("fields", [])) <= 10
            for f in b.get("fields", []):
                assert len(f["text"]) <= 2000
            assert len(b.get("elements", [])) <= 10


def test_forecast_message_shows_jst_times_level_crest_probability_caveat(
        payloads: dict[str, dict]) -> None:
    p = payloads["escalate_forecast"]
    msg = render(p)
    header = _blocks(msg, "header")[0]["text"]["text"]
    assert "員弁川" in header and "氾濫危険水位" in header
    fields = [f["text"] for f in _blocks(msg, "section")[0]["fields"]]
    assert "*現在水位*\n3.72 m（03:50 観測）" in fields
    assert "*予測到達時刻*\n06:30頃（約2.5時間後）" in fields
    assert "*予測ピーク*\n4.45 m（08:00頃）" in fields
    assert "*到達確率*\n71%（3時間以内）" in fields
    assert "*基準水位*\n氾濫危険水位 4.10 m" in fields
    text = _all_text(msg)
    # The UTC clock times of the same instants (18:50, 21:30, 23:00) must not appear.
    for utc in ("18:50", "21:30", "23:00"):
        assert utc not in text
    context = " ".join(e["text"] for e in _blocks(msg, "context")[0]["elements"])
    assert "信頼度" in context and "雨量計 MIE-R-001 欠測" in context
    assert "model lgbm-2023.06" in context and "run 977" in context
    assert "2023-07-01 04:00 JST" in context
    assert "SIMULATED" not in text
    assert msg["attachments"][0]["color"] == "#aa00aa"   # 氾濫危険 purple


def test_link_button_to_the_river_page(payloads: dict[str, dict]) -> None:
    actions = _blocks(render(payloads["raise_observed"]), "actions")
    assert actions[0]["elements"][0]["url"] == "https://forecast.example.jp/rivers/inabe"
    assert _blocks(render(payloads["flooding_crisis"]), "actions") == []   # no base_url


def test_simulated_label(payloads: dict[str, dict]) -> None:
    msg = render(payloads["simulated_raise"])
    context = " ".join(e["text"] for e in _blocks(msg, "context")[0]["elements"])
    assert "SIMULATED" in context and "シミュレーション（訓練用）" in context
    assert "シミュレーション（訓練用）" in _blocks(msg, "header")[0]["text"]["text"]
    assert "シミュレーション（訓練用）" in msg["text"]


def test_free_text_cannot_mention_the_channel(payloads: dict[str, dict]) -> None:
    """The acknowledgement's note carries ``<!channel>``: escaped, it is shown, not acted on."""
    text = _all_text(render(payloads["acknowledge"]))
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert "山田 太郎" in text


@pytest.mark.parametrize(("name", "present", "absent"), [
    ("clear", ["解除", "*現在水位*\n2.05 m"], ["予測ピーク", "到達確率"]),
    ("data_problem", ["データ異常", "*問題*", "MIE-L-001"], ["現在水位"]),
    ("dead_letter", ["配信失敗", "delivery to slack failed 5 times"], ["XXXXSECRET"]),
    ("test_message", ["接続テスト"], ["現在水位"]),
])
def test_other_kinds(payloads: dict[str, dict], name: str, present: list[str],
                     absent: list[str]) -> None:
    text = _all_text(render(payloads[name]))
    for s in present:
        assert s in text, (name, s)
    for s in absent:
        assert s not in text, (name, s)
