"""The retry policy, declared with tenacity around the whole request, body read included.

- 500/502/503/504, dropped connections, timeouts and bodies cut off half way (requests reads
  the body inside `Session.send`, after the transport adapter has returned: a retry below that
  would never see a body that drops): the specification's 3 retries (4 attempts), waits growing
  by the backoff factor (2 s, 4 s, 8 s by default), each logged with the endpoint and attempt.
- 429: wait as long as the API asks, in `Retry-After` or, as the reference documents, only in
  the message ("rate limit exceeded, retry after 45 seconds"). Every worker of the run waits
  with the one that was told (`RateGate`); the API may answer 429 until then, so a request
  keeps waiting, and says so, for up to `rate_limit_max_wait` seconds in all.

Only the gate, the wait read from the message and the total wait budget are ours; tenacity
counts, waits and stops.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests import PreparedRequest, Response
from requests.auth import AuthBase
from requests.exceptions import ChunkedEncodingError, ContentDecodingError
from tenacity import RetryCallState, Retrying, retry_if_exception_type, retry_if_result

from analytics_assets.source.errors import (
    ApiHttpError,
    ApiUnreachableError,
    RateLimitedError,
    endpoint_of,
    host_of,
)
from analytics_assets.source.settings import (
    RATE_LIMIT_MAX_WAIT,
    REQUEST_BACKOFF_FACTOR,
    REQUEST_MAX_ATTEMPTS,
    REQUEST_MAX_RETRY_DELAY,
    REQUEST_TIMEOUT,
    RETRY_STATUSES,
)

logger = logging.getLogger(__name__)

#: Failures that a new attempt may cure: the connection refused, dropped or stalled, before or
#: while the body was read.
TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    ChunkedEncodingError,
    ContentDecodingError,
)
#: The documented 429 message: "rate limit exceeded, retry after 45 seconds".
_RETRY_AFTER_MESSAGE = re.compile(r"retry after (\d+(?:\.\d+)?) ?s(?:ec(?:ond)?s?)?\b", re.I)


@dataclass(frozen=True)
class RetryPolicy:
    """The specification's policy: 4 attempts, backoff factor 2, each wait capped."""

    max_attempts: int = REQUEST_MAX_ATTEMPTS
    backoff_factor: float = REQUEST_BACKOFF_FACTOR
    max_retry_delay: float = REQUEST_MAX_RETRY_DELAY
    rate_limit_max_wait: float = RATE_LIMIT_MAX_WAIT
    timeout: float = REQUEST_TIMEOUT

    def backoff(self, failures: int) -> float:
        """The wait after the `failures`-th failure: factor x 2^(n-1), at most the cap."""
        return float(min(self.max_retry_delay, self.backoff_factor * 2 ** (failures - 1)))


