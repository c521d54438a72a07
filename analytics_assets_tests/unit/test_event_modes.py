"""The events table's three rules, one function each (`first_load`, `refresh`, `reconcile`), over
an in-memory client and state: which rooms each reads, and what each keeps in the state."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from analytics_assets.source.client import ListPage
from analytics_assets.source.cursors import CursorTracker, format_time
from analytics_assets.source.run import LOCAL_CLOCK_ALLOWANCE, Run, RunSettings
from analytics_assets.source.tables.analytics_events import (
    RoomEvents,
    first_load,
    reconcile,
    refresh,
)
from analytics_assets_tests.unit.test_analytics_events import (
    RETENTION,
    SERVED_AT,
    FakeClient,
    event,
)

HOUR = timedelta(hours=1)


def session(sid: str, room: str, *, active: bool, started: datetime, ended: datetime) -> dict:
    return {
        "id": sid,
        "room_id": room,
        "active": active,
        "created_at": format_time(started),
        "updated_at": format_time(ended),
        "peers": {},
    }


class ListingClient(FakeClient):
    """A `FakeClient` that also lists rooms and sessions (`active=true`, then `false`)."""

    def __init__(self, events: dict, rooms: list[str], sessions: list[dict]) -> None:
        super().__init__(events)
        self.rooms = rooms
        self.sessions = sessions
        self.listed: list[tuple[str, dict[str, Any]]] = []
        self.served_at: datetime | None = SERVED_AT  # None: answers without a `Date` header

    def list_pages(self, path: str, params: dict[str, Any]) -> Iterator[ListPage]:
        self.listed.append((path, dict(params)))
        if path == "/v2/rooms":
            found = [] if params.get("enabled") == "false" else [{"id": r} for r in self.rooms]
        else:
            active = params.get("active") == "true"
            found = [s for s in self.sessions if s["active"] == active]
        yield ListPage(found, self.served_at)


class StatefulRun(Run):
    """A run whose tables' dlt state is a dict the test holds."""

    def __init__(self, client: FakeClient, states: dict[str, dict], **settings: Any) -> None:
        defaults: dict[str, Any] = {
            "tables": frozenset({"analytics_events"}),
            "full_refresh": False,
            "sweep": False,
            "margin": timedelta(minutes=5),
            "lookback": timedelta(hours=24),
            "retention": RETENTION,
            "start_date": None,
        }
        super().__init__(client, RunSettings(**{**defaults, **settings}))  # type: ignore[arg-type]
        self.states = states

    def state(self, table: str) -> dict[str, Any]:
        return self.states.setdefault(table, {})


def rooms_read(client: FakeClient) -> set[str]:
    return {params["room_id"] for params in client.asked if "start" not in params}


def event_ids(items: list[Any]) -> set[str]:
    ids: set[str] = set()
    for item in items:
        if isinstance(item, pa.Table):
            ids |= set(item.column("id").to_pylist())
        elif isinstance(item, list):
            ids |= {row["id"] for row in item if "api_total" not in row}
    return ids


def totals(items: list[Any]) -> dict[str, int]:
    # totals come wrapped with their table hints (dlt.mark.with_hints)
    batches = [getattr(item, "data", item) for item in items]
    rows = [row for batch in batches if isinstance(batch, list) for row in batch]
    return {row["room_id"]: row["api_total"] for row in rows if "api_total" in row}


def room_events(*rooms: str) -> dict[str, list[dict[str, Any]]]:
    return {r: [event(f"{r}-e1", r, f"{r}-s", "track.add.success")] for r in rooms}


def test_first_load_reads_every_room_and_remembers_the_sessions_that_ended_lately() -> None:
    sessions = [
        session("live", "r2", active=True, started=SERVED_AT - HOUR, ended=SERVED_AT - HOUR),
        session("late", "r0", active=False, started=SERVED_AT - 3 * HOUR, ended=SERVED_AT - HOUR),
        session(
            "old", "r1", active=False, started=SERVED_AT - 99 * HOUR, ended=SERVED_AT - 98 * HOUR
        ),
    ]
    client = ListingClient(room_events("r0", "r1", "r2"), ["r0", "r1"], sessions)
    run = StatefulRun(client, {})
    state: dict[str, Any] = {}
    track = CursorTracker(state)
    items = list(first_load(RoomEvents(run), track, state))
    assert rooms_read(client) == {"r0", "r1", "r2"}  # r2 only through its session
    assert event_ids(items) == {"r0-e1", "r1-e1", "r2-e1"}
    assert totals(items) == {"r0": 1, "r1": 1, "r2": 1}
    assert set(state["recent"]) == {"late"}  # ended within 24 h of the API's clock
    assert state["last_run_at"] == SERVED_AT.isoformat()


