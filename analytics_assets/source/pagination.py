"""Pagination of the analytics API, correct under every reading of the reference, and refusing
to loop where dlt's own paginators would page forever (a cursor that repeats, pages without end).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from dlt.sources.helpers.rest_client.paginators import BasePaginator
from requests import Request, Response

from analytics_assets.source.settings import PAGE_SIZE


class RepeatingCursorError(RuntimeError):
    """The API handed back a cursor, or a page, it had already given: following it would never
    end. The message names the endpoint."""


class EndlessPagesError(RuntimeError):
    """More pages than any real listing has: stop rather than page forever."""


def endpoint_of(request: Any) -> str:
    """`GET https://host/v2/path`: the method and URL without the query (no ids of filters,
    no tokens) and without credentials a URL may carry (`user:password@`)."""
    url = urlsplit(str(request.url))
    port = f":{url.port}" if url.port else ""
    return f"{request.method} {url.scheme}://{url.hostname}{port}{url.path}"


def _endpoint(response: Response) -> str:
    return endpoint_of(response.request)


class ListPaginator(BasePaginator):
    """`limit`/`start`/`last` pagination of rooms, sessions, templates and recordings.

    The reference does not say whether `start` includes the object it names. Read exclusively,
    the page after the last one is empty (or the last page carries no `last`); read
    inclusively, every page repeats the previous page's last object and the page after the last
    one holds only that object again, with `last` unchanged. One rule ends both: a listing ends
    when a page brings no object it has not seen. `fresh` holds each page's new objects, so the
    repeated one is loaded once.

    A page that brings nothing new but holds objects other than the one `start` named means the
    API ignores the cursor; a cursor that comes back while pages still bring new objects means
    it never moves. Both would page forever: they stop with the endpoint named.
    """

    def __init__(self, *, max_pages: int) -> None:
        super().__init__()
        self.max_pages = max_pages
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
        items = data or []
        self.fresh = [item for item in items if item["id"] not in self._seen]
        self._seen.update(item["id"] for item in self.fresh)
        if not self.fresh:
            if any(item["id"] != self._start for item in items):
                raise RepeatingCursorError(
                    f"{_endpoint(response)} answered start={self._start!r} with a page it had "
                    "already sent: the API is not following the cursor; stopping instead of "
                    "looping"
                )
            self._has_next_page = False  # empty, or only the object `start` named: the end
            return
        cursor = response.json().get("last")
        if not cursor:
            self._has_next_page = False
            return
        if cursor in self._cursors:
            raise RepeatingCursorError(
                f"{_endpoint(response)} returned the cursor {cursor!r} twice while its pages "
                "still bring new objects; stopping instead of paging forever"
            )
        self._cursors.add(cursor)
        self._start = cursor
        if self._pages >= self.max_pages:
            raise EndlessPagesError(_too_many(response, self.max_pages))

    def update_request(self, request: Request) -> None:
        params = dict(request.params or {})  # type: ignore[arg-type]
        params["start"] = self._start
        request.params = params


class NextPaginator(BasePaginator):
    """Events: `next` passed back as `start` until it is empty or absent.

    dlt's JSON cursor paginator would do, but it compiles its JSONPath for every instance (one
    per room here: a quarter of a second of a full load), and it has no guard: a `next` that
    repeats, fresh ones forever, or pages that bring only events already seen (an API that
    ignores `start`) would page without end. Those stop with the endpoint named.
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
        items = data or []
        fresh = [item for item in items if item.get("id") not in self._seen]
        self._seen.update(item.get("id") for item in fresh)
        cursor = response.json().get("next")
        if not cursor:
            self._has_next_page = False
            return
        if items and not fresh:
            raise RepeatingCursorError(
                f"{_endpoint(response)} answered start={self._next!r} with events it had "
                "already sent: the API is not following the cursor; stopping instead of looping"
            )
        if cursor in self._cursors:
            raise RepeatingCursorError(
                f"{_endpoint(response)} returned the cursor {cursor!r} twice; "
                "stopping instead of looping"
            )
        self._cursors.add(cursor)
        self._next = cursor
        if len(self._cursors) >= self.max_pages:
            raise EndlessPagesError(_too_many(response, self.max_pages))

    def update_request(self, request: Request) -> None:
        params = dict(request.params or {})  # type: ignore[arg-type]
        params["start"] = self._next
        request.params = params


def _too_many(response: Response, max_pages: int) -> str:
    return (
        f"{_endpoint(response)} still had more after {max_pages} pages "
        f"({max_pages * PAGE_SIZE} rows); stopping instead of paging forever "
        "(raise max_pages if a listing really is this long)"
    )
