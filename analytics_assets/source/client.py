"""HTTP to the analytics API: dlt's REST client over a session whose adapter holds the retry
policy, the shared 429 gate, and the checks dlt lacks (a 200 that is not JSON).

Retry policy (the specification's, plus what the reference says of 429):

- 500/502/503/504, dropped connections and timeouts: 3 retries (4 attempts), waits growing by
  the backoff factor (2 s, 4 s, 8 s by default), each logged with the endpoint and attempt.
- 429: wait as long as the API asks, in `Retry-After` or, as the reference documents, in the
  message ("rate limit exceeded, retry after 45 seconds"); every worker of the run waits with
  the one that was told; the API may answer 429 until then, so a request keeps waiting (and
  says so) for up to `rate_limit_max_wait` seconds in all before the run fails.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Generator, Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import requests
import urllib3
from dlt.common.jsonpath import compile_path
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.client import PageData
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter

from analytics_assets.source.pagination import ListPaginator, NextPaginator, endpoint_of
from analytics_assets.source.settings import PAGE_SIZE, RETRY_STATUSES
from analytics_assets.source.tokens import ManagementTokenAuth

logger = logging.getLogger(__name__)

#: Where the rows are in a page, compiled once: dlt would parse a JSONPath for every page.
DATA = compile_path("data")
EVENTS = compile_path("events")

#: The documented 429 message: "rate limit exceeded, retry after 45 seconds".
_RETRY_AFTER_MESSAGE = re.compile(r"retry after (\d+(?:\.\d+)?) ?s(?:ec(?:ond)?s?)?\b", re.I)


class AnalyticsApiError(RuntimeError):
    """The API answered something we cannot use; the message names the endpoint."""


class MalformedResponseError(AnalyticsApiError):
    """A success status with a body that is not the JSON object the endpoint returns."""


class ApiUnreachableError(AnalyticsApiError):
    """The API's host could not be reached (connection refused, DNS, timeouts) after retries."""


class RateLimitedError(AnalyticsApiError):
    """The API kept answering 429 for longer than `rate_limit_max_wait`."""


def quote_id(value: str) -> str:
    """An id as one path segment: dlt puts values into paths as they are, so `/`, `?`, `#` or a
    space in an id would change the URL."""
    return quote(str(value), safe="")


class RateGate:
    """Shared by every worker: when the API answers 429, all of them wait, not only the one
    that was told (which would let the others keep hammering)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resume_at = 0.0

    def wait(self) -> None:
        while True:  # another worker may extend the pause while this one sleeps
            with self._lock:
                delay = self._resume_at - time.monotonic()
            if delay <= 0:
                return
            time.sleep(delay)

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._resume_at = max(self._resume_at, time.monotonic() + seconds)


class ApiClock:
    """The API's own "now", from the `Date` header of its answers (the newest seen).

    Late-event lookbacks and the reconciliation's 30-day window are measured on it, not on this
    machine's clock, which may be wrong or (against a simulator) years apart.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now: datetime | None = None

    def observe(self, header: str | None) -> None:
        if not header:
            return
        try:
            seen = parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return
        if seen.tzinfo is None:
            return
        with self._lock:
            if self._now is None or seen > self._now:
                self._now = seen

    def now(self) -> datetime | None:
        with self._lock:
            return self._now