def test_refresh_reads_only_the_rooms_with_activity_or_a_session_ended_lately() -> None:
    previous = {
        "created": format_time(SERVED_AT - 10 * HOUR),
        "live": {"was-live": format_time(SERVED_AT - 12 * HOUR)},
        "recent": {"ended-lately": ["r3", format_time(SERVED_AT - 20 * HOUR)]},
        "last_run_at": (SERVED_AT - HOUR).isoformat(),
    }
    sessions = [
        session("new", "r1", active=False, started=SERVED_AT - 2 * HOUR, ended=SERVED_AT - HOUR),
        session("live", "r2", active=True, started=SERVED_AT - 30 * HOUR, ended=SERVED_AT),
        session("was-live", "r4", active=False, started=SERVED_AT - 12 * HOUR, ended=SERVED_AT),
        session(
            "quiet", "r0", active=False, started=SERVED_AT - 50 * HOUR, ended=SERVED_AT - 49 * HOUR
        ),
    ]
    client = ListingClient(room_events("r0", "r1", "r2", "r3", "r4"), [], sessions)
    state = dict(previous)
    run = StatefulRun(client, {"analytics_events": state})
    track = CursorTracker(state)
    items = list(refresh(RoomEvents(run), track, state))
    assert rooms_read(client) == {"r1", "r2", "r3", "r4"}  # never the quiet room
    assert event_ids(items) == {"r1-e1", "r2-e1", "r3-e1", "r4-e1"}
    assert {"new", "was-live", "ended-lately"} <= set(state["recent"])
    # The session listing resumed from the cursors, less the margin.
    (_, first_listing), *_ = [x for x in client.listed if x[0] == "/v2/sessions"]
    assert first_listing["after"] == format_time(SERVED_AT - 12 * HOUR - timedelta(minutes=5))


def test_reconcile_counts_every_room_and_reads_again_only_those_that_fell_short() -> None:
    events = room_events("r0", "r1")
    events["r1"].append(event("r1-e2", "r1", "r1-s", "track.add.success", 5))
    client = ListingClient(events, ["r0", "r1"], [])

    def warehouse_counts(windows: Mapping[str, datetime]) -> Mapping[str, int]:
        assert windows == {"r0": SERVED_AT - RETENTION, "r1": SERVED_AT - RETENTION}
        return {"r0": 1, "r1": 1}  # r1 lacks one event

    run = StatefulRun(client, {}, sweep=True, event_counts=warehouse_counts)
    items = list(reconcile(RoomEvents(run)))
    counted = [params for params in client.asked if params.get("limit") == 1]
    assert sorted(p["room_id"] for p in counted) == ["r0", "r1"]
    assert [p["room_id"] for p in client.asked if p.get("limit") == 100] == ["r1"]
    assert event_ids(items) == {"r1-e1", "r1-e2"}
    assert totals(items) == {"r0": 1, "r1": 2}


def test_quirk_an_api_that_keeps_events_past_its_retention_is_counted_back_to_its_oldest() -> None:
    """An API that purges once a day still serves events a little over 30 days old: the room's
    window reaches back to the oldest event its count request brought, so the warehouse (which
    holds that event) is not found short every day."""
    kept_longer = event("r0-old", "r0", "r0-s", "track.add.success")
    kept_longer["timestamp"] = format_time(SERVED_AT - RETENTION - HOUR)
    events = {"r0": [kept_longer, *room_events("r0")["r0"]]}
    client = ListingClient(events, ["r0"], [])
    asked: list[Mapping[str, datetime]] = []

    def warehouse_counts(windows: Mapping[str, datetime]) -> Mapping[str, int]:
        asked.append(windows)
        return {"r0": 2}

    run = StatefulRun(client, {}, sweep=True, event_counts=warehouse_counts)
    items = list(reconcile(RoomEvents(run)))
    assert asked == [{"r0": SERVED_AT - RETENTION - HOUR}]
    assert event_ids(items) == set()  # complete: nothing read again
    assert totals(items) == {"r0": 2}


def test_the_session_cursor_bound_is_the_apis_clock_or_without_a_date_header_the_local_one() -> (
    None
):
    """A proxy may drop the `Date` header: the bound then comes from this machine's clock when
    the listing began, less an allowance, never from nothing (issue 15: a cursor past the
    listing's start can skip a session created while it paged)."""
    sessions = [session("s", "r0", active=False, started=SERVED_AT - HOUR, ended=SERVED_AT)]
    client = ListingClient({}, [], sessions)
    run = StatefulRun(client, {})
    list(run.sessions())
    assert run.sessions_started_at() == SERVED_AT
    client.served_at = None
    run = StatefulRun(client, {})
    before = datetime.now(UTC)
    list(run.sessions())
    bound = run.sessions_started_at()
    assert bound is not None
    assert before - LOCAL_CLOCK_ALLOWANCE <= bound <= datetime.now(UTC) - LOCAL_CLOCK_ALLOWANCE
