"""templates_destinations: `GET /v2/templates/{id}/destinations` for every template, one row per
destination: the answer is an object of maps (`browserRecordings`, `rtmpDestinations`,
`hlsDestinations`, `transcriptions`) whose keys are the destinations' identities (names inside
can repeat). Keyed by (`template_id`, `kind`, `key`) and replaced on every run, so a destination
removed upstream leaves the table too (and an empty answer everywhere empties it)."""

from collections.abc import Iterator
from typing import Any

import dlt
from dlt.extract import DltResource

from analytics_assets.source.client import quote_id
from analytics_assets.source.run import Run
from analytics_assets.source.shapes import destination_rows
from analytics_assets.source.tables.active_room_peers import empty_snapshot

#: The key columns typed up front, so that an empty answer can create or empty the table.
KEY_COLUMNS: dict[str, Any] = {
    name: {"data_type": "text", "nullable": False} for name in ("template_id", "kind", "key")
}


def templates_destinations_resource(run: Run) -> DltResource:
    def destinations_of(template: dict[str, Any]) -> list[dict[str, Any]]:
        body = run.client.get_object(f"/v2/templates/{quote_id(template['id'])}/destinations")
        return list(destination_rows(template["id"], body or {}))

    @dlt.resource(
        name="templates_destinations",
        primary_key=["template_id", "kind", "key"],
        write_disposition="replace",
        columns=KEY_COLUMNS,
        parallelized=True,
    )
    def templates_destinations() -> Iterator[Any]:
        templates = (t for page in run.listing("/v2/templates") for t in page)
        empty = True
        for rows in run.fan_out(destinations_of, templates):
            if rows:
                empty = False
                yield rows
        if empty:
            yield empty_snapshot()

    return templates_destinations
