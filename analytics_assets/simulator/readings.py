"""The readings of the reference the simulator can play.

`shared/api/API_NOTES.md` leaves several behaviours open, or states them more strictly than the
project first assumed. Each is a switch here; `LENIENT` is the reading the project was first
written against, `STRICT` switches almost every behaviour on. Tests run under both, so that a
table is exact against whichever the real API turns out to do. (`new_event_types` is the one
behaviour that is on in `LENIENT` and off in `STRICT`: the strict reading is the one where a
client that names the documented types misses nothing.)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

FinalPage = Literal["empty_page", "null_data", "empty_last", "no_last"]
InactivePeers = Literal["404", "empty"]
UnsetTimes = Literal["absent", "zero"]


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
    #: How a list ends (the vendor's notes have seen each): `empty_page`, the final page carries
    #: `last` and the page after it is `{"data": []}` without `last`; `null_data`, the same but
    #: that page's `data` is null ("array of sessions or null if no session was found");
    #: `empty_last`, the final page carries `"last": ""`; `no_last`, the final page has no
    #: `last`. Under `start_inclusive` the page after the final one holds the named object again.
    final_page: FinalPage = "empty_page"
    #: What peers of a room that is not live answer (either reading, separately).
    inactive_peers: InactivePeers = "404"
    #: How a time that is not set yet is answered: `absent`, no key (a live session peer has no
    #: `left_at`, a recording still running no `stopped_at`); `zero`, the Go zero time
    #: `0001-01-01T00:00:00Z` ("fields with nothing set may come as the zero time"). Rooms'
    #: `updated_at` is the zero time under both, as the reference's sample shows.
    unset_times: UnsetTimes = "absent"
    #: A world behaviour: the workspace also has events of types the reference does not document
    #: ("event types are open: new ones are added over time"): `peer.join.success` and
    #: `peer.leave.success`, about a quarter of a room's events. A request without `type` gets
    #: them; one that names its types never sees the ones it does not name.
    new_event_types: bool = False
    #: How far the API's clock runs behind the machine's, in seconds, for token validation: a
    #: minted token whose `iat` or `nbf` is later than the API's now is refused (why the
    #: vendor's SDK backdates both by 10 seconds "to absorb clock skew").
    clock_behind_seconds: float = 0.0

    def but(self, **changes: object) -> Reading:
        """This reading with some behaviours changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


LENIENT = Reading(name="lenient", new_event_types=True)
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
    final_page="null_data",
    unset_times="zero",
    clock_behind_seconds=5.0,
)
READINGS = {reading.name: reading for reading in (LENIENT, STRICT)}
