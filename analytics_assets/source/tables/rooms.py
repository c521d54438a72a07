"""rooms: `GET /v2/rooms`, merged on `id`.

- First load and full refresh: every room (created since `start_date`, when set).
- Refresh: rooms created since the cursor (less the margin); the API filters by creation time
  only (`after`), and `updated_at` can be the zero time, so it cannot tell which older rooms
  changed.
- The daily sweep: every room again, which is how renames and disables reach the table.

Under either reading of the `enabled` filter's default, disabled rooms are listed too
(`Run.rooms`).
"""

from collections.abc import Iterator
from typing import Any

import dlt
from dlt.extract import DltResource

from analytics_assets.source.cursors import later, parse_time
from analytics_assets.source.run import Run
from analytics_assets.source.shapes import with_timestamps


def rooms(run: Run) -> DltResource:
    settings = run.settings

    @dlt.resource(name="rooms", primary_key="id", write_disposition="merge", parallelized=True)
    def read() -> Iterator[Any]:
        state = run.state("rooms")
        incremental = state.get("created") and not (settings.full_refresh or settings.sweep)
        since = (
            parse_time(state["created"]) - settings.margin if incremental else settings.start_date
        )
        newest = state.get("created")
        for page in run.rooms(since):
            for room in page:
                newest = later(newest, room["created_at"])
            yield with_timestamps(page)
        if newest:
            state["created"] = newest

    return read
