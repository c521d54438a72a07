"""Postgres, for real: as the warehouse (configuration only), and as Dagster's own storage with
steps in separate processes (deploy/dagster.yaml). A PostgreSQL server runs on loopback."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg2
import pytest

from analytics_assets.defs.marts import analytics_marts
from analytics_assets.simulator import ApiSimulator, World
from analytics_assets.simulator.expected import compare
from analytics_assets.simulator.world import EVENT_RETENTION
from analytics_assets_tests.conftest import (
    materialize,
    reader_pipeline,
    resources,
    run_job,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def postgres_warehouse(postgres_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The pipeline writes to Postgres: dlt's own settings, nothing in the code changes."""
    monkeypatch.setenv("DESTINATION_TYPE", "postgres")
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", postgres_db)
    return postgres_db


def _scalar(url: str, sql: str) -> object:
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()[0][0]


def test_full_load_and_refresh_are_exact_in_postgres(
    api: ApiSimulator, world: World, postgres_warehouse: str
) -> None:
    first_clock = world.clock
    result = materialize()
    assert result.success
    kinds = {
        e.materialization.metadata["destination_type"].value
        for e in result.get_asset_materialization_events()
    }
    assert kinds == {"dlt.destinations.postgres"}
    assert [d for d in compare(reader_pipeline(), world).values() if not d.exact] == []
    with api.moving():
        world.advance(activity=0.04)
    api.reset_requests()
    assert materialize().success
    diffs = compare(reader_pipeline(), world, events_since=first_clock - EVENT_RETENTION)
    assert [d for d in diffs.values() if not d.exact] == []
    assert len(api.requests_to("/v2/analytics/events")) < len(world.rooms) / 2  # the active ones
    assert _scalar(postgres_warehouse, "SELECT count(*) FROM analytics.rooms") == len(world.rooms)


def test_analytics_and_checks_run_in_postgres(
    api: ApiSimulator, world: World, postgres_warehouse: str
) -> None:
    result = run_job("activity_refresh")
    checks = {
        (e.asset_key.path[-1], e.check_name): e.passed for e in result.get_asset_check_evaluations()
    }
    assert checks and all(checks.values()), checks
    errors = sum(1 for e in world.retained_events() if e["type"].startswith("client."))
    assert (
        _scalar(postgres_warehouse, "SELECT sum(errors) FROM analytics.client_errors_daily")
        == errors
    )


def test_peers_snapshot_empties_in_postgres_when_no_room_is_live(
    api: ApiSimulator, world: World, postgres_warehouse: str
) -> None:
    assert materialize().success
    assert _scalar(postgres_warehouse, "SELECT count(*) FROM analytics.active_room_peers")
    with api.moving():
        for session in world.sessions:
            if session["active"]:
                world.end_session(session, world.clock)
    run_job("live_peers_refresh")
    assert _scalar(postgres_warehouse, "SELECT count(*) FROM analytics.active_room_peers") == 0


