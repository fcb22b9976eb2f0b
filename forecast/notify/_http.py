"""One POST through an injected ``httpx.Client``, its failures translated into ``DeliveryError``.

The one place where httpx errors become project errors for the webhook and CAP senders.
Retryable: timeouts, refused or broken connections, HTTP 408, 425, 429 and 5xx. Not
retryable: other 4xx (bad secret, unknown path: someone must fix the settings), redirects
(an endpoint that moved is a settings change too) and invalid URLs. Messages name the
channel and the host only: a URL may carry a key in its path or query.
"""

from __future__ import annotations

import httpx

from forecast.errors import DeliveryError

RETRYABLE_STATUS = frozenset({408, 425, 429})


def retryable_status(status: int) -> bool:
    """Whether trying again later can help after HTTP ``status``."""
    return status in RETRYABLE_STATUS or status >= 500


def host_of(url: str) -> str:
    """``host:port`` of ``url`` (what an error message may show of it)."""
    try:
        u = httpx.URL(url)
    except httpx.InvalidURL:
        return "<invalid url>"
    return f"{u.host}:{u.port}" if u.port else u.host


def post(client: httpx.Client, url: str, *, content: bytes, headers: dict[str, str],
         channel: str) -> httpx.Response:
    """POST ``content``; the response when it is 2xx, ``DeliveryError`` otherwise."""
    where = host_of(url)
    try:
        response = client.post(url, content=content, headers=headers)
    except httpx.TimeoutException as exc:
        raise DeliveryError(f"no answer from {where} within the client's timeout "
                            f"({type(exc).__name__})", channel=channel, retryable=True) from exc
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise DeliveryError(f"the configured URL cannot be used ({type(exc).__name__})",
                            channel=channel, retryable=False) from exc
    except httpx.TransportError as exc:   # refused, reset, DNS, TLS: the network or the peer
        raise DeliveryError(f"cannot reach {where} ({type(exc).__name__})", channel=channel,
                            retryable=True) from exc
    if response.is_success:
        return response
    status = response.status_code
    raise DeliveryError(f"HTTP {status} from {where}", channel=channel, status=status,
                        retryable=retryable_status(status))
