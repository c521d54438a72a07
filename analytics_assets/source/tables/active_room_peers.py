"""active_room_peers: `GET /v2/active-rooms/{room_id}/peers`, a snapshot replaced every run.

Only a room with a live session has peers; the reference's way to find them is the session
listing with `active=true`, so peers are asked only for those rooms. A room whose session ended
since the listing answers 404 (or empty peers): no rows, no failure. The answer is an object
keyed by peer id that does not name its room: rows get the `room_id`.
"""

from collections.abc import Iterator
from typing import Any

import dlt
from dlt.extract import DltResource

from analytics_assets.source.client import quote_id
from analytics_assets.source.run import Run
from analytics_assets.source.shapes import peer_rows, with_timestamps


def active_room_peers(run: Run) -> DltResource:
    def live_rooms() -> Iterator[str]:
        seen: set[str] = set()
        for page in run.listing("/v2/sessions", {"active": "true"}):
            for session in page:
                if session["room_id"] not in seen:
                    seen.add(session["room_id"])
                    yield session["room_id"]

    def peers_of(room_id: str) -> list[dict[str, Any]]:
        path = f"/v2/active-rooms/{quote_id(room_id)}/peers"
        body = run.client.get_object(path, missing_ok=True)
        return with_timestamps(peer_rows(room_id, body)) if body else []

    @dlt.resource(
        name="active_room_peers",
        primary_key="id",
        # A snapshot of who is in a room now: replaced, so a peer who left disappears.
        write_disposition="replace",
        parallelized=True,
    )
    def read() -> Iterator[Any]:
        for rows in run.fan_out(peers_of, live_rooms()):
            if rows:
                yield rows

    return read