class RateGate:
    """Shared by every worker of a run: when the API answers 429, all of them wait, not only the
    one that was told (which would let the others keep hammering)."""

    def __init__(
        self,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        self._resume_at = 0.0

    def wait(self) -> None:
        while True:  # another worker may extend the pause while this one sleeps
            with self._lock:
                delay = self._resume_at - self._monotonic()
            if delay <= 0:
                return
            self._sleep(delay)

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._resume_at = max(self._resume_at, self._monotonic() + seconds)


def advertised_wait(response: Response) -> tuple[float | None, str]:
    """The wait a 429 asks for, and how it said so: `Retry-After` (seconds or a date), else the
    seconds named in the message (the reference documents only that); None if neither."""
    header = response.headers.get("Retry-After", "").strip()
    if header:
        try:
            return max(0.0, float(header)), f"Retry-After: {header}"
        except ValueError:
            try:
                until = parsedate_to_datetime(header)
                now = parsedate_to_datetime(response.headers.get("Date", header))
                return max(0.0, (until - now).total_seconds()), f"Retry-After: {header}"
            except (TypeError, ValueError):
                pass
    try:
        body = response.json()
        message = str(body.get("message", "")) if isinstance(body, dict) else ""
    except ValueError:
        message = response.text[:500]
    found = _RETRY_AFTER_MESSAGE.search(message)
    if found:
        return float(found.group(1)), f'"{message}"'
    return None, "no wait named; backing off"


class _Attempts:
    """The bookkeeping of one request's attempts, for tenacity's callbacks: failures (5xx and
    connection errors) count against the attempts, 429s against the wait budget."""

    def __init__(self, session: RetryingSession, request: PreparedRequest) -> None:
        self.session = session
        self.policy = session.policy
        self.request = request
        self.endpoint = endpoint_of(request)
        self.failures = 0
        self.limited = False  # the last answer was a 429
        self.limited_since: float | None = None
        self.said = ""

    def count(self, state: RetryCallState) -> None:
        outcome = state.outcome
        assert outcome is not None
        self.limited = not outcome.failed and outcome.result().status_code == 429
        if self.limited:
            if self.limited_since is None:
                self.limited_since = self.session.monotonic()
        else:
            self.failures += 1

    def wait(self, state: RetryCallState) -> float:
        backoff = self.policy.backoff(max(1, self.failures))
        if not self.limited:
            return backoff
        assert state.outcome is not None
        asked, self.said = advertised_wait(state.outcome.result())
        # At least the backoff (a "retry after 0 seconds" must not spin), at most the cap.
        return min(max(asked or 0.0, self.policy.backoff(1)), self.policy.max_retry_delay)

    def stop(self, state: RetryCallState) -> bool:
        if self.limited:
            assert self.limited_since is not None
            waited = self.session.monotonic() - self.limited_since
            return waited + (state.upcoming_sleep or 0.0) > self.policy.rate_limit_max_wait
        return self.failures >= self.policy.max_attempts

    def before_sleep(self, state: RetryCallState) -> None:
        outcome, delay = state.outcome, state.upcoming_sleep
        assert outcome is not None
        if outcome.failed:
            what = _reason(outcome.exception())
        else:
            outcome.result().close()
            what = f"answered {outcome.result().status_code}"
            if _is_gateway_page(outcome.result()):
                what += " with an HTML page, not the API's JSON"
        if self.limited:
            assert self.limited_since is not None
            waited = self.session.monotonic() - self.limited_since
            self.session.gate.hold(delay)
            logger.warning(
                "%s answered 429 (rate limit): every request of this run waits %.1f s, as the "
                "API asks (%s); %.0f of at most %.0f s waited so far",
                *(self.endpoint, delay, self.said, waited, self.policy.rate_limit_max_wait),
            )
            return
        logger.warning(
            "%s %s; retrying in %.1f s (attempt %d of %d)",
            *(self.endpoint, what, delay, self.failures + 1, self.policy.max_attempts),
        )

    def give_up(self, state: RetryCallState) -> Response:
        """After the last attempt: an error that says why, or the last 5xx answer."""
        outcome = state.outcome
        assert outcome is not None
        if self.limited:
            assert self.limited_since is not None
            waited = self.session.monotonic() - self.limited_since
            raise RateLimitedError(
                f"{self.endpoint} still answered 429 (rate limit) after {waited:.0f} s; giving "
                f"up past rate_limit_max_wait={self.policy.rate_limit_max_wait:.0f} s (the API "
                f"last asked for {self.said})"
            )
        if outcome.failed:
            exc = outcome.exception()
            raise ApiUnreachableError(
                f"cannot reach {host_of(self.request)} for {self.endpoint}: {_reason(exc)} "
                f"({self.failures} attempts)"
            ) from exc
        return outcome.result()


def _is_retried_status(response: Response) -> bool:
    return response.status_code in RETRY_STATUSES or _is_gateway_page(response)


def _is_gateway_page(response: Response) -> bool:
    """A 2xx that is an HTML page, not the API's JSON: a proxy's or gateway's page (maintenance,
    captive portal), retried like a 503; what is still one after the retries fails as not JSON."""
    kind = response.headers.get("Content-Type", "")
    return 200 <= response.status_code < 300 and kind.lower().startswith("text/html")


class RetryingSession(requests.Session):
    """A requests session for the API: every request, body read included, under the retry
    policy and the shared 429 gate; an error status after the retries raises `ApiHttpError`
    with the API's message and details; every answer's `Date` is told to `on_date` (the API's
    own clock).

    Given the run's `token_auth`, every attempt carries the token current when it is sent (a
    retry after long 429 waits must not send one that expired meanwhile), and a 401 is tried
    once more with a freshly minted token, as the vendor's SDK does (`renew()`, when the auth
    mints its tokens)."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        gate: RateGate | None = None,
        on_date: Callable[[str | None], None] | None = None,
        token_auth: AuthBase | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        self.token_auth = token_auth
        self.policy = policy
        self.gate = gate or RateGate(monotonic=monotonic, sleep=sleep)
        self.on_date = on_date
        self.monotonic = monotonic
        self.sleep = sleep

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.policy.timeout
        attempts = _Attempts(self, request)
        retrying = Retrying(
            retry=retry_if_exception_type(TRANSIENT_ERRORS) | retry_if_result(_is_retried_status),
            before=lambda _: self.gate.wait(),
            after=attempts.count,
            wait=attempts.wait,
            stop=attempts.stop,
            before_sleep=attempts.before_sleep,
            retry_error_callback=attempts.give_up,
            sleep=self.sleep,
        )
        response: Response = retrying(self._attempt, request, **kwargs)
        if response.status_code == 401 and self._renew_token():
            response = retrying(self._attempt, request, **kwargs)
        if response.status_code >= 400:
            raise ApiHttpError.from_response(response)
        return response

    def _renew_token(self) -> bool:
        """Whether a fresh token was asked for (only an auth that mints one can)."""
        renew: Callable[[], bool] | None = getattr(self.token_auth, "renew", None)
        return renew is not None and renew()

    def _attempt(self, request: PreparedRequest, **kwargs: Any) -> Response:
        if self.token_auth is not None:
            request = self.token_auth(request)  # the token current now
        response = super().send(request, **kwargs)  # reads the body too (not streamed)
        if self.on_date is not None:
            self.on_date(response.headers.get("Date"))
        return response


def _reason(exc: BaseException | None) -> str:
    """What a connection error comes down to, e.g. `NewConnectionError: Failed to establish a
    new connection: [Errno 111] Connection refused`, `ReadTimeoutError: Read timed out.` or
    `ProtocolError: ('Connection broken: IncompleteRead(...)')`: urllib3's own error (it says
    more than the socket's), without the URL (named separately) or the layers requests wraps it
    in ("Max retries exceeded": the retries are counted here, not there)."""
    import urllib3

    current: BaseException | None = exc
    for _ in range(10):  # requests' error holds urllib3's in its args, which holds the socket's
        if current is None:
            break
        reason = getattr(current, "reason", None)
        arg = current.args[0] if current.args else None
        inner = next(
            (
                e
                for e in (reason, arg, current.__cause__, current.__context__)
                if isinstance(e, BaseException)
            ),
            None,
        )
        if inner is None or isinstance(current, urllib3.exceptions.TimeoutError):
            break  # urllib3's read or connect timeout says more than the socket's "timed out"
        current = inner
    text = re.sub(r"^\w+\(host=[^)]*\):\s*", "", str(current))  # urllib3's connection repr
    return f"{type(current).__name__}: {text}"
