"""Beyond one machine: the refresh jobs launched at the same time, their steps executed by two
Celery workers (Redis from Debian as the broker), Dagster's storage and the warehouse in
Postgres, as `deploy/` configures them. Redis, Postgres and the workers run on loopback.

Also: on DuckDB, with no instance configuration at all, runs launched at the same time take
turns on the database and all succeed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from analytics_assets.defs.keys import WAREHOUSE_POOL
from analytics_assets.simulator import ApiSimulator, World
from analytics_assets.simulator.expected import compare
from analytics_assets.simulator.world import EVENT_RETENTION
from analytics_assets_tests.conftest import (
    REPO,
    create_database,
    descendants,
    free_port,
    reader_pipeline,
    skip_or_fail,
)

BIN = Path(sys.executable).parent
JOBS = ("activity_refresh", "live_peers_refresh", "daily_sweep")


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A throw-away Redis on a free loopback port, nothing persisted."""
    server = shutil.which("redis-server")
    if server is None:
        skip_or_fail(
            "redis-server not found: install Debian's `redis-server` package (.ci/run does) to "
            "run the Celery test"
        )
    port = free_port()
    process = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _run_round(env: dict[str, str], logs: Path, round_: int) -> dict[str, int]:
    """Launch every job at the same time, as separate processes; return their pids."""
    launched = {}
    for job in JOBS:
        log = (logs / f"{job}_{round_}.log").open("w")
        launched[job] = subprocess.Popen(
            [
                str(BIN / "dagster"),
                "job",
                "execute",
                "-m",
                "analytics_assets.definitions",
                "-j",
                job,
            ],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    for job, process in launched.items():
        assert process.wait(timeout=300) == 0, (logs / f"{job}_{round_}.log").read_text()[-3000:]
    return {job: process.pid for job, process in launched.items()}


@pytest.mark.slow
def test_refresh_jobs_at_once_on_two_celery_workers(
    api: ApiSimulator,
    world: World,
    postgres_server: str,
    postgres_db: str,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    dagster_db = create_database(postgres_server)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_URL": dagster_db.replace("postgresql://", "postgresql+psycopg2://"),
        "ANALYTICS_ASSETS_EXECUTOR": "celery",
        "DAGSTER_CELERY_BROKER_URL": f"{redis_url}/0",
        "DAGSTER_CELERY_BACKEND_URL": f"{redis_url}/1",
        "DESTINATION_TYPE": "postgres",
        "DESTINATION__POSTGRES__CREDENTIALS": postgres_db,
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    # A fresh Dagster database is set up once (`dagster instance migrate`), before the
    # machines that share it start: two workers creating its tables at once would collide.
    # So is the warehouse's pool, as docs/deployment.md says: runs that make it at the same time
    # on a new Postgres instance collide (dagster issue 33552, UniqueViolation on
    # concurrency_limits).
    for setup in (["migrate"], ["concurrency", "set", WAREHOUSE_POOL, "3"]):
        command = [str(BIN / "dagster"), "instance", *setup]
        subprocess.run(command, env=env, cwd=REPO, check=True, capture_output=True, timeout=120)
    workers = []
    for name in ("worker_a", "worker_b"):
        log = logs / f"{name}.log"
        workers.append(
            subprocess.Popen(
                [
                    str(BIN / "dagster-celery"),
                    "worker",
                    "start",
                    "-A",
                    "dagster_celery.app",
                    "-y",
                    str(REPO / "deploy" / "celery.yaml"),
                    "-n",
                    name,
                    "--",
                    "--pool=solo",
                ],  # each worker runs its steps in its own process
                env=env,
                cwd=REPO,
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    try:
        deadline = time.monotonic() + 120
        while not all(
            "ready." in (logs / f"{n}.log").read_text() for n in ("worker_a", "worker_b")
        ):
            assert time.monotonic() < deadline, (logs / "worker_a.log").read_text()[-2000:]
            assert all(w.poll() is None for w in workers), (logs / "worker_a.log").read_text()
            time.sleep(0.2)
        # `dagster-celery worker start` runs `celery worker`; with --pool=solo it executes
        # each step in that process.
        worker_pids = {pid for w in workers for pid in descendants(w.pid)}

        first_clock = world.clock
        used: set[int] = set()
        for round_ in (1, 2):
            launchers = _run_round(env, logs, round_)
            monkeypatch.setenv("DESTINATION_TYPE", "postgres")
            monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", postgres_db)
            diffs = compare(reader_pipeline(), world, events_since=first_clock - EVENT_RETENTION)
            assert [d for d in diffs.values() if not d.exact] == [], f"round {round_}"
            used |= _steps_ran_on_the_workers(env, worker_pids, set(launchers.values()), round_)
            with api.moving():
                world.advance(activity=0.04)
        assert used == worker_pids  # both workers took steps
    finally:
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)


def _steps_ran_on_the_workers(
    env: dict[str, str], workers: set[int], launchers: set[int], round_: int
) -> set[int]:
    """From the event log in Postgres: every run of the round succeeded, and its steps ran in
    the worker processes, not in the processes that launched the runs."""
    os.environ["DAGSTER_POSTGRES_URL"] = env["DAGSTER_POSTGRES_URL"]
    try:
        instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
        runs = instance.get_runs()
        assert len(runs) == len(JOBS) * round_
        assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        used: set[int] = set()
        for run in runs[: len(JOBS)]:  # newest first: this round's
            records = instance.all_logs(run.run_id)
            # Where each step ran: its start and its success (the launching process only
            # hands steps out, and logs engine events about that).
            step_pids = {
                record.dagster_event.pid
                for record in records
                if record.dagster_event
                and record.dagster_event.pid is not None
                and record.dagster_event.event_type_value in ("STEP_START", "STEP_SUCCESS")
            }
            assert step_pids and step_pids <= workers, (run.job_name, step_pids, workers)
            assert not step_pids & launchers
            used |= step_pids
        return used
    finally:
        del os.environ["DAGSTER_POSTGRES_URL"]


@pytest.mark.slow
def test_duckdb_runs_launched_at_once_take_turns_without_any_instance_configuration(
    api: ApiSimulator, world: World, warehouse: Path, tmp_path: Path
) -> None:
    """No DAGSTER_HOME, no pool limit: the lock beside the DuckDB file makes them take turns."""
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    launched = [
        subprocess.Popen(
            [
                str(BIN / "dagster"),
                "job",
                "execute",
                "-m",
                "analytics_assets.definitions",
                "-j",
                job,
            ],
            env=env,
            cwd=REPO,
            stdout=(tmp_path / f"{job}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for job in JOBS
    ]
    for job, process in zip(JOBS, launched, strict=True):
        assert process.wait(timeout=300) == 0, (tmp_path / f"{job}.log").read_text()[-3000:]
    assert [d for d in compare(warehouse, world).values() if not d.exact] == []
    waited = "".join((tmp_path / f"{job}.log").read_text() for job in JOBS)
    assert "Waiting for another run to finish with" in waited  # they did meet
