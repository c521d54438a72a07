"""The `analytics_api` dlt source: the 100ms server API v2, as eight tables.

The specification's REST config, made valid for dlt and adapted where the API's real shapes and
readings (`shared/api/API_NOTES.md`) demand it. Where things live:

- `client.py`: HTTP (auth, retries, the 429 gate, guards); `pagination.py`: the paginators;
- `run.py`: what one run shares (listings read by several tables, the bound on requests);
- `cursors.py`: the cursors over the session listing;
- `tables/<table>.py`: each table's refresh rule; `shapes.py`: maps keyed by ids made rows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt
from dlt.extract import DltResource

from analytics_assets.source.client import AnalyticsApiClient
from analytics_assets.source.errors import (
    AnalyticsApiError,
    ApiHttpError,
    ApiUnreachableError,
    EndlessPagesError,
    MalformedResponseError,
    RateLimitedError,
    RepeatingCursorError,
)
from analytics_assets.source.retries import RetryPolicy
from analytics_assets.source.run import EventCounts, Run, RunSettings
from analytics_assets.source.settings import (
    DEFAULT_BASE_URL,
    EVENT_RETENTION_DAYS,
    LATE_EVENT_LOOKBACK_HOURS,
    MAX_PAGES,
    RATE_LIMIT_MAX_WAIT,
    REFRESH_MARGIN_SECONDS,
    REQUEST_BACKOFF_FACTOR,
    REQUEST_MAX_ATTEMPTS,
    REQUEST_MAX_RETRY_DELAY,
    REQUEST_TIMEOUT,
    RESOURCE_NAMES,
    SOURCE_NAME,
    WORKERS,
)
from analytics_assets.source.tables import TABLES
from analytics_assets.source.tokens import (
    TOKEN_LIFETIME_SECONDS,
    ManagementTokenAuth,
    MissingApiTokenError,
)

logger = logging.getLogger(__name__)

__all__ = [
    "RESOURCE_NAMES",
    "AnalyticsApiError",
    "ApiHttpError",
    "ApiUnreachableError",
    "EndlessPagesError",
    "EventCounts",
    "MalformedResponseError",
    "MissingApiTokenError",
    "RateLimitedError",
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
    rate_limit_max_wait: float = RATE_LIMIT_MAX_WAIT,
    request_timeout: float = REQUEST_TIMEOUT,
    workers: int = WORKERS,
    max_pages: int = MAX_PAGES,
    refresh_margin_seconds: float = REFRESH_MARGIN_SECONDS,
    late_event_lookback_hours: float = LATE_EVENT_LOOKBACK_HOURS,
    event_retention_days: int = EVENT_RETENTION_DAYS,
    start_date: str | None = None,
    full_refresh: bool = False,
    sweep: bool = False,
    tables: Sequence[str] = RESOURCE_NAMES,
    event_counts: EventCounts | None = None,
    inherited_state: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[DltResource]:
    """The eight resources of the analytics API. Settings come from `[sources.analytics_api]`
    (`.dlt/`, `SOURCES__ANALYTICS_API__<NAME>`); credentials are checked at the first request.

    `tables`: the tables a run loads (shared listings consult only their cursors);
    `full_refresh`: ignore the cursors (read since `start_date`); `sweep`: the daily run, whose
    reconciliation needs `event_counts`; `inherited_state`: a state for tables with none.
    """
    auth = token_auth(api_token, app_access_key, app_secret, token_lifetime_seconds)
    policy = RetryPolicy(
        max_attempts=request_max_attempts,
        backoff_factor=request_backoff_factor,
        max_retry_delay=request_max_retry_delay,
        rate_limit_max_wait=rate_limit_max_wait,
        timeout=request_timeout,
    )
    client = AnalyticsApiClient(base_url, auth, policy=policy, max_pages=max_pages, workers=workers)
    settings = RunSettings(
        tables=frozenset(tables),
        full_refresh=full_refresh,
        sweep=sweep,
        margin=timedelta(seconds=refresh_margin_seconds),
        lookback=timedelta(hours=late_event_lookback_hours),
        retention=timedelta(days=event_retention_days),
        start_date=parse_start_date(start_date),
        event_counts=event_counts,
        inherited_state=inherited_state,
    )
    run = Run(client, settings)
    return [make(run) for make in TABLES.values()]


def token_auth(
    api_token: str | None, access_key: str | None, secret: str | None, lifetime: float
) -> ManagementTokenAuth:
    """The key and secret when configured (a token minted per run), else the static token."""
    if api_token and (access_key or secret):
        logger.warning(
            "Both api_token and app_access_key/app_secret are configured: minting management "
            "tokens from the key and secret; api_token is ignored."
        )
    return ManagementTokenAuth(
        token=api_token, access_key=access_key, secret=secret, lifetime_seconds=lifetime
    )


def parse_start_date(value: str | None) -> datetime | None:
    """`2024-05-01` or `2024-05-01T12:00:00Z`; a date without a zone is UTC."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"start_date={value!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
