"""Cursors over the session listing, kept in dlt state (stored in the destination, so another
machine resumes from them).

The API filters sessions by start time only (`after`), yet a session changes after it starts:
it ends (`active` turns false, `updated_at` moves, peers get `left_at`). Each table fed by the
session listing therefore keeps, in its own state:

- `created`: the newest `created_at` it has seen, but never later than the API's clock when the
  listing started (`bound`): the world moves while a run pages, and a session that started
  after its page was read is in neither the live nor the ended listing; a cursor past it
  would skip it for good;
- `live`: id -> `created_at` of the sessions that were live when it last ran.

The listing resumes from the oldest of these, less a safety margin: that re-reads every session
that was live last time (it cannot have started later than itself) and every session since.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from analytics_assets.source.shapes import parse_timestamp

#: What an unset time (the zero time) compares as.
NEVER = datetime(1970, 1, 1, tzinfo=UTC)


def parse_time(value: str | datetime) -> datetime:
    """The API's timestamps vary in fraction digits (`.65Z`, `.783118980Z`): compare as times.
    The zero time (nothing set) compares as the oldest time."""
    if isinstance(value, datetime):
        return value
    return parse_timestamp(value) or NEVER


def format_time(value: datetime) -> str:
    """The filters' format: `YYYY-MM-DDTHH:mm:ss.sssZ`."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def later(a: str | None, b: str) -> str:
    return b if a is None or parse_time(b) > parse_time(a) else a


def bounded(created: str | None, bound: datetime | None) -> str | None:
    """The cursor to commit: the newest creation time seen, but not later than `bound`."""
    if created is None or bound is None or parse_time(created) <= bound:
        return created
    return format_time(bound)


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
        """New since this cursor, live now, or live last time: the sessions that changed."""
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
        self._live: dict[str, str] = {}
        self._created: str | None = state.get("created")

    def observe(self, session: dict[str, Any]) -> None:
        self._created = later(self._created, session["created_at"])
        if session.get("active"):
            self._live[session["id"]] = session["created_at"]

    def commit(self, bound: datetime | None) -> None:
        """Write the new cursor into the state, once the listing has been read through (the
        state is stored with the data it describes, so a failed run moves nothing). `bound` is
        the API's clock when the listing started: no cursor goes past it."""
        created = bounded(self._created, bound)
        if self.previous is not None and created is not None:
            created = later(self.previous.created, created)  # never backwards
        if created is not None:
            self.state["created"] = created
        self.state["live"] = self._live
