"""The few ways the source reads the API, on dlt's REST client.

- `ApiRestClient` is dlt's `RESTClient` with one public method overridden: `extract_response`
  parses each page once (orjson), refuses a 2xx whose body is not a JSON object (an HTML error
  page from a proxy, a body cut short with a consistent length), naming the endpoint, and
  hands the whole body on, so the paginators read their cursor from it without parsing again.
- Its session is a `RetryingSession` (`retries.py`): the retry policy and the 429 gate around
  every request, body read included.
- `ApiClock` keeps the API's own "now" (its `Date` header): lookbacks, windows and cursor
  bounds are measured on it, not on this machine's clock.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import orjson
import requests
from dlt.common.jsonpath import TJsonPath
from dlt.sources.helpers.rest_client import RESTClient
from requests import Response
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

from analytics_assets.source.errors import ApiHttpError, MalformedResponseError, endpoint_of
from analytics_assets.source.pagination import ListPaginator, NextPaginator
from analytics_assets.source.retries import RetryingSession, RetryPolicy
from analytics_assets.source.settings import PAGE_SIZE

#: dlt's paginate selects "the whole body": the paginators and readers pick from it.
WHOLE_BODY = "$"
#: Our own error handling (`RetryingSession`) replaces dlt's raise-for-status hook.
NO_HOOKS: dict[str, list[Any]] = {"response": []}


def quote_id(value: str) -> str:
    """An id as one path segment: dlt puts values into paths as they are, so `/`, `?`, `#` or a
    space in an id would change the URL."""
    return quote(str(value), safe="")


def parse_date(header: str | None) -> datetime | None:
    """An HTTP `Date` header as an aware datetime; None if absent or unreadable."""
    if not header:
        return None
    try:
        seen = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return seen if seen.tzinfo is not None else None


class ApiClock:
    """The API's own "now", from the `Date` header of its answers (the newest seen)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now: datetime | None = None

    def observe(self, header: str | None) -> None:
        seen = parse_date(header)
        if seen is None:
            return
        with self._lock:
            if self._now is None or seen > self._now:
                self._now = seen

    def now(self) -> datetime | None:
        with self._lock:
            return self._now


def parse_body(response: Response) -> dict[str, Any]:
    """The body as the JSON object every endpoint answers, parsed once, or an error naming the
    endpoint (never the body of a JSON answer: it may hold customers' data)."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        try:  # what orjson refuses and the standard library reads (NaN, Infinity)
            body = json.loads(response.content)
        except ValueError:
            kind = response.headers.get("Content-Type", "")
            # A proxy's page says what went wrong; anything else may hold customers' data.
            page = kind.lower().startswith("text/html")
            shown = f": {response.text[:120].replace(chr(10), ' ')!r}" if page else ""
            raise MalformedResponseError(
                f"{endpoint_of(response.request)} answered {response.status_code} with a body "
                f"that is not JSON (Content-Type {kind!r}){shown}"
            ) from None
    if not isinstance(body, dict):
        raise MalformedResponseError(
            f"{endpoint_of(response.request)} answered {type(body).__name__} where a JSON "
            "object was due"
        )
    return body


def read_environment_once(session: requests.Session, base_url: str) -> None:
    """Proxies and CA bundle as the environment sets them for the API's host, read once.

    With `trust_env` on, requests scans the environment again for every request (about 0.2 ms
    each, measured: a second per 6,000 requests). Every request of a run goes to the one base
    URL, so the settings requests would find are read here, through its public
    `merge_environment_settings`, and kept on the session (`.netrc`, the one thing more that
    `trust_env` reads, is not used: the auth is always set). The one difference: a redirect to
    another host goes the way the API's host does (the API does not redirect elsewhere)."""
    found = session.merge_environment_settings(base_url, {}, None, None, None)
    session.proxies.update(found["proxies"])
    session.verify = found["verify"]
    session.trust_env = False


class ApiRestClient(RESTClient):
    """dlt's REST client, each page parsed once and handed on whole."""

    def extract_response(self, response: Response, data_selector: TJsonPath) -> list[Any]:
        return [parse_body(response)]


@dataclass(frozen=True)
class ListPage:
    """The objects a listing page brought that earlier pages had not, and when it was served
    (the API's clock)."""

    items: list[dict[str, Any]]
    served_at: datetime | None


@dataclass(frozen=True)
class EventPage:
    """One page of `/v2/analytics/events`, with the `total` its body counts and when it was
    served (the API's clock)."""

    events: list[dict[str, Any]]
    total: int
    served_at: datetime | None


class AnalyticsApiClient:
    """Listings, event pages and single objects of the API."""

    def __init__(
        self,
        base_url: str,
        auth: AuthBase,
        *,
        policy: RetryPolicy,
        max_pages: int,
        workers: int,
    ) -> None:
        self.clock = ApiClock()
        session = RetryingSession(policy, on_date=self.clock.observe, token_auth=auth)
        read_environment_once(session, base_url)
        adapter = HTTPAdapter(pool_maxsize=max(10, workers * 2))
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self.rest = ApiRestClient(base_url=base_url, auth=auth, session=session)
        self.max_pages = max_pages
        self.workers = workers

    def list_pages(self, path: str, params: dict[str, Any]) -> Iterator[ListPage]:
        """Every object of a `limit`/`start`/`last` listing once, a page at a time, correct
        under every reading of `start` and of the list's end (see `ListPaginator`). Every page
        is yielded, the empty ones too: the first one's time is when the listing began."""
        paginator = ListPaginator(max_pages=self.max_pages)
        for page in self.rest.paginate(
            path,
            params={"limit": PAGE_SIZE, **params},
            paginator=paginator,
            data_selector=WHOLE_BODY,
            hooks=dict(NO_HOOKS),
        ):
            yield ListPage(paginator.fresh, parse_date(page.response.headers.get("Date")))

    def event_pages(self, params: dict[str, Any], *, limit: int = PAGE_SIZE) -> Iterator[EventPage]:
        """Pages of `/v2/analytics/events`, followed by `next`."""
        for page in self.rest.paginate(
            "/v2/analytics/events",
            params={"limit": limit, **params},
            paginator=NextPaginator(max_pages=self.max_pages),
            data_selector=WHOLE_BODY,
            hooks=dict(NO_HOOKS),
        ):
            body = page[0]
            events = body.get("events")
            yield EventPage(
                events if isinstance(events, list) else [],
                int(body.get("total") or 0),
                parse_date(page.response.headers.get("Date")),
            )

    def get_object(self, path: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
        """One bare JSON object; None for a 404 when `missing_ok`."""
        try:
            response = self.rest.get(path)
        except ApiHttpError as exc:
            if missing_ok and exc.status == 404:
                return None
            raise
        return parse_body(response)

    def now(self) -> datetime | None:
        """The API's clock, once it has answered."""
        return self.clock.now()

    def close(self) -> None:
        self.rest.session.close()
