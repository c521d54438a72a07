"""templates (+ templates__roles): `GET /v2/templates`, read in full every time (they are few
and have no change filter), merged on `id`. Roles, keyed by name in the API, become rows; the
embedded settings and destinations are dropped here because their own endpoints load them into
`template_settings` and `templates_destinations`."""

from collections.abc import Iterator
from typing import Any

import dlt
from dlt.extract import DltResource

from analytics_assets.source.run import Run
from analytics_assets.source.shapes import template_row


def templates_resource(run: Run) -> DltResource:
    @dlt.resource(name="templates", primary_key="id", write_disposition="merge", parallelized=True)
    def templates() -> Iterator[Any]:
        for page in run.listing("/v2/templates"):
            if page:
                yield [template_row(template) for template in page]

    return templates
