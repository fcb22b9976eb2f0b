"""Forecast notifications (水位予測通知): render the alert engine's notices and send them.

* ``forecast.notify.messages`` (pure): ``Notice`` + ``River`` → the canonical payload (a JSON
  dict) that the outbox stores and every channel renders from, so senders need no catalogue;
  test and dead-letter payloads.
* ``forecast.notify.slack``: Block Kit rendering and ``SlackSender`` (slack-sdk: Web API with
  threads, or incoming webhooks).
* ``forecast.notify.webhook``: HMAC-SHA256 signing/verification and ``WebhookSender``.
* ``forecast.notify.cap``: CAP 1.2 XML, the Atom feed of current messages, ``CapSender``.
* ``forecast.notify.receiver``: a loopback test receiver (real HTTP) for tests and for
  operators trying out their settings.

Every sender raises ``forecast.errors.DeliveryError`` with ``retryable`` set; the outbox
(``forecast.pipeline``) decides when to try again. Naming rule: these are 水位予測通知 /
forecast notifications, never 警報 or 注意報 (only JMA may issue those).

This package imports no HTTP library at import time: httpx and slack-sdk are imported by the
senders when they are built or used (``tests/test_imports.py``: the tick stays light).
"""
