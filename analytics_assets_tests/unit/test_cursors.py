"""Session cursors: times compared as times, the committed cursor bounded by the API's clock
when the listing started, never moved backwards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from analytics_assets.source.cursors import (
    NEVER,
    CursorTracker,
    SessionCursor,
    bounded,
    format_time,
    parse_time,
)

ZERO = "0001-01-01T00:00:00Z"
T0 = datetime(2024, 7, 17, 11, 0, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def session(sid: str, created: datetime, *, active: bool = False) -> dict[str, Any]:
    return {"id": sid, "room_id": "r1", "created_at": iso(created), "active": active}


def test_parse_time_reads_the_zero_time_as_the_oldest_time() -> None:
    assert parse_time(ZERO) == NEVER
    assert parse_time(ZERO) < parse_time("1999-01-01T00:00:00Z")


def test_parse_time_compares_fractions_of_any_length_as_times() -> None:
    assert parse_time("2024-07-17T11:00:00.65Z") > parse_time("2024-07-17T11:00:00.6499999Z")
    assert parse_time("2024-07-17T11:00:00.783118980Z") == datetime(
        2024, 7, 17, 11, 0, 0, 783118, tzinfo=UTC
    )
    assert parse_time(T0) is T0


def test_format_time_writes_the_filters_millisecond_format_in_utc() -> None:
    moment = datetime(2024, 7, 17, 13, 0, 0, 123999, tzinfo=UTC)
    assert format_time(moment) == "2024-07-17T13:00:00.123Z"
    assert parse_time(format_time(T0)) == T0


@pytest.mark.parametrize(
    ("created", "bound", "expected"),
    [
        (None, T0, None),
        ("2024-07-17T12:00:00Z", None, "2024-07-17T12:00:00Z"),
        ("2024-07-17T10:59:59.5Z", T0, "2024-07-17T10:59:59.5Z"),  # before the bound: as seen
        ("2024-07-17T11:00:00Z", T0, "2024-07-17T11:00:00Z"),
        ("2024-07-17T11:00:00.001Z", T0, "2024-07-17T11:00:00.000Z"),  # past it: the bound
    ],
)
def test_bounded_never_passes_the_bound(
    created: str | None, bound: datetime | None, expected: str | None
) -> None:
    assert bounded(created, bound) == expected


def test_resume_after_is_the_oldest_of_created_and_live_less_the_margin() -> None:
    cursor = SessionCursor(
        created=iso(T0),
        live={"s1": iso(T0 - timedelta(hours=3)), "s2": iso(T0 - timedelta(hours=1))},
    )
    assert cursor.resume_after(timedelta(minutes=5)) == T0 - timedelta(hours=3, minutes=5)
    assert SessionCursor(created=iso(T0)).resume_after(timedelta(0)) == T0


def test_from_state_is_none_without_a_created_cursor() -> None:
    assert SessionCursor.from_state({}) is None
    assert SessionCursor.from_state({"created": "", "live": {"s": iso(T0)}}) is None
    assert SessionCursor.from_state({"created": iso(T0)}) == SessionCursor(iso(T0), {})


def test_has_activity_means_new_live_now_or_live_last_time() -> None:
    margin = timedelta(minutes=5)
    cursor = SessionCursor(created=iso(T0), live={"was-live": iso(T0 - timedelta(days=2))})
    old = T0 - timedelta(days=1)
    assert cursor.has_activity(session("new", T0 + timedelta(seconds=1)), margin)
    assert cursor.has_activity(session("in-margin", T0 - timedelta(minutes=4)), margin)
    assert cursor.has_activity(session("live", old, active=True), margin)
    assert cursor.has_activity(session("was-live", old), margin)
    assert not cursor.has_activity(session("ended-long-ago", old), margin)
    assert not cursor.has_activity(session("before-margin", T0 - timedelta(minutes=6)), margin)


def test_commit_never_passes_the_bound() -> None:
    state: dict[str, Any] = {}
    tracker = CursorTracker(state)
    tracker.observe(session("a", T0 - timedelta(minutes=10)))
    tracker.observe(session("b", T0 + timedelta(minutes=10)))
    tracker.commit(T0)
    assert state == {"created": format_time(T0), "live": {}}


def test_commit_without_a_bound_keeps_the_newest_seen() -> None:
    state: dict[str, Any] = {}
    tracker = CursorTracker(state)
    tracker.observe(session("b", T0 + timedelta(minutes=10)))
    tracker.observe(session("a", T0 - timedelta(minutes=10)))  # order does not matter
    tracker.commit(None)
    assert state["created"] == iso(T0 + timedelta(minutes=10))


def test_commit_never_moves_the_cursor_backwards() -> None:
    state: dict[str, Any] = {"created": iso(T0), "live": {}}
    tracker = CursorTracker(state)
    tracker.observe(session("late", T0 + timedelta(hours=1)))
    tracker.commit(T0 - timedelta(hours=1))  # an API clock behind the last cursor
    assert state["created"] == iso(T0)


def test_commit_replaces_live_with_what_was_seen_live() -> None:
    state: dict[str, Any] = {"created": iso(T0), "live": {"old-live": iso(T0)}}
    tracker = CursorTracker(state)
    tracker.observe(session("old-live", T0))  # it has ended since
    tracker.observe(session("now-live", T0 + timedelta(minutes=1), active=True))
    tracker.commit(T0 + timedelta(hours=1))
    assert state["live"] == {"now-live": iso(T0 + timedelta(minutes=1))}
    assert state["created"] == iso(T0 + timedelta(minutes=1))


def test_commit_with_nothing_seen_keeps_the_previous_cursor_and_clears_live() -> None:
    state: dict[str, Any] = {"created": iso(T0), "live": {"s": iso(T0)}}
    CursorTracker(state).commit(T0 + timedelta(hours=1))
    assert state == {"created": iso(T0), "live": {}}


def test_a_session_starting_while_the_listing_pages_is_read_by_the_next_run() -> None:
    """S starts after the run read its `active=true` page (so that page lacks it); T starts
    later still and ends before the `active=false` page is read (so that page has T, not S, who
    is still live). A cursor at T's start would skip S for good; the bound keeps it."""
    margin = timedelta(seconds=30)
    bound = T0  # the API's clock when the listing began: the active=true page
    s_started = T0 + timedelta(minutes=1)
    t = session("T", T0 + timedelta(minutes=15))  # ended at +20 min; the ended page at +25 min

    def next_run_resumes_after(commit_bound: datetime | None) -> datetime:
        state: dict[str, Any] = {"created": iso(T0 - timedelta(hours=1)), "live": {}}
        tracker = CursorTracker(state)
        tracker.observe(t)  # S is on neither page
        tracker.commit(commit_bound)
        cursor = SessionCursor.from_state(state)
        assert cursor is not None
        return cursor.resume_after(margin)

    assert next_run_resumes_after(bound) <= s_started
    assert next_run_resumes_after(None) > s_started  # what the bound prevents
