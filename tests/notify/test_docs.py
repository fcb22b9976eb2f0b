"""docs/notifications.md tells the truth: its receiver snippets verify what the sender signs,
and its example names the payload's real fields."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from forecast.notify.webhook import body_bytes, signed_headers

DOC = (Path(__file__).resolve().parent.parent.parent / "docs" / "notifications.md").read_text(
    encoding="utf-8")


def _snippets() -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    for block in re.findall(r"```python\n(.*?)```", DOC, re.S):
        exec(block, namespace)
    return namespace


def test_the_documented_verification_accepts_what_the_sender_signs(
        payloads: dict[str, dict]) -> None:
    ns = _snippets()
    body = body_bytes(payloads["escalate_forecast"])
    now = int(time.time())
    headers = signed_headers(b"secret", body, delivery_id="d-1", now=now)
    assert ns["verify"](b"secret", headers, body)
    assert not ns["verify"](b"other", headers, body)
    assert not ns["verify"](b"secret", headers, body.replace(b"4.45", b"9.99"))
    old = signed_headers(b"secret", body, delivery_id="d-1", now=now - 301)
    assert not ns["verify"](b"secret", old, body)
    assert ns["first_time"]("d-1") and not ns["first_time"]("d-1")


def test_the_documented_fields_exist(payloads: dict[str, dict]) -> None:
    table = re.search(r"## 1\. The payload.*?\n\n(\|.*?)\n\n", DOC, re.S)
    assert table
    fields = {f for row in table.group(1).splitlines()[2:]
              for f in re.findall(r"`([a-z_]+)`", row.split("|")[1])}
    p = payloads["escalate_forecast"]
    documented_elsewhere = {"delivery"}    # dead letters only
    assert fields - documented_elsewhere <= set(p), sorted(fields - set(p))
    assert set(p) <= fields, sorted(set(p) - fields)    # every field is documented
    example = re.search(r"```json\n(.*?)```", DOC, re.S)
    assert example and set(json.loads(example.group(1).replace('"…": "…"', '"x": 0')
                                      .replace(', "…"]', "]"))) <= set(p)
