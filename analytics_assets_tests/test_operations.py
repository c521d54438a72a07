"""Schedules, the failure alert and the data checks, as a team leaving it running meets them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import dagster._time as dagster_time
import duckdb
import pytest
from dagster._core.definitions.asset_checks.asset_check_factories.freshness_checks import (
    last_update,
)

from analytics_assets.defs.alerts import (
    MAX_ERROR_CHARS,
    WEBHOOK_ENV,
    redact,
    report_failed_runs,
)
from analytics_assets.defs.assets import build_analytics_assets
from analytics_assets.defs.checks import PK_CHECK, ROOM_CHECK
from analytics_assets.simulator import ApiSimulator, FaultPlan, World
from analytics_assets.simulator.expected import compare
from analytics_assets.simulator.world import parse_iso
from analytics_assets_tests.conftest import project_defs, resources


def run_job(name: str, **kwargs: Any) -> dg.ExecuteInProcessResult:
    return project_defs().resolve_job_def(name).execute_in_process(**kwargs)


def check_results(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], bool]:
    return {
        (e.asset_key.path[-1], e.check_name): e.passed for e in result.get_asset_check_evaluations()
    }


# ---- schedules -----------------------------------------------------------------------------


def test_schedules_jobs_and_sensors_are_pinned() -> None:
    schedules = {
        s.name: (s.cron_schedule, s.job_name)
        for s in project_defs().schedules or []
        if isinstance(s, dg.ScheduleDefinition)
    }
    assert schedules == {
        "live_peers_every_5_minutes": ("*/5 * * * *", "live_peers_refresh"),
        "activity_hourly": ("7 * * * *", "activity_refresh"),
        "daily_sweep_at_0317": ("17 3 * * *", "daily_sweep"),
    }
    graph = project_defs().resolve_asset_graph()

    def tables(job: str) -> set[str]:
        keys = project_defs().resolve_job_def(job).asset_layer.selected_asset_keys
        return {k.path[-1] for k in keys if graph.has(k)}

    assert tables("live_peers_refresh") == {"active_room_peers"}
    assert tables("activity_refresh") == {
        "rooms",
        "sessions",
        "analytics_events",
        "recordings",
        "peer_minutes_daily",
        "unmuted_time",
        "client_errors_daily",
    }
    assert tables("daily_sweep") == {
        "templates",
        "template_settings",
        "templates_destinations",
        "rooms",
        "recordings",
        "analytics_events",
        "unmuted_time",
        "client_errors_daily",
    }
    sensors = {s.name: s.default_status for s in project_defs().sensors or []}
    assert sensors == {
        "report_failed_runs": dg.DefaultSensorStatus.RUNNING,
        "freshness_every_5_minutes": dg.DefaultSensorStatus.RUNNING,
    }


def test_the_three_jobs_refresh_every_table_exactly(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    for job in ("activity_refresh", "daily_sweep", "live_peers_refresh"):
        result = run_job(job)
        assert result.success, job
        assert all(check_results(result).values()), job
    assert [d for d in compare(warehouse, world).values() if not d.exact] == []
    # The daily sweep reads rooms and recordings in full, whatever their cursors say, and
    # asks each room's events total once (limit=1); it reads again no room that is complete.
    api.reset_requests()
    assert run_job("daily_sweep").success
    assert all("after" not in r.params for r in api.requests_to("/v2/rooms"))
    assert all("session_id" not in r.params for r in api.requests_to("/v2/recordings"))
    events = api.requests_to("/v2/analytics/events")
    assert len(events) == len(world.rooms) and all(r.params["limit"] == ["1"] for r in events)


# ---- the reconciliation ----------------------------------------------------------------------


def test_events_deleted_by_hand_are_named_by_the_check_and_back_after_a_day(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    """The reconciliation: the API's count per room against the warehouse's."""
    instance = dg.DagsterInstance.ephemeral()
    assert run_job("activity_refresh", instance=instance).success
    assert run_job("daily_sweep", instance=instance).success
    # A room where nothing happens now: no hourly rule reads it again.
    recent = world.clock - timedelta(hours=24)
    quiet = {r["id"] for r in world.rooms} - {
        s["room_id"] for s in world.sessions if s["active"] or parse_iso(s["updated_at"]) >= recent
    }
    retained = world.retained_events()
    victim = max(quiet, key=lambda r: sum(e["data"]["room_id"] == r for e in retained))
    with duckdb.connect(str(warehouse)) as con:
        deleted = con.execute(
            "DELETE FROM analytics.analytics_events WHERE id IN (SELECT id FROM "
            f"analytics.analytics_events WHERE data__room_id = '{victim}' LIMIT 7)"
        ).fetchall()
    assert deleted == [(7,)]
    # The hourly job's checks name the room until the sweep reads it again.
    hourly = run_job("activity_refresh", instance=instance)
    evaluation = next(
        e for e in hourly.get_asset_check_evaluations() if e.check_name == "events_complete"
    )
    assert evaluation.passed is False
    assert evaluation.metadata["rooms_short"].value == 1
    assert evaluation.metadata["events_missing"].value == 7
    assert f"| {victim} | 7 |" in evaluation.metadata["rooms_short_list"].value  # type: ignore[operator]
    api.reset_requests()
    daily = run_job("daily_sweep", instance=instance)
    reread = {
        r.params["room_id"][0]
        for r in api.requests_to("/v2/analytics/events")
        if r.params["limit"] == ["100"]
    }
    assert reread == {victim}  # only the room that fell short is read again
    assert all(check_results(daily).values())
    assert compare(warehouse, world)["analytics_events"].exact


# ---- data checks ---------------------------------------------------------------------------


def test_checks_pass_on_a_good_load_and_fail_on_bad_data(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    result = dg.materialize(
        [build_analytics_assets()],
        selection=[dg.AssetKey(["analytics", t]) for t in ("rooms", "active_room_peers")],
        resources=resources(),
    )
    assert check_results(result) == {
        ("rooms", PK_CHECK): True,
        ("active_room_peers", PK_CHECK): True,
        ("active_room_peers", ROOM_CHECK): True,
    }
    with duckdb.connect(str(warehouse)) as con:
        con.execute("INSERT INTO analytics.rooms SELECT * FROM analytics.rooms LIMIT 1")
        con.execute(
            "INSERT INTO analytics.active_room_peers (id, room_id, name, _dlt_load_id, _dlt_id) "
            "VALUES ('ghost-peer', 'no-such-room', 'ghost', 'x', 'ghost-dlt-id')"
        )
    checks = [
        dg.AssetCheckKey(dg.AssetKey(["analytics", table]), name)
        for table, name in [
            ("rooms", PK_CHECK),
            ("active_room_peers", PK_CHECK),
            ("active_room_peers", ROOM_CHECK),
        ]
    ]
    result = dg.materialize(
        [build_analytics_assets()],
        selection=dg.AssetSelection.checks(*checks),
        resources=resources(),
    )
    results = check_results(result)
    assert results[("rooms", PK_CHECK)] is False
    assert results[("active_room_peers", ROOM_CHECK)] is False
    assert results[("active_room_peers", PK_CHECK)] is True
    evaluation = next(
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == PK_CHECK and e.asset_key.path[-1] == "rooms"
    )
    assert evaluation.metadata["repeated_keys"].value == 1


def test_freshness_check_fails_for_a_stale_asset_and_passes_when_fresh(
    api: ApiSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    checks = project_defs().asset_checks or []
    freshness = [c for c in checks if "freshness" in next(iter(c.check_keys)).name]
    key = dg.AssetKey(["analytics", "active_room_peers"])
    check_def = next(c for c in freshness if next(iter(c.check_keys)).asset_key == key)

    def evaluate() -> bool:
        result = dg.materialize(
            [check_def], instance=instance, selection=dg.AssetSelection.all_asset_checks()
        )
        return result.get_asset_check_evaluations()[0].passed

    assert run_job("live_peers_refresh", instance=instance).success
    assert evaluate() is True
    now = dagster_time.get_current_timestamp()
    monkeypatch.setattr(last_update, "get_current_timestamp", lambda: now + 16 * 60)
    assert evaluate() is False


# ---- the failure alert ---------------------------------------------------------------------


class Receiver:
    """A local HTTP endpoint standing in for a Slack webhook; keeps what it is sent."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                receiver.posts.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _failed_run_context(job: str) -> tuple[dg.RunFailureSensorContext, str]:
    instance = dg.DagsterInstance.ephemeral()
    result = run_job(job, instance=instance, raise_on_error=False)
    return _failure_sensor_context(instance, result), result.run_id


