"""Retries shared by the Rally and Confluence clients: urllib3's ``Retry`` mounted on a
``requests.Session``, with the ``Retry-After`` wait capped."""

from __future__ import annotations

import math
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

RETRY_STATUSES = (429, 500, 502, 503, 504)


class CappedRetry(Retry):
    """urllib3 ``Retry`` that caps the ``Retry-After`` wait at ``max_retry_after`` seconds.

    Servers have sent ``Retry-After: 9223372036854775807``; urllib3 would sleep that long (or
    overflow). Decimal seconds are accepted; a header that is not a number or a date waits
    one second.
    """

    def __init__(self, *args: Any, max_retry_after: float = 30.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_retry_after = max_retry_after

    def new(self, **kw: Any) -> CappedRetry:
        kw.setdefault("max_retry_after", self.max_retry_after)
        return super().new(**kw)

    def parse_retry_after(self, retry_after: str) -> float:
        try:
            seconds = super().parse_retry_after(retry_after)
        except InvalidHeader:
            seconds = _decimal_seconds(retry_after)
        return max(0.0, min(seconds, self.max_retry_after))


def _decimal_seconds(value: str) -> float:
    """``Retry-After: 0.5`` (urllib3 takes only whole seconds and dates); anything else that is
    not a number waits one second rather than failing the request."""
    try:
        seconds = float(value)
    except ValueError:
        return 1.0
    return seconds if math.isfinite(seconds) and seconds >= 0 else 1.0


def mount_retries(session: requests.Session, *, retries: int, backoff: float,
                  max_retry_after: float, allowed_methods: frozenset[str],
                  retry_class: type[CappedRetry] = CappedRetry,
                  adapter_class: type[HTTPAdapter] = HTTPAdapter) -> None:
    """Retry 429/5xx answers and connection failures on every request of ``session``:
    ``retries`` times, exponential ``backoff``, ``Retry-After`` honoured up to the cap."""
    retry = retry_class(
        total=retries, connect=retries, read=retries, status=retries, redirect=0,
        backoff_factor=backoff, backoff_max=max(max_retry_after, backoff),
        status_forcelist=RETRY_STATUSES, allowed_methods=allowed_methods,
        respect_retry_after_header=True, raise_on_status=False, raise_on_redirect=False,
        max_retry_after=max_retry_after,
    )
    adapter = adapter_class(max_retries=retry)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
