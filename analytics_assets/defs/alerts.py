"""Tell someone when a run fails: a log line always, a webhook POST when one is configured.

The webhook gets Slack-compatible JSON (`{"text": ...}`) at the URL in
`ANALYTICS_ALERT_WEBHOOK_URL`. The message names the job, the run, the failed steps and their
errors. Every secret the project knows of is masked, wherever it was configured (the
environment, `.dlt/secrets.toml`): the API token, the app access key and secret, the
warehouse's credentials, Dagster's database and the Celery broker URLs, the webhook URL itself;
so are bearer tokens and the password of any URL (`scheme://user:password@host`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import dagster as dg
import requests

WEBHOOK_ENV = "ANALYTICS_ALERT_WEBHOOK_URL"
#: Variables whose values must never leave in an alert (beyond those named like a secret).
SECRET_ENVS = (
    "API_TOKEN",
    "SOURCES__ANALYTICS_API__API_TOKEN",
    "SOURCES__ANALYTICS_API__APP_ACCESS_KEY",
    "SOURCES__ANALYTICS_API__APP_SECRET",
    "DAGSTER_POSTGRES_URL",
    "DAGSTER_CELERY_BROKER_URL",
    "DAGSTER_CELERY_BACKEND_URL",
    WEBHOOK_ENV,
)
#: Any variable named like one of these holds a secret too (DESTINATION__POSTGRES__CREDENTIALS).
SECRET_NAME = re.compile(r"(?i)(secret|token|password|credentials|access_key|webhook)")
#: The same settings where dlt reads them (`.dlt/secrets.toml`, `.dlt/config.toml`, the env).
SECRET_SETTINGS = (
    "sources.analytics_api.api_token",
    "sources.analytics_api.app_access_key",
    "sources.analytics_api.app_secret",
    "destination.postgres.credentials",
    "destination.motherduck.credentials",
    "destination.bigquery.credentials",
    "destination.snowflake.credentials",
)
MAX_ERROR_CHARS = 1500
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\"]+")
_URL_PASSWORD = re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+(@)")


def known_secrets() -> list[str]:
    """Every secret value configured for this process, longest first (so that a URL is masked
    whole before its password alone)."""
    values: set[str] = set()
    for name, value in os.environ.items():
        if name in SECRET_ENVS or (SECRET_NAME.search(name) and "DUCKDB" not in name):
            values.update(_parts(value))  # (a DuckDB file's path is no secret)
    try:
        import dlt

        for key in SECRET_SETTINGS:
            try:
                values.update(_parts(dlt.secrets.get(key)))
            except Exception:  # an unreadable setting is not a reason to lose the alert
                continue
    except ImportError:
        pass
    return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)


def _parts(value: Any) -> Iterator[str]:
    """A secret value, and the pieces of it that are secret alone (a URL's password, the
    fields of a credentials mapping)."""
    if value is None:
        return
    if isinstance(value, dict):
        for inner in value.values():
            yield from _parts(inner)
        return
    text = str(value)
    yield text
    if "://" in text:
        password = urlsplit(text).password
        if password:
            yield password
            yield unquote(password)


def redact(text: str, secrets: Iterable[str | None]) -> str:
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    text = _URL_PASSWORD.sub(r"\1***\2", text)
    return _BEARER.sub(r"\1***", text)


def failure_message(
    job_name: str, run_id: str, failures: list[tuple[str, str]], run_error: str | None
) -> str:
    lines = [f"Dagster run failed: job `{job_name}`, run `{run_id}`"]
    for step, error in failures:
        lines.append(f"- step `{step}`: {error[:MAX_ERROR_CHARS]}")
    if not failures and run_error:
        lines.append(f"- {run_error[:MAX_ERROR_CHARS]}")
    return redact("\n".join(lines), known_secrets())


def post_to_webhook(url: str, text: str, *, timeout: float = 10.0) -> None:
    response = requests.post(url, json={"text": text}, timeout=timeout)
    response.raise_for_status()


@dg.run_failure_sensor(
    name="report_failed_runs",
    description=f"Logs every failed run; POSTs it to ${WEBHOOK_ENV} (Slack-compatible) if set.",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def report_failed_runs(context: dg.RunFailureSensorContext) -> None:
    failures = []
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        # The step error wraps the user's exception; its message is the one that says why.
        error_info = data.error.cause or data.error if data and data.error else None
        error = error_info.message.strip() if error_info else event.message or ""
        failures.append((event.step_key or "?", error))
    text = failure_message(
        context.dagster_run.job_name,
        context.dagster_run.run_id,
        failures,
        context.failure_event.message,
    )
    context.log.error(text)
    url = os.environ.get(WEBHOOK_ENV)
    if url:
        try:
            post_to_webhook(url, text)
        except requests.RequestException as exc:
            # Say what went wrong without the URL (a webhook URL is a credential).
            status = getattr(exc.response, "status_code", None)
            context.log.error(
                f"Could not POST the alert to ${WEBHOOK_ENV}: {type(exc).__name__}"
                + (f" (HTTP {status})" if status else "")
            )


defs = dg.Definitions(sensors=[report_failed_runs])
