"""Tell someone when a run fails: a log line always, a webhook POST when one is configured.

The webhook gets Slack-compatible JSON (`{"text": ...}`) at the URL in
`ANALYTICS_ALERT_WEBHOOK_URL`. The message names the job, the run, the failed steps and their
errors. Every secret the project knows of is masked, wherever it was configured (the
environment, `.dlt/secrets.toml`): the API token, the app access key and secret, the webhook
URL itself, and the secret pieces of the warehouse's credentials and of Dagster's database and
the Celery broker URLs (passwords, tokens), not the hosts or databases they name; so are
bearer tokens and the password of any URL (`scheme://user:password@host`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import dagster as dg
import requests

WEBHOOK_ENV = "ANALYTICS_ALERT_WEBHOOK_URL"
#: Variables whose whole value is a secret (beyond those named like one).
SECRET_ENVS = (
    "API_TOKEN",
    "SOURCES__ANALYTICS_API__API_TOKEN",
    "SOURCES__ANALYTICS_API__APP_ACCESS_KEY",
    "SOURCES__ANALYTICS_API__APP_SECRET",
    WEBHOOK_ENV,
)
#: Variables named like a secret hold one whole (`..._PASSWORD`, `..._TOKEN`); not settings
#: about one (`..._TOKEN_LIFETIME_SECONDS`).
SECRET_NAME = re.compile(r"(?i)(^|_)(secret|token|password|access_key|private_key|api_key)$")
#: Variables and settings that locate something and may carry a secret inside: a database or
#: broker URL (its password), a token in a query (`md:...?motherduck_token=`), a credentials
#: table (its password, token or key fields). Only those pieces are secret, not the host, port
#: or database they name.
LOCATOR_ENVS = ("DAGSTER_POSTGRES_URL", "DAGSTER_CELERY_BROKER_URL", "DAGSTER_CELERY_BACKEND_URL")
LOCATOR_NAME = re.compile(r"(?i)credentials")
#: The same settings where dlt reads them (`.dlt/secrets.toml`, `.dlt/config.toml`, the env).
SECRET_SETTINGS = (
    "sources.analytics_api.api_token",
    "sources.analytics_api.app_access_key",
    "sources.analytics_api.app_secret",
)
LOCATOR_SETTINGS = tuple(
    f"destination.{kind}.credentials"
    for kind in ("postgres", "duckdb", "motherduck", "bigquery", "snowflake")
)
#: Fields of a credentials table, and query parameters of a URL, that hold a secret.
SECRET_FIELD = re.compile(r"(?i)(password|secret|token|private_key|api_key|access_key)")
MAX_ERROR_CHARS = 1500
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\"]+")
_URL_PASSWORD = re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+(@)")


def known_secrets() -> list[str]:
    """Every secret value configured for this process, longest first (so that a longer one is
    masked whole before a shorter one inside it)."""
    values: set[str] = set()
    for name, value in os.environ.items():
        if name in SECRET_ENVS or SECRET_NAME.search(name):
            values.add(value)
        elif name in LOCATOR_ENVS or LOCATOR_NAME.search(name):
            values.update(_secret_parts(value))
    try:
        import dlt

        for key in (*SECRET_SETTINGS, *LOCATOR_SETTINGS):
            try:
                value = dlt.secrets.get(key)
            except Exception:  # an unreadable setting is not a reason to lose the alert
                continue
            if key in SECRET_SETTINGS:
                values.update([str(value)] if value else [])
            else:
                values.update(_secret_parts(value))
    except ImportError:
        pass
    return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)


def _secret_parts(value: Any) -> Iterator[str]:
    """The secret pieces of a locator: a URL's password and secret query parameters, the
    secret fields of a credentials table."""
    if isinstance(value, dict):
        for field, inner in value.items():
            if SECRET_FIELD.search(str(field)) and inner:
                yield str(inner)
            elif isinstance(inner, dict | str):
                yield from _secret_parts(inner)
        return
    if not isinstance(value, str) or not value:
        return
    url = urlsplit(value)
    if url.password:
        yield url.password
        yield unquote(url.password)
    for field, inner in parse_qsl(url.query):
        if SECRET_FIELD.search(field) and inner:
            yield inner


def redact(text: str, secrets: Iterable[str | None]) -> str:
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    text = _URL_PASSWORD.sub(r"\1***\2", text)
    return _BEARER.sub(r"\1***", text)


def failure_message(
    job_name: str, run_id: str, failures: list[tuple[str, str]], run_error: str | None
) -> str:
    """The alert's text. Each error is masked whole, then cut to `MAX_ERROR_CHARS`: cut first,
    a secret spanning the cut would no longer match and its first part would be sent."""
    secrets = known_secrets()
    lines = [redact(f"Dagster run failed: job `{job_name}`, run `{run_id}`", secrets)]
    for step, error in failures:
        lines.append(f"- step `{step}`: {_cut(redact(error, secrets))}")
    if not failures and run_error:
        lines.append(f"- {_cut(redact(run_error, secrets))}")
    return "\n".join(lines)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + " ..."


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


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(sensors=[report_failed_runs])
