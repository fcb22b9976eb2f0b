"""Signed JSON webhooks: HMAC-SHA256 signatures and the sender (``docs/notifications.md``).

Scheme (Stripe/Slack style): the signature is ``v1=`` + hex HMAC-SHA256, keyed with the
shared secret, of ``"<timestamp>."`` followed by the raw body bytes; ``timestamp`` is Unix
seconds, sent in ``X-Forecast-Timestamp``. A receiver recomputes it over the bytes it got,
compares in constant time and refuses timestamps more than 5 minutes off (replay
protection); deliveries are at-least-once, so it dedupes on ``X-Forecast-Delivery``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:   # httpx is imported when something is sent (the tick imports no HTTP)
    import httpx

SIGNATURE_VERSION = "v1"
TOLERANCE_S = 300
HEADER_DELIVERY = "X-Forecast-Delivery"
HEADER_TIMESTAMP = "X-Forecast-Timestamp"
HEADER_SIGNATURE = "X-Forecast-Signature"


def body_bytes(payload: dict[str, Any]) -> bytes:
    """The webhook body: UTF-8 JSON, Japanese unescaped, keys sorted (stable bytes)."""
    return json.dumps(payload, ensure_ascii=False, sort_keys=True,
                      separators=(",", ":")).encode("utf-8")


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """``v1=<hex HMAC-SHA256(secret, b"<timestamp>." + body)>``."""
    mac = hmac.new(secret, f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify(secret: bytes, *, timestamp_header: str | None, signature_header: str | None,
           body: bytes, now: int, tolerance_s: int = TOLERANCE_S) -> bool:
    """Whether ``body`` was signed with ``secret`` at a timestamp within ``tolerance_s``
    seconds of ``now`` (Unix seconds, both ways: clocks drift). Missing or malformed headers
    are refused. The signature header may list several ``v1=`` values separated by commas
    (a sender rotating its secret); one match suffices. Constant-time comparison."""
    if not timestamp_header or not signature_header:
        return False
    try:
        timestamp = int(timestamp_header.strip())
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body)
    # Compare every candidate, without stopping at the first match (no timing signal).
    matches = [hmac.compare_digest(expected.encode("ascii"), cand.strip().encode("utf-8"))
               for cand in signature_header.split(",")]
    return any(matches)


def signed_headers(secret: bytes, body: bytes, *, delivery_id: str, now: int) -> dict[str, str]:
    """The headers of one delivery of ``body`` at ``now`` (Unix seconds)."""
    return {
        "Content-Type": "application/json",   # UTF-8 by definition (RFC 8259)
        HEADER_DELIVERY: delivery_id,
        HEADER_TIMESTAMP: str(now),
        HEADER_SIGNATURE: sign(secret, now, body),
    }


class WebhookSender:
    """POSTs payloads as signed JSON to one URL through an injected ``httpx.Client`` (whose
    timeout is the delivery's time limit).

    ``delivery_id`` should be stable across retries of the same message to the same
    receiver (e.g. ``<outbox row id>``), so that the receiver can drop duplicates.
    """

    channel = "webhook"

    def __init__(self, url: str, secret: bytes | str, client: httpx.Client) -> None:
        self.url = url
        self._secret = secret.encode("utf-8") if isinstance(secret, str) else secret
        self.client = client
        if not self._secret:
            raise ValueError("the webhook secret is empty: set a long random shared secret")

    def __repr__(self) -> str:   # never show the URL (it may carry a key) or the secret
        return "WebhookSender(<url>, <secret>)"

    def send(self, payload: dict[str, Any], *, delivery_id: str, now: int) -> None:
        """Deliver ``payload``; returns on 2xx, raises ``DeliveryError`` (with ``retryable``)
        otherwise. ``now``: Unix seconds for the signature timestamp."""
        from forecast.notify import _http

        body = body_bytes(payload)
        headers = signed_headers(self._secret, body, delivery_id=delivery_id, now=now)
        _http.post(self.client, self.url, content=body, headers=headers, channel=self.channel)
