"""template_settings: `GET /v2/templates/{id}/settings` for every template, merged on
`template_id`: the answer is a bare object with no id of its own. Customers' storage
credentials inside it (`recording.upload.credentials`) are dropped (`shapes.py`)."""

from collections.abc import Iterator
from typing import Any

import dlt
from dlt.extract import DltResource

from analytics_assets.source.client import quote_id
from analytics_assets.source.run import Run
from analytics_assets.source.shapes import settings_row


def template_settings_resource(run: Run) -> DltResource:
    def settings_of(template: dict[str, Any]) -> dict[str, Any]:
        body = run.client.get_object(f"/v2/templates/{quote_id(template['id'])}/settings")
        return settings_row(template["id"], body or {})

    @dlt.resource(
        name="template_settings",
        primary_key="template_id",
        write_disposition="merge",
        # Shapes vary per template (`recording` null or an object, `retry` often {}):
        # JSON columns keep them whole and never split by shape.
        columns={"recording": {"data_type": "json"}, "retry": {"data_type": "json"}},
        parallelized=True,
    )
    def template_settings() -> Iterator[Any]:
        templates = (t for page in run.listing("/v2/templates") for t in page)
        yield from run.fan_out(settings_of, templates)

    return template_settings
