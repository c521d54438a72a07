"""analytics_events: `GET /v2/analytics/events`, merged on `id`, kept beyond the API's 30 days.

What the reference says of events, and what this table does about each:

- `room_id` is required. The current docs make `type` optional, defaulting to every supported
  type, and new types are added over time: a request that names its types never sees the ones
  it does not name. So requests name no type, unless the API refuses that with a 400 and
  accepts the same request naming every documented type (the track and recording pages still
  mark `type` required): then, for the rest of the run, requests name them (`EventTypes`). The
  behaviour decides, not the wording of the API's message.
- There is no time filter. A room's events come back whole, a page of 100 at a time, and the
  first page's `total` counts them.
- Error events may carry no `session_id` (a peer that never reached a session), and a filter on
  `session_id` does not return them: a room is therefore read as a room, not only by session.
- Events keep arriving after their session ended (`beam.recording.success` once the recording
  is uploaded): sessions that ended within the lookback are read again by every refresh.

The rules, one function each:

- `first_load` (and a full refresh): every room, read whole (rooms listed, since `start_date`
  when set, plus the rooms of the sessions listed).
- `refresh`: the rooms with activity since the last run (a session new, live, or live last
  time) and the rooms of sessions that ended within the lookback. A room is read whole (one
  request for most rooms, and it brings the session-less errors and late events with it)
  unless reading it by session would take fewer requests: then each of its sessions with
  activity, plus its error events. Rooms known to need many pages are remembered (`busy`).
- `reconcile` (the daily sweep): one request per room (`limit=1`) gives the API's `total` and
  its oldest event; a room whose warehouse count over that window (the retention, or back to
  that event if the API still keeps it) falls short is read whole again. This
  catches what the hourly rules cannot see: errors in rooms without activity, events later than
  the lookback, rows lost for any other reason. Its counts ask exactly what the loads ask.

Every whole-room read and every reconciliation request records the room's `total` in
`analytics_events_totals` (room_id, api_total, counted_at, window_start, window_end): the check
`events_complete` compares it with the rows loaded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt
from dlt.extract import DltResource

from analytics_assets.source.client import EventPage
from analytics_assets.source.columnar import EventColumns, batched, known_columns
from analytics_assets.source.cursors import CursorTracker, parse_time
from analytics_assets.source.errors import ApiHttpError
from analytics_assets.source.run import Run
from analytics_assets.source.settings import (
    ERROR_EVENT_TYPES,
    EVENT_TOTALS_TABLE,
    EVENT_TYPES,
    PAGE_SIZE,
)

logger = logging.getLogger(__name__)

TOTALS_HINTS = dlt.mark.make_hints(
    table_name=EVENT_TOTALS_TABLE, primary_key="room_id", write_disposition="merge"
)


class EventTypes:
    """Whether this run's event requests name their types. The first request of the run names
    none and decides for every worker (they wait for it): accepted, no request names types; a
    400 that the same request naming the documented types does not get, every request names
    them from then on."""

    def __init__(self) -> None:
        self.explicit = False
        self._decided = threading.Event()
        self._deciding = threading.Lock()

    def params(self) -> dict[str, Any]:
        return self.documented() if self.explicit else {}

    @staticmethod
    def documented() -> dict[str, Any]:
        return {"type": list(EVENT_TYPES)}

    def error_params(self) -> dict[str, Any]:
        """The error events, by the documented error types (errors of a type added upstream
        are counted by the API's `total` and brought by the daily reconciliation)."""
        return {"type": list(ERROR_EVENT_TYPES)}

    @contextmanager
    def deciding(self) -> Iterator[None]:
        """Held around a chain's first page until the run knows whether types are required."""
        if self._decided.is_set():
            yield
            return
        with self._deciding:
            decided = self._decided.is_set()
            yield
            if not decided:
                self._decided.set()

    def may_be_required(self, refusal: ApiHttpError) -> bool:
        """Whether a refusal of a request naming no types is worth one more try naming them."""
        return not self.explicit and refusal.status == 400

    def require(self, refusal: ApiHttpError) -> None:
        """The API refused events without `type` and served them with it."""
        if not self.explicit:
            self.explicit = True
            logger.warning(
                "%s; the same request naming the documented event types was answered, so this "
                "run names them (event types added upstream load only while the API serves "
                "events without `type`)",
                refusal,
            )


@dataclass
class RoomRead:
    """What reading one room brought."""

    room_id: str
    #: The room's events as the API sent them (turned into tables in batches: `columnar.py`).
    events: list[dict[str, Any]] = field(default_factory=list)
    #: The room's totals row, when it was read whole or counted.
    totals: dict[str, Any] | None = None
    #: The room's total when it takes more than one page (None: one page is enough).
    busy: int | None = None


def pages_for(total: int) -> int:
    return max(1, -(-total // PAGE_SIZE))


class RoomEvents:
    """How one run reads a room's events: whole, by session, or only counted."""

    def __init__(self, run: Run, columns: EventColumns | None = None) -> None:
        self.run = run
        self.types = EventTypes()
        #: How the run's events are handed to dlt (Arrow tables, in batches).
        self.columns = columns or EventColumns()

    def pages(
        self, params: dict[str, Any], *, limit: int = PAGE_SIZE
    ) -> Generator[EventPage, None, None]:
        """The pages of one query, with or without `type` as the run has learnt (a query that
        names its types is sent as it is)."""
        if "type" in params:
            yield from self.run.client.event_pages(params, limit=limit)
            return
        with self.types.deciding():
            chain, first = self._first_page(params, limit)
        if first is not None:
            yield first
            yield from chain

    def _first_page(
        self, params: dict[str, Any], limit: int
    ) -> tuple[Iterator[EventPage], EventPage | None]:
        """A query's chain of pages and its first page. A 400 to a query naming no types is
        tried once more naming the documented ones: if that is answered, the API requires
        `type` and the run names types from then on; if not, the first refusal is raised."""
        chain = self.run.client.event_pages({**params, **self.types.params()}, limit=limit)
        try:
            return chain, next(chain, None)
        except ApiHttpError as refusal:
            if not self.types.may_be_required(refusal):
                raise
            typed = self.run.client.event_pages({**params, **self.types.documented()}, limit=limit)
            try:
                first = next(typed, None)
            except ApiHttpError:
                raise refusal from None
            self.types.require(refusal)
            return typed, first

    def rows(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The events of one query, as the API sent them."""
        return [event for page in self.pages(params) for event in page.events]

    def by_session(self, room_id: str, sessions: Sequence[str]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for session_id in sessions:
            rows += self.rows({"room_id": room_id, "session_id": session_id})
        # Errors without a session are returned only without the session filter.
        return rows + self.rows({"room_id": room_id, **self.types.error_params()})

    def whole(
        self, room_id: str, sessions: Sequence[str] | None = None, known_total: int | None = None
    ) -> RoomRead:
        """The room whole, or (given the sessions with activity) by session when that takes
        fewer requests; `known_total` is what the room held last time, if it was busy."""
        if sessions is not None and pages_for(known_total or 0) > len(sessions) + 1:
            return RoomRead(room_id, unique(self.by_session(room_id, sessions)), busy=known_total)
        read = RoomRead(room_id)
        first: EventPage | None = None
        chain = self.pages({"room_id": room_id})
        for page in chain:
            read.events.extend(page.events)
            if first is not None:
                continue
            first = page
            read.busy = page.total if page.total > PAGE_SIZE else None
            if sessions is not None and pages_for(page.total) - 1 > len(sessions) + 1:
                chain.close()  # cheaper by session from here
                read.events = unique(read.events + self.by_session(room_id, sessions))
                return read
        if first is not None:
            read.totals = self.totals_row(room_id, first, oldest(read.events))
        return read

    def count(self, room_id: str) -> tuple[str, int, dict[str, Any]]:
        """The room's total as the API counts what the loads ask for (one event fetched: the
        oldest, as events are listed in time order, so the window reaches back to it when the
        API keeps events longer than its retention says)."""
        page = next(iter(self.pages({"room_id": room_id}, limit=1)))
        return room_id, page.total, self.totals_row(room_id, page, oldest(page.events))

    def totals_row(
        self, room_id: str, page: EventPage, oldest: datetime | None = None
    ) -> dict[str, Any]:
        """The API's count for a room, over its window: `retention` back from its own `Date`
        (whole seconds, so the window ends a second later), or back to the oldest event it
        still served, if that is older (a room read whole shows what the API really keeps)."""
        counted_at = page.served_at or self.run.now() or datetime.now(UTC)
        start = counted_at - self.run.settings.retention
        return {
            "room_id": room_id,
            "api_total": page.total,
            "counted_at": counted_at,
            "window_start": min(start, oldest) if oldest else start,
            "window_end": counted_at + timedelta(seconds=1),
        }


def unique(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each event once: a room read by session, and whole, can see one twice (its sessions'
    queries and its errors' overlap), and the table only inserts rows it lacks."""
    seen: set[Any] = set()
    kept = []
    for event in events:
        if event.get("id") not in seen:
            seen.add(event.get("id"))
            kept.append(event)
    return kept


def oldest(events: list[dict[str, Any]]) -> datetime | None:
    """The time of the oldest event (the API sends 0 to 9 fraction digits: compared as times)."""
    times = [parse_time(e["timestamp"]) for e in events if isinstance(e.get("timestamp"), str)]
    return min(times, default=None)


def emit(reads: Iterator[RoomRead], busy: dict[str, int], columns: EventColumns) -> Iterator[Any]:
    """The events of the reads as they complete, in Arrow tables of about `BATCH_ROWS` rows
    (`columnar.py`), then the totals of all of them at once."""
    totals: list[dict[str, Any]] = []

    def events() -> Iterator[list[dict[str, Any]]]:
        for read in reads:
            if read.busy is None:
                busy.pop(read.room_id, None)
            else:
                busy[read.room_id] = read.busy
            if read.totals is not None:
                totals.append(read.totals)
            yield read.events

    yield from batched(events(), columns)
    yield from totals_item(totals)


def totals_item(rows: list[dict[str, Any]]) -> Iterator[Any]:
    """The rows of `analytics_events_totals`, yielded at once: dlt checks a marked item's hints
    each time it meets one (a tenth of a full load, per room)."""
    if rows:
        yield dlt.mark.with_hints(rows, TOTALS_HINTS, create_table_variant=True)


def within_lookback(
    ended: Mapping[str, list[str]], since: datetime, lookback: timedelta
) -> dict[str, list[str]]:
    """The sessions (id -> [room_id, ended_at]) that ended within the lookback of `since`."""
    horizon = since - lookback
    return {sid: entry for sid, entry in ended.items() if parse_time(entry[1]) >= horizon}


def every_room(run: Run, track: CursorTracker, ended: dict[str, list[str]]) -> Iterator[str]:
    """Each room once: those listed (since `start_date`), then those of the sessions listed;
    the ended sessions are noted in `ended` for the lookback."""
    listed: set[str] = set()
    for page in run.rooms(run.settings.start_date):
        for room in page:
            if room["id"] not in listed:
                listed.add(room["id"])
                yield room["id"]
    for page in run.sessions():
        for session in page:
            track.observe(session)
            if not session.get("active"):
                ended[session["id"]] = [session["room_id"], session["updated_at"]]
            if session["room_id"] not in listed:
                listed.add(session["room_id"])
                yield session["room_id"]


def first_load(events: RoomEvents, track: CursorTracker, state: dict[str, Any]) -> Iterator[Any]:
    run = events.run
    ended: dict[str, list[str]] = {}
    busy: dict[str, int] = {}
    yield from emit(run.fan_out(events.whole, every_room(run, track, ended)), busy, events.columns)
    now = run.now() or datetime.now(UTC)
    state["recent"] = within_lookback(ended, now, run.settings.lookback)
    state["busy"] = busy
    state["last_run_at"] = now.isoformat()


def refresh_targets(
    run: Run, track: CursorTracker, state: dict[str, Any]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Room -> its sessions to read, and the sessions ended within the lookback (kept in the
    state). The lookback is measured from the previous run, not this one: an event listed just
    before it closes, after the previous run, is read now (docs/readings.md, the guarantee)."""
    previous = track.previous
    assert previous is not None
    margin = run.settings.margin
    recent: dict[str, list[str]] = dict(state.get("recent") or {})
    targets: dict[str, list[str]] = {}
    for page in run.sessions():
        for session in page:
            track.observe(session)
            if previous.has_activity(session, margin):
                targets.setdefault(session["room_id"], []).append(session["id"])
                if not session.get("active"):
                    recent[session["id"]] = [session["room_id"], session["updated_at"]]
    previous_run = state.get("last_run_at")
    since = parse_time(previous_run) if previous_run else run.now() or datetime.now(UTC)
    recent = within_lookback(recent, since, run.settings.lookback)
    for session_id, (room_id, _ended) in recent.items():
        sessions = targets.setdefault(room_id, [])
        if session_id not in sessions:
            sessions.append(session_id)
    return targets, recent


def refresh(events: RoomEvents, track: CursorTracker, state: dict[str, Any]) -> Iterator[Any]:
    run = events.run
    targets, recent = refresh_targets(run, track, state)
    busy: dict[str, int] = dict(state.get("busy") or {})

    def read(item: tuple[str, list[str]]) -> RoomRead:
        room_id, sessions = item
        return events.whole(room_id, sessions, busy.get(room_id))

    yield from emit(run.fan_out(read, list(targets.items())), busy, events.columns)
    state["recent"] = recent
    state["busy"] = busy
    state["last_run_at"] = (run.now() or datetime.now(UTC)).isoformat()


def reconcile(events: RoomEvents) -> Iterator[Any]:
    """Every room counted; the rooms the warehouse holds fewer events of are read again."""
    run = events.run
    settings = run.settings
    if settings.event_counts is None:
        raise ValueError(
            "the events reconciliation compares the API's totals with the warehouse's "
            "counts: build the source with event_counts (the Dagster assets do)"
        )
    rooms = (room["id"] for page in run.rooms(settings.start_date) for room in page)
    counted = list(run.fan_out(events.count, rooms))
    counts = settings.event_counts({room_id: row["window_start"] for room_id, _, row in counted})
    short: list[str] = []
    complete: list[dict[str, Any]] = []
    for room_id, total, row in counted:
        if total > counts.get(room_id, 0):
            short.append(room_id)  # read whole again below; its totals come with it
        else:
            complete.append(row)
    yield from totals_item(complete)
    yield from emit(run.fan_out(events.whole, short), {}, events.columns)


def analytics_events_resource(run: Run) -> DltResource:
    @dlt.resource(
        name="analytics_events",
        primary_key="id",
        # An event never changes once listed: rows whose id is already there are left as they
        # are (about half the work of deleting and inserting them again, measured).
        write_disposition={"disposition": "merge", "strategy": "insert-only"},
        parallelized=True,
    )
    def analytics_events() -> Iterator[Any]:
        schema = dlt.current.source_schema()
        events = RoomEvents(run, EventColumns(known_columns(schema.tables, "analytics_events")))
        state = run.state("analytics_events")
        if run.settings.sweep:
            yield from reconcile(events)
            return
        track = CursorTracker(state)
        if run.settings.full_refresh or track.previous is None:
            yield from first_load(events, track, state)
        else:
            yield from refresh(events, track, state)
        track.commit(run.sessions_started_at())

    return analytics_events
