"""HTTP to the analytics API: dlt's REST client with the specification's retries, plus the
guards dlt lacks (a repeating cursor, endless pages, a 200 that is not JSON, a 429 seen by one
worker but not the others) and URL-encoded ids.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from dlt.sources.helpers.requests import Client
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator
from requests import PreparedRequest, Request, Response
from requests.adapters import HTTPAdapter

from analytics_assets.source.settings import PAGE_SIZE, RETRY_STATUSES
from analytics_assets.source.tokens import ManagementTokenAuth


class AnalyticsApiError(RuntimeError):
    """The API answered something we cannot use; the message names the endpoint."""


class RepeatingCursorError(AnalyticsApiError):
    """The API handed back a cursor it had already given: following it would never end."""


class EndlessPagesError(AnalyticsApiError):
    """More pages than any real listing has: stop rather than page forever."""


class MalformedResponseError(AnalyticsApiError):
    """A success status with a body that is not the JSON object the endpoint returns."""


def endpoint_of(response: Response) -> str:
    return f"{response.request.method} {str(response.url).split('?', 1)[0]}"


def quote_id(value: str) -> str:
    """An id as one path segment: dlt puts values into paths as they are, so `/`, `?`, `#` or a
    space in an id would change the URL."""
    return quote(str(value), safe="")


class RateGate:
    """Shared by every worker: when the API answers 429, all of them wait out `Retry-After`,
    not only the one that was told (which would let the others keep hammering)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resume_at = 0.0

    def wait(self) -> None:
        with self._lock:
            delay = self._resume_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._resume_at = max(self._resume_at, time.monotonic() + seconds)


class GatedAdapter(HTTPAdapter):
    """Every attempt, retries included, passes the gate; a 429 closes it for everyone. Each
    answer is checked to be JSON here, below dlt's client, so that no path can skip it."""

    def __init__(self, gate: RateGate, *, default_wait: float, max_wait: float, **kwargs: Any):
        super().__init__(**kwargs)
        self.gate = gate
        self.default_wait = default_wait
        self.max_wait = max_wait

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        self.gate.wait()
        response = super().send(request, *args, **kwargs)
        if response.status_code == 429:
            self.gate.hold(min(self.max_wait, _retry_after(response, self.default_wait)))
        return _require_json(response)


def _retry_after(response: Response, default: float) -> float:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.strip().isdigit() else default


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
            f"{endpoint_of(response)} answered {response.status_code} with a body that is not "
            f"JSON (Content-Type {response.headers.get('Content-Type')!r}): {snippet!r}"
        ) from None
    if not isinstance(parsed, dict):
        raise MalformedResponseError(
            f"{endpoint_of(response)} answered {type(parsed).__name__} where a JSON object was due"
        )
    response.json = lambda **_: parsed  # type: ignore[method-assign]
    return response


class GuardedCursorPaginator(JSONResponseCursorPaginator):
    """`start`-cursor pagination that refuses to loop.

    dlt has no guard: an API bug or a stale token that repeats a cursor, or hands out fresh
    cursors forever, pages without end. `stop_after_empty_page` covers the reference's lists,
    whose final page still carries `last` and is followed by an empty page.
    """

    def __init__(self, cursor_path: str, *, max_pages: int) -> None:
        super().__init__(cursor_path=cursor_path, cursor_param="start", stop_after_empty_page=True)
        self.max_pages = max_pages
        self._seen: set[str] = set()

    def init_request(self, request: Request) -> None:
        self._seen = set()
        super().init_request(request)

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        super().update_state(response, data)
        cursor = self._next_reference
        if not self.has_next_page or cursor is None:
            return
        if cursor in self._seen:
            raise RepeatingCursorError(
                f"{endpoint_of(response)} returned the cursor {cursor!r} twice; "
                "stopping instead of looping"
            )
        self._seen.add(cursor)
        if len(self._seen) >= self.max_pages:
            raise EndlessPagesError(
                f"{endpoint_of(response)} still had more after {self.max_pages} pages "
                f"({self.max_pages * PAGE_SIZE} rows); stopping instead of paging forever "
                "(raise max_pages if a listing really is this long)"
            )


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
        timeout: float,
        max_pages: int,
        workers: int,
    ) -> None:
        # raise_for_status stays off: dlt's REST client raises itself, after our 404 handling.
        session = Client(
            request_timeout=timeout,
            raise_for_status=False,
            status_codes=RETRY_STATUSES,
            request_max_attempts=max_attempts,
            request_backoff_factor=backoff_factor,
            request_max_retry_delay=max_retry_delay,
            respect_retry_after_header=True,
        ).session
        adapter = GatedAdapter(
            RateGate(),
            default_wait=backoff_factor,
            max_wait=max_retry_delay,
            pool_maxsize=max(10, workers * 2),
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self.rest = RESTClient(base_url=base_url, auth=auth, session=session)
        self.max_pages = max_pages
        self.workers = workers

    def pages(
        self, path: str, params: dict[str, Any], *, cursor: str, selector: str
    ) -> Iterator[list[Any]]:
        """Every page of a cursor-paginated listing, `limit` at its maximum."""
        return self.rest.paginate(
            path,
            params={"limit": PAGE_SIZE, **params},
            paginator=GuardedCursorPaginator(cursor, max_pages=self.max_pages),
            data_selector=selector,
        )

    def rows(self, path: str, params: dict[str, Any], *, cursor: str, selector: str) -> list[Any]:
        pages = self.pages(path, params, cursor=cursor, selector=selector)
        return [row for page in pages for row in page]

    def get_object(self, path: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
        """One bare JSON object; None for a 404 when `missing_ok`."""
        response = self.rest.get(path)
        if missing_ok and response.status_code == 404:
            return None
        response.raise_for_status()  # "401 Client Error: Unauthorized for url: <endpoint>"
        return response.json()
