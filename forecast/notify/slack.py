"""Slack: Block Kit rendering of a payload, and ``SlackSender`` (slack-sdk).

Two ways to post, chosen by the settings (``docs/notifications.md``):

* **Web API** (a bot token with ``chat:write``, the bot invited to the channels):
  ``chat.postMessage`` to the staff channel (topic ``level``) or the operators' channel
  (``data``, ``ops``); returns the message ``ts`` so that the event's later messages are
  posted in its thread (``thread_ts``). Escalations, reminders and the all-clear are also
  broadcast to the channel: in a thread alone they would be missed.
* **Incoming webhooks** (one URL per channel): no token, but no ``ts`` and so no threads.

``base_url`` of the Web API is configurable (tests point it at ``forecast.notify.receiver``).
slack-sdk's own retries are switched off: the outbox retries with its back-off, and a
sender must give one answer per attempt.
"""

from __future__ import annotations

import http.client
from typing import TYPE_CHECKING, Any, cast

from forecast.errors import DeliveryError
from forecast.notify import wording
from forecast.notify.messages import redact

if TYPE_CHECKING:   # slack-sdk is imported when a sender is built (the tick imports no HTTP)
    from slack_sdk import WebClient
    from slack_sdk.webhook import WebhookClient

DEFAULT_BASE_URL = "https://slack.com/api/"
# Slack error codes after which a later attempt can succeed (others: fix the settings).
RETRYABLE_ERRORS = frozenset({"ratelimited", "rate_limited", "internal_error", "fatal_error",
                              "service_unavailable", "request_timeout"})
BROADCAST_KINDS = frozenset({"escalate", "remind", "clear"})
_HEADER_MAX = 150   # Block Kit header: plain text, at most 150 characters


def escape(text: str) -> str:
    """Slack mrkdwn escaping (``&``, ``<``, ``>``): free text cannot make links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fields(p: dict[str, Any]) -> list[str]:
    """``*label*\\nvalue`` fields: observed, crossing (JST), crest, probability, level."""
    issued, out = p["issued_at"], []
    if p["topic"] == "level" and p["kind"] != "clear":
        if p["level"] is not None:
            thr = wording.metres(p["level"]["threshold_m"])
            out.append(f"*基準水位*\n{p['level']['name_ja']} {thr}".rstrip())
        obs = p["observed"]
        out.append(f"*現在水位*\n{wording.metres(obs['level_m'])}"
                   f"（{wording.clock_ja(obs['at'], issued)} 観測）" if obs else
                   "*現在水位*\n観測値なし")
        if p["crossing"]:
            c = p["crossing"]
            out.append(f"*予測到達時刻*\n{wording.clock_ja(c['at'], issued)}頃"
                       f"（{wording.lead_ja(c['lead_h'])}）")
        if p["crest"]:
            c = p["crest"]
            out.append(f"*予測ピーク*\n{wording.metres(c['level_m'])}"
                       f"（{wording.clock_ja(c['at'], issued)}頃）")
        if p["probability"]:
            pr = p["probability"]
            out.append(f"*到達確率*\n{wording.percent(pr['value'])}（{pr['within_h']}時間以内）")
    elif p["topic"] == "level" and p["observed"]:
        obs = p["observed"]
        out.append(f"*現在水位*\n{wording.metres(obs['level_m'])}"
                   f"（{wording.clock_ja(obs['at'], issued)} 観測）")
    if p["problems"]:
        out.append("*問題*\n" + "\n".join(escape(s) for s in p["problems"]))
    return out


def _context(p: dict[str, Any]) -> list[str]:
    """Small print: SIMULATED label, caveat, acknowledgement, forecast run, issue time."""
    out = []
    if p["simulated"]:
        out.append(f":test_tube: *SIMULATED {wording.SIMULATED_JA}*: 実際の水位ではありません")
    if p["low_confidence"]:
        out.append(":warning: データ品質に問題があり、予測の信頼度は低めです: "
                   + escape("、".join(p["low_confidence"])))
    if p["acknowledged"]:
        ack = p["acknowledged"]
        out.append(f":white_check_mark: 確認: {escape(ack['by'])}"
                   f"（{wording.jst_label(wording.parse_time(ack['at']))}）")
    if p["note"]:
        out.append(f"メモ: 「{escape(p['note'])}」")
    fc = p["forecast"]
    if fc:
        out.append(f"予測: cycle {fc['cycle_id']} / run {fc['run_id']} / "
                   f"model {escape(str(fc['model_version']))}")
    who = ("水位予測通知（水防担当者向け）" if p["audience"] == "staff"
           else "水位予測システム（運用担当者向け）")
    out.append(f"発表 {p['issued_at_jst']} ・ {who}")
    return out


def render(payload: dict[str, Any]) -> dict[str, Any]:
    """The Slack message of ``payload``: ``text`` (the Japanese fallback shown in push
    notifications), ``blocks`` (header, summary with fields, context, link button) and
    ``attachments`` (one colour bar in the level's colour). Times are JST."""
    p = payload
    colour = p["level"]["colour"] if p.get("level") else (
        "#2eb67d" if p["kind"] == "clear" else "#868686")
    summary = p.get("summary_ja") or p["text_ja"].split("\n", 1)[0]
    section: dict[str, Any] = {"type": "section",
                               "text": {"type": "mrkdwn", "text": escape(summary)}}
    fields = _fields(p) if p.get("river") else []
    if fields:
        section["fields"] = [{"type": "mrkdwn", "text": f} for f in fields[:10]]
    title = p["title_ja"]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                    "text": title if len(title) <= _HEADER_MAX
                                    else title[:_HEADER_MAX - 1] + "…"}},
        section,
        {"type": "context", "elements": [{"type": "mrkdwn", "text": c} for c in _context(p)]},
    ]
    if p.get("url"):
        blocks.append({"type": "actions", "elements": [{
            "type": "button", "action_id": "open_river", "url": p["url"],
            "text": {"type": "plain_text", "text": "水位グラフと予測を開く"}}]})
    label = p["level"]["name_ja"] if p.get("level") else title
    return {"text": escape(f"{title}\n{summary}"), "blocks": blocks,
            "attachments": [{"color": colour, "fallback": escape(label), "text": escape(label)}]}


