"""The readings of the reference the simulator can play.

`shared/api/API_NOTES.md` leaves several behaviours open, or states them more strictly than the
project first assumed. Each is a switch here; `LENIENT` is the reading the project was first
written against, `STRICT` switches every behaviour on. Tests run under both, so that a table is
exact against whichever the real API turns out to do.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

FinalPage = Literal["empty_page", "no_last"]
InactivePeers = Literal["404", "empty"]


@dataclass(frozen=True)
class Reading:
    """One reading of the reference, behaviour by behaviour."""

    name: str = "custom"
    #: `start` includes the object it names: every page repeats the previous page's last object,
    #: and the page after the final one holds only that object again, with `last` unchanged.
    start_inclusive: bool = False
    #: Lists come newest first (as the reference's samples do) instead of oldest first.
    newest_first: bool = False
    #: Rooms' `enabled` filter "Default: true": a listing without it holds enabled rooms only.
    rooms_enabled_by_default: bool = False
    #: Sessions' `active` filter says "Default: true" too (though its own sample lists ended
    #: sessions): a listing without it holds the live sessions only.
    sessions_active_by_default: bool = False
    #: Events without `type` answer 400 (the track and recording pages mark it required).
    events_type_required: bool = False
    #: Error events without `session_id`: a peer that failed to connect or join, in any room,
    #: including rooms that never had a session. A `session_id` filter does not return them.
    sessionless_errors: bool = False
    #: `beam.recording.success` is listed once the upload ends: minutes to ~20 hours after the
    #: session ended, and for one recording in ten 26 to 40 hours; the recording stays
    #: `running` until then.
    late_events: bool = False
    #: A 429 names its wait only in the message ("retry after N seconds"), with no
    #: `Retry-After` header, and every request is answered 429 until the wait has passed.
    rate_limit_in_message: bool = False
    #: What the final page of a list holds (either reading of the reference, separately).
    final_page: FinalPage = "empty_page"
    #: What peers of a room that is not live answer (either reading, separately).
    inactive_peers: InactivePeers = "404"

    def but(self, **changes: object) -> Reading:
        """This reading with some behaviours changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


LENIENT = Reading(name="lenient")
STRICT = Reading(
    name="strict",
    start_inclusive=True,
    newest_first=True,
    rooms_enabled_by_default=True,
    sessions_active_by_default=True,
    events_type_required=True,
    sessionless_errors=True,
    late_events=True,
    rate_limit_in_message=True,
)
READINGS = {reading.name: reading for reading in (LENIENT, STRICT)}