def _failure_sensor_context(
    instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult
) -> dg.RunFailureSensorContext:
    """What `report_failed_runs` is given for the failed run `result`."""
    assert not result.success
    return dg.build_run_status_sensor_context(
        sensor_name="report_failed_runs",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
    ).for_run_failure()


def test_failed_run_is_posted_to_the_webhook_without_secrets(
    api: ApiSimulator, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "expired-management-token-XYZ987"
    monkeypatch.setenv("API_TOKEN", secret)
    monkeypatch.setenv(WEBHOOK_ENV, receiver.url)
    context, run_id = _failed_run_context("activity_refresh")
    report_failed_runs(context)
    assert len(receiver.posts) == 1
    text = receiver.posts[0]["text"]
    assert "activity_refresh" in text and run_id in text
    assert "analytics_api" in text  # the failed step
    assert "401" in text and "/v2/" in text  # the error
    assert secret not in text and receiver.url not in text


def test_a_secret_in_a_long_error_is_masked_before_the_alert_is_cut(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error of a failed step names a warehouse URL whose password is configured, so that
    the password spans the alert's cut: masked first, no part of it reaches the webhook."""
    password = "pg-pass-0123456789abcdef"
    monkeypatch.setenv(
        "DESTINATION__POSTGRES__CREDENTIALS", f"postgresql://loader:{password}@db-host/warehouse"
    )
    monkeypatch.setenv(WEBHOOK_ENV, receiver.url)
    # The error as the alert shows it: "RuntimeError: could not connect to <lead>loader:...";
    # the password starts 10 characters before the cut.
    lead = "x" * (MAX_ERROR_CHARS - len("RuntimeError: could not connect to loader:") - 10)

    def unreachable_warehouse(**_: Any) -> Any:
        raise RuntimeError(f"could not connect to {lead}loader:{password}@db-host/warehouse")

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [build_analytics_assets(source_factory=unreachable_warehouse)],
        resources=resources(),
        instance=instance,
        selection=[dg.AssetKey(["analytics", "templates"])],
        raise_on_error=False,
    )
    context = _failure_sensor_context(instance, result)
    report_failed_runs(context)
    text = receiver.posts[0]["text"]
    assert "could not connect" in text and "***" in text
    assert not [
        password[i : i + 6] for i in range(len(password) - 5) if password[i : i + 6] in text
    ]


def test_failed_run_is_logged_when_no_webhook_is_set(
    api: ApiSimulator, receiver: Receiver, capfd: pytest.CaptureFixture[str]
) -> None:
    api.faults = FaultPlan(always={"/v2/recordings": 503})
    context, run_id = _failed_run_context("activity_refresh")
    report_failed_runs(context)
    assert receiver.posts == []
    logged = capfd.readouterr().err  # the sensor's logger writes to the console
    assert f"run `{run_id}`" in logged and "503" in logged and "/v2/recordings" in logged


def test_freshness_applies_once_there_is_data_and_when_a_check_is_due(
    api: ApiSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a fresh instance no freshness check runs (none can fail). After a load, the job's own
    run evaluates the check; the sensor asks again only once that result could have gone
    stale, and only for the assets loaded; the run it asks for evaluates exactly those."""
    from dagster._core.definitions.asset_checks.asset_check_factories.freshness_checks import (
        sensor as dagster_freshness,
    )

    instance = dg.DagsterInstance.ephemeral()
    sensor = next(s for s in project_defs().sensors or [] if s.name == "freshness_every_5_minutes")

    def tick() -> Any:
        return sensor(dg.build_sensor_context(instance=instance, definitions=project_defs()))

    first = tick()
    assert isinstance(first, dg.SkipReason) and "nothing loaded yet" in str(first.skip_message)
    assert run_job("live_peers_refresh", instance=instance).success
    fresh = tick()  # the job's run just evaluated the check: fresh for 15 minutes
    assert isinstance(fresh, dg.SkipReason) and "is due" in str(fresh.skip_message)
    later = dagster_time.get_current_datetime() + timedelta(minutes=16)
    monkeypatch.setattr(dagster_freshness, "get_current_datetime", lambda: later)
    due = tick()
    assert isinstance(due, dg.SensorResult)
    (request,) = due.run_requests or []
    keys = set(request.asset_check_keys or [])
    assert [k.asset_key.path[-1] for k in keys] == ["active_room_peers"]
    run = project_defs().resolve_job_def("check_freshness").get_subset(asset_check_selection=keys)
    result = run.execute_in_process(instance=instance)
    assert {(e.asset_key.path[-1], e.check_name) for e in result.get_asset_check_evaluations()} == {
        ("active_room_peers", "freshness_check")
    }


SECRETS_TOML = """
[sources.analytics_api]
app_access_key = "key-from-secrets-toml-1234"
app_secret = "secret-from-secrets-toml-5678"

[destination.postgres]
credentials = "postgresql://loader:pg-pass-9012@db-host:5432/warehouse"

[destination.snowflake.credentials]
host = "acme-account"
username = "loader"
password = "sf-pass-4321"
database = "analytics_db"
"""


def test_alerts_mask_secrets_from_secrets_toml_the_access_key_and_database_urls(
    tmp_path: Path,
) -> None:
    """In a process whose only secrets are in .dlt/secrets.toml and Dagster's database URL."""
    project = tmp_path / "project"
    (project / ".dlt").mkdir(parents=True)
    (project / ".dlt" / "secrets.toml").write_text(SECRETS_TOML)
    leak = (
        "boom: key-from-secrets-toml-1234 secret-from-secrets-toml-5678 "
        "postgresql://loader:pg-pass-9012@db-host:5432/warehouse pg-pass-9012 "
        "postgresql+psycopg2://dagster:dg-pass-3456@host/dagster redis://:rd-pass-7890@broker:6379"
        " sf-pass-4321 md:analytics?motherduck_token=md-token-6543 md-token-6543"
    )
    # What names a place is no secret: it stays readable in the alert.
    kept = (
        "could not connect to db-host:5432 database analytics_db as loader; "
        "pool analytics_warehouse; GET http://127.0.0.1:8765/v2/x?e=a@b took 86400 s"
    )
    script = (
        "import sys; from analytics_assets.defs.alerts import failure_message; "
        f"print(failure_message('job', 'run', [('step', {leak!r}), ('other', {kept!r})], None))"
    )
    env = {
        **os.environ,
        "DLT_PROJECT_DIR": str(project),
        "DAGSTER_POSTGRES_URL": "postgresql+psycopg2://dagster:dg-pass-3456@host/dagster",
        "DESTINATION__MOTHERDUCK__CREDENTIALS": "md:analytics?motherduck_token=md-token-6543",
        "SOURCES__ANALYTICS_API__TOKEN_LIFETIME_SECONDS": "86400",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    text = done.stdout
    for secret in (
        "key-from-secrets-toml",
        "secret-from-secrets-toml",
        "pg-pass",
        "dg-pass",
        "rd-pass",
        "sf-pass",
        "md-token",
    ):
        assert secret not in text, (secret, text)
    assert "***" in text and "step `step`" in text
    assert f"step `other`: {kept}" in text, text


def test_redact_masks_known_secrets_and_bearer_tokens() -> None:
    text = "Authorization: Bearer abc.def.ghi failed with token s3cr3t-value"
    assert redact(text, ["s3cr3t-value", None, ""]) == (
        "Authorization: Bearer *** failed with token ***"
    )
