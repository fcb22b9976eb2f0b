"""Times and words of a notification (pure): what a flood-control officer reads at 2 a.m.

Every function here reads a payload (``forecast.notify.messages``) or plain values, never a
clock. Display times are JST (UTC+9) always; stored times are ISO 8601 with their offset.

Naming rule (law): the service's outputs are 水位予測通知 / forecast notifications; no text
written here may contain 警報 or 注意報 (``tests/notify`` scans every rendering). Words typed
by people (an acknowledgement's note) are quoted as typed, marked as a quotation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

JST = timezone(timedelta(hours=9), "JST")
SIMULATED_JA = "シミュレーション（訓練用）"


def aware(t: datetime, what: str) -> datetime:
    """``t`` if it carries an offset; ``ValueError`` naming ``what`` for a naive time."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what} is a naive datetime ({t!r}): pass a timezone-aware time")
    return t


def iso_utc(t: datetime) -> str:
    """``2023-06-30T18:00:00+00:00`` (stored and API form: UTC, seconds, offset)."""
    return t.astimezone(UTC).isoformat(timespec="seconds")


def jst_label(t: datetime) -> str:
    """``2023-07-01 03:00 JST`` (the payload's ``*_jst`` fields)."""
    return t.astimezone(JST).strftime("%Y-%m-%d %H:%M JST")


def cap_time(t: datetime) -> str:
    """``2023-07-01T03:00:00+09:00``: CAP 1.2 ``dateTime`` (no fraction, offset required)."""
    return t.astimezone(JST).replace(microsecond=0).isoformat(timespec="seconds")


def parse_time(text: str) -> datetime:
    """The inverse of ``iso_utc`` (any ISO 8601 time with an offset)."""
    return aware(datetime.fromisoformat(text), f"time {text!r}")


def clock_ja(at: str, issued: str) -> str:
    """``05:00`` on the issue day (JST), ``7月2日 05:00`` on another day."""
    t, ref = parse_time(at).astimezone(JST), parse_time(issued).astimezone(JST)
    hm = t.strftime("%H:%M")
    return hm if t.date() == ref.date() else f"{t.month}月{t.day}日 {hm}"


def clock_en(at: str, issued: str) -> str:
    """``05:00 JST`` on the issue day, ``2 Jul 05:00 JST`` on another day."""
    t, ref = parse_time(at).astimezone(JST), parse_time(issued).astimezone(JST)
    hm = t.strftime("%H:%M JST")
    return hm if t.date() == ref.date() else f"{t.day} {t.strftime('%b')} {hm}"


def lead_ja(lead_h: float) -> str:
    """``約40分後`` under 55 minutes (10-min steps), else ``約2時間後`` / ``約1.5時間後``
    (half hours)."""
    minutes = max(10, round(lead_h * 6) * 10)
    if minutes < 60:
        return f"約{minutes}分後"
    return f"約{max(1.0, round(lead_h * 2) / 2):g}時間後"


def lead_en(lead_h: float) -> str:
    """``in about 40 min`` / ``in about 1.5 h``."""
    minutes = max(10, round(lead_h * 6) * 10)
    if minutes < 60:
        return f"in about {minutes} min"
    return f"in about {max(1.0, round(lead_h * 2) / 2):g} h"


def metres(value: float | None) -> str:
    """``4.10 m`` (centimetres: gauges read to the centimetre)."""
    return "" if value is None else f"{value:.2f} m"


def percent(value: float) -> str:
    """``62%`` from a probability 0–1."""
    return f"{round(value * 100)}%"


def _level_ja(level: dict[str, Any]) -> str:
    """``氾濫危険水位（4.10 m）`` or ``氾濫危険水位`` without a threshold."""
    thr = level.get("threshold_m")
    return f"{level['name_ja']}（{metres(thr)}）" if thr is not None else str(level["name_ja"])


def _level_en(level: dict[str, Any]) -> str:
    thr = level.get("threshold_m")
    return f"the {level['name_en']} level" + (f" ({metres(thr)})" if thr is not None else "")


