"""Pagination of the analytics API, correct under every reading of the reference, and refusing
to loop where dlt's own paginators would page forever (a cursor that repeats, pages without end).

Both paginators receive the page's whole body (`ApiRestClient.extract_response` parses it once
and hands it on) and read their cursor and rows from it.
"""

from __future__ import annotations

from typing import Any

from dlt.sources.helpers.rest_client.paginators import BasePaginator
from requests import Request, Response

from analytics_assets.source.errors import EndlessPagesError, RepeatingCursorError, endpoint_of
from analytics_assets.source.settings import PAGE_SIZE


def _body(data: list[Any] | None) -> dict[str, Any]:
    return data[0] if data else {}


def _rows(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The page's objects: `data: null` ("or null if no session was found") is an empty page."""
    rows = body.get(key)
    return rows if isinstance(rows, list) else []


class ListPaginator(BasePaginator):
    """`limit`/`start`/`last` pagination of rooms, sessions, templates and recordings.

    The end of a list has been seen three ways: `last` kept on a short final page, `last: ""`
    on the final page, and a page whose `data` is empty or null. The vendor's own client stops
    at a page shorter than its `limit`, or at a missing or empty `last`; so does this one (the
    `limit` the body says it applied, else the one asked for), and at a page that brings no
    object it has not seen.

    The reference does not say whether `start` includes the object it names. Read inclusively,
    every page repeats the previous page's last object: `fresh` holds each page's new objects,
    so the repeated one is loaded once, and the page after the last holds only it (nothing new:
    the end).

    A page that brings nothing new but holds objects other than the one `start` named means the
    API ignores the cursor; a cursor that comes back while pages still bring new objects means
    it never moves. Both would page forever: they stop with the endpoint named.
    """

    def __init__(self, *, max_pages: int, limit: int = PAGE_SIZE) -> None:
        super().__init__()
        self.max_pages = max_pages
        self.limit = limit
        self.fresh: list[dict[str, Any]] = []
        self._seen: set[str] = set()
        self._cursors: set[str] = set()
        self._start: str | None = None
        self._pages = 0

    def init_request(self, request: Request) -> None:
        self._seen, self._cursors, self._start, self._pages = set(), set(), None, 0
        self._has_next_page = True

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        self._pages += 1
        body = _body(data)
        items = _rows(body, "data")
        self.fresh = [item for item in items if item["id"] not in self._seen]
        self._seen.update(item["id"] for item in self.fresh)
        if not self.fresh:
            if any(item["id"] != self._start for item in items):
                raise RepeatingCursorError(
                    f"{endpoint_of(response.request)} answered start={self._start!r} with a "
                    "page it had already sent: the API is not following the cursor; stopping "
                    "instead of looping"
                )
            self._has_next_page = False  # empty, or only the object `start` named: the end
            return
        cursor = body.get("last")
        if cursor and cursor in self._cursors:
            raise RepeatingCursorError(
                f"{endpoint_of(response.request)} returned the cursor {cursor!r} twice while "
                "its pages still bring new objects; stopping instead of paging forever"
            )
        said = body.get("limit")
        limit = said if isinstance(said, int) and said > 0 else self.limit
        if not cursor or len(items) < limit:
            self._has_next_page = False
            return
        self._cursors.add(cursor)
        self._start = cursor
        if self._pages >= self.max_pages:
            raise EndlessPagesError(_too_many(response, self.max_pages))

    def update_request(self, request: Request) -> None:
        request.params = {**(request.params or {}), "start": self._start}  # type: ignore[dict-item]


class NextPaginator(BasePaginator):
    """Events: `next` passed back as `start` until it is empty or absent.

    dlt's JSON cursor paginator would do, but it reads the body again for its cursor, and it has
    no guard: a `next` that repeats, fresh ones forever, or pages that bring only events already
    seen (an API that ignores `start`) would page without end. Those stop with the endpoint
    named.
    """

    def __init__(self, *, max_pages: int) -> None:
        super().__init__()
        self.max_pages = max_pages
        self._cursors: set[str] = set()
        self._seen: set[str] = set()
        self._next: str | None = None

    def init_request(self, request: Request) -> None:
        self._cursors, self._seen, self._next = set(), set(), None
        self._has_next_page = True

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        ids, cursor = _events_of(data[0] if data else {})
        fresh = {str(i) for i in ids} - self._seen
        self._seen |= fresh
        items = ids
        if not cursor:
            self._has_next_page = False
            return
        if items and not fresh:
            raise RepeatingCursorError(
                f"{endpoint_of(response.request)} answered start={self._next!r} with events it "
                "had already sent: the API is not following the cursor; stopping instead of "
                "looping"
            )
        if cursor in self._cursors:
            raise RepeatingCursorError(
                f"{endpoint_of(response.request)} returned the cursor {cursor!r} twice; "
                "stopping instead of looping"
            )
        self._cursors.add(cursor)
        self._next = cursor
        if len(self._cursors) >= self.max_pages:
            raise EndlessPagesError(_too_many(response, self.max_pages))

    def update_request(self, request: Request) -> None:
        request.params = {**(request.params or {}), "start": self._next}  # type: ignore[dict-item]


def _events_of(body: dict[str, Any]) -> tuple[list[Any], Any]:
    """The ids of a page's events and its `next`."""
    return [item.get("id") for item in _rows(body, "events")], body.get("next")


def _too_many(response: Response, max_pages: int) -> str:
    return (
        f"{endpoint_of(response.request)} still had more after {max_pages} pages "
        f"({max_pages * PAGE_SIZE} rows); stopping instead of paging forever "
        "(raise max_pages if a listing really is this long)"
    )
