"""The baseline: the specification's REST config as plain dlt would run it.

    python benchmarks/plain_dlt.py BASE_URL TOKEN DUCKDB_FILE

The same endpoints, made valid for dlt and for the API's shapes (paginators, data selectors,
peers as rows, settings keyed by template, 404 for rooms that are not live) but otherwise as dlt
runs a `rest_api` source by default: one request at a time, children for every parent row
(peers and events for every room), dlt's default loader format. Not part of the product.
"""

from __future__ import annotations

import sys
from typing import Any

import dlt
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator
from dlt.sources.rest_api import RESTAPIConfig, rest_api_source
from dlt.sources.rest_api.typing import Endpoint


def _cursor(path: str) -> JSONResponseCursorPaginator:
    return JSONResponseCursorPaginator(
        cursor_path=path, cursor_param="start", stop_after_empty_page=True
    )


def _list(path: str) -> Endpoint:
    return {
        "path": path,
        "data_selector": "data",
        "params": {"limit": 100},
        "paginator": _cursor("last"),
    }


def _child(path: str) -> Endpoint:
    return {"path": path, "paginator": "single_page", "data_selector": "$"}


def _peers_as_list(session: dict[str, Any]) -> dict[str, Any]:
    return {**session, "peers": list((session.get("peers") or {}).values())}


def _rename(old: str, new: str) -> Any:
    def rename(row: dict[str, Any]) -> dict[str, Any]:
        row[new] = row.pop(old)
        return row

    return rename


def _destinations(body: dict[str, Any]) -> Any:
    template_id = body.pop("_templates_id")
    for kind, entries in body.items():
        for key, destination in (entries or {}).items():
            yield {**destination, "template_id": template_id, "kind": kind, "key": key}


def config(base_url: str, token: str) -> RESTAPIConfig:
    return {
        "client": {"base_url": base_url, "auth": {"type": "bearer", "token": token}},
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
        "resources": [
            {"name": "rooms", "endpoint": _list("/v2/rooms")},
            {
                "name": "sessions",
                "endpoint": _list("/v2/sessions"),
                "processing_steps": [{"map": _peers_as_list}],
            },
            {
                "name": "active_room_peers",
                "write_disposition": "replace",
                "endpoint": {
                    "path": "/v2/active-rooms/{resources.rooms.id}/peers",
                    "data_selector": "peers.*",
                    "paginator": "single_page",
                    "response_actions": [{"status_code": 404, "action": "ignore"}],
                },
                "include_from_parent": ["id"],
                "processing_steps": [{"map": _rename("_rooms_id", "room_id")}],
            },
            {"name": "templates", "endpoint": _list("/v2/templates")},
            {
                "name": "template_settings",
                "primary_key": "template_id",
                "endpoint": _child("/v2/templates/{resources.templates.id}/settings"),
                "include_from_parent": ["id"],
                "processing_steps": [{"map": _rename("_templates_id", "template_id")}],
            },
            {
                "name": "templates_destinations",
                "primary_key": ["template_id", "kind", "key"],
                "write_disposition": "replace",
                "endpoint": _child("/v2/templates/{resources.templates.id}/destinations"),
                "include_from_parent": ["id"],
                "processing_steps": [{"yield_map": _destinations}],
            },
            {
                "name": "analytics_events",
                "endpoint": {
                    "path": "/v2/analytics/events",
                    "data_selector": "events",
                    "params": {"room_id": "{resources.rooms.id}", "limit": 100},
                    "paginator": _cursor("next"),
                },
            },
            {"name": "recordings", "endpoint": _list("/v2/recordings")},
        ],
    }


def main() -> None:
    base_url, token, db = sys.argv[1:4]
    pipeline = dlt.pipeline(
        pipeline_name="plain_dlt_baseline",
        destination=dlt.destinations.duckdb(credentials=db),
        dataset_name="analytics",
    )
    pipeline.run(rest_api_source(config(base_url, token), name="analytics_api"))


if __name__ == "__main__":
    main()
