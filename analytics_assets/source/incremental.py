"""Rooms, sessions and analytics events, refreshed incrementally.

The API filters rooms and sessions by creation time only (`after`), yet a session changes after
it is created: it ends (`active` turns false, `updated_at` moves, peers get `left_at`). Each table
fed by the session listing therefore keeps a cursor in dlt state (stored in the destination, so
another machine resumes from it):

- `created`: the newest `created_at` it has seen;
- `live`: id -> `created_at` of the sessions that were live when it last ran.

The listing resumes from the oldest of these, less a safety margin. That provably re-reads every
session that was live last time (it cannot have been created later than itself) and every
session created since. Events exist only where something happened, so they are fetched only for
sessions that are new, are live, or were live last time; the first load (and a full refresh)
fetches them once per room instead, which costs fewer requests than once per session.

Only the tables selected for a run take part in choosing the listing's start, and a cursor moves
only when its table loads (the state commits with the load), so a run of one table never makes
another skip data.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt
from dlt.extract import DltResource
from dlt.sources.helpers.rest_client import RESTClient

from analytics_assets.source.helpers import GuardedCursorPaginator, session_peers_as_rows
from analytics_assets.source.settings import PAGE_SIZE

#: Consumers of the session listing: the tables whose cursors decide where it starts.
SESSION_CONSUMERS = ("sessions", "analytics_events")


def parse_time(value: str) -> datetime:
    """The API's timestamps vary in fraction digits (`.65Z`, `.783118980Z`): compare as times."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def format_time(value: datetime) -> str:
    """The filters' format: `YYYY-MM-DDTHH:mm:ss.sssZ`."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def later(a: str | None, b: str) -> str:
    return b if a is None or parse_time(b) > parse_time(a) else a


@dataclass
class SessionCursor:
    """What one table has seen of the session listing, as its dlt state holds it."""

    created: str
    live: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SessionCursor | None:
        if not state.get("created"):
            return None
        return cls(created=state["created"], live=dict(state.get("live") or {}))

    def resume_after(self, margin: timedelta) -> datetime:
        oldest = min(parse_time(t) for t in [self.created, *self.live.values()])
        return oldest - margin

    def has_activity(self, session: dict[str, Any], margin: timedelta) -> bool:
        """New since this cursor, live now, or live last time: the sessions with new events."""
        return (
            bool(session.get("active"))
            or session["id"] in self.live
            or parse_time(session["created_at"]) >= parse_time(self.created) - margin
        )


class CursorTracker:
    """Moves a table's state forward as the listing goes by; `previous` is the state at start."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.previous = SessionCursor.from_state(state)
        self.state = state
        state["live"] = {}  # rebuilt: the live sessions of this listing

    def observe(self, session: dict[str, Any]) -> None:
        self.state["created"] = later(self.state.get("created"), session["created_at"])
        if session.get("active"):
            self.state["live"][session["id"]] = session["created_at"]


def incremental_resources(
    client: RESTClient,
    *,
    tables: Sequence[str],
    full_refresh: bool,
    margin: timedelta,
) -> list[DltResource]:
    """`rooms`, `sessions` and `analytics_events`, with the hidden session listing they share.

    `tables` names the tables this run loads; `full_refresh` ignores every cursor.
    """
    trackers: dict[str, CursorTracker] = {}  # per run: the source is built anew for each run

    def tracker(name: str) -> CursorTracker:
        if name not in trackers:
            trackers[name] = CursorTracker(dlt.current.resource_state(name))
        return trackers[name]

    def pages(path: str, params: dict[str, Any], cursor: str, selector: str) -> Iterator[Any]:
        return client.paginate(
            path,
            params={"limit": PAGE_SIZE, **params},
            paginator=GuardedCursorPaginator(cursor),
            data_selector=selector,
        )

    @dlt.resource(name="rooms", primary_key="id", write_disposition="merge")
    def rooms() -> Iterator[Any]:
        state = dlt.current.resource_state()
        params = {}
        if state.get("created") and not full_refresh:
            params["after"] = format_time(parse_time(state["created"]) - margin)
        newest = state.get("created")
        for page in pages("/v2/rooms", params, "last", "data"):
            for room in page:
                newest = later(newest, room["created_at"])
            yield page
        if newest:
            state["created"] = newest

    @dlt.resource(name="session_listing", selected=False)
    def session_listing() -> Iterator[Any]:
        consumers = [name for name in SESSION_CONSUMERS if name in tables]
        cursors = [SessionCursor.from_state(dlt.current.resource_state(n)) for n in consumers]
        params = {}
        if cursors and not full_refresh and all(c is not None for c in cursors):
            start = min(c.resume_after(margin) for c in cursors if c is not None)
            params["after"] = format_time(start)
        yield from pages("/v2/sessions", params, "last", "data")

    @dlt.transformer(
        data_from=session_listing, name="sessions", primary_key="id", write_disposition="merge"
    )
    def sessions(page: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        track = tracker("sessions")
        for session in page:
            track.observe(session)
            yield session_peers_as_rows(session)

    rooms_fetched: set[str] = set()

    @dlt.transformer(
        data_from=session_listing,
        name="analytics_events",
        primary_key="id",
        write_disposition="merge",
    )
    def analytics_events(page: list[dict[str, Any]]) -> Iterator[Any]:
        track = tracker("analytics_events")
        previous = None if full_refresh else track.previous
        for session in page:
            track.observe(session)
            room_id = session["room_id"]
            if previous is None:
                # First load or full refresh: every event the API keeps, once per room.
                if room_id in rooms_fetched:
                    continue
                rooms_fetched.add(room_id)
                params = {"room_id": room_id}
            elif previous.has_activity(session, margin):
                params = {"room_id": room_id, "session_id": session["id"]}
            else:
                continue
            yield from pages("/v2/analytics/events", params, "next", "events")

    return [rooms, session_listing, sessions, analytics_events]
