"""rooms: `GET /v2/rooms`, merged on `id`.

- First load and full refresh: every room (created since `start_date`, when set).
- Refresh: rooms created since the cursor (less the margin); the API filters by creation time
  only (`after`), and `updated_at` can be the zero time, so it cannot tell which older rooms
  changed.
- The daily sweep: every room again, which is how renames and disables reach the table.

Under either reading of the `enabled` filter's default, disabled rooms are listed too
(`Run.rooms`). The cursor never goes past the API's clock when the listing began: a room
created while it paged is listed by the next run.
"""

from collections.abc import Iterator
from typing import Any

import dlt
from dlt.extract import DltResource

from analytics_assets.source.cursors import bounded, later, parse_time
from analytics_assets.source.run import Run
from analytics_assets.source.shapes import clean


def rooms_resource(run: Run) -> DltResource:
    @dlt.resource(
        name="rooms",
        primary_key="id",
        write_disposition="merge",
        # Often the zero time (NULL here): typed, so the column exists before a room changes.
        columns={"updated_at": {"data_type": "timestamp"}},
        parallelized=True,
    )
    def rooms() -> Iterator[Any]:
        settings = run.settings
        state = run.state("rooms")
        incremental = state.get("created") and not (settings.full_refresh or settings.sweep)
        since = (
            parse_time(state["created"]) - settings.margin if incremental else settings.start_date
        )
        newest = state.get("created")
        for page in run.rooms(since):
            for room in page:
                newest = later(newest, room["created_at"])
            yield clean(page)
        newest = bounded(newest, run.rooms_started_at(since))
        if newest:
            state["created"] = later(state.get("created"), newest)

    return rooms