def texts(p: dict[str, Any]) -> dict[str, str]:
    """``title_ja``, ``summary_ja`` / ``summary_en`` (the first sentence) and ``text_ja`` /
    ``text_en`` (every line) of a river payload (topic ``level`` or ``data``)."""
    river, gauge = p["river"], p["gauge"]
    where_ja = f"{river['name_ja']}（{gauge['name_ja']}観測所）"
    where_en = f"{river['name_en']} at {gauge.get('name_en') or gauge['name_ja']}"
    short_ja = f"{river['name_ja']}（{gauge['name_ja']}）"
    lead_ja_, lead_en_, title = _lead(p, where_ja, where_en, short_ja)
    lines_ja = [lead_ja_, *_details_ja(p)]
    lines_en = [lead_en_, *_details_en(p)]
    if p["simulated"]:
        title = f"［{SIMULATED_JA}］{title}"
        lines_ja.insert(0, f"※{SIMULATED_JA}のデータによる通知です。実際の水位ではありません。")
        lines_en.insert(0, "SIMULATED (training exercise): not real water levels.")
    return {"title_ja": title, "summary_ja": lead_ja_, "summary_en": lead_en_,
            "text_ja": "\n".join(lines_ja), "text_en": "\n".join(lines_en)}


def _lead(p: dict[str, Any], where_ja: str, where_en: str, short: str) -> tuple[str, str, str]:
    """The first sentence (ja, en) and the title, by kind and basis."""
    kind, level, frm = p["kind"], p["level"], p["from_level"]
    if p["topic"] == "data":
        problems_ja = "、".join(p["problems"]) or "詳細不明"
        problems_en = "; ".join(p["problems"]) or "details unknown"
        if kind == "clear":
            return (f"{where_ja}のデータの問題は解消しました。",
                    f"{where_en}: the data problems are resolved.",
                    f"【水位予測 データ復旧】{short}")
        if kind == "acknowledge":
            by = p["acknowledged"]["by"] if p["acknowledged"] else "担当者"
            return (f"{by}さんが{where_ja}のデータ異常の通知を確認しました。",
                    f"{by} acknowledged the data problems of {where_en}.",
                    f"【水位予測 データ異常 確認済み】{short}")
        return (f"{where_ja}のデータに問題があります: {problems_ja}。"
                "水位予測通知の判断に影響する可能性があります。",
                f"Data problems at {where_en}: {problems_en}. Forecast notifications may be "
                "affected.",
                f"【水位予測 データ異常】{short}")
    if kind == "clear":
        return (f"{where_ja}の水位は通知の基準水位を下回りました。"
                "この出水の水位予測通知を解除します。",
                f"{where_en} is below the notification levels: this event's forecast "
                "notifications are cleared.",
                f"【水位予測通知 解除】{short}")
    if level is None:   # not produced by the engine for these kinds; say what we know
        return (f"{where_ja}の水位予測通知です。", f"Forecast notification for {where_en}.",
                f"【水位予測通知】{short}")
    name, lv_ja, lv_en = level["name_ja"], _level_ja(level), _level_en(level)
    if kind == "acknowledge":
        by = p["acknowledged"]["by"] if p["acknowledged"] else "担当者"
        return (f"{by}さんが{where_ja}の{name}の通知を確認しました。",
                f"{by} acknowledged the {level['name_en']} notification of {where_en}.",
                f"【水位予測通知 確認済み】{short} {name}")
    if kind == "lower":
        was_ja = f"{frm['name_ja']}を下回り、" if frm else ""
        was_en = f"fell below the {frm['name_en']} level and " if frm else ""
        return (f"{where_ja}の水位は{was_ja}{lv_ja}の段階に下がりました。",
                f"{where_en} {was_en}is back at {lv_en}.",
                f"【水位予測通知 引き下げ】{short} {name}")
    if kind == "remind":
        return (f"{where_ja}は{lv_ja}の段階が続いています。この通知はまだ確認されていません。",
                f"{where_en} remains at {lv_en}; this notification has not been acknowledged.",
                f"【水位予測通知 継続・未確認】{short} {name}")
    up_ja = f"（{frm['short_ja']}から引き上げ）" if kind == "escalate" and frm else ""
    up_en = f" (up from {frm['name_en']})" if kind == "escalate" and frm else ""
    basis, crossing, prob = p["basis"], p["crossing"], p["probability"]
    if basis == "forecast" and crossing:
        when_ja = f"{lead_ja(crossing['lead_h'])}（{clock_ja(crossing['at'], p['issued_at'])}頃）"
        when_en = f"{lead_en(crossing['lead_h'])} ({clock_en(crossing['at'], p['issued_at'])})"
        return (f"{where_ja}の水位は{when_ja}に{lv_ja}に達する予測です{up_ja}。",
                f"{where_en} is forecast to reach {lv_en} {when_en}{up_en}.",
                f"【水位予測通知】{short} {name}到達見込み {lead_ja(crossing['lead_h'])}")
    if basis == "probability" and prob:
        within = prob["within_h"]
        return (f"{where_ja}の水位が{within}時間以内に{lv_ja}に達する確率は"
                f"{percent(prob['value'])}です{up_ja}。",
                f"{where_en}: the probability of reaching {lv_en} within {within} h is "
                f"{percent(prob['value'])}{up_en}.",
                f"【水位予測通知】{short} {name}到達の可能性 {percent(prob['value'])}")
    return (f"{where_ja}の水位が{lv_ja}に達しました{up_ja}。",
            f"{where_en} has reached {lv_en}{up_en}.",
            f"【水位予測通知】{short} {name}到達")


