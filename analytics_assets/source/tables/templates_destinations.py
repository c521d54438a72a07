"""templates_destinations: `GET /v2/templates/{id}/destinations` for every template, one row per
destination: the answer is an object of maps (`browserRecordings`, `rtmpDestinations`,
`hlsDestinations`, `transcriptions`) whose keys are the destinations' identities (names inside
can repeat). Keyed by (`template_id`, `kind`, `key`) and replaced on every run, so a destination
removed upstream leaves the table too."""

from collections.abc import Iterator
from typing import Any

import dlt
from dlt.extract import DltResource

from analytics_assets.source.client import quote_id
from analytics_assets.source.run import Run
from analytics_assets.source.shapes import destination_rows


def templates_destinations(run: Run) -> DltResource:
    def destinations_of(template: dict[str, Any]) -> list[dict[str, Any]]:
        body = run.client.get_object(f"/v2/templates/{quote_id(template['id'])}/destinations")
        return list(destination_rows(template["id"], body or {}))

    @dlt.resource(
        name="templates_destinations",
        primary_key=["template_id", "kind", "key"],
        write_disposition="replace",
        parallelized=True,
    )
    def read() -> Iterator[Any]:
        templates = (t for page in run.listing("/v2/templates") for t in page)
        for rows in run.fan_out(destinations_of, templates):
            if rows:
                yield rows

    return read
