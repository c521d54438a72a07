"""How a run reads a room's events (`EventTypes`, `RoomEvents`), over an in-memory client: whether
requests name their types, whole rooms with their totals, busy rooms by session, counts."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from analytics_assets.source.client import EventPage, ListPage
from analytics_assets.source.errors import ApiHttpError
from analytics_assets.source.run import Run, RunSettings
from analytics_assets.source.settings import EVENT_TYPES, PAGE_SIZE
from analytics_assets.source.tables.analytics_events import RoomEvents, pages_for

EVENTS_ENDPOINT = "GET http://api.test/v2/analytics/events"
SERVED_AT = datetime(2024, 7, 17, 12, 0, 0, tzinfo=UTC)
RETENTION = timedelta(days=30)
#: The documented error types, written out: what a busy room's errors are read by.
DOCUMENTED_ERRORS = [
    "client.publish.failed",
    "client.subscribe.failed",
    "client.join.failed",
    "client.disconnected",
    "client.connect.failed",
]


def event(eid: str, room: str, session: str | None, kind: str, minute: int = 0) -> dict[str, Any]:
    data: dict[str, Any] = {"room_id": room, "peer_id": f"peer-{eid}"}
    if session is not None:
        data["session_id"] = session
    stamp = SERVED_AT - timedelta(hours=1) + timedelta(minutes=minute)
    return {
        "id": eid,
        "version": "2.0",
        "type": kind,
        "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "data": data,
    }


class FakeClient:
    """The client's reading methods over events held in memory, per room; records the params
    of every page asked (`start` for pages after the first)."""

    def __init__(
        self,
        events: dict[str, list[dict[str, Any]]],
        *,
        workers: int = 5,
        requires_type: bool = False,
        refusal: ApiHttpError | None = None,
        delay: float = 0.0,
        message: str = "type is required",
    ) -> None:
        self.events = events
        self.message = message
        self.workers = workers
        self.requires_type = requires_type
        self.refusal = refusal
        self.delay = delay
        self.asked: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def now(self) -> datetime | None:
        return SERVED_AT

    def _ask(self, params: dict[str, Any]) -> None:
        with self._lock:
            self.asked.append(copy.deepcopy(params))
        if self.delay:
            time.sleep(self.delay)

    def event_pages(self, params: dict[str, Any], *, limit: int = PAGE_SIZE) -> Iterator[EventPage]:
        asked = {**params, "limit": limit}
        self._ask(asked)
        if self.refusal is not None:
            raise self.refusal
        if self.requires_type and "type" not in params:
            raise ApiHttpError(EVENTS_ENDPOINT, 400, self.message, [self.message])
        found = [
            e
            for e in self.events.get(params["room_id"], [])
            if ("session_id" not in params or e["data"].get("session_id") == params["session_id"])
            and ("type" not in params or e["type"] in params["type"])
        ]
        for offset in range(0, max(1, len(found)), limit):
            if offset:
                self._ask({**asked, "start": f"next-{offset}"})
            page = copy.deepcopy(found[offset : offset + limit])
            yield EventPage(page, len(found), SERVED_AT)

    def list_pages(self, path: str, params: dict[str, Any]) -> Iterator[ListPage]:
        raise AssertionError(f"no listing expected: {path} {params}")

    def get_object(self, path: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
        raise AssertionError(f"no object expected: {path}")


def make_run(client: FakeClient) -> Run:
    settings = RunSettings(
        tables=frozenset({"analytics_events"}),
        full_refresh=False,
        sweep=False,
        margin=timedelta(minutes=5),
        lookback=timedelta(hours=24),
        retention=RETENTION,
        start_date=None,
    )
    return Run(client, settings)  # type: ignore[arg-type]


def small_rooms(count: int = 3) -> dict[str, list[dict[str, Any]]]:
    return {
        f"r{n}": [
            event(f"r{n}-e1", f"r{n}", f"r{n}-s1", "track.add.success", 1),
            event(f"r{n}-e2", f"r{n}", None, "client.join.failed", 2),
        ]
        for n in range(count)
    }


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(row["id"] for row in rows)


def test_when_the_api_accepts_no_type_no_request_names_one() -> None:
    client = FakeClient(small_rooms())
    events = RoomEvents(make_run(client))
    rows = [row for room in ("r0", "r1", "r2") for row in events.rows({"room_id": room})]
    assert ids(rows) == ["r0-e1", "r0-e2", "r1-e1", "r1-e2", "r2-e1", "r2-e2"]
    assert client.asked == [{"room_id": room, "limit": 100} for room in ("r0", "r1", "r2")]
    assert not events.types.explicit


def test_quirk_type_required_the_refused_request_is_repeated_with_every_documented_type() -> None:
    client = FakeClient(small_rooms(), requires_type=True)
    events = RoomEvents(make_run(client))
    first = events.rows({"room_id": "r0"})
    later = events.rows({"room_id": "r1"})
    assert ids(first) == ["r0-e1", "r0-e2"]
    assert ids(later) == ["r1-e1", "r1-e2"]
    every = list(EVENT_TYPES)
    assert client.asked == [
        {"room_id": "r0", "limit": 100},
        {"room_id": "r0", "type": every, "limit": 100},
        {"room_id": "r1", "type": every, "limit": 100},
    ]
    assert every == [  # the reference's list
        "track.add.success",
        "track.update.success",
        "track.remove.success",
        "beam.recording.success",
        *DOCUMENTED_ERRORS,
    ]


def test_quirk_type_required_is_learnt_with_one_refused_request_when_threads_start_at_once() -> (
    None
):
    rooms = small_rooms(10)
    client = FakeClient(rooms, requires_type=True, delay=0.01)
    run = make_run(client)
    events = RoomEvents(run)
    read = list(run.fan_out(lambda room: events.rows({"room_id": room}), list(rooms)))
    assert sorted(ids(rows) for rows in read) == [[f"r{n}-e1", f"r{n}-e2"] for n in range(10)]
    untyped = [asked for asked in client.asked if "type" not in asked]
    assert len(untyped) == 1
    typed = [asked for asked in client.asked if "type" in asked]
    assert sorted(asked["room_id"] for asked in typed) == sorted(rooms)
    assert all(asked["type"] == list(EVENT_TYPES) for asked in typed)


def test_quirk_type_required_is_learnt_from_the_behaviour_whatever_the_message_says() -> None:
    go_validator = (
        "Key: 'Query.Type' Error:Field validation for 'Type' failed on the 'required' tag"
    )
    client = FakeClient(small_rooms(), requires_type=True, message=go_validator)
    events = RoomEvents(make_run(client))
    assert ids(events.rows({"room_id": "r0"})) == ["r0-e1", "r0-e2"]
    assert events.types.explicit
    assert [("type" in asked) for asked in client.asked] == [False, True]


def test_a_400_that_naming_the_types_does_not_cure_is_raised_as_the_api_said_it() -> None:
    refusal = ApiHttpError(EVENTS_ENDPOINT, 400, "room_id is invalid", ["room_id is invalid"])
    client = FakeClient(small_rooms(), refusal=refusal)
    events = RoomEvents(make_run(client))
    with pytest.raises(ApiHttpError) as raised:
        events.rows({"room_id": "r0"})
    assert raised.value is refusal
    assert not events.types.explicit
    assert client.asked == [
        {"room_id": "r0", "limit": 100},
        {"room_id": "r0", "type": list(EVENT_TYPES), "limit": 100},
    ]


def test_an_error_other_than_400_is_raised_without_another_try() -> None:
    refusal = ApiHttpError(EVENTS_ENDPOINT, 403, "Room is disabled", ["room is disabled"])
    client = FakeClient(small_rooms(), refusal=refusal)
    events = RoomEvents(make_run(client))
    with pytest.raises(ApiHttpError) as raised:
        events.rows({"room_id": "r0"})
    assert raised.value is refusal
    assert client.asked == [{"room_id": "r0", "limit": 100}]


def test_a_query_that_names_its_types_is_sent_as_it_is() -> None:
    client = FakeClient(small_rooms(), requires_type=True)
    events = RoomEvents(make_run(client))
    rows = events.rows({"room_id": "r0", "type": ["client.join.failed"]})
    assert ids(rows) == ["r0-e2"]
    assert client.asked == [{"room_id": "r0", "type": ["client.join.failed"], "limit": 100}]


def test_a_room_read_whole_records_its_total_over_the_retention_window() -> None:
    client = FakeClient(small_rooms(1))
    read = RoomEvents(make_run(client)).whole("r0")
    assert ids(read.events) == ["r0-e1", "r0-e2"]
    assert read.events == client.events["r0"]  # as sent: made into tables in batches later
    assert read.busy is None
    assert read.totals == {
        "room_id": "r0",
        "api_total": 2,
        "counted_at": SERVED_AT,
        "window_start": SERVED_AT - RETENTION,
        "window_end": SERVED_AT + timedelta(seconds=1),
    }
    assert client.asked == [{"room_id": "r0", "limit": 100}]


def test_a_room_read_whole_with_events_older_than_retention_widens_its_window() -> None:
    old = event("old", "r0", "s0", "track.add.success")
    old["timestamp"] = "2024-06-01T00:00:00.25Z"
    client = FakeClient({"r0": [old]})
    read = RoomEvents(make_run(client)).whole("r0")
    assert read.totals is not None
    assert read.totals["window_start"] == datetime(2024, 6, 1, 0, 0, 0, 250000, tzinfo=UTC)


def test_a_room_of_many_pages_is_remembered_busy() -> None:
    many = [event(f"e{n:03d}", "r0", "s1", "track.add.success") for n in range(150)]
    client = FakeClient({"r0": many})
    read = RoomEvents(make_run(client)).whole("r0")
    assert len(read.events) == 150
    assert read.busy == 150
    assert read.totals is not None and read.totals["api_total"] == 150
    assert client.asked == [
        {"room_id": "r0", "limit": 100},
        {"room_id": "r0", "limit": 100, "start": "next-100"},
    ]


def busy_room() -> list[dict[str, Any]]:
    rows = [event(f"e{n:03d}", "r0", f"old-{n % 7}", "track.add.success") for n in range(340)]
    rows += [
        event("s1-a", "r0", "s1", "track.add.success"),
        event("s1-b", "r0", "s1", "client.publish.failed"),
        event("lost", "r0", None, "client.connect.failed"),  # never reached a session
        event("s9-err", "r0", "s9", "client.disconnected"),
    ]
    return rows


def test_a_known_busy_room_with_few_active_sessions_is_read_by_session_plus_its_errors() -> None:
    client = FakeClient({"r0": busy_room()})
    read = RoomEvents(make_run(client)).whole("r0", sessions=["s1"], known_total=344)
    assert client.asked == [
        {"room_id": "r0", "session_id": "s1", "limit": 100},
        {"room_id": "r0", "type": DOCUMENTED_ERRORS, "limit": 100},
    ]
    # s1-b is both a session's event and an error: loaded once.
    assert ids(read.events) == ["lost", "s1-a", "s1-b", "s9-err"]
    assert read.busy == 344
    assert read.totals is None


def test_a_room_found_busy_on_its_first_page_goes_on_by_session() -> None:
    client = FakeClient({"r0": busy_room()})
    read = RoomEvents(make_run(client)).whole("r0", sessions=["s1"])
    assert client.asked == [
        {"room_id": "r0", "limit": 100},  # the first page only: the rest is dropped
        {"room_id": "r0", "session_id": "s1", "limit": 100},
        {"room_id": "r0", "type": DOCUMENTED_ERRORS, "limit": 100},
    ]
    assert read.busy == 344
    assert read.totals is None
    assert {"lost", "s1-a", "s1-b"} <= set(ids(read.events))
    assert len(ids(read.events)) == len(set(ids(read.events)))  # the first page's, once


def test_a_quiet_room_with_sessions_is_still_read_whole() -> None:
    client = FakeClient(small_rooms(1))
    read = RoomEvents(make_run(client)).whole("r0", sessions=["r0-s1"], known_total=None)
    assert client.asked == [{"room_id": "r0", "limit": 100}]
    assert ids(read.events) == ["r0-e1", "r0-e2"]


@pytest.mark.parametrize("requires_type", [False, True], ids=["type-optional", "type-required"])
def test_count_asks_one_event_with_the_same_type_params_as_the_loads(requires_type: bool) -> None:
    client = FakeClient(small_rooms(2), requires_type=requires_type)
    events = RoomEvents(make_run(client))
    events.rows({"room_id": "r0"})
    loaded = client.asked[-1]
    room_id, total, row = events.count("r1")
    counted = client.asked[-1]
    assert counted["limit"] == 1
    assert counted.get("type") == loaded.get("type")
    assert counted.get("type") == (list(EVENT_TYPES) if requires_type else None)
    assert (room_id, total) == ("r1", 2)
    assert row == {
        "room_id": "r1",
        "api_total": 2,
        "counted_at": SERVED_AT,
        "window_start": SERVED_AT - RETENTION,
        "window_end": SERVED_AT + timedelta(seconds=1),
    }


def test_pages_for_rounds_up_and_is_at_least_one() -> None:
    assert [pages_for(n) for n in (0, 1, 100, 101, 344)] == [1, 1, 1, 2, 4]
