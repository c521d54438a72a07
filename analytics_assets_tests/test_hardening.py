"""A misbehaving API and a dying machine: the tables lose nothing and double nothing."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from analytics_assets.simulator import LENIENT, STRICT, ApiSimulator, FaultPlan, Reading, World
from analytics_assets.simulator.expected import compare
from analytics_assets.simulator.server import BAD_JSON, DROP, HTML_200, SLOW
from analytics_assets.simulator.world import EVENT_RETENTION
from analytics_assets_tests.conftest import (
    BOTH_READINGS,
    FullLoad,
    alive,
    column_names,
    materialize,
    missing_beyond_the_hourly_promise,
    project_defs,
    query,
)


def _exact(db: Path, world: World, since: object = None, skip: tuple[str, ...] = ()) -> None:
    diffs = compare(db, world, events_since=since)  # type: ignore[arg-type]
    assert [d for t, d in diffs.items() if not d.exact and t not in skip] == []


def _failure(result: object) -> str:
    events = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]  # type: ignore[attr-defined]
    assert events
    return str(events[0].step_failure_data.error.to_string())


# ---- transient faults ----------------------------------------------------------------------


@BOTH_READINGS
def test_full_load_completes_exactly_under_15_percent_transient_faults(
    world: World, warehouse: Path, reading: Reading, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCES__ANALYTICS_API__REQUEST_TIMEOUT", "0.5")
    faults = FaultPlan(rate=0.15, seed=3, retry_after=1, slow_seconds=1.0)
    with ApiSimulator(world, reading=reading, faults=faults) as sim:
        monkeypatch.setenv("SOURCES__ANALYTICS_API__BASE_URL", sim.base_url)
        monkeypatch.setenv("API_TOKEN", sim.token)
        assert materialize().success
    injected = {r.fault for r in sim.requests if r.fault}
    assert {"429", "500", "502", "503", "504", DROP, SLOW} <= injected
    share = sum(1 for r in sim.requests if r.fault) / len(sim.requests)
    assert 0.05 < share < 0.4
    _exact(warehouse, world)


@BOTH_READINGS
def test_a_429_pauses_every_worker_not_only_the_one_told(
    world: World, warehouse: Path, reading: Reading, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCES__ANALYTICS_API__WORKERS", "4")
    # The 4th events request is told to wait; the other workers must wait with it (under the
    # strict reading the API would answer them 429 anyway until the wait has passed).
    faults = FaultPlan(scripted={"/v2/analytics/events": [None, None, None, 429]}, retry_after=1)
    with ApiSimulator(world, reading=reading, faults=faults, latency=0.02) as sim:
        monkeypatch.setenv("SOURCES__ANALYTICS_API__BASE_URL", sim.base_url)
        monkeypatch.setenv("API_TOKEN", sim.token)
        assert materialize(["analytics_events"]).success
    told = next(r for r in sim.requests if r.status == 429)
    # Requests already on the wire may still land just after it; then nobody asks for ~1 s.
    during = [r for r in sim.requests if told.at + 0.15 < r.at < told.at + 0.9]
    assert during == []
    assert any(r.at >= told.at + 0.9 for r in sim.requests)
    # The workers' children, plus one request of each listing paging beside them.
    assert sim.max_in_flight <= 4 + 2


# ---- broken pagination ---------------------------------------------------------------------


def test_pages_that_never_end_stop_with_an_error_naming_the_endpoint(
    api: ApiSimulator,
    world: World,
    warehouse: Path,
    full_load: FullLoad,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = _rows(warehouse)
    monkeypatch.setenv("SOURCES__ANALYTICS_API__MAX_PAGES", "5")
    api.endless_pages = True
    result = materialize(["sessions", "analytics_events"], raise_on_error=False)
    assert not result.success
    message = _failure(result)
    assert "EndlessPagesError" in message and "/v2/analytics/events" in message
    assert len(api.requests_to("/v2/analytics/events")) < 200
    assert _rows(warehouse) == before


def test_repeating_cursor_stops_the_run_and_keeps_loaded_tables(
    api: ApiSimulator, world: World, warehouse: Path, full_load: FullLoad
) -> None:
    before = _rows(warehouse)
    api.ignore_start = True
    api.reset_requests()
    result = materialize(["rooms"], run_config=_full_refresh(), raise_on_error=False)
    assert not result.success
    message = _failure(result)
    assert "RepeatingCursorError" in message and "/v2/rooms" in message
    assert len(api.requests) < 10
    assert _rows(warehouse) == before


# ---- malformed bodies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "path"), [(HTML_200, "/v2/recordings"), (BAD_JSON, "/v2/templates")]
)
def test_a_200_that_is_not_json_fails_naming_the_endpoint_and_keeps_loaded_tables(
    api: ApiSimulator, world: World, warehouse: Path, full_load: FullLoad, fault: str, path: str
) -> None:
    before = _rows(warehouse)
    api.faults = FaultPlan(always={path: fault})
    result = materialize(raise_on_error=False)
    assert not result.success
    message = _failure(result)
    assert "MalformedResponseError" in message and f"GET {api.base_url}{path}" in message
    assert "not JSON" in message
    assert _rows(warehouse) == before


# ---- schema drift --------------------------------------------------------------------------


def test_schema_drift_new_field_and_changed_type_load_without_losing_values(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    assert materialize(["rooms"]).success
    with api.moving():
        world.rooms[0]["parking_lot"] = "level 2"  # a field the API starts to send
        world.rooms[1]["max_duration_seconds"] = "unlimited"  # was an integer
    result = materialize(["rooms"], run_config=_full_refresh())
    assert result.success
    columns = column_names(warehouse, "rooms")
    assert "parking_lot" in columns
    variant = next(c for c in columns if c.startswith("max_duration_seconds__v_"))
    assert query(
        warehouse, f"SELECT {variant} FROM analytics.rooms WHERE id = '{world.rooms[1]['id']}'"
    ) == [("unlimited",)]
    assert query(warehouse, "SELECT count(*) FROM analytics.rooms") == [(len(world.rooms),)]
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert {"parking_lot", variant} <= set(metadata["new_columns"].value)  # type: ignore[arg-type]


# ---- ids that need encoding ----------------------------------------------------------------


def test_ids_with_reserved_characters_are_url_encoded(
    world: World, warehouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    odd_template = "tpl/with?odd#chars and space"
    odd_room = "room/odd?#x y"
    template = world.templates[0]
    for room in world.rooms:
        if room["template_id"] == template["id"]:
            room["template_id"] = odd_template
    template["id"] = template["_id"] = odd_template
    live = next(s for s in world.sessions if s["active"])
    old_room = live["room_id"]
    for row in world.rooms:
        if row["id"] == old_room:
            row["id"] = odd_room
    for session in world.sessions:
        if session["room_id"] == old_room:
            session["room_id"] = odd_room
    for event in world.events:
        if event["data"].get("room_id") == old_room:
            event["data"]["room_id"] = odd_room
    with ApiSimulator(world) as sim:
        monkeypatch.setenv("SOURCES__ANALYTICS_API__BASE_URL", sim.base_url)
        monkeypatch.setenv("API_TOKEN", sim.token)
        assert materialize().success
    paths = {r.path for r in sim.requests}
    assert "/v2/templates/tpl%2Fwith%3Fodd%23chars%20and%20space/settings" in paths
    assert "/v2/active-rooms/room%2Fodd%3F%23x%20y/peers" in paths
    assert all(r.status == 200 for r in sim.requests)
    _exact(warehouse, world)


# ---- killed runs ---------------------------------------------------------------------------

#: A process that imports the project once, then forks a child for each run it is sent
#: (a job name and an environment, one JSON line), answering with the child's pid and, once
#: the child is gone, its wait status. Each run is still a process of its own, killed by
#: SIGKILL; only the import is shared.
ZYGOTE = r"""
import json, os, sys
from analytics_assets.definitions import defs

