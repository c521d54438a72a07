"""The `analytics_api` dlt source: the 100ms server API v2, as eight tables.

It is the specification's REST API config, made valid for dlt and adapted where the API's real
shapes (`shared/api/API_NOTES.md`) demand it; each adaptation says why where it is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import dlt
from dlt.extract import DltResource
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.rest_api import RESTAPIConfig, rest_api_resources
from dlt.sources.rest_api.typing import Endpoint

from analytics_assets.source.helpers import (
    GuardedCursorPaginator,
    ManagementTokenAuth,
    MissingApiTokenError,
    RepeatingCursorError,
    destinations_as_rows,
    first_session_per_room,
    rename_parent_key,
    retrying_session,
    template_without_embedded_children,
)
from analytics_assets.source.incremental import incremental_resources
from analytics_assets.source.settings import (
    DEFAULT_BASE_URL,
    PAGE_SIZE,
    REFRESH_MARGIN_SECONDS,
    REQUEST_BACKOFF_FACTOR,
    REQUEST_MAX_ATTEMPTS,
    REQUEST_MAX_RETRY_DELAY,
    REQUEST_TIMEOUT,
    RESOURCE_NAMES,
    RETRY_STATUSES,
    SOURCE_NAME,
)

__all__ = [
    "RESOURCE_NAMES",
    "MissingApiTokenError",
    "RepeatingCursorError",
    "analytics_api",
]


def _list_endpoint(path: str, **params: Any) -> Endpoint:
    # The spec's `stop_condition` is not a dlt key; the paginator stops on a missing/empty `last`
    # and after the empty page that follows a final page still carrying `last`.
    return {
        "path": path,
        "data_selector": "data",
        "params": {"limit": PAGE_SIZE, **params},
        "paginator": GuardedCursorPaginator("last"),
    }


def _object_endpoint(path: str) -> Endpoint:
    # One bare object per call: no pagination, the whole body is the item.
    return {"path": path, "paginator": "single_page", "data_selector": "$"}


@dlt.source(name=SOURCE_NAME, section=SOURCE_NAME)
def analytics_api(
    base_url: str = DEFAULT_BASE_URL,
    api_token: str | None = dlt.secrets.value,
    request_max_attempts: int = REQUEST_MAX_ATTEMPTS,
    request_backoff_factor: float = REQUEST_BACKOFF_FACTOR,
    request_max_retry_delay: float = REQUEST_MAX_RETRY_DELAY,
    request_timeout: float = REQUEST_TIMEOUT,
    refresh_margin_seconds: float = REFRESH_MARGIN_SECONDS,
    full_refresh: bool = False,
    tables: Sequence[str] = RESOURCE_NAMES,
) -> list[DltResource]:
    """The eight resources of the analytics API.

    Every argument is read from `[sources.analytics_api]` in `.dlt/` or the environment
    (`SOURCES__ANALYTICS_API__<NAME>`); `api_token` also from `API_TOKEN`. A missing token does
    not fail here, only at the first request, so the asset graph loads without one.
    `tables` names the tables a run loads (incremental cursors only consult those);
    `full_refresh` ignores the cursors and reads everything the API serves.
    """
    session = retrying_session(
        status_codes=RETRY_STATUSES,
        max_attempts=request_max_attempts,
        backoff_factor=request_backoff_factor,
        max_retry_delay=request_max_retry_delay,
        timeout=request_timeout,
    )
    auth = ManagementTokenAuth(token=api_token)
    config: RESTAPIConfig = {
        "client": {"base_url": base_url, "auth": auth, "session": session},
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
        "resources": [
            {
                # Hidden: the reference's own way to find live rooms. One per room.
                "name": "live_sessions",
                "selected": False,
                "endpoint": _list_endpoint("/v2/sessions", active="true"),
                "processing_steps": [{"filter": first_session_per_room()}],
            },
            {
                "name": "active_room_peers",
                # A snapshot of who is in a room now: replaced, so a peer who left disappears.
                "write_disposition": "replace",
                "endpoint": {
                    "path": "/v2/active-rooms/{resources.live_sessions.room_id}/peers",
                    # `peers` is an object keyed by peer id: select its values, one row each.
                    "data_selector": "peers.*",
                    "paginator": "single_page",
                    # A room that ended since the listing answers 404 (or empty peers): no rows.
                    "response_actions": [{"status_code": 404, "action": "ignore"}],
                },
                "include_from_parent": ["room_id"],
                "processing_steps": [
                    {"map": rename_parent_key("_live_sessions_room_id", "room_id")}
                ],
            },
            {
                "name": "templates",
                "endpoint": _list_endpoint("/v2/templates"),
                "processing_steps": [{"map": template_without_embedded_children}],
            },
            {
                "name": "template_settings",
                # One bare object with no id of its own: keyed by the template it belongs to.
                "primary_key": "template_id",
                "endpoint": _object_endpoint("/v2/templates/{resources.templates.id}/settings"),
                "include_from_parent": ["id"],
                "processing_steps": [{"map": rename_parent_key("_templates_id", "template_id")}],
                # Shapes vary per template (`recording` null or an object, `retry` often {}):
                # keep them as JSON so the columns exist and never split by shape.
                "columns": {"recording": {"data_type": "json"}, "retry": {"data_type": "json"}},
            },
            {
                "name": "templates_destinations",
                # An object of maps keyed by destination key: one row per (template, kind, key).
                # Replaced on refresh so a destination removed upstream leaves the table too.
                "primary_key": ["template_id", "kind", "key"],
                "write_disposition": "replace",
                "endpoint": _object_endpoint("/v2/templates/{resources.templates.id}/destinations"),
                "include_from_parent": ["id"],
                "processing_steps": [{"yield_map": destinations_as_rows}],
            },
            {
                # No time filter exists for recordings, and their status changes after
                # creation (running -> completed): read in full, merged on id.
                "name": "recordings",
                "endpoint": _list_endpoint("/v2/recordings"),
            },
        ],
    }
    client = RESTClient(base_url=base_url, auth=auth, session=session)
    incremental = incremental_resources(
        client,
        tables=tables,
        full_refresh=full_refresh,
        margin=timedelta(seconds=refresh_margin_seconds),
    )
    return [*incremental, *rest_api_resources(config)]
