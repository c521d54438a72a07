"""The failure alert's text: every secret masked, whole, before an error is cut short."""

from __future__ import annotations

import pytest

from analytics_assets.defs.alerts import MAX_ERROR_CHARS, failure_message, known_secrets, redact

APP_SECRET = "app-secret-Zq8Wv4Lr2Np6Tx0Ks-3fJ9cM1yQ7bH5dR"
API_TOKEN = "eyJhbGciOiJIUzI1NiJ9.static-token-payload.sig-0123456789"


def slices(secret: str, width: int = 8) -> list[str]:
    return [secret[i : i + width] for i in range(len(secret) - width + 1)]


def test_failure_message_masks_a_secret_spanning_the_cut_before_cutting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCES__ANALYTICS_API__APP_SECRET", APP_SECRET)
    head = "x" * (MAX_ERROR_CHARS - 12)  # the secret starts 12 characters before the cut
    error = f"{head}{APP_SECRET} and more after it"
    message = failure_message("activity_refresh", "run-1", [("events", error)], None)
    assert all(piece not in message for piece in slices(APP_SECRET))
    lines = message.splitlines()
    assert lines[0] == "Dagster run failed: job `activity_refresh`, run `run-1`"
    masked = f"{head}*** and more after it"
    assert len(masked) > MAX_ERROR_CHARS
    assert lines[1] == f"- step `events`: {masked[:MAX_ERROR_CHARS]} ..."


def test_failure_message_cuts_a_long_error_after_masking() -> None:
    error = "y" * (MAX_ERROR_CHARS + 500)
    message = failure_message("job", "run-2", [("step", error)], None)
    assert message.splitlines()[1] == f"- step `step`: {'y' * MAX_ERROR_CHARS} ..."


def test_failure_message_without_failed_steps_masks_the_run_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("API_TOKEN", API_TOKEN)
    message = failure_message("job", "run-3", [], f"run crashed with token {API_TOKEN}")
    assert message == "Dagster run failed: job `job`, run `run-3`\n- run crashed with token ***"


def test_redact_masks_configured_secrets_bearer_tokens_and_url_passwords() -> None:
    text = (
        f"key {APP_SECRET}; header Authorization: Bearer abc.def-ghi "
        "dsn postgresql://loader:pg-pass-77@db.internal:5432/analytics; "
        "broker redis://:redis-pw-1@redis:6379/0"
    )
    assert redact(text, [APP_SECRET, None, ""]) == (
        "key ***; header Authorization: Bearer *** "
        "dsn postgresql://loader:***@db.internal:5432/analytics; "
        "broker redis://:***@redis:6379/0"
    )


def test_redact_masks_a_longer_secret_whole_before_a_shorter_one_inside_it() -> None:
    assert redact("token abcd-efgh-ijkl", ["efgh", "abcd-efgh-ijkl"]) == "token ***"


def test_redact_leaves_values_too_short_to_be_secrets() -> None:
    assert redact("job run 1 of 3", ["1", "of"]) == "job run 1 of 3"


def test_known_secrets_reads_them_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKEN", API_TOKEN)
    monkeypatch.setenv("SOURCES__ANALYTICS_API__APP_ACCESS_KEY", "access-key-0042")
    monkeypatch.setenv("SOURCES__ANALYTICS_API__APP_SECRET", APP_SECRET)
    monkeypatch.setenv("ANALYTICS_ALERT_WEBHOOK_URL", "https://hooks.example.com/T0/B0/webhook")
    monkeypatch.setenv("BILLING_PASSWORD", "billing-pass")
    monkeypatch.setenv("SOURCES__ANALYTICS_API__TOKEN_LIFETIME_SECONDS", "86400")
    monkeypatch.setenv(
        "DAGSTER_POSTGRES_URL", "postgresql://dagster:pg-secret-9@pg.internal:5432/dagster_db"
    )
    monkeypatch.setenv("DAGSTER_CELERY_BROKER_URL", "redis://:broker-pw-5@redis.internal:6379/0")
    monkeypatch.setenv(
        "DESTINATION__MOTHERDUCK__CREDENTIALS", "md:analytics?motherduck_token=md-token-77"
    )
    secrets = known_secrets()
    for expected in (
        API_TOKEN,
        "access-key-0042",
        APP_SECRET,
        "https://hooks.example.com/T0/B0/webhook",
        "billing-pass",
        "pg-secret-9",
        "broker-pw-5",
        "md-token-77",
    ):
        assert expected in secrets
    for not_secret in (
        "86400",
        "pg.internal",
        "5432",
        "dagster_db",
        "dagster",
        "redis.internal",
        "6379",
        "analytics",
    ):
        assert not_secret not in secrets
    assert secrets == sorted(secrets, key=len, reverse=True)


def test_known_secrets_take_nothing_from_a_database_url_without_a_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", "postgresql://dagster@pg.internal:5432/dagster_db")
    assert known_secrets() == []
