"""The Slack Web API client: `SLACK_API_URL` as base URL, slack_sdk's retry handlers for rate
limits (honouring Retry-After) and connection errors, with an injectable sleep so tests need not
wait."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

DEFAULT_BASE_URL = WebClient.BASE_URL
RATE_LIMIT_RETRIES = 5
CONNECTION_RETRIES = 3
MAX_RETRY_AFTER_S = 60.0

Sleep = Callable[[float], None]


class RateLimitRetry(RateLimitErrorRetryHandler):
    """slack_sdk's rate-limit handler with the sleep injected and Retry-After capped, so one
    storm cannot stall the poll loop for minutes."""

    def __init__(self, max_retry_count: int = RATE_LIMIT_RETRIES, *, sleep: Sleep = time.sleep,
                 max_wait_s: float = MAX_RETRY_AFTER_S) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.sleep = sleep
        self.max_wait_s = max_wait_s

    def prepare_for_next_attempt(self, *, state: RetryState, request: HttpRequest,
                                 response: HttpResponse | None = None, error: Exception | None = None) -> None:
        if response is None:
            raise error  # type: ignore[misc]
        state.next_attempt_requested = True
        self.sleep(min(self.max_wait_s, retry_after(response.headers) + random.random()))
        state.increment_current_attempt()


class ConnectionRetry(ConnectionErrorRetryHandler):
    """slack_sdk's connection-error handler with its backoff sleep injected."""

    def __init__(self, max_retry_count: int = CONNECTION_RETRIES, *, sleep: Sleep = time.sleep,
                 interval: BackoffRetryIntervalCalculator | None = None) -> None:
        super().__init__(max_retry_count=max_retry_count,
                         interval_calculator=interval or BackoffRetryIntervalCalculator(backoff_factor=0.5))
        self.sleep = sleep

    def prepare_for_next_attempt(self, *, state: RetryState, request: HttpRequest,
                                 response: HttpResponse | None = None, error: Exception | None = None) -> None:
        state.next_attempt_requested = True
        self.sleep(self.interval_calculator.calculate_sleep_duration(state.current_attempt))
        state.increment_current_attempt()


def retry_after(headers: dict[str, list[str]]) -> float:
    for name, values in headers.items():
        if name.lower() == "retry-after" and values:
            try:
                return max(0.0, float(values[0]))
            except ValueError:
                break
    return 1.0


def make_client(token: str | None, base_url: str | None = None, *, sleep: Sleep = time.sleep,
                rate_limit_retries: int = RATE_LIMIT_RETRIES, connection_retries: int = CONNECTION_RETRIES,
                timeout: int = 30) -> WebClient:
    base = base_url or DEFAULT_BASE_URL
    return WebClient(token=token, base_url=base if base.endswith("/") else base + "/", timeout=timeout,
                     retry_handlers=[RateLimitRetry(rate_limit_retries, sleep=sleep),
                                     ConnectionRetry(connection_retries, sleep=sleep)])
