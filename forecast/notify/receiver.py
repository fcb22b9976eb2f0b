"""A loopback test receiver: real HTTP endpoints that behave like Slack, a webhook consumer
and a CAP portal, for the tests and for operators trying out their settings.

Endpoints (POST):

* ``/api/chat.postMessage``: Slack Web API compatible. Checks ``Authorization: Bearer
  <slack_token>`` (or a form ``token``), JSON or form body; answers ``{"ok": true,
  "channel", "ts"}`` with a unique ``ts``, or HTTP 200 ``{"ok": false, "error":
  "invalid_auth" | "channel_not_found" | "no_text"}`` as Slack does. Point
  ``SlackSender(base_url=receiver.slack_api_url)`` at it.
* ``/slack/incoming/<anything>``: incoming-webhook compatible (body ``ok``; 400
  ``invalid_payload`` without text or blocks).
* ``/webhook``: checks the signature and timestamp with ``webhook.verify`` (401 when bad),
  dedupes on ``X-Forecast-Delivery`` (``unique``: delivery id → body).
* ``/cap``: stores CAP XML (400 when not well-formed XML).

Anything else is 404 ``no_service``. ``GET /`` answers a status line (is it up?).

Every request is recorded in ``received`` on arrival (path, headers with the Authorization
value redacted, body as JSON or text, UTC time, fault mode; ``status`` is set once answered:
None while held, 0 for a ``hang`` that never answered) and, with ``jsonl``, appended to that
file as one JSON line once answered. Fault modes, settable while running (``receiver.mode = ...``):
``ok``; ``error500`` (HTTP 500); ``ratelimit`` (HTTP 429, Slack ``ratelimited``); ``slow``
(wait ``delay_s``, then answer); ``hang`` (never answer: the client's timeout must fire);
``down`` (stop listening: the socket is closed, connections are refused; any other mode
listens again on the same port).
"""

from __future__ import annotations

import json
import signal
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, cast
from urllib.parse import parse_qs

from forecast.notify import webhook

MODES = ("ok", "error500", "ratelimit", "slow", "hang", "down")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False   # a hanging handler must not block stop()
    receiver: Receiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout tests) breaks the pipe: expected, not news.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass   # the receiver records requests itself

    def do_GET(self) -> None:
        r = self.server.receiver
        self._answer(200, {"ok": True, "service": "forecast test receiver",
                           "received": len(r.received)})

    def do_POST(self) -> None:
        self.server.receiver._handle(self)

    def _answer(self, status: int, body: dict[str, Any] | str,
                headers: dict[str, str] | None = None) -> None:
        data = (json.dumps(body, ensure_ascii=False) if isinstance(body, dict) else body)
        raw = data.encode("utf-8")
        self.send_response(status)
        ctype = "application/json; charset=utf-8" if isinstance(body, dict) else \
            "text/plain; charset=utf-8"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)


def _parse_body(raw: bytes, content_type: str) -> Any:
    """JSON, form fields (one value each) or text."""
    text = raw.decode("utf-8", errors="replace")
    if "json" in content_type:
        try:
            return json.loads(text)
        except ValueError:
            return text
    if "x-www-form-urlencoded" in content_type:
        return {k: v[0] for k, v in parse_qs(text).items()}
    return text


