"""The test receiver itself: status page, JSON-lines log, refusals, "down" really closes the
socket, stop() does not wait for a held request, and ``run_receiver`` stops on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from forecast.notify.receiver import Receiver
from forecast.notify.webhook import signed_headers
from notify.cases import SECRET, TOKEN

ROOT = Path(__file__).resolve().parent.parent.parent


def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_status_page_and_jsonl_log(tmp_path: Path) -> None:
    log = tmp_path / "received.jsonl"
    with Receiver(webhook_secret=SECRET, slack_token=TOKEN, jsonl=log) as r, \
            httpx.Client(timeout=2) as c:
        assert c.get(r.url + "/").json()["ok"] is True
        assert c.post(r.url + "/cap", content=b"<alert/>").status_code == 200
        assert c.post(r.url + "/cap", content=b"<alert>").status_code == 400
        assert c.post(r.url + "/elsewhere", content=b"{}").status_code == 404
        assert c.post(r.incoming_url(), json={"nothing": 1}).status_code == 400
        form = c.post(r.slack_api_url + "chat.postMessage",
                      data={"token": TOKEN, "channel": "#x", "text": "hi"}).json()
        assert form["ok"] is True and form["channel"] == "#x"
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert [(e["path"], e["status"]) for e in lines] == [
        ("/cap", 200), ("/cap", 400), ("/elsewhere", 404), ("/slack/incoming/staff", 400),
        ("/api/chat.postMessage", 200)]
    assert lines == r.received


def test_webhook_endpoint_needs_the_delivery_header(receiver: Receiver) -> None:
    body = b'{"a": 1}'
    headers = signed_headers(SECRET, body, delivery_id="x", now=int(time.time()))
    del headers["X-Forecast-Delivery"]
    with httpx.Client(timeout=2) as c:
        assert c.post(receiver.webhook_url, content=body, headers=headers).status_code == 400
        assert c.post(receiver.webhook_url, content=body).status_code == 401


def test_down_closes_the_socket_and_ok_listens_again(receiver: Receiver) -> None:
    host, port = receiver.host, receiver.port
    assert not _refused(host, port)
    receiver.mode = "down"
    assert _refused(host, port)
    receiver.mode = "ok"
    assert receiver.port == port and not _refused(host, port)
    with pytest.raises(ValueError, match="mode"):
        receiver.mode = "flaky"


def test_stop_releases_a_held_request() -> None:
    r = Receiver(hang_s=30.0).start()
    r.mode = "hang"
    errors: list[BaseException] = []

    def call() -> None:
        try:
            with httpx.Client(timeout=20) as c:
                c.post(r.cap_url, content=b"<alert/>")
        except httpx.HTTPError as exc:   # the held request ends without an answer
            errors.append(exc)

    t = threading.Thread(target=call)
    t.start()
    deadline = time.monotonic() + 5
    while not r.received and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    r.stop()
    t.join(timeout=5)
    assert time.monotonic() - started < 2 and not t.is_alive()
    assert len(errors) == 1 and r.received[0]["status"] == 0


def test_run_receiver_serves_until_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "r.jsonl"
    code = ("from pathlib import Path; from forecast.notify.receiver import run_receiver; "
            f"run_receiver('127.0.0.1', 0, 's3', 'xoxb-t', Path({str(log)!r}))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=env)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("test receiver on http://127.0.0.1:"), first
        url = first.split(" on ", 1)[1].strip()
        with httpx.Client(timeout=2) as c:
            assert c.post(url + "/cap", content=b"<alert/>").status_code == 200
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert "/cap -> 200" in out
    assert json.loads(log.read_text(encoding="utf-8"))["path"] == "/cap"
