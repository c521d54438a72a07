"""`ListPaginator` and `NextPaginator` page by page, on `Mock(Response)`s: every way the vendor
has ended a list, both readings of `start`, and the guards against paging forever."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast
from unittest.mock import Mock

import pytest
from dlt.sources.helpers.rest_client.paginators import BasePaginator
from requests import Request, Response

from analytics_assets.source.errors import EndlessPagesError, RepeatingCursorError
from analytics_assets.source.pagination import ListPaginator, NextPaginator

SESSIONS = "http://api.test/v2/sessions"
EVENTS = "http://api.test/v2/analytics/events"


@dataclass
class Walk:
    """What paging through the bodies did: each page's fresh objects (lists), the `start` of
    each request after the first, and how many bodies were read before the end."""

    fresh: list[list[str]] = field(default_factory=list)
    starts: list[str | None] = field(default_factory=list)
    pages: int = 0
    params: dict[str, Any] = field(default_factory=dict)


def params_of(request: Request) -> dict[str, Any]:
    return cast(dict[str, Any], request.params)


def walk(paginator: BasePaginator, bodies: list[dict[str, Any]], url: str = SESSIONS) -> Walk:
    """Feeds the bodies, one a page, until the paginator says there is no next page; fails the
    test if it wants more pages than the bodies."""
    request = Request("GET", url, params={"limit": 2})
    paginator.init_request(request)
    response = Mock(Response)
    response.request = request
    done = Walk()
    for body in bodies:
        paginator.update_state(response, [body])
        done.pages += 1
        if isinstance(paginator, ListPaginator):
            done.fresh.append([item["id"] for item in paginator.fresh])
        if not paginator.has_next_page:
            done.params = dict(params_of(request))
            return done
        paginator.update_request(request)
        done.starts.append(params_of(request)["start"])
    raise AssertionError(f"still wants a page after {len(bodies)}: {done}")


def page(*ids: str, last: str | None = None, limit: int | None = 2, **more: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"data": [{"id": i} for i in ids], **more}
    if limit is not None:
        body["limit"] = limit
    if last is not None:
        body["last"] = last
    return body


def lister(max_pages: int = 100, limit: int = 2) -> ListPaginator:
    return ListPaginator(max_pages=max_pages, limit=limit)


def test_quirk_list_end_data_null_ends_the_listing() -> None:
    done = walk(lister(), [page("a", "b", last="b"), {"limit": 2, "data": None}])
    assert done.fresh == [["a", "b"], []]
    assert done.starts == ["b"]
    assert done.pages == 2


def test_quirk_list_end_last_empty_string_on_a_full_final_page_ends_the_listing() -> None:
    done = walk(lister(), [page("a", "b", last="b"), page("c", "d", last="")])
    assert done.fresh == [["a", "b"], ["c", "d"]]
    assert done.starts == ["b"]


def test_quirk_list_end_last_kept_on_a_short_final_page_ends_the_listing() -> None:
    done = walk(lister(), [page("a", "b", last="b"), page("c", last="c")])
    assert done.fresh == [["a", "b"], ["c"]]
    assert done.starts == ["b"]


def test_the_bodys_limit_decides_a_full_page_over_the_one_asked_for() -> None:
    # asked for 100, the API applied 2: a page of 2 is full, so the listing goes on
    done = walk(lister(limit=100), [page("a", "b", last="b"), page("c", last="c")])
    assert done.starts == ["b"]
    assert done.fresh == [["a", "b"], ["c"]]


def test_without_a_limit_in_the_body_the_limit_asked_for_decides() -> None:
    one = walk(lister(limit=100), [page("a", "b", last="b", limit=None)])
    assert (one.pages, one.starts) == (1, [])  # 2 of 100: short, the end
    two = walk(lister(limit=2), [page("a", "b", last="b", limit=None), page("c", limit=None)])
    assert (two.pages, two.starts) == (2, ["b"])


def test_quirk_list_end_no_last_ends_the_listing() -> None:
    done = walk(lister(), [page("a", "b")])
    assert done.fresh == [["a", "b"]]
    assert done.pages == 1


def test_quirk_list_end_full_final_page_then_an_empty_page_ends_the_listing() -> None:
    done = walk(lister(), [page("a", "b", last="b"), page("c", "d", last="d"), page()])
    assert done.fresh == [["a", "b"], ["c", "d"], []]
    assert done.starts == ["b", "d"]


def test_start_is_sent_with_the_requests_other_params() -> None:
    done = walk(lister(), [page("a", "b", last="b"), page("c", last="c")])
    assert done.params == {"limit": 2, "start": "b"}


def test_quirk_inclusive_start_each_object_is_fresh_once_and_the_listing_ends() -> None:
    bodies = [
        page("a", "b", last="b"),
        page("b", "c", last="c"),  # repeats the object `start` named
        page("c", "d", last="d"),
        page("d", last="d"),  # the page after the last: only the named object again
    ]
    done = walk(lister(), bodies)
    assert done.fresh == [["a", "b"], ["c"], ["d"], []]
    assert done.starts == ["b", "c", "d"]


def test_quirk_api_ignoring_start_raises_repeating_cursor_naming_the_endpoint() -> None:
    with pytest.raises(RepeatingCursorError) as raised:
        walk(lister(), [page("a", "b", last="b"), page("a", "b", last="b")])
    assert f"GET {SESSIONS}" in str(raised.value)
    assert "start='b'" in str(raised.value)


def test_a_last_that_repeats_while_pages_bring_new_objects_raises_repeating_cursor() -> None:
    with pytest.raises(RepeatingCursorError) as raised:
        walk(lister(), [page("a", "b", last="x"), page("c", "d", last="x")])
    assert f"GET {SESSIONS}" in str(raised.value)
    assert "'x' twice" in str(raised.value)


def test_more_pages_than_max_pages_raises_endless_pages() -> None:
    bodies = [page("a", "b", last="b"), page("c", "d", last="d"), page("e", "f", last="f")]
    with pytest.raises(EndlessPagesError) as raised:
        walk(lister(max_pages=2), bodies)
    assert f"GET {SESSIONS}" in str(raised.value)
    assert "after 2 pages" in str(raised.value)


def test_a_listing_of_exactly_max_pages_ends_without_error() -> None:
    done = walk(lister(max_pages=2), [page("a", "b", last="b"), page("c", last="c")])
    assert done.pages == 2


def test_init_request_forgets_the_previous_listing() -> None:
    paginator = lister()
    walk(paginator, [page("a", "b", last="b"), page("c", last="c")])
    again = walk(paginator, [page("a", "b", last="b"), page("c", last="c")])
    assert again.fresh == [["a", "b"], ["c"]]


# ---- events ---------------------------------------------------------------------------------


def events(*ids: str, next: str | None = None, **more: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"limit": 2, "total": 9, "events": [{"id": i} for i in ids], **more}
    if next is not None:
        body["next"] = next
    return body


def nexter(max_pages: int = 100) -> NextPaginator:
    return NextPaginator(max_pages=max_pages)


def test_events_next_is_followed_as_start_until_it_is_empty() -> None:
    done = walk(nexter(), [events("e1", "e2", next="n1"), events("e3", next="")], EVENTS)
    assert done.starts == ["n1"]
    assert done.pages == 2
    assert done.params == {"limit": 2, "start": "n1"}


def test_events_absent_next_ends() -> None:
    done = walk(nexter(), [events("e1", "e2", next="n1"), events("e3", "e4")], EVENTS)
    assert (done.pages, done.starts) == (2, ["n1"])


def test_quirk_events_null_ends() -> None:
    done = walk(nexter(), [{"limit": 2, "total": 0, "events": None}], EVENTS)
    assert (done.pages, done.starts) == (1, [])


def test_events_a_repeating_next_raises_repeating_cursor() -> None:
    with pytest.raises(RepeatingCursorError) as raised:
        walk(nexter(), [events("e1", next="n1"), events("e2", next="n1")], EVENTS)
    assert f"GET {EVENTS}" in str(raised.value)


def test_events_a_page_of_only_events_already_seen_raises_repeating_cursor() -> None:
    bodies = [events("e1", "e2", next="n1"), events("e1", "e2", next="n2")]
    with pytest.raises(RepeatingCursorError) as raised:
        walk(nexter(), bodies, EVENTS)
    assert f"GET {EVENTS}" in str(raised.value)
    assert "start='n1'" in str(raised.value)


def test_events_more_pages_than_max_pages_raises_endless_pages() -> None:
    bodies = [events("e1", next="n1"), events("e2", next="n2"), events("e3", next="n3")]
    with pytest.raises(EndlessPagesError) as raised:
        walk(nexter(max_pages=2), bodies, EVENTS)
    assert f"GET {EVENTS}" in str(raised.value)