class Receiver:
    """The test receiver (see the module docstring). ``port=0`` picks a free port;
    ``url`` is known after ``start()``. ``delay_s``: the ``slow`` mode's wait (s);
    ``hang_s``: how long ``hang`` holds a request (s; released at once by ``stop()``)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 webhook_secret: bytes | str | None = None, slack_token: str | None = None,
                 known_channels: set[str] | None = None, jsonl: Path | None = None,
                 delay_s: float = 1.0, hang_s: float = 30.0,
                 echo: Callable[[str], None] | None = None) -> None:
        self.host, self.port = host, port
        self.webhook_secret = (webhook_secret.encode("utf-8") if isinstance(webhook_secret, str)
                               else webhook_secret)
        self.slack_token = slack_token
        self.known_channels = known_channels
        self.jsonl = jsonl
        self.delay_s, self.hang_s = delay_s, hang_s
        self.echo = echo
        self.received: list[dict[str, Any]] = []
        self.unique: dict[str, Any] = {}
        self._mode = "ok"
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._ts = 0

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``http://host:port`` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    @property
    def slack_api_url(self) -> str:
        """Slack Web API base URL for ``SlackSender(base_url=...)``."""
        return f"{self.url}/api/"

    def incoming_url(self, name: str = "staff") -> str:
        return f"{self.url}/slack/incoming/{name}"

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/webhook"

    @property
    def cap_url(self) -> str:
        return f"{self.url}/cap"

    def start(self) -> Receiver:
        self._release.clear()
        if self._server is None:
            self._listen()
        return self

    def stop(self) -> None:
        """Stop listening and release held (``hang``/``slow``) requests."""
        self._release.set()
        self._close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _listen(self) -> None:
        server = _Server((self.host, self.port), _Handler)
        server.receiver = self
        self.port = server.server_address[1]   # the port 0 picked, kept for restarts
        self._server = server
        # A short poll interval: shutdown() waits for the loop to notice (tests stay fast).
        self._thread = threading.Thread(target=server.serve_forever, kwargs={
            "poll_interval": 0.05}, name=f"receiver:{self.port}", daemon=True)
        self._thread.start()

    def _close(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"mode {value!r}: one of {', '.join(MODES)}")
        self._mode = value
        if value == "down":
            self._close()
        elif self._server is None:
            self._release.clear()
            self._listen()

    # -- requests ------------------------------------------------------------------------
    def _arrived(self, entry: dict[str, Any]) -> None:
        # Recorded on arrival, before any hold, so a test sees a held (hang) request.
        with self._lock:
            self.received.append(entry)

    def _answered(self, entry: dict[str, Any]) -> None:
        if self.jsonl is not None:
            with self._lock, self.jsonl.open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
        if self.echo is not None:
            self.echo(f"{entry['time']} {entry['path']} -> {entry['status']}")

    def _next_ts(self) -> str:
        with self._lock:
            self._ts += 1
            return f"{int(time.time())}.{self._ts:06d}"

    def _handle(self, h: _Handler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        ctype = h.headers.get("Content-Type", "")
        headers = {k: ("<redacted>" if k.lower() == "authorization" else v)
                   for k, v in h.headers.items()}
        entry: dict[str, Any] = {"path": h.path, "method": "POST", "headers": headers,
                                 "body": _parse_body(raw, ctype),
                                 "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                                 "mode": self._mode, "status": None}
        self._arrived(entry)
        status, body, extra = self._respond(h, raw, entry)
        entry["status"] = status
        self._answered(entry)
        if status:   # 0: hang (no answer)
            h._answer(status, body, extra)

    def _respond(self, h: _Handler, raw: bytes,
                 entry: dict[str, Any]) -> tuple[int, dict[str, Any] | str, dict[str, str]]:
        mode = self._mode
        if mode == "hang":
            self._release.wait(self.hang_s)
            return 0, "", {}
        if mode == "slow":
            self._release.wait(self.delay_s)
        if mode == "error500":
            return 500, {"ok": False, "error": "internal_error"}, {}
        if mode == "ratelimit":
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}
        path, body = h.path.split("?", 1)[0], entry["body"]
        if path == "/api/chat.postMessage":
            return self._chat(h, body)
        if path.startswith("/slack/incoming/"):
            ok = isinstance(body, dict) and bool(body.get("text") or body.get("blocks"))
            return (200, "ok", {}) if ok else (400, "invalid_payload", {})
        if path == "/webhook":
            return self._webhook(h, raw, body)
        if path == "/cap":
            try:
                ET.fromstring(raw)
            except ET.ParseError:
                return 400, {"ok": False, "error": "not well-formed XML"}, {}
            return 200, {"ok": True}, {}
        return 404, "no_service", {}

    def _chat(self, h: _Handler, body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        args = body if isinstance(body, dict) else {}
        auth = h.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else args.get("token")
        if not token or (self.slack_token is not None and token != self.slack_token):
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        channel = args.get("channel")
        if not channel or (self.known_channels is not None
                           and channel not in self.known_channels):
            return 200, {"ok": False, "error": "channel_not_found"}, {}
        if not (args.get("text") or args.get("blocks") or args.get("attachments")):
            return 200, {"ok": False, "error": "no_text"}, {}
        ts = self._next_ts()
        return 200, {"ok": True, "channel": channel, "ts": ts,
                     "message": {"ts": ts, "thread_ts": args.get("thread_ts")}}, {}

    def _webhook(self, h: _Handler, raw: bytes,
                 body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        if self.webhook_secret is None:
            return 401, {"ok": False, "error": "no secret configured on the receiver"}, {}
        if not webhook.verify(self.webhook_secret,
                              timestamp_header=h.headers.get(webhook.HEADER_TIMESTAMP),
                              signature_header=h.headers.get(webhook.HEADER_SIGNATURE),
                              body=raw, now=int(time.time())):
            return 401, {"ok": False, "error": "bad signature or timestamp"}, {}
        delivery = h.headers.get(webhook.HEADER_DELIVERY)
        if not delivery:
            return 400, {"ok": False, "error": f"{webhook.HEADER_DELIVERY} missing"}, {}
        with self._lock:
            duplicate = delivery in self.unique
            if not duplicate:
                self.unique[delivery] = body
        return 200, {"ok": True, "duplicate": duplicate}, {}


def run_receiver(host: str, port: int, secret: str | None, token: str | None,
                 jsonl: Path | None) -> None:
    """Run a receiver until SIGINT/SIGTERM (for ``forecast notifications receiver``),
    printing its URLs and one line per request."""
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    receiver = Receiver(host, port, webhook_secret=secret, slack_token=token, jsonl=jsonl,
                        echo=lambda line: print(line, flush=True))
    try:
        with receiver:
            print(f"test receiver on {receiver.url}\n"
                  f"  Slack Web API base URL: {receiver.slack_api_url}\n"
                  f"  Slack incoming webhook: {receiver.incoming_url()}\n"
                  f"  webhook: {receiver.webhook_url}   CAP: {receiver.cap_url}\n"
                  "Ctrl-C to stop", flush=True)
            stop.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, cast(Any, handler))
