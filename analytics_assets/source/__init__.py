"""The `analytics_api` dlt source: the 100ms server API v2, as eight tables.

The specification's REST config, made valid for dlt and adapted where the API's real shapes
(`shared/api/API_NOTES.md`) demand it; `resources.py` says, where each table is made, why.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

import dlt
from dlt.extract import DltResource

from analytics_assets.source.client import (
    AnalyticsApiClient,
    AnalyticsApiError,
    EndlessPagesError,
    MalformedResponseError,
    RepeatingCursorError,
)
from analytics_assets.source.resources import analytics_resources
from analytics_assets.source.settings import (
    DEFAULT_BASE_URL,
    MAX_PAGES,
    REFRESH_MARGIN_SECONDS,
    REQUEST_BACKOFF_FACTOR,
    REQUEST_MAX_ATTEMPTS,
    REQUEST_MAX_RETRY_DELAY,
    REQUEST_TIMEOUT,
    RESOURCE_NAMES,
    SOURCE_NAME,
    WORKERS,
)
from analytics_assets.source.tokens import (
    TOKEN_LIFETIME_SECONDS,
    ManagementTokenAuth,
    MissingApiTokenError,
)

logger = logging.getLogger(__name__)

__all__ = [
    "RESOURCE_NAMES",
    "AnalyticsApiError",
    "EndlessPagesError",
    "MalformedResponseError",
    "MissingApiTokenError",
    "RepeatingCursorError",
    "analytics_api",
]


@dlt.source(name=SOURCE_NAME, section=SOURCE_NAME)
def analytics_api(
    base_url: str = DEFAULT_BASE_URL,
    api_token: str | None = dlt.secrets.value,
    app_access_key: str | None = dlt.secrets.value,
    app_secret: str | None = dlt.secrets.value,
    token_lifetime_seconds: float = TOKEN_LIFETIME_SECONDS,
    request_max_attempts: int = REQUEST_MAX_ATTEMPTS,
    request_backoff_factor: float = REQUEST_BACKOFF_FACTOR,
    request_max_retry_delay: float = REQUEST_MAX_RETRY_DELAY,
    request_timeout: float = REQUEST_TIMEOUT,
    workers: int = WORKERS,
    max_pages: int = MAX_PAGES,
    refresh_margin_seconds: float = REFRESH_MARGIN_SECONDS,
    full_refresh: bool = False,
    tables: Sequence[str] = RESOURCE_NAMES,
) -> list[DltResource]:
    """The eight resources of the analytics API.

    Every argument is read from `[sources.analytics_api]` in `.dlt/` or the environment
    (`SOURCES__ANALYTICS_API__<NAME>`); `api_token` also from `API_TOKEN`. With `app_access_key`
    and `app_secret`, a management token is minted per run instead (and wins over `api_token`).
    Missing credentials do not fail here, only at the first request, so the asset graph loads
    without any.
    `tables` names the tables a run loads (incremental cursors only consult those);
    `full_refresh` ignores the cursors and reads everything the API serves.
    """
    if api_token and (app_access_key or app_secret):
        logger.warning(
            "Both api_token and app_access_key/app_secret are configured: minting management "
            "tokens from the key and secret; api_token is ignored."
        )
    auth = ManagementTokenAuth(
        token=api_token,
        access_key=app_access_key,
        secret=app_secret,
        lifetime_seconds=token_lifetime_seconds,
    )
    client = AnalyticsApiClient(
        base_url,
        auth,
        max_attempts=request_max_attempts,
        backoff_factor=request_backoff_factor,
        max_retry_delay=request_max_retry_delay,
        timeout=request_timeout,
        max_pages=max_pages,
        workers=workers,
    )
    return analytics_resources(
        client,
        tables=tables,
        full_refresh=full_refresh,
        margin=timedelta(seconds=refresh_margin_seconds),
    )