def test_two_analytics_rebuilds_at_once_take_turns_in_postgres(
    api: ApiSimulator,
    world: World,
    postgres_warehouse: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The second rebuild waits for the first to finish: the first holds its advisory locks on
    a connection of its own for its whole step, even while it queries on another. (The first
    is held mid-rebuild by a lock this test takes on a table it reads.)"""
    assert materialize().success
    peer_minutes = dg.AssetKey(["analytics", "peer_minutes_daily"])
    results: dict[str, dg.ExecuteInProcessResult] = {}
    finished: dict[str, float] = {}

    def rebuild(name: str) -> None:
        results[name] = dg.materialize(
            [analytics_marts], resources=resources(), selection=[peer_minutes]
        )
        finished[name] = time.monotonic()

    blocker = psycopg2.connect(postgres_warehouse)
    try:
        blocker.cursor().execute("LOCK TABLE analytics.sessions IN ACCESS EXCLUSIVE MODE")
        first = threading.Thread(target=rebuild, args=("first",))
        first.start()
        _until(lambda: _waiting_on_a_lock(postgres_warehouse) >= 1)  # the first, mid-rebuild
        with caplog.at_level(logging.WARNING, logger="analytics_assets"):
            second = threading.Thread(target=rebuild, args=("second",))
            second.start()
            _until(
                lambda: (
                    "Waiting for another run writing analytics.peer_minutes_daily" in caplog.text
                )
            )
            time.sleep(1.0)
            assert first.is_alive() and second.is_alive()
            assert _waiting_on_a_lock(postgres_warehouse) == 1  # the second never reached it
    finally:
        blocker.rollback()
        blocker.close()
    first.join(timeout=60)
    second.join(timeout=60)
    assert results["first"].success and results["second"].success
    assert finished["first"] < finished["second"]


def _waiting_on_a_lock(url: str) -> int:
    """Connections of the warehouse's database blocked on a table lock."""
    waiting = _scalar(
        url,
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE wait_event_type = 'Lock' AND datname = current_database()",
    )
    assert isinstance(waiting, int)
    return waiting


def _until(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_production_instance_keeps_runs_in_postgres_and_runs_steps_in_processes(
    api: ApiSimulator,
    world: World,
    postgres_warehouse: str,
    postgres_server: str,
    tmp_path: Path,
) -> None:
    dagster_db = postgres_server + "/postgres"
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_URL": dagster_db.replace("postgresql://", "postgresql+psycopg2://"),
        "ANALYTICS_ASSETS_EXECUTOR": "multiprocess",
    }
    job = [sys.executable, "-m", "dagster", "job", "execute", "-m", "analytics_assets.definitions"]
    done = subprocess.run([*job, "-j", "activity_refresh"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]

    os.environ["DAGSTER_POSTGRES_URL"] = env["DAGSTER_POSTGRES_URL"]
    try:
        instance = dg.DagsterInstance.from_config(str(home))
        runs = instance.get_runs()
        assert [r.job_name for r in runs] == ["activity_refresh"]
        assert runs[0].status == dg.DagsterRunStatus.SUCCESS
        records = instance.all_logs(runs[0].run_id)
        step_pids = {
            r.dagster_event.pid
            for r in records
            if r.step_key and r.dagster_event and r.dagster_event.pid
        }
        assert len(step_pids) >= 2  # each step in a process of its own
        assert {r.step_key for r in records if r.step_key} >= {
            "analytics_api",
            "analytics_marts",
        }
    finally:
        del os.environ["DAGSTER_POSTGRES_URL"]
    assert _scalar(dagster_db, "SELECT count(*) FROM runs") == 1
    diffs = compare(reader_pipeline(), world)
    assert all(diffs[t].exact for t in ("rooms", "sessions", "analytics_events", "recordings"))


@pytest.mark.parametrize("destination", ["duckdb", "postgres"])
def test_the_reconciliation_counts_each_room_over_its_own_window(
    destination: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The warehouse's side of the daily reconciliation, in SQL both warehouses run: a room's
    window may reach back further than the retention (the API kept an older event)."""
    import dlt

    from analytics_assets.warehouse.pipelines import COUNT_BATCH, event_counts

    target: Any = (
        dlt.destinations.postgres(request.getfixturevalue("postgres_db"))
        if destination == "postgres"
        else dlt.destinations.duckdb(str(tmp_path / "counts.duckdb"))
    )
    pipeline = dlt.pipeline("counts", destination=target, dataset_name="analytics")
    day = datetime(2024, 7, 1, tzinfo=UTC)
    rows = [
        {"id": f"{room}-{n}", "timestamp": day + timedelta(days=n), "data": {"room_id": room}}
        for room, days in (("r0", 5), ("r1", 3))
        for n in range(days)
    ]
    pipeline.run(rows, table_name="analytics_events")
    counts = event_counts(pipeline)
    since = {"r0": day + timedelta(days=2), "r1": day, "r9": day}
    assert counts(since) == {"r0": 3, "r1": 3}  # r9 has none: absent, counted as 0
    many = {f"x{n}": day for n in range(COUNT_BATCH + 1)} | {"r0": day}
    assert counts(many) == {"r0": 5}  # two queries
