"""active_room_peers: `GET /v2/active-rooms/{room_id}/peers`, a snapshot replaced every run.

Only a room with a live session has peers; the reference's way to find them is the session
listing with `active=true`, so peers are asked only for those rooms. A room whose session ended
since the listing answers 404 (or empty peers): no rows, no failure. The answer is an object
keyed by peer id that does not name its room: rows get the `room_id`.

When no room is live the snapshot is empty, and so must the table be: dlt replaces only the
tables a run brings rows for, so an empty run says so explicitly (`empty_snapshot`).
"""

from collections.abc import Iterator
from typing import Any

import dlt
from dlt.extract import DltResource

from analytics_assets.source.client import quote_id
from analytics_assets.source.run import Run
from analytics_assets.source.shapes import peer_rows

#: The key columns typed up front, so that an empty snapshot can create or empty the table.
SNAPSHOT_COLUMNS: dict[str, Any] = {
    "id": {"data_type": "text", "nullable": False},
    "room_id": {"data_type": "text", "nullable": False},
}


def empty_snapshot() -> Any:
    """What a replaced table yields when the API has nothing: the table, emptied."""
    return dlt.mark.materialize_table_schema()


def live_rooms(run: Run) -> Iterator[str]:
    """The rooms with a live session, each once."""
    seen: set[str] = set()
    for page in run.listing("/v2/sessions", {"active": "true"}):
        for session in page:
            if session["room_id"] not in seen:
                seen.add(session["room_id"])
                yield session["room_id"]


def active_room_peers_resource(run: Run) -> DltResource:
    def peers_of(room_id: str) -> list[dict[str, Any]]:
        path = f"/v2/active-rooms/{quote_id(room_id)}/peers"
        body = run.client.get_object(path, missing_ok=True)
        return peer_rows(room_id, body) if body else []

    @dlt.resource(
        name="active_room_peers",
        primary_key="id",
        # A snapshot of who is in a room now: replaced, so a peer who left disappears.
        write_disposition="replace",
        columns=SNAPSHOT_COLUMNS,
        parallelized=True,
    )
    def active_room_peers() -> Iterator[Any]:
        empty = True
        for rows in run.fan_out(peers_of, live_rooms(run)):
            if rows:
                empty = False
                yield rows
        if empty:
            yield empty_snapshot()

    return active_room_peers
