"""Fetcher: retries with bounded full jitter, Retry-After, give-up errors, conditional requests,
per-source concurrency limits, timeout translation. Offline (httpx.MockTransport), no waiting
(sleep is recorded, not slept)."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from forecast.errors import SourceError
from forecast.ingest.fetch import Fetcher, RetryPolicy

T0 = datetime(2025, 8, 1, 0, 0, tzinfo=UTC)
URL = "https://example.test/data/a.json"


def make(handler, **kw):  # type: ignore[no-untyped-def]
    sleeps: list[float] = []
    client = httpx.Client(transport=httpx.MockTransport(handler))
    fetcher = Fetcher(client, clock=lambda: T0, sleep=sleeps.append,
                      rng=random.Random(kw.pop("seed", 1)), **kw)
    return fetcher, sleeps


def flaky(fail_times: int, status: int = 503, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] <= fail_times:
            return httpx.Response(status, headers=headers or {})
        return httpx.Response(200, content=b"payload")

    return handler, calls


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_retries_then_succeeds(status: int) -> None:
    handler, calls = flaky(2, status)
    policy = RetryPolicy(attempts=4, base_delay_s=1.0, max_delay_s=30.0)
    fetcher, sleeps = make(handler, retry=policy)
    got = fetcher.fetch("amedas", URL)
    assert got.content == b"payload" and got.status == 200 and not got.not_modified
    assert calls["n"] == 3 and got.attempts == 3
    assert len(sleeps) == 2
    # full jitter: retry k waits in [0, base * 2**(k-1)]
    for k, s in enumerate(sleeps, start=1):
        assert 0.0 <= s <= policy.base_delay_s * 2 ** (k - 1)


def test_jitter_is_bounded_by_cap_and_spreads() -> None:
    policy = RetryPolicy(attempts=10, base_delay_s=1.0, max_delay_s=5.0)
    rng = random.Random(7)
    delays = [policy.backoff(k, rng) for k in range(1, 10) for _ in range(50)]
    assert max(delays) <= 5.0 and min(delays) >= 0.0
    assert len({round(d, 6) for d in delays}) > 100      # jittered, not a fixed schedule


def test_gives_up_with_source_error_naming_url() -> None:
    handler, calls = flaky(99, 503)
    fetcher, sleeps = make(handler, retry=RetryPolicy(attempts=3))
    with pytest.raises(SourceError) as info:
        fetcher.fetch("crisis_json", URL)
    assert calls["n"] == 3 and len(sleeps) == 2
    assert info.value.url == URL and info.value.source == "crisis_json"
    assert URL in str(info.value) and "503" in str(info.value)


def test_client_errors_are_not_retried() -> None:
    handler, calls = flaky(99, 404)
    fetcher, sleeps = make(handler)
    with pytest.raises(SourceError, match="404"):
        fetcher.fetch("amedas", URL)
    assert calls["n"] == 1 and sleeps == []


def test_honours_retry_after_seconds_and_date() -> None:
    handler, _ = flaky(1, 429, {"Retry-After": "7"})
    fetcher, sleeps = make(handler, retry=RetryPolicy(base_delay_s=0.1))
    fetcher.fetch("amedas", URL)
    assert sleeps == [7.0]                    # jitter (<= 0.1 s) is below what was asked

    date = (T0 + timedelta(seconds=42)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    handler, _ = flaky(1, 503, {"Retry-After": date})
    fetcher, sleeps = make(handler, retry=RetryPolicy(base_delay_s=0.1))
    fetcher.fetch("amedas", URL)
    assert sleeps == [pytest.approx(42.0)]


def test_retry_after_beyond_cap_gives_up_at_once() -> None:
    handler, calls = flaky(99, 503, {"Retry-After": "3600"})
    fetcher, sleeps = make(handler, retry=RetryPolicy(max_retry_after_s=60))
    with pytest.raises(SourceError, match="3600"):
        fetcher.fetch("amedas", URL)
    assert calls["n"] == 1 and sleeps == []


def test_conditional_request_and_304() -> None:
    seen: list[dict[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append({"inm": request.headers.get("If-None-Match"),
                     "ims": request.headers.get("If-Modified-Since")})
        if request.headers.get("If-None-Match") == '"v1"':
            return httpx.Response(304)
        return httpx.Response(200, content=b"x", headers={
            "ETag": '"v1"', "Last-Modified": "Fri, 01 Aug 2025 00:00:00 GMT"})

    fetcher, _ = make(handler)
    first = fetcher.fetch("amedas", URL)
    assert first.content == b"x" and first.etag == '"v1"'
    second = fetcher.fetch("amedas", URL)
    assert second.not_modified and second.content is None and second.status == 304
    assert second.etag == '"v1"'
    assert seen[0] == {"inm": None, "ims": None}
    assert seen[1] == {"inm": '"v1"', "ims": "Fri, 01 Aug 2025 00:00:00 GMT"}
    # forget → unconditional again; a different URL never gets another URL's validators
    fetcher.forget(URL)
    assert fetcher.fetch("amedas", URL).content == b"x"
    assert fetcher.fetch("amedas", URL + "?b").content == b"x"
    assert seen[2]["inm"] is None and seen[3]["inm"] is None


def test_timeouts_and_connect_errors_translated() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] % 2:
            raise httpx.ReadTimeout("slow", request=request)
        raise httpx.ConnectError("refused", request=request)

    fetcher, sleeps = make(handler, retry=RetryPolicy(attempts=3))
    with pytest.raises(SourceError) as info:
        fetcher.fetch("amedas", URL)
    assert calls["n"] == 3 and len(sleeps) == 2
    assert "timed out" in str(info.value) and info.value.url == URL


def test_timeout_then_success() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectTimeout("slow", request=request)
        return httpx.Response(200, content=b"ok")

    fetcher, _ = make(handler)
    assert fetcher.fetch("amedas", URL).attempts == 2


class _Trickle(httpx.SyncByteStream):
    """A body that arrives one byte per (fake) second: every read is quick, the whole never."""

    def __init__(self, now: list[float]) -> None:
        self.now = now

    def __iter__(self):  # type: ignore[no-untyped-def]
        for _ in range(1000):
            self.now[0] += 1.0
            yield b" "


def test_a_trickling_body_is_cut_off_at_the_deadline() -> None:
    now = [0.0]
    fetcher, _ = make(lambda request: httpx.Response(200, stream=_Trickle(now)),
                      monotonic=lambda: now[0])
    with pytest.raises(SourceError) as info:
        fetcher.fetch("amedas", URL, deadline=5.5)
    assert "time limit reached while reading the answer (6 bytes received)" in str(info.value)
    assert now[0] == 6.0   # stopped reading at the first chunk past the deadline
    # without a deadline the same body is read whole
    now[0] = 0.0
    assert fetcher.fetch("amedas", URL).content == b" " * 1000


@pytest.mark.parametrize("limit", [1, 3])
def test_concurrency_limit_per_source(limit: int) -> None:
    lock = threading.Lock()
    state = {"now": 0, "max": 0}
    per_source: dict[str, int] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        src = request.url.host
        with lock:
            state["now"] += 1
            per_source[src] = per_source.get(src, 0) + 1
            state["max"] = max(state["max"], per_source[src])
        time.sleep(0.02)   # real overlap between threads
        with lock:
            state["now"] -= 1
            per_source[src] -= 1
        return httpx.Response(200, content=request.url.path.encode())

    fetcher, _ = make(handler, limits={"amedas": limit}, default_limit=2)
    urls = [f"https://amedas.test/{i}" for i in range(12)]
    results = fetcher.fetch_many("amedas", urls)
    assert [r.content for r in results] == [f"/{i}".encode() for i in range(12)]  # type: ignore[union-attr]
    assert state["max"] == limit     # never above, and the pool really used the slots


def test_concurrency_limit_holds_across_threads_calling_fetch_many() -> None:
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.01)
        with lock:
            state["now"] -= 1
        return httpx.Response(200, content=b"")

    fetcher, _ = make(handler, limits={"crisis_json": 2})
    urls = [f"https://k.test/{i}" for i in range(6)]
    threads = [threading.Thread(target=fetcher.fetch_many, args=("crisis_json", urls))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert state["max"] <= 2


def test_fetch_many_reports_failures_per_url() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/bad":
            return httpx.Response(500)
        return httpx.Response(200, content=b"good")

    fetcher, _ = make(handler, retry=RetryPolicy(attempts=2))
    good, bad = fetcher.fetch_many("amedas", ["https://h.test/good", "https://h.test/bad"])
    assert not isinstance(good, SourceError) and good.content == b"good"
    assert isinstance(bad, SourceError) and bad.url == "https://h.test/bad"