definitions = defs

for line in sys.stdin:
    order = json.loads(line)
    pid = os.fork()
    if pid == 0:
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 1)
        os.dup2(quiet, 2)
        os.environ.clear()
        os.environ.update(order["env"])
        name = order["job"]
        job = (
            definitions.resolve_implicit_global_asset_job_def()
            if name == "all"
            else definitions.resolve_job_def(name)
        )
        os._exit(0 if job.execute_in_process().success else 1)
    print(pid, flush=True)
    print(os.waitpid(pid, 0)[1], flush=True)
"""


@pytest.fixture(scope="module")
def zygote() -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", ZYGOTE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        assert process.stdin
        process.stdin.close()
        process.wait(timeout=30)


def _packages(stage: str) -> list[str]:
    """dlt's load packages in a stage folder of the run's working directory:
    `load/new` while normalizing, `load/normalized` while loading, `load/loaded` when done."""
    runs = Path(os.environ["DLT_DATA_DIR"]) / "pipelines" / "runs"
    return [str(p) for p in runs.glob(f"*/*/{stage}/*")]


def _kill_run(
    zygote: subprocess.Popen[str], sim: ApiSimulator, job: str, *, when: str, after: float
) -> str:
    """Run `job` in a child process; SIGKILL it `after` seconds once `when` happens: it has
    made a number of requests (`requests:N`), or dlt is normalizing (`normalize`) or loading
    (`load`). Returns where the run was when it died."""
    assert zygote.stdin and zygote.stdout
    sim.reset_requests()
    zygote.stdin.write(json.dumps({"job": job, "env": dict(os.environ)}) + "\n")
    zygote.stdin.flush()
    pid = int(zygote.stdout.readline())
    killed = False
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and alive(pid):
            if when.startswith("requests:") and len(sim.requests) >= int(when.split(":")[1]):
                break
            if when == "normalize" and _packages("load/new"):
                break
            if when == "load" and _packages("load/normalized"):
                break
            time.sleep(0.002)
        time.sleep(after)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        killed = True
        stage = (
            "done"
            if _packages("load/loaded")
            else "load"
            if _packages("load/normalized")
            else "normalize"
            if _packages("load/new")
            else "extract"
        )
    finally:
        if not killed:  # the test failed before the kill: do not wait for the run to end
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        status = int(zygote.stdout.readline())
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
        "the run ended before it could be killed"
    )
    return stage


#: Where to kill: mid-extract (after some requests), while normalizing, while loading, and a
#: moment into the load (committing); each under one reading, the two readings taking turns so
#: that each stage is killed under both across the full load and the refresh.
KILL_FULL_LOAD = [
    (LENIENT, "requests:30", 0.0, "extract"),
    (STRICT, "requests:80", 0.0, "extract"),
    (STRICT, "normalize", 0.0, "normalize"),
    (LENIENT, "load", 0.0, "load"),
    (STRICT, "load", 0.03, None),
]
KILL_REFRESH = [
    (LENIENT, "requests:15", 0.0, "extract"),
    (LENIENT, "normalize", 0.0, "normalize"),
    (STRICT, "load", 0.0, "load"),
    (LENIENT, "load", 0.03, None),
]


def _kills(points: list[tuple[Reading, str, float, str | None]]) -> Any:
    return pytest.mark.parametrize(
        ("reading", "when", "after", "stage"),
        points,
        ids=[f"{r.name}-{w}-{a}" for r, w, a, _ in points],
        indirect=["reading"],
    )


@_kills(KILL_FULL_LOAD)
def test_killed_full_load_then_rerun_is_exact(
    zygote: subprocess.Popen[str],
    api: ApiSimulator,
    world: World,
    warehouse: Path,
    when: str,
    after: float,
    stage: str | None,
) -> None:
    api.latency = 0.002
    killed_in = _kill_run(zygote, api, "all", when=when, after=after)
    assert stage is None or killed_in == stage
    assert materialize().success
    _exact(warehouse, world)


@pytest.mark.slow
@_kills(KILL_REFRESH)
def test_killed_refresh_then_rerun_is_exact_and_state_did_not_run_ahead(
    zygote: subprocess.Popen[str],
    api: ApiSimulator,
    world: World,
    warehouse: Path,
    refreshed_load: FullLoad,
    when: str,
    after: float,
    stage: str | None,
) -> None:
    first_clock = world.clock  # the full load's, then `activity_refresh` (refreshed_load)
    refreshed_at, live_before = world.clock, {s["id"] for s in world.sessions if s["active"]}
    with api.moving():
        world.advance(activity=0.08)
    api.latency = 0.002
    killed_in = _kill_run(zygote, api, "activity_refresh", when=when, after=after)
    assert stage is None or killed_in == stage
    # The same job again: its own cursors did not move past what it never loaded. Every table
    # it refreshes is exact now (live peers are the 5-minute job's), but for errors without a
    # session in rooms with no activity, which the daily sweep brings.
    assert _run_job("activity_refresh")
    since = first_clock - EVENT_RETENTION
    _exact(warehouse, world, since, skip=("active_room_peers", "analytics_events"))
    assert (
        missing_beyond_the_hourly_promise(warehouse, world, since, live_before, refreshed_at) == []
    )
    assert _run_job("daily_sweep")
    _exact(warehouse, world, since, skip=("active_room_peers",))


# ---- helpers -------------------------------------------------------------------------------


def _run_job(name: str) -> bool:

    return project_defs().resolve_job_def(name).execute_in_process().success


def _full_refresh() -> dict[str, object]:
    return {"ops": {"analytics_api": {"config": {"full_refresh": True}}}}


def _rows(db: Path) -> dict[str, list[tuple[object, ...]]]:
    with duckdb.connect(str(db), read_only=True) as con:
        tables = [
            t
            for (t,) in con.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'analytics' AND table_name NOT LIKE '\\_dlt%' ESCAPE '\\'"
            ).fetchall()
        ]
        return {
            t: sorted(
                con.execute(f"SELECT * EXCLUDE (_dlt_load_id) FROM analytics.{t}").fetchall(),
                key=str,
            )
            if "_dlt_load_id" in [c[0] for c in con.execute(f"DESCRIBE analytics.{t}").fetchall()]
            else sorted(con.execute(f"SELECT * FROM analytics.{t}").fetchall(), key=str)
            for t in tables
        }
