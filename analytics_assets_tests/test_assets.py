"""The Dagster assets: the graph users see, and full materializations into a temporary DuckDB."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from analytics_assets.simulator import ApiSimulator, FaultPlan, World
from analytics_assets.simulator.expected import compare
from analytics_assets_tests.conftest import (
    BOTH_READINGS,
    REPO,
    FullLoad,
    free_port,
    materialize,
    project_defs,
    query,
)

RAW = {
    "rooms": [],
    "sessions": [],
    "active_room_peers": ["rooms"],
    "templates": [],
    "template_settings": ["templates"],
    "templates_destinations": ["templates"],
    "analytics_events": ["rooms", "sessions"],
    "recordings": [],
}


def key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["analytics", name])


#: Every asset of the project: (group, kinds, upstream). A change to the graph shows up here.
SNAPSHOT = {
    **{name: ("analytics_api", {"dlt", "duckdb"}, set(parents)) for name, parents in RAW.items()},
    "peer_minutes_daily": ("analytics_marts", {"sql", "duckdb"}, {"sessions"}),
    "unmuted_time": ("analytics_marts", {"sql", "duckdb"}, {"analytics_events"}),
    "client_errors_daily": ("analytics_marts", {"sql", "duckdb"}, {"analytics_events"}),
}


def test_every_asset_spec_is_pinned() -> None:
    graph = project_defs().resolve_asset_graph()
    specs = {
        k.path[-1]: (
            graph.get(k).group_name,
            set(graph.get(k).kinds),
            {p.path[-1] for p in graph.get(k).parent_keys},
        )
        for k in graph.get_all_asset_keys()
    }
    assert specs == SNAPSHOT
    assert all(key.path[0] == "analytics" for key in graph.get_all_asset_keys())
    assert all(graph.get(key).description for key in graph.get_all_asset_keys())


IMPORT_DEFINITIONS = """
import json, sys
from analytics_assets.definitions import defs
jobs = sorted(job.name for job in defs.resolve_all_job_defs())
print(json.dumps({"jobs": jobs, "modules": sorted(m for m in sys.modules if m.startswith("dlt."))}))
"""


def _run_in(env: dict[str, str], command: list[str]) -> str:
    """`command` in a fresh process from the project's root with only `env`: its output, or
    the test fails with its errors."""
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_definitions_load_without_any_token_and_create_nothing(tmp_path: Path) -> None:
    """In a fresh process with none of the project's settings: no token, no destination. The
    import neither needs credentials nor creates a directory or a pipeline."""
    keep = ("PATH", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    home = tmp_path / "home"
    home.mkdir()
    env.update(
        HOME=str(home),
        # The project's committed settings, never a developer's .dlt/secrets.toml.
        DLT_PROJECT_DIR=os.environ["DLT_PROJECT_DIR"],
        DLT_DATA_DIR=str(tmp_path / "dlt"),
        DESTINATION__DUCKDB__CREDENTIALS=str(tmp_path / "nowhere" / "warehouse.duckdb"),
        DAGSTER_HOME=str(home),
    )
    stdout = _run_in(env, [sys.executable, "-c", IMPORT_DEFINITIONS])
    loaded = json.loads(stdout.strip().splitlines()[-1])
    assert {"activity_refresh", "daily_sweep", "live_peers_refresh"} <= set(loaded["jobs"])
    assert list(home.iterdir()) == []
    assert not (tmp_path / "dlt").exists() and not (tmp_path / "nowhere").exists()


def test_dg_lists_every_asset_check_job_schedule_and_sensor(tmp_path: Path) -> None:
    """Dagster's `dg` CLI works on the project (`[tool.dg]` in pyproject.toml), with no token."""
    env = {name: os.environ[name] for name in ("PATH", "LANG", "TMPDIR") if name in os.environ}
    env.update(
        HOME=str(tmp_path),
        DLT_PROJECT_DIR=os.environ["DLT_PROJECT_DIR"],
        VIRTUAL_ENV=str(Path(sys.executable).parents[1]),
    )
    stdout = _run_in(env, [str(Path(sys.executable).parent / "dg"), "list", "defs", "--json"])
    listed = json.loads(stdout[stdout.index("{") :])
    assert {a["asset_key"] for a in listed["assets"]} == {f"analytics/{n}" for n in SNAPSHOT}
    checks = {(c["asset_key"], c["name"]) for c in listed["asset_checks"]}
    graph = project_defs().resolve_asset_graph()
    assert checks == {("/".join(k.asset_key.path), k.name) for k in graph.asset_check_keys}
    assert {j["name"] for j in listed["jobs"]} >= {
        "activity_refresh",
        "live_peers_refresh",
        "daily_sweep",
        "check_freshness",
    }
    assert {s["name"] for s in listed["schedules"]} == {
        "live_peers_every_5_minutes",
        "activity_hourly",
        "daily_sweep_at_0317",
    }
    assert {s["name"] for s in listed["sensors"]} == {
        "report_failed_runs",
        "freshness_every_5_minutes",
    }