class SlackSender:
    """Posts rendered payloads to Slack with slack-sdk: the Web API when ``token`` is given
    (``staff_channel`` required, ``ops_channel`` optional), else incoming webhooks
    (``staff_webhook_url`` required, ``ops_webhook_url`` optional). Without an operators'
    destination, operators' messages go to the staff one (better seen there than lost).
    ``timeout_s``: seconds per request."""

    channel = "slack"

    def __init__(self, *, token: str | None = None, staff_channel: str | None = None,
                 ops_channel: str | None = None, staff_webhook_url: str | None = None,
                 ops_webhook_url: str | None = None, base_url: str = DEFAULT_BASE_URL,
                 timeout_s: float = 10.0) -> None:
        from slack_sdk import WebClient
        from slack_sdk.webhook import WebhookClient

        # urllib takes float seconds; slack-sdk annotates the timeout as int.
        timeout = cast(int, timeout_s)
        self._web: WebClient | None = None
        self._hooks: dict[str, WebhookClient] = {}
        self._channels: dict[str, str] = {}
        if token:
            if not staff_channel:
                raise ValueError("Slack Web API: staff_channel is required with a token")
            self._web = WebClient(token=token, base_url=base_url, timeout=timeout,
                                  retry_handlers=[])
            self._channels = {"staff": staff_channel, "operators": ops_channel or staff_channel}
        elif staff_webhook_url:
            self._hooks = {
                "staff": WebhookClient(staff_webhook_url, timeout=timeout, retry_handlers=[]),
                "operators": WebhookClient(ops_webhook_url or staff_webhook_url,
                                           timeout=timeout, retry_handlers=[])}
        else:
            raise ValueError("Slack: give a bot token and channel, or an incoming-webhook URL")

    def __repr__(self) -> str:   # never show the token or a webhook URL
        return f"SlackSender(mode={'web_api' if self._web else 'webhook'})"

    @property
    def threads(self) -> bool:
        """Whether messages can be threaded (Web API only)."""
        return self._web is not None

    def send(self, payload: dict[str, Any], *, thread_ts: str | None = None) -> str | None:
        """Post ``payload``; the message ``ts`` (Web API) or None (webhook). ``thread_ts``:
        the ``ts`` of the event's first message, to reply in its thread (Web API only).
        ``DeliveryError`` with ``retryable`` on failure."""
        message = render(payload)
        audience = "operators" if payload.get("audience") == "operators" else "staff"
        if self._web is not None:
            return self._post(message, self._channels[audience], thread_ts,
                              broadcast=payload.get("kind") in BROADCAST_KINDS)
        self._hook(self._hooks[audience], message)
        return None

    def _post(self, message: dict[str, Any], channel: str, thread_ts: str | None, *,
              broadcast: bool) -> str | None:
        from slack_sdk.errors import SlackApiError, SlackClientError

        assert self._web is not None
        try:
            response = self._web.chat_postMessage(
                channel=channel, text=message["text"], blocks=message["blocks"],
                attachments=message["attachments"], thread_ts=thread_ts,
                reply_broadcast=True if thread_ts and broadcast else None,
                unfurl_links=False, unfurl_media=False)
        except SlackApiError as exc:
            status = exc.response.status_code
            error = str(exc.response.get("error", "")) if isinstance(
                exc.response.data, dict) else ""
            raise DeliveryError(f"chat.postMessage to {channel}: {redact(error)[:200]} "
                                f"(HTTP {status})", channel=self.channel, status=status,
                                retryable=_retryable(status, error)) from exc
        except SlackClientError as exc:   # bad URL or proxy: a settings problem
            raise DeliveryError(f"chat.postMessage: {type(exc).__name__}", channel=self.channel,
                                retryable=False) from exc
        except (OSError, http.client.HTTPException) as exc:   # timeout, refused, reset
            raise DeliveryError(f"chat.postMessage: cannot reach the Slack API "
                                f"({type(exc).__name__}: {redact(str(exc))[:200]})",
                                channel=self.channel, retryable=True) from exc
        ts = response.get("ts")
        return str(ts) if ts is not None else None

    def _hook(self, hook: WebhookClient, message: dict[str, Any]) -> None:
        from slack_sdk.errors import SlackClientError

        try:
            response = hook.send(text=message["text"], blocks=message["blocks"],
                                 attachments=message["attachments"], unfurl_links=False,
                                 unfurl_media=False)
        except SlackClientError as exc:
            raise DeliveryError(f"incoming webhook: {type(exc).__name__}", channel=self.channel,
                                retryable=False) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise DeliveryError(f"incoming webhook: cannot reach Slack ({type(exc).__name__}: "
                                f"{redact(str(exc))[:200]})", channel=self.channel,
                                retryable=True) from exc
        status = response.status_code
        if not 200 <= status < 300:
            body = redact(str(response.body or ""))[:200]
            raise DeliveryError(f"incoming webhook: HTTP {status} {body}".rstrip(),
                                channel=self.channel, status=status,
                                retryable=_retryable(status, body))


def _retryable(status: int, error: str) -> bool:
    """HTTP 408/425/429/5xx or a transient Slack error code."""
    return status in (408, 425, 429) or status >= 500 or error.strip() in RETRYABLE_ERRORS