def _details_ja(p: dict[str, Any]) -> list[str]:
    """The detail lines: observed, crossing, crest, probability, caveat, note, issue time."""
    issued, out = p["issued_at"], []
    if p["topic"] == "level":
        obs = p["observed"]
        out.append(f"現在水位: {metres(obs['level_m'])}（{clock_ja(obs['at'], issued)} 観測）"
                   if obs else "現在水位: 最新の観測値がありません")
        if p["crossing"] and p["basis"] != "forecast" and p["kind"] != "clear":
            c = p["crossing"]
            out.append(f"予測到達: {clock_ja(c['at'], issued)}頃（{lead_ja(c['lead_h'])}）")
        if p["crest"] and p["kind"] != "clear":
            c = p["crest"]
            out.append(f"予測ピーク: {metres(c['level_m'])}（{clock_ja(c['at'], issued)}頃）")
        if p["probability"] and p["basis"] != "probability" and p["kind"] != "clear":
            pr = p["probability"]
            out.append(f"到達確率: {percent(pr['value'])}（{pr['within_h']}時間以内）")
    if p["low_confidence"]:
        out.append("注意: データ品質に問題があるため、この予測の信頼度は低めです"
                   f"（{'、'.join(p['low_confidence'])}）。")
    if p["note"]:
        by = p["acknowledged"]["by"] if p["acknowledged"] else "担当者"
        out.append(f"{by}さんのメモ: 「{p['note']}」")
    who = ("水位予測通知・水防担当者向け" if p["topic"] == "level"
           else "水位予測システム・運用担当者向け")
    out.append(f"発表: {p['issued_at_jst']}（{who}）")
    return out


def _details_en(p: dict[str, Any]) -> list[str]:
    issued, out = p["issued_at"], []
    if p["topic"] == "level":
        obs = p["observed"]
        out.append(f"Observed: {metres(obs['level_m'])} at {clock_en(obs['at'], issued)}"
                   if obs else "Observed: no recent reading")
        if p["crossing"] and p["basis"] != "forecast" and p["kind"] != "clear":
            c = p["crossing"]
            out.append(f"Forecast crossing: {clock_en(c['at'], issued)} "
                       f"({lead_en(c['lead_h'])})")
        if p["crest"] and p["kind"] != "clear":
            c = p["crest"]
            out.append(f"Forecast crest: {metres(c['level_m'])} at {clock_en(c['at'], issued)}")
        if p["probability"] and p["basis"] != "probability" and p["kind"] != "clear":
            pr = p["probability"]
            out.append(f"Probability: {percent(pr['value'])} within {pr['within_h']} h")
    if p["low_confidence"]:
        out.append("Caution: data-quality problems lower the confidence of this forecast "
                   f"({'; '.join(p['low_confidence'])}).")
    if p["note"]:
        out.append(f"Note: \"{p['note']}\"")
    out.append(f"Issued: {p['issued_at_jst']}")
    return out