@BOTH_READINGS
def test_full_materialization_equals_the_api_and_reports_metadata(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    result = materialize()
    assert result.success
    diffs = compare(warehouse, world)
    assert [d for d in diffs.values() if not d.exact] == []
    events = {
        e.materialization.asset_key.path[-1]: e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert set(events) == set(RAW)
    for table, diff in diffs.items():
        if table not in RAW:
            continue  # nested tables (sessions__peers) belong to their table's asset
        assert events[table]["dagster/row_count"].value == diff.expected, table
        assert events[table]["rows_loaded"].value == diff.expected, table
        schema = events[table]["dagster/column_schema"].value
        assert isinstance(schema, dg.TableSchema) and schema.columns


@BOTH_READINGS
def test_second_run_changes_nothing(
    api: ApiSimulator, world: World, warehouse: Path, full_load: FullLoad
) -> None:
    before = _snapshot(warehouse)
    assert materialize().success
    assert _snapshot(warehouse) == before


def test_child_asset_alone_loads_only_its_table(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    result = materialize(["template_settings"])
    assert result.success
    assert [e.asset_key for e in result.get_asset_materialization_events()] == [
        key("template_settings")
    ]
    tables = {
        r[0]
        for r in query(
            warehouse,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'analytics'",
        )
    }
    assert "template_settings" in tables and "templates" not in tables


def test_wrong_token_fails_fast_names_401_and_endpoint_keeps_tables_and_hides_token(
    api: ApiSimulator, warehouse: Path, full_load: FullLoad, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _snapshot(warehouse)
    secret = "expired-token-ABCDEF123456"
    monkeypatch.setenv("API_TOKEN", secret)
    api.reset_requests()
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(raise_on_error=False, instance=instance)
    assert not result.success
    message = _failure_message(result)
    assert "401" in message and "/v2/" in message
    assert "API_TOKEN" in message  # the hint says what to check
    logged = "\n".join(str(record) for record in instance.all_logs(result.run_id))
    assert "401" in logged and secret not in logged
    assert len(api.requests) <= 6
    assert _snapshot(warehouse) == before


def test_missing_token_fails_naming_api_token(
    api: ApiSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("API_TOKEN")
    result = materialize(raise_on_error=False)
    assert not result.success
    assert "API_TOKEN" in _failure_message(result)
    assert api.requests == []


def test_endpoint_always_503_fails_the_run_after_4_attempts_and_keeps_loaded_tables(
    api: ApiSimulator, world: World, warehouse: Path, full_load: FullLoad
) -> None:
    before = _snapshot(warehouse)
    api.faults = FaultPlan(always={"/v2/recordings": 503})
    api.reset_requests()
    result = materialize(raise_on_error=False)
    assert not result.success
    message = _failure_message(result)
    assert "503" in message and "/v2/recordings" in message
    tries: dict[str, int] = {}
    for request in api.requests_to("/v2/recordings"):
        asked = str(sorted(request.params.items()))
        tries[asked] = tries.get(asked, 0) + 1
    assert tries and set(tries.values()) == {4}  # each request: 4 attempts, then the failure
    assert _snapshot(warehouse) == before


def test_unreachable_api_headline_names_host_and_endpoint_and_every_wait_is_logged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the run's page shows when the base URL is wrong: the error's first line names the
    host and the endpoint, and each retry wait was logged (endpoint, seconds, attempt n of N)
    while it happened, so a long wait is never silent."""
    port = free_port()  # nobody listens there
    monkeypatch.setenv("SOURCES__ANALYTICS_API__BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("API_TOKEN", "any-token-1234")
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(["templates"], instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    # Dagster wraps the step's exception ("Error occurred while executing op"); the UI and the
    # failure alerts show the user's own below it, as its cause.
    wrapper = failure.step_failure_data.error
    assert wrapper is not None and wrapper.cause is not None
    error = wrapper.cause
    headline = error.message.splitlines()[0]
    assert headline.startswith("analytics_assets.defs.loading.AnalyticsLoadError: dlt step ")
    endpoint = f"GET http://127.0.0.1:{port}/v2/templates"
    assert f"cannot reach 127.0.0.1:{port} for {endpoint}" in headline, headline
    assert "Connection refused" in headline and "4 attempts" in headline
    logged = [
        record.user_message
        for record in instance.all_logs(result.run_id)
        if record.level == logging.WARNING
    ]
    waits = [m for m in logged if m.startswith(endpoint) and "retrying in" in m]
    assert [re.search(r"attempt (\d) of 4", w).group(1) for w in waits] == ["2", "3", "4"]  # type: ignore[union-attr]
    assert all("Connection refused" in w for w in waits), waits


# ---- helpers -------------------------------------------------------------------------------


def _pk(table: str) -> str:
    return {
        "template_settings": "template_id",
        "templates_destinations": "(template_id, kind, key)",
    }.get(table, "id")


def _snapshot(db: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every table's rows without dlt's load bookkeeping columns."""
    columns: dict[str, list[str]] = {}
    for table, column in query(
        db,
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'analytics' ORDER BY table_name, column_name",
    ):
        if not table.startswith("_dlt") and not column.startswith("_dlt"):
            columns.setdefault(table, []).append(column)
    return {
        table: sorted(query(db, f"SELECT {', '.join(cols)} FROM analytics.{table}"), key=str)
        for table, cols in columns.items()
    }


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failures
    error = failures[0].step_failure_data.error
    assert error is not None
    return error.to_string()
