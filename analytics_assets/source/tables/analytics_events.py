"""analytics_events: `GET /v2/analytics/events`, merged on `id`, kept beyond the API's 30 days.

What the reference says of events, and what this table does about each:

- `room_id` is required and `type` is marked required on some pages: every request names a room
  and sends every documented type explicitly (`settings.EVENT_TYPES`).
- There is no time filter. A room's events come back whole, a page of 100 at a time, and the
  first page's `total` counts them.
- Error events may carry no `session_id` (a peer that never reached a session), and a filter on
  `session_id` does not return them: a room is therefore read as a room, not only by session.
- Events keep arriving after their session ended (`beam.recording.success` once the recording
  is uploaded): sessions that ended within the lookback are read again by every refresh.

The rules:

- First load and full refresh: every room, read whole (rooms listed, since `start_date` when set,
  plus the rooms of the sessions listed).
- Refresh: the rooms with activity since the last run (a session new, live, or live last time)
  and the rooms of sessions that ended within the lookback. A room is read whole (one request for
  most rooms, and it brings the session-less errors and late events with it) unless reading it
  by session would take fewer requests: then each of its sessions with activity, plus its error
  events. Rooms known to need many pages are remembered (`busy` in the state).
- Daily sweep: the reconciliation. One request per room (`limit=1`) gives the API's `total`; a
  room whose warehouse count over the API's window falls short is read whole again. This catches
  what the hourly rules cannot see: errors in rooms without activity, events later than the
  lookback, rows lost for any other reason.

Every whole-room read and every reconciliation request records the room's `total` in
`analytics_events_totals` (room_id, api_total, counted_at, window_start, window_end): the check
`events_complete` compares it with the rows loaded.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import dlt
from dlt.extract import DltResource
from requests import Response

from analytics_assets.source.cursors import CursorTracker, parse_time
from analytics_assets.source.run import Run
from analytics_assets.source.settings import (
    ERROR_EVENT_TYPES,
    EVENT_TOTALS_TABLE,
    EVENT_TYPES,
    PAGE_SIZE,
)
from analytics_assets.source.shapes import timestamps_in_place

TOTALS_HINTS = dlt.mark.make_hints(
    table_name=EVENT_TOTALS_TABLE, primary_key="room_id", write_disposition="merge"
)


@dataclass
class RoomRead:
    """What reading one room brought."""

    room_id: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    #: The room's totals row, when it was read whole or counted.
    totals: dict[str, Any] | None = None
    #: The room's total when it takes more than one page (None: one page is enough).
    busy: int | None = None


def analytics_events(run: Run) -> DltResource:
    settings = run.settings
    client = run.client

    def totals_row(
        room_id: str, total: int, response: Response, oldest: datetime | None = None
    ) -> dict[str, Any]:
        """The API's count for a room, over its window: `retention` back from its own `Date`
        (whole seconds, so the window ends a second later), or back to the oldest event it
        still served, if that is older (a room read whole shows what the API really keeps)."""
        counted_at = _server_time(response) or run.now() or datetime.now(UTC)
        start = counted_at - settings.retention
        return {
            "room_id": room_id,
            "api_total": total,
            "counted_at": counted_at,
            "window_start": min(start, oldest) if oldest else start,
            "window_end": counted_at + timedelta(seconds=1),
        }

    def all_pages(params: dict[str, Any]) -> list[dict[str, Any]]:
        return [event for page in client.event_pages(params) for event in timestamps_in_place(page)]

    def by_session(room_id: str, sessions: Sequence[str]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for session_id in sessions:
            rows += all_pages({"room_id": room_id, "session_id": session_id, "type": EVENT_TYPES})
        # Errors without a session are returned only without the session filter.
        return rows + all_pages({"room_id": room_id, "type": ERROR_EVENT_TYPES})

    def read_room(
        room_id: str, sessions: Sequence[str] | None = None, known_total: int | None = None
    ) -> RoomRead:
        """The room whole, or (given the sessions with activity) by session when that takes
        fewer requests; `known_total` is what the room held last time, if it was busy."""
        if sessions is not None and _pages(known_total or 0) > len(sessions) + 1:
            return RoomRead(room_id, by_session(room_id, sessions), busy=known_total)
        read = RoomRead(room_id)
        pages = client.event_pages({"room_id": room_id, "type": EVENT_TYPES})
        first, total = None, 0
        for index, page in enumerate(pages):
            read.rows.extend(timestamps_in_place(page))
            if index:
                continue
            first = page.response
            total = int(first.json().get("total") or 0)
            read.busy = total if total > PAGE_SIZE else None
            if sessions is not None and _pages(total) - 1 > len(sessions) + 1:
                pages.close()  # cheaper by session from here
                read.rows += by_session(room_id, sessions)
                return read
        if first is not None:
            oldest = min((row["timestamp"] for row in read.rows), default=None)
            read.totals = totals_row(room_id, total, first, oldest)
        return read

    def count_room(room_id: str) -> tuple[str, int, dict[str, Any]]:
        page = next(iter(client.event_pages({"room_id": room_id, "type": EVENT_TYPES}, limit=1)))
        total = int(page.response.json().get("total") or 0)
        return room_id, total, totals_row(room_id, total, page.response)

    def emit(reads: Iterator[RoomRead], busy: dict[str, int]) -> Iterator[Any]:
        totals = []
        for read in reads:
            if read.busy is None:
                busy.pop(read.room_id, None)
            else:
                busy[read.room_id] = read.busy
            if read.rows:
                yield read.rows
            if read.totals is not None:
                totals.append(read.totals)
        yield from totals_item(totals)

    def everything(track: CursorTracker, state: dict[str, Any]) -> Iterator[Any]:
        listed: set[str] = set()
        ended: dict[str, list[str]] = {}

        def rooms() -> Iterator[str]:
            for page in run.rooms(settings.start_date):
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

        busy: dict[str, int] = {}
        yield from emit(run.fan_out(read_room, rooms()), busy)
        now = run.now() or datetime.now(UTC)
        state["recent"] = _within_lookback(ended, now, settings.lookback)
        state["busy"] = busy
        state["last_run_at"] = now.isoformat()

    def refresh(track: CursorTracker, state: dict[str, Any]) -> Iterator[Any]:
        previous = track.previous
        assert previous is not None
        recent: dict[str, list[str]] = dict(state.get("recent") or {})
        busy: dict[str, int] = dict(state.get("busy") or {})
        targets: dict[str, list[str]] = {}  # room -> its sessions to read
        for page in run.sessions():
            for session in page:
                track.observe(session)
                if previous.has_activity(session, settings.margin):
                    targets.setdefault(session["room_id"], []).append(session["id"])
                    if not session.get("active"):
                        recent[session["id"]] = [session["room_id"], session["updated_at"]]
        # Measured from the previous run, not this one: an event listed just before the
        # lookback closes, after the previous run, is read now (see the README's guarantee).
        previous_run = state.get("last_run_at")
        now = run.now() or datetime.now(UTC)
        since = parse_time(previous_run) if previous_run else now
        recent = _within_lookback(recent, since, settings.lookback)
        for session_id, (room_id, _ended) in recent.items():
            sessions = targets.setdefault(room_id, [])
            if session_id not in sessions:
                sessions.append(session_id)

        def read(item: tuple[str, list[str]]) -> RoomRead:
            room_id, sessions = item
            return read_room(room_id, sessions, busy.get(room_id))

        yield from emit(run.fan_out(read, list(targets.items())), busy)
        state["recent"] = recent
        state["busy"] = busy
        state["last_run_at"] = now.isoformat()

    def reconcile() -> Iterator[Any]:
        if settings.event_counts is None:
            raise ValueError(
                "the events reconciliation compares the API's totals with the warehouse's "
                "counts: build the source with event_counts (the Dagster assets do)"
            )
        counts: Mapping[str, int] | None = None
        short: list[str] = []
        complete: list[dict[str, Any]] = []
        rooms = (room["id"] for page in run.rooms(settings.start_date) for room in page)
        for room_id, total, row in run.fan_out(count_room, rooms):
            if counts is None:
                counts = settings.event_counts(row["window_start"])
            if total > counts.get(room_id, 0):
                short.append(room_id)  # read whole again below; its totals come with it
            else:
                complete.append(row)
        yield from totals_item(complete)
        yield from emit(run.fan_out(read_room, short), {})

    @dlt.resource(
        name="analytics_events", primary_key="id", write_disposition="merge", parallelized=True
    )
    def read() -> Iterator[Any]:
        state = run.state("analytics_events")
        if settings.sweep:
            yield from reconcile()
            return
        track = CursorTracker(state)
        if settings.full_refresh or track.previous is None:
            yield from everything(track, state)
        else:
            yield from refresh(track, state)
        track.commit()

    return read


def totals_item(rows: list[dict[str, Any]]) -> Iterator[Any]:
    """The rows of `analytics_events_totals`, yielded at once: dlt checks a marked item's hints
    each time it meets one (a tenth of a full load, per room)."""
    if rows:
        yield dlt.mark.with_hints(rows, TOTALS_HINTS, create_table_variant=True)


def _pages(total: int) -> int:
    return max(1, -(-total // PAGE_SIZE))


def _server_time(response: Response) -> datetime | None:
    try:
        return parsedate_to_datetime(response.headers["Date"])
    except (KeyError, TypeError, ValueError):
        return None


def _within_lookback(
    ended: Mapping[str, list[str]], since: datetime, lookback: timedelta
) -> dict[str, list[str]]:
    """The sessions (id -> [room_id, ended_at]) that ended within the lookback of `since`."""
    horizon = since - lookback
    return {sid: entry for sid, entry in ended.items() if parse_time(entry[1]) >= horizon}
