"""Webhook signatures: ``sign`` against an HMAC computed by hand from SHA-256 (RFC 2104),
``verify`` refusing tampering, wrong secrets, stale timestamps and malformed headers."""

from __future__ import annotations

import hashlib
import json

import pytest

from forecast.notify.webhook import body_bytes, sign, signed_headers, verify

SECRET = b"whsec-0123456789abcdef"
NOW = 1_688_151_600   # 2023-06-30T19:00:00Z
BODY = '{"kind":"raise","river":{"name_ja":"員弁川"}}'.encode()


def _hmac_sha256(key: bytes, message: bytes) -> str:
    """HMAC from its definition: H((K ^ opad) || H((K ^ ipad) || m)), block size 64."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(k ^ 0x36 for k in key) + message).digest()
    return hashlib.sha256(bytes(k ^ 0x5C for k in key) + inner).hexdigest()


@pytest.mark.parametrize("secret", [SECRET, b"k", b"x" * 100])
def test_sign_is_hmac_sha256_of_timestamp_dot_body(secret: bytes) -> None:
    assert sign(secret, NOW, BODY) == "v1=" + _hmac_sha256(secret, f"{NOW}.".encode() + BODY)


def _ok(**kw: object) -> bool:
    args: dict[str, object] = {"timestamp_header": str(NOW),
                               "signature_header": sign(SECRET, NOW, BODY), "body": BODY,
                               "now": NOW}
    args.update(kw)
    return verify(SECRET, **args)  # type: ignore[arg-type]


def test_verify_accepts_the_signed_body_within_tolerance() -> None:
    assert _ok()
    assert _ok(now=NOW + 300) and _ok(now=NOW - 300)   # 5 min either way (clock drift)


@pytest.mark.parametrize(("case", "kw"), [
    ("tampered body", {"body": BODY.replace("員弁川".encode(), "鈴鹿川".encode())}),
    ("one more byte", {"body": BODY + b" "}),
    ("old timestamp", {"now": NOW + 301}),
    ("future timestamp", {"now": NOW - 301}),
    ("timestamp changed", {"timestamp_header": str(NOW + 1), "now": NOW + 1}),
    ("no signature", {"signature_header": None}),
    ("no timestamp", {"timestamp_header": None}),
    ("bad timestamp", {"timestamp_header": "yesterday"}),
    ("bare hex", {"signature_header": sign(SECRET, NOW, BODY)[3:]}),
    ("other version", {"signature_header": "v0=" + sign(SECRET, NOW, BODY)[3:]}),
])
def test_verify_refuses(case: str, kw: dict[str, object]) -> None:
    assert not _ok(**kw), case


def test_verify_refuses_a_wrong_secret() -> None:
    assert not verify(b"another secret", timestamp_header=str(NOW),
                      signature_header=sign(SECRET, NOW, BODY), body=BODY, now=NOW)


def test_verify_accepts_one_of_several_signatures_during_secret_rotation() -> None:
    both = f"{sign(b'old secret', NOW, BODY)}, {sign(SECRET, NOW, BODY)}"
    assert _ok(signature_header=both)
    assert not _ok(signature_header=f"{sign(b'old', NOW, BODY)},{sign(b'older', NOW, BODY)}")


def test_body_is_sorted_utf8_json_and_headers_sign_it() -> None:
    payload = {"b": 1, "a": "員弁川", "c": {"z": None, "y": [1.5]}}
    body = body_bytes(payload)
    assert body == '{"a":"員弁川","b":1,"c":{"y":[1.5],"z":null}}'.encode()
    assert json.loads(body) == payload
    h = signed_headers(SECRET, body, delivery_id="outbox-17", now=NOW)
    assert h["Content-Type"] == "application/json"
    assert h["X-Forecast-Delivery"] == "outbox-17" and h["X-Forecast-Timestamp"] == str(NOW)
    assert verify(SECRET, timestamp_header=h["X-Forecast-Timestamp"],
                  signature_header=h["X-Forecast-Signature"], body=body, now=NOW)