class ApiAdapter(HTTPAdapter):
    """Every request of a run passes here, retries included: the 429 gate, the retry policy,
    the JSON check. Below dlt's client, so no path can skip them."""

    def __init__(
        self,
        *,
        max_attempts: int,
        backoff_factor: float,
        max_retry_delay: float,
        rate_limit_max_wait: float,
        timeout: float,
        gate: RateGate,
        clock: ApiClock,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.max_attempts = max_attempts
        self.backoff_factor = backoff_factor
        self.max_retry_delay = max_retry_delay
        self.rate_limit_max_wait = rate_limit_max_wait
        self.timeout = timeout
        self.gate = gate
        self.clock = clock

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        endpoint = endpoint_of(request)
        failures = 0  # 5xx answers, dropped connections and timeouts so far
        limited_since: float | None = None  # when the first 429 came
        while True:
            self.gate.wait()
            try:
                response = super().send(request, *args, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                failures += 1
                if failures >= self.max_attempts:
                    raise ApiUnreachableError(
                        f"cannot reach {_host(request)} for {endpoint}: "
                        f"{_reason(exc)} ({failures} attempts)"
                    ) from exc
                self._back_off(endpoint, _reason(exc), failures)
                continue
            self.clock.observe(response.headers.get("Date"))
            if response.status_code == 429:
                now = time.monotonic()
                limited_since = now if limited_since is None else limited_since
                waited = now - limited_since
                wait, said = _advertised_wait(response, default=self._backoff(1))
                # At least the backoff (a "retry after 0 seconds" must not spin), at most the cap.
                wait = min(max(wait, self._backoff(1)), self.max_retry_delay)
                if waited + wait > self.rate_limit_max_wait:
                    raise RateLimitedError(
                        f"{endpoint} still answered 429 (rate limit) after {waited:.0f} s; "
                        f"giving up past rate_limit_max_wait={self.rate_limit_max_wait:.0f} s "
                        f"(the API last asked for {said})"
                    )
                logger.warning(
                    "%s answered 429 (rate limit): every request of this run waits %.1f s, as "
                    "the API asks (%s); %.0f of at most %.0f s waited so far",
                    endpoint,
                    wait,
                    said,
                    waited,
                    self.rate_limit_max_wait,
                )
                self.gate.hold(wait)
                response.close()
                continue
            if response.status_code in RETRY_STATUSES:
                failures += 1
                if failures >= self.max_attempts:
                    return response  # dlt's client raises "503 Server Error ... for url: ..."
                response.close()
                self._back_off(endpoint, f"answered {response.status_code}", failures)
                continue
            return _require_json(response)

    def _backoff(self, failures: int) -> float:
        return float(min(self.max_retry_delay, self.backoff_factor * 2 ** (failures - 1)))

    def _back_off(self, endpoint: str, what: str, failures: int) -> None:
        delay = self._backoff(failures)
        logger.warning(
            "%s %s; retrying in %.1f s (attempt %d of %d)",
            endpoint,
            what,
            delay,
            failures + 1,
            self.max_attempts,
        )
        time.sleep(delay)


def _host(request: PreparedRequest) -> str:
    """The host and port, never credentials a URL may carry (`user:password@`)."""
    url = urlsplit(str(request.url))
    return f"{url.hostname}:{url.port}" if url.port else str(url.hostname)


def _reason(exc: BaseException) -> str:
    """What a connection error comes down to, e.g. `NewConnectionError: Failed to establish a
    new connection: [Errno 111] Connection refused`, `NameResolutionError: Failed to resolve
    'host' (...)` or `ReadTimeoutError: Read timed out. (read timeout=60)`: urllib3's own error
    (it says more than the socket's), without the URL (named separately) or the layers requests
    wraps it in ("Max retries exceeded": the retries are counted here, not there)."""
    current, seen = exc, 0
    while seen < 10:  # requests' error holds urllib3's in its args, which holds the socket's
        seen += 1
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


def _advertised_wait(response: Response, *, default: float) -> tuple[float, str]:
    """The wait a 429 asks for: `Retry-After` (seconds or a date), else the seconds named in
    the message (the reference documents only that), else the backoff."""
    header = response.headers.get("Retry-After", "").strip()
    if header:
        try:
            return max(0.0, float(header)), f"Retry-After: {header}"
        except ValueError:
            try:
                until = parsedate_to_datetime(header)
                date = parsedate_to_datetime(response.headers.get("Date", header))
                return max(0.0, (until - date).total_seconds()), f"Retry-After: {header}"
            except (TypeError, ValueError):
                pass
    try:
        message = str(response.json().get("message", ""))
    except ValueError:
        message = response.text[:500]
    found = _RETRY_AFTER_MESSAGE.search(message)
    if found:
        return float(found.group(1)), f'"{message}"'
    return default, "no wait named; backing off"


def _require_json(response: Response) -> Response:
    """Fail on a 2xx whose body is not JSON (an HTML error page from a proxy, a cut body),
    naming the endpoint; dlt would raise a bare JSONDecodeError. The parsed body is kept so
    dlt does not parse it twice."""
    if response.status_code >= 300:
        return response
    try:
        parsed = json.loads(response.content)
    except ValueError:
        snippet = response.text[:120].replace("\n", " ")
        raise MalformedResponseError(
            f"{endpoint_of(response.request)} answered {response.status_code} with a body that "
            f"is not JSON (Content-Type {response.headers.get('Content-Type')!r}): {snippet!r}"
        ) from None
    if not isinstance(parsed, dict):
        raise MalformedResponseError(
            f"{endpoint_of(response.request)} answered {type(parsed).__name__} where a JSON "
            "object was due"
        )
    response.json = lambda **_: parsed  # type: ignore[method-assign]
    return response


def _session_for(base_url: str) -> requests.Session:
    """A session with the environment's proxy and CA bundle settings for `base_url`, read once.

    requests reads them again for every request, and twice scans the whole environment to do
    so (`HTTP(S)_PROXY`, `NO_PROXY`): about 0.6 ms of CPU a request, which with the GIL held
    came to a fifth of the extract at 1,000 rooms. Every request of the client goes to the one
    host, so the answer does not change: the same proxies (or none, if `NO_PROXY` names the
    host) and the same `REQUESTS_CA_BUNDLE` / `CURL_CA_BUNDLE`. (A redirect to another host
    keeps the base URL's proxies, and `~/.netrc` is not read: the API does not redirect, and
    the client always authenticates itself.)
    """
    session = requests.Session()
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    session.verify = (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    session.trust_env = False
    return session


class AnalyticsApiClient:
    """The few ways the source reads the API."""

    def __init__(
        self,
        base_url: str,
        auth: ManagementTokenAuth,
        *,
        max_attempts: int,
        backoff_factor: float,
        max_retry_delay: float,
        rate_limit_max_wait: float,
        timeout: float,
        max_pages: int,
        workers: int,
    ) -> None:
        self.clock = ApiClock()
        adapter = ApiAdapter(
            max_attempts=max_attempts,
            backoff_factor=backoff_factor,
            max_retry_delay=max_retry_delay,
            rate_limit_max_wait=rate_limit_max_wait,
            timeout=timeout,
            gate=RateGate(),
            clock=self.clock,
            pool_maxsize=max(10, workers * 2),
        )
        session = _session_for(base_url)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self.rest = RESTClient(base_url=base_url, auth=auth, session=session)
        self.max_pages = max_pages
        self.workers = workers

    def list_pages(self, path: str, params: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        """Every object of a `limit`/`start`/`last` listing once, a page at a time, correct
        under both readings of `start` (see `ListPaginator`)."""
        paginator = ListPaginator(max_pages=self.max_pages)
        for _page in self.rest.paginate(
            path,
            params={"limit": PAGE_SIZE, **params},
            paginator=paginator,
            data_selector=DATA,
        ):
            if paginator.fresh:
                yield paginator.fresh

    def event_pages(
        self, params: dict[str, Any], *, limit: int = PAGE_SIZE
    ) -> Generator[PageData[Any], None, None]:
        """Pages of `/v2/analytics/events`, followed by `next`; each keeps its response, whose
        body also holds `total`."""
        yield from self.rest.paginate(
            "/v2/analytics/events",
            params={"limit": limit, **params},
            paginator=NextPaginator(max_pages=self.max_pages),
            data_selector=EVENTS,
        )

    def get_object(self, path: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
        """One bare JSON object; None for a 404 when `missing_ok`."""
        response = self.rest.get(path)
        if missing_ok and response.status_code == 404:
            return None
        response.raise_for_status()  # "401 Client Error: Unauthorized for url: <endpoint>"
        return response.json()

    def close(self) -> None:
        self.rest.session.close()
