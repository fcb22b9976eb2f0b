"""The page's words in Japanese (the default) and English.

Threshold and level names come from ``AlertLevel`` (Japanese in both languages: they are the
names staff use; English adds the gloss). Outputs are 水位予測通知 (forecast notifications),
never 警報/注意報.
"""

from __future__ import annotations

from typing import Final

LANGS: Final = ("ja", "en")
LANG_COOKIE: Final = "forecast_lang"

_WORDS: Final[dict[str, tuple[str, str]]] = {
    "title": ("三重県 水位予測", "Mie water-level forecasts"),
    "subtitle": ("水防担当向け 水位予測通知（気象庁の発表ではありません）",
                 "Forecast notifications for flood-control staff (not JMA warnings)"),
    "simulated": ("模擬データ（SIMULATED）: 実測ではありません",
                  "SIMULATED: demo data, not real observations"),
    "rivers": ("河川一覧", "Rivers"),
    "map": ("観測所地図", "Gauge map"),
    "notifications": ("水位予測通知（対応中）", "Active forecast notifications"),
    "none_active": ("対応中の水位予測通知はありません", "No active forecast notifications"),
    "river": ("河川", "River"),
    "gauge": ("観測所", "Gauge"),
    "observed": ("現在水位", "Observed now"),
    "forecast": ("予測最高（P50, 6時間）", "Forecast peak (P50, 6 h)"),
    "issued": ("発表", "Issued"),
    "data_age": ("データ", "Data"),
    "ago_min": ("{n}分前", "{n} min ago"),
    "ago_h": ("{n}時間前", "{n} h ago"),
    "no_data": ("データなし", "no data"),
    "no_forecast": ("予測なし", "no forecast"),
    "below": ("基準水位未満", "below all levels"),
    "low_conf": ("低信頼", "Low confidence"),
    "ack": ("確認", "Acknowledge"),
    "acked": ("確認済", "Acknowledged"),
    "unacked": ("未確認", "Not acknowledged"),
    "raised": ("発生", "Raised"),
    "level": ("水位", "Level"),
    "state": ("状態", "State"),
    "signed_in": ("ログイン中", "Signed in"),
    "hydrograph": ("水位・雨量グラフ", "Hydrograph"),
    "obs_level": ("観測水位", "Observed level"),
    "p50": ("予測中央値 P50", "Forecast median P50"),
    "band": ("予測幅 P10–P90", "Forecast band P10–P90"),
    "obs_rain": ("観測雨量（流域平均 mm/h）", "Observed rain (catchment, mm/h)"),
    "fc_rain": ("予測雨量 mm/h", "Forecast rain mm/h"),
    "thresholds": ("基準水位", "Threshold levels"),
    "back": ("← 河川一覧へ", "← All rivers"),
    "hours": ("表示期間", "Window"),
    "updated": ("新しい予測を読み込みました", "A new forecast has been loaded"),
    "refused": ("確認できません: ", "Cannot acknowledge: "),
    "failed": ("通信エラー: ", "Network error: "),
    "forbidden": ("権限がありません（確認には operator ロールが必要です）",
                  "Not allowed (acknowledging needs the operator role)"),
    "provisional": ("暫定値を含む", "provisional values"),
    "cap_feed": ("CAP フィード (Atom)", "CAP feed (Atom)"),
    "model": ("モデル", "Model"),
    "data_problem": ("データ異常", "data problem"),
    "now": ("現在", "now"),
    "lang_other": ("English", "日本語"),
    "reasons": ("理由", "Reasons"),
    "metres": ("m", "m"),
}


def words(lang: str) -> dict[str, str]:
    """Every word of the page in ``lang`` (``ja`` or ``en``)."""
    i = 1 if lang == "en" else 0
    return {k: v[i] for k, v in _WORDS.items()}
