"""Tell someone when a run fails: a log line always, a webhook POST when one is configured.

The webhook gets Slack-compatible JSON (`{"text": ...}`) at the URL in
`ANALYTICS_ALERT_WEBHOOK_URL`. The message names the job, the run, the failed steps and their
errors; known secrets and bearer tokens are masked, and the URL itself is never logged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

import dagster as dg
import requests

WEBHOOK_ENV = "ANALYTICS_ALERT_WEBHOOK_URL"
#: Variables whose values must never leave in an alert.
SECRET_ENVS = (
    "API_TOKEN",
    "SOURCES__ANALYTICS_API__API_TOKEN",
    "SOURCES__ANALYTICS_API__APP_SECRET",
    WEBHOOK_ENV,
)
MAX_ERROR_CHARS = 1500
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\"]+")


def redact(text: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return _BEARER.sub(r"\1***", text)


def failure_message(
    job_name: str, run_id: str, failures: list[tuple[str, str]], run_error: str | None
) -> str:
    lines = [f"Dagster run failed: job `{job_name}`, run `{run_id}`"]
    for step, error in failures:
        lines.append(f"- step `{step}`: {error[:MAX_ERROR_CHARS]}")
    if not failures and run_error:
        lines.append(f"- {run_error[:MAX_ERROR_CHARS]}")
    return redact("\n".join(lines), (os.environ.get(name) for name in SECRET_ENVS))


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
