"""The eight tables as dlt resources, and how each is refreshed.

Rooms and sessions: the API filters them by creation time only (`after`), yet a session changes
after it is created: it ends (`active` turns false, `updated_at` moves, peers get `left_at`).
Each table fed by the session listing therefore keeps a cursor in dlt state (stored in the
destination, so another machine resumes from it):

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

Children (peers, settings, destinations, events) are fetched concurrently, `workers` at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import dlt
from dlt.extract import DltResource

from analytics_assets.source.client import AnalyticsApiClient, quote_id
from analytics_assets.source.shapes import (
    destination_rows,
    peer_rows,
    session_row,
    settings_row,
    template_row,
)

#: Consumers of the session listing: the tables whose cursors decide where it starts.
SESSION_CONSUMERS = ("sessions", "analytics_events")

T = TypeVar("T")


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


def analytics_resources(
    client: AnalyticsApiClient,
    *,
    tables: Sequence[str],
    full_refresh: bool,
    margin: timedelta,
) -> list[DltResource]:
    """All resources, hidden listings included. `tables` names the tables this run loads;
    `full_refresh` ignores every cursor."""
    trackers: dict[str, CursorTracker] = {}  # per run: the source is built anew for each run

    def tracker(name: str) -> CursorTracker:
        if name not in trackers:
            trackers[name] = CursorTracker(dlt.current.resource_state(name))
        return trackers[name]

    # One pool for the whole run: the bound holds across tables fetched at the same time.
    pool = ThreadPoolExecutor(max_workers=client.workers, thread_name_prefix="analytics_api")

    def fan_out(fetch: Callable[[T], Iterable[Any]], items: Iterable[T]) -> Iterator[Any]:
        """`fetch` for each item on the run's pool; rows come out in the items' order."""
        for rows in pool.map(lambda item: list(fetch(item)), items):
            yield from rows

    # ---- rooms ---------------------------------------------------------------------------

    @dlt.resource(name="rooms", primary_key="id", write_disposition="merge")
    def rooms() -> Iterator[Any]:
        state = dlt.current.resource_state()
        params = {}
        if state.get("created") and not full_refresh:
            params["after"] = format_time(parse_time(state["created"]) - margin)
        newest = state.get("created")
        for page in client.pages("/v2/rooms", params, cursor="last", selector="data"):
            for room in page:
                newest = later(newest, room["created_at"])
            yield page
        if newest:
            state["created"] = newest

    # ---- sessions and their events ------------------------------------------------------

    @dlt.resource(name="session_listing", selected=False)
    def session_listing() -> Iterator[Any]:
        consumers = [name for name in SESSION_CONSUMERS if name in tables]
        cursors = [SessionCursor.from_state(dlt.current.resource_state(n)) for n in consumers]
        params = {}
        if cursors and not full_refresh and all(c is not None for c in cursors):
            start = min(c.resume_after(margin) for c in cursors if c is not None)
            params["after"] = format_time(start)
        yield from client.pages("/v2/sessions", params, cursor="last", selector="data")

    @dlt.transformer(
        data_from=session_listing, name="sessions", primary_key="id", write_disposition="merge"
    )
    def sessions(page: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        track = tracker("sessions")
        for session in page:
            track.observe(session)
            yield session_row(session)

    rooms_with_events_fetched: set[str] = set()

    def events_of(target: dict[str, str]) -> list[Any]:
        return client.rows("/v2/analytics/events", target, cursor="next", selector="events")

    @dlt.transformer(
        data_from=session_listing,
        name="analytics_events",
        primary_key="id",
        write_disposition="merge",
    )
    def analytics_events(page: list[dict[str, Any]]) -> Iterator[Any]:
        track = tracker("analytics_events")
        previous = None if full_refresh else track.previous
        targets = []
        for session in page:
            track.observe(session)
            room_id = session["room_id"]
            if previous is None:
                # First load or full refresh: every event the API keeps, once per room.
                if room_id not in rooms_with_events_fetched:
                    rooms_with_events_fetched.add(room_id)
                    targets.append({"room_id": room_id})
            elif previous.has_activity(session, margin):
                targets.append({"room_id": room_id, "session_id": session["id"]})
        yield from fan_out(events_of, targets)

    # ---- who is in a live room now ------------------------------------------------------

    live_rooms_seen: set[str] = set()

    @dlt.resource(name="live_sessions", selected=False)
    def live_sessions() -> Iterator[Any]:
        """The reference's own way to find live rooms; one entry per room."""
        for page in client.pages(
            "/v2/sessions", {"active": "true"}, cursor="last", selector="data"
        ):
            fresh = [s for s in page if s["room_id"] not in live_rooms_seen]
            live_rooms_seen.update(s["room_id"] for s in fresh)
            yield fresh

    def peers_of(session: dict[str, Any]) -> list[dict[str, Any]]:
        room_id = session["room_id"]
        # A room whose session ended since the listing answers 404 (or empty peers): no rows.
        body = client.get_object(f"/v2/active-rooms/{quote_id(room_id)}/peers", missing_ok=True)
        return peer_rows(room_id, body) if body else []

    @dlt.transformer(
        data_from=live_sessions,
        name="active_room_peers",
        primary_key="id",
        # A snapshot of who is in a room now: replaced, so a peer who left disappears.
        write_disposition="replace",
    )
    def active_room_peers(page: list[dict[str, Any]]) -> Iterator[Any]:
        yield from fan_out(peers_of, page)

    # ---- templates ----------------------------------------------------------------------

    @dlt.resource(name="templates", primary_key="id", write_disposition="merge")
    def templates() -> Iterator[Any]:
        for page in client.pages("/v2/templates", {}, cursor="last", selector="data"):
            yield [template_row(t) for t in page]

    def settings_of(template: dict[str, Any]) -> list[dict[str, Any]]:
        body = client.get_object(f"/v2/templates/{quote_id(template['id'])}/settings")
        return [settings_row(template["id"], body or {})]

    @dlt.transformer(
        data_from=templates,
        name="template_settings",
        primary_key="template_id",
        write_disposition="merge",
        # Shapes vary per template (`recording` null or an object, `retry` often {}):
        # JSON columns keep them whole and never split by shape.
        columns={"recording": {"data_type": "json"}, "retry": {"data_type": "json"}},
    )
    def template_settings(page: list[dict[str, Any]]) -> Iterator[Any]:
        yield from fan_out(settings_of, page)

    def destinations_of(template: dict[str, Any]) -> Iterator[dict[str, Any]]:
        body = client.get_object(f"/v2/templates/{quote_id(template['id'])}/destinations")
        return destination_rows(template["id"], body or {})

    @dlt.transformer(
        data_from=templates,
        name="templates_destinations",
        primary_key=["template_id", "kind", "key"],
        # Replaced on refresh, so a destination removed upstream leaves the table too.
        write_disposition="replace",
    )
    def templates_destinations(page: list[dict[str, Any]]) -> Iterator[Any]:
        yield from fan_out(destinations_of, page)

    # ---- recordings ---------------------------------------------------------------------

    @dlt.resource(name="recordings", primary_key="id", write_disposition="merge")
    def recordings() -> Iterator[Any]:
        # No time filter exists for recordings, and their status changes after creation
        # (running -> completed): read in full, merged on id.
        yield from client.pages("/v2/recordings", {}, cursor="last", selector="data")

    return [
        rooms,
        session_listing,
        sessions,
        live_sessions,
        active_room_peers,
        templates,
        template_settings,
        templates_destinations,
        analytics_events,
        recordings,
    ]
