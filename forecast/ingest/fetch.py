"""HTTP fetcher for live sources: timeouts, retries with backoff, per-source concurrency limits
and conditional requests. Bytes in from the network, ``Fetched`` out; never writes storage.

Everything with a side effect is injected so tests run instantly and offline:
``client`` (an ``httpx.Client``; tests give it an ``httpx.MockTransport``), ``clock`` (returns
the current UTC time), ``sleep`` (seconds) and ``rng`` (the jitter source).

Retry policy (AWS "full jitter"): a connect error, a timeout, another transport error, a 5xx
or a 429 is retried up to ``RetryPolicy.attempts`` times in all; before retry *k* (1-based) the
fetcher sleeps ``uniform(0, min(max_delay_s, base_delay_s * 2**(k-1)))`` seconds, or at least
the server's ``Retry-After`` (seconds or an HTTP date) when it sent one. A ``Retry-After``
longer than ``max_retry_after_s`` is obeyed by giving up (we never come back sooner than asked).
Any other status (404, 403, ...) is not retried. After the last attempt a ``SourceError``
naming the source and the URL is raised.

Time limit: ``fetch`` / ``fetch_many`` take an optional ``deadline`` (a ``time.monotonic()``
value, e.g. the tick's per-source limit): no request starts after it, each request's timeout
and each back-off sleep are cut to the time left, and a URL not fetched by then gets a
``SourceError`` saying the time limit was reached. The body is read in chunks and the deadline
checked after each one, so a server that trickles its answer (each read inside the read
timeout, the whole answer never) is cut off too. So a slow source returns by its deadline
(plus at most one read or connect of the time left) and never holds up the tick.

Conditional requests: the ``ETag`` / ``Last-Modified`` of each URL's last 200 answer are
remembered and sent back as ``If-None-Match`` / ``If-Modified-Since``; a 304 gives a
``Fetched`` with ``not_modified=True`` and no content. A caller that could not keep a payload
(e.g. archiving failed) calls ``forget(url)`` so the next fetch downloads it again.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from forecast.clock import SystemClock
from forecast.errors import SourceError

Clock = Callable[[], datetime]
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class Fetched:
    """One HTTP answer. ``content`` is None when ``not_modified`` (HTTP 304).

    ``fetched_at`` is the clock time (UTC) when the answer arrived; ``attempts`` counts the
    requests it took (1 = no retry).
    """

    source: str
    url: str
    status: int
    content: bytes | None
    fetched_at: datetime
    etag: str | None
    last_modified: str | None
    not_modified: bool
    attempts: int = 1


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry (seconds)."""

    attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Full-jitter delay before retry number ``retry`` (1-based), in seconds."""
        cap = min(self.max_delay_s, self.base_delay_s * 2 ** (retry - 1))
        return rng.uniform(0.0, cap)


RETRY_STATUSES = frozenset({429, 500, 502, 503, 504}) | frozenset(range(505, 600))


class _Retry(Exception):
    """Internal: this attempt failed in a retryable way."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Fetcher:
    """Fetch URLs of named sources politely (see the module docstring).

    ``limits`` maps a source name to its maximum number of requests in flight (default
    ``default_limit``); ``timeout`` is seconds (or an ``httpx.Timeout``) per request.
    Thread-safe: ``fetch_many`` runs a small pool per call.
    """

    def __init__(
        self,
        client: httpx.Client,
        *,
        clock: Clock | None = None,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | httpx.Timeout = 10.0,
        limits: Mapping[str, int] | None = None,
        default_limit: int = 2,
        monotonic: Callable[[], float] = time.monotonic,
        user_agent: str = "mie-river-forecast (flood-control forecasting; contact: admin)",
    ) -> None:
        if default_limit < 1 or any(v < 1 for v in (limits or {}).values()):
            raise ValueError("concurrency limits must be >= 1")
        self._client = client
        self._clock = clock or SystemClock().now
        self._sleep = sleep
        self._monotonic = monotonic
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self.retry = retry or RetryPolicy()
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._limits = dict(limits or {})
        self._default_limit = default_limit
        self._user_agent = user_agent
        self._semaphores: dict[str, threading.BoundedSemaphore] = {}
        self._validators: dict[str, tuple[str | None, str | None]] = {}
        self._lock = threading.Lock()

    def limit(self, source: str) -> int:
        """Maximum concurrent requests to ``source``."""
        return self._limits.get(source, self._default_limit)

    def _semaphore(self, source: str) -> threading.BoundedSemaphore:
        with self._lock:
            sem = self._semaphores.get(source)
            if sem is None:
                sem = self._semaphores[source] = threading.BoundedSemaphore(self.limit(source))
            return sem

    def forget(self, url: str) -> None:
        """Drop the remembered ETag/Last-Modified of ``url`` (next fetch is unconditional)."""
        with self._lock:
            self._validators.pop(url, None)

    def validators(self, url: str) -> tuple[str | None, str | None]:
        """The (ETag, Last-Modified) remembered for ``url``."""
        with self._lock:
            return self._validators.get(url, (None, None))

    def fetch(self, source: str, url: str, *, conditional: bool = True,
              deadline: float | None = None) -> Fetched:
        """GET ``url`` for ``source`` with retries; ``SourceError`` after the last attempt or
        when ``deadline`` (``time.monotonic()`` value) has passed."""
        headers = {"User-Agent": self._user_agent}
        etag, modified = self.validators(url) if conditional else (None, None)
        if etag:
            headers["If-None-Match"] = etag
        if modified:
            headers["If-Modified-Since"] = modified
        policy = self.retry
        last = ""
        for attempt in range(1, policy.attempts + 1):
            left = None if deadline is None else deadline - self._monotonic()
            if left is not None and left <= 0:
                raise SourceError(f"time limit reached after {attempt - 1} attempt(s)"
                                  + (f": {last}" if last else ""), source=source, url=url)
            try:
                return self._attempt(source, url, headers, attempt, left, deadline)
            except _Retry as exc:
                last = exc.reason
                if attempt == policy.attempts:
                    break
                with self._rng_lock:
                    delay = policy.backoff(attempt, self._rng)
                if exc.retry_after is not None:
                    if exc.retry_after > policy.max_retry_after_s:
                        raise SourceError(
                            f"{last}; server asks to retry after {exc.retry_after:.0f} s, more "
                            f"than the {policy.max_retry_after_s:.0f} s we wait; giving up",
                            source=source, url=url) from None
                    delay = max(delay, exc.retry_after)
                if deadline is not None:
                    delay = max(0.0, min(delay, deadline - self._monotonic()))
                self._sleep(delay)
        raise SourceError(f"failed after {policy.attempts} attempts: {last}",
                          source=source, url=url)

    def _attempt(self, source: str, url: str, headers: dict[str, str],
                 attempt: int, left: float | None = None,
                 deadline: float | None = None) -> Fetched:
        sem = self._semaphore(source)
        timeout = self._timeout
        if left is not None:   # no phase of the request may outlast the deadline
            cap = max(0.01, left)
            timeout = httpx.Timeout(
                connect=min(timeout.connect or cap, cap), read=min(timeout.read or cap, cap),
                write=min(timeout.write or cap, cap), pool=min(timeout.pool or cap, cap))
        # The slot is held only during the request, not while backing off.
        with sem:
            try:
                with self._client.stream("GET", url, headers=headers, timeout=timeout) as resp:
                    content = self._body(resp, source, url, deadline) \
                        if resp.status_code == 200 else None
            except httpx.TimeoutException as exc:
                raise _Retry(f"timed out ({type(exc).__name__})") from exc
            except httpx.TransportError as exc:   # connect/read/protocol errors
                raise _Retry(f"{type(exc).__name__}: {exc}") from exc
            except httpx.HTTPError as exc:        # e.g. invalid URL: not worth retrying
                raise SourceError(f"{type(exc).__name__}: {exc}", source=source,
                                  url=url) from exc
        now = self._clock()
        status = resp.status_code
        if status == 304:
            etag, modified = self.validators(url)
            return Fetched(source, url, status, None, now, etag, modified, True, attempt)
        if status in RETRY_STATUSES:
            raise _Retry(f"HTTP {status}", _retry_after(resp.headers.get("Retry-After"), now))
        if status != 200:
            raise SourceError(f"HTTP {status} (not retried)", source=source, url=url)
        etag = resp.headers.get("ETag")
        modified = resp.headers.get("Last-Modified")
        if etag or modified:
            with self._lock:
                self._validators[url] = (etag, modified)
        return Fetched(source, url, status, content, now, etag, modified, False, attempt)

    def _body(self, resp: httpx.Response, source: str, url: str, deadline: float | None
              ) -> bytes:
        """The body of a 200 answer, read chunk by chunk; ``SourceError`` once ``deadline``
        has passed (a trickling server is not waited for)."""
        chunks: list[bytes] = []
        for chunk in resp.iter_bytes():
            chunks.append(chunk)
            if deadline is not None and self._monotonic() > deadline:
                got = sum(len(c) for c in chunks)
                raise SourceError(f"time limit reached while reading the answer ({got} bytes "
                                  "received)", source=source, url=url)
        return b"".join(chunks)

    def fetch_many(self, source: str, urls: Sequence[str], *, conditional: bool = True,
                   deadline: float | None = None) -> list[Fetched | SourceError]:
        """Fetch several URLs of one source, at most ``limit(source)`` at a time, all by
        ``deadline`` if given (``time.monotonic()`` value).

        Returns one item per URL, in order: the ``Fetched`` answer or the ``SourceError``
        that ended its retries (one failing URL never stops the others).
        """
        def one(url: str) -> Fetched | SourceError:
            try:
                return self.fetch(source, url, conditional=conditional, deadline=deadline)
            except SourceError as exc:
                return exc

        if len(urls) <= 1:
            return [one(u) for u in urls]
        with ThreadPoolExecutor(max_workers=min(self.limit(source), len(urls))) as pool:
            return list(pool.map(one, urls))


def _retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
