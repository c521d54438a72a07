"""Shared fixtures: a small simulated API, a throw-away warehouse, and ways to load into it."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import dagster as dg
import dlt
import duckdb
import pytest
from dagster_dlt import DagsterDltResource

from analytics_assets.defs.assets import build_analytics_assets
from analytics_assets.simulator import DEFAULT_TOKEN, ApiSimulator, World, generate_world
from analytics_assets.source import analytics_api

#: Small enough for a fast suite, large enough for several pages of every list (limit 100).
TEST_SCALE = 120


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's environment, and each gets its own dlt dir and DuckDB."""
    for name in ("API_TOKEN", "SOURCES__ANALYTICS_API__API_TOKEN", "DESTINATION_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(tmp_path / "warehouse.duckdb"))
    # Retries keep their count and status list; only the waits shrink so the suite stays fast.
    monkeypatch.setenv("SOURCES__ANALYTICS_API__REQUEST_BACKOFF_FACTOR", "0.01")


@pytest.fixture(scope="session")
def base_world() -> World:
    return generate_world(scale=TEST_SCALE, seed=11)


@pytest.fixture
def world(base_world: World) -> World:
    return base_world.snapshot()


SimulatorFactory = Callable[..., AbstractContextManager[ApiSimulator]]


@pytest.fixture
def api(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiSimulator]:
    """The simulator serving `world`, with the source configured to use it."""
    with ApiSimulator(world) as sim:
        monkeypatch.setenv("SOURCES__ANALYTICS_API__BASE_URL", sim.base_url)
        monkeypatch.setenv("API_TOKEN", DEFAULT_TOKEN)
        yield sim


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    return tmp_path / "warehouse.duckdb"


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def column_names(db: Path, table: str) -> list[str]:
    return [row[0] for row in query(db, f"DESCRIBE analytics.{table}")]


def ids(db: Path, table: str, column: str = "id") -> list[Any]:
    return sorted(row[0] for row in query(db, f"SELECT {column} FROM analytics.{table}"))


def run_source(db: Path, **source_args: Any) -> Any:
    """Load with plain dlt (no Dagster): the quickest way to test the source's behaviour."""
    pipeline = dlt.pipeline(
        pipeline_name="test_source",
        destination=dlt.destinations.duckdb(credentials=str(db)),
        dataset_name="analytics",
    )
    return pipeline.run(analytics_api(**source_args))


def materialize(selection: list[str] | None = None, **kwargs: Any) -> dg.ExecuteInProcessResult:
    """Materialize the raw assets in-process, each time with a freshly built definition."""
    assets = build_analytics_assets()
    if selection is not None:
        kwargs["selection"] = [dg.AssetKey(["analytics", name]) for name in selection]
    return dg.materialize([assets], resources={"dlt": DagsterDltResource()}, **kwargs)


# ---- a real PostgreSQL server on loopback, for the Postgres tests ---------------------------


def _postgres_bin() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).parent)
    return next(
        (d for d in candidates if (d / "initdb").exists() and (d / "pg_ctl").exists()), None
    )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throw-away PostgreSQL cluster on a free loopback port; yields its base URL."""
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's "
            "`postgresql` package (.ci/run does) to run the Postgres tests"
        )
    root = Path(tempfile.mkdtemp(prefix="analytics_pg_"))
    root.chmod(0o755)
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the `postgres` user
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subprocess.run(
        [*as_postgres, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data)]
    subprocess.run(
        [*pg_ctl, "-l", str(root / "server.log"), "-o", options, "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres:unused@127.0.0.1:{port}"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres_server: str, request: pytest.FixtureRequest) -> str:
    """A fresh database for one test; yields its URL."""
    import psycopg2

    name = "t_" + uuid.uuid4().hex[:12]
    connection = psycopg2.connect(postgres_server + "/postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    connection.close()
    return f"{postgres_server}/{name}"
