"""Shared fixtures: a small simulated API, a throw-away warehouse, and ways to load into it.

The simulator plays one reading of the reference per test (`readings.py`): lenient by default;
tests marked `@BOTH_READINGS` run under the lenient and the strict reading.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import dagster as dg
import dlt
import duckdb
import pytest
from dagster_dlt import DagsterDltResource
from dlt.common.pipeline import get_dlt_pipelines_dir

from analytics_assets.definitions import defs as definitions
from analytics_assets.defs.assets import build_analytics_assets
from analytics_assets.simulator import (
    DEFAULT_TOKEN,
    LENIENT,
    STRICT,
    ApiSimulator,
    Reading,
    World,
    generate_world,
)
from analytics_assets.source import analytics_api
from analytics_assets.warehouse import Warehouse
from analytics_assets_tests import progress

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    progress.register(config)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first: with the suite split over workers, none is left running one alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


#: Small enough for a fast suite, large enough for several pages of the rooms and sessions
#: listings (limit 100): a load, a refresh or a kill meets a cursor mid-listing. (A run's cost
#: is mostly fixed: 60 rooms instead of 120 saved next to nothing.)
TEST_SCALE = 120

#: Run a test under both readings of the reference (the `reading` fixture).
BOTH_READINGS = pytest.mark.parametrize(
    "reading", [LENIENT, STRICT], ids=["lenient", "strict"], indirect=True
)

#: Settings a developer may have exported: none may reach a test (no test may use real
#: credentials, a real warehouse, or POST to a real webhook).
DEVELOPER_SETTINGS = (
    "API_TOKEN",
    "DESTINATION_TYPE",
    "ANALYTICS_ALERT_WEBHOOK_URL",
    "ANALYTICS_ASSETS_EXECUTOR",
    "DAGSTER_HOME",
    "DAGSTER_POSTGRES_URL",
)
DEVELOPER_PREFIXES = (
    "SOURCES__",
    "DESTINATION__",
    "NORMALIZE__",
    "LOAD__",
    "EXTRACT__",
    "RUNTIME__",
)


def _project_settings_without_secrets() -> Path:
    """dlt reads `.dlt/secrets.toml` of the project: the tests read the committed
    `config.toml` from a folder of their own instead, so a developer's secrets never apply."""
    folder = Path(tempfile.mkdtemp(prefix="analytics_tests_project_"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    (folder / ".dlt").mkdir()
    shutil.copy(REPO / ".dlt" / "config.toml", folder / ".dlt" / "config.toml")
    return folder


# Before anything reads dlt's configuration (collection imports the project).
for _name in [*os.environ]:
    if _name in DEVELOPER_SETTINGS or _name.startswith(DEVELOPER_PREFIXES):
        del os.environ[_name]
os.environ["DLT_PROJECT_DIR"] = str(_project_settings_without_secrets())


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own dlt data dir, DuckDB and Dagster home, and nothing else."""
    for name in [*os.environ]:
        if name in DEVELOPER_SETTINGS or name.startswith(DEVELOPER_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(tmp_path / "warehouse.duckdb"))
    # Retries keep their count and status list; only the waits shrink so the suite stays fast.
    monkeypatch.setenv("SOURCES__ANALYTICS_API__REQUEST_BACKOFF_FACTOR", "0.01")


@pytest.fixture
def reading(request: pytest.FixtureRequest) -> Reading:
    """The reading the simulator plays: lenient unless a test asks for others."""
    return getattr(request, "param", LENIENT)


#: The behaviours of a reading that shape the generated world (the rest shape the answers).
WorldKey = tuple[bool, bool, bool, str]


@pytest.fixture(scope="session")
def worlds() -> dict[WorldKey, World]:
    return {}


@pytest.fixture
def base_world(reading: Reading, worlds: dict[WorldKey, World]) -> World:
    """The generated world of this reading's world behaviours, made once per session."""
    key = (
        reading.sessionless_errors,
        reading.late_events,
        reading.new_event_types,
        reading.unset_times,
    )
    if key not in worlds:
        worlds[key] = generate_world(scale=TEST_SCALE, seed=11, reading=reading)
    return worlds[key]


@pytest.fixture
def world(base_world: World) -> World:
    return base_world.snapshot()


SimulatorFactory = Callable[..., AbstractContextManager[ApiSimulator]]


@pytest.fixture
def api(world: World, reading: Reading, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiSimulator]:
    """The simulator serving `world` under `reading`, with the source configured to use it."""
    with ApiSimulator(world, reading=reading) as sim:
        monkeypatch.setenv("SOURCES__ANALYTICS_API__BASE_URL", sim.base_url)
        monkeypatch.setenv("API_TOKEN", DEFAULT_TOKEN)
        yield sim


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    return tmp_path / "warehouse.duckdb"


@dataclass(frozen=True)
class FullLoad:
    """A warehouse that a sequence of runs left on a reading's generated (untouched) world,
    made once per test session and copied for each test that starts from it; `requests` is
    what the last of those runs asked the API."""

    db: Path
    requests: int


#: (what was run, the reading) -> the warehouse it left, as this process has seen it.
WarehouseCache = dict[tuple[str, Reading], FullLoad]


@pytest.fixture(scope="session")
def warehouses() -> WarehouseCache:
    return {}


def _shared_cache(folders: pytest.TempPathFactory) -> Path:
    """A folder every worker of this test session sees: under xdist each worker's base
    temporary folder is `<session folder>/popen-gwN`."""
    base = folders.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = root / "warehouse-cache"
    folder.mkdir(exist_ok=True)
    return folder


def _cached_warehouse(
    stage: str,
    run: Callable[[], Any],
    start_from: FullLoad | None,
    reading: Reading,
    base_world: World,
    warehouse: Path,
    cache: WarehouseCache,
    folders: pytest.TempPathFactory,
) -> FullLoad:
    """The warehouse `run` leaves (after `start_from`), on a simulator of its own serving the
    untouched world, copied into the test's `warehouse`. The cursors are in the warehouse, as
    dlt stores them. Made once per test session, by whichever worker needs it first (the
    others wait for it): the generated world is the same in every worker."""
    from filelock import FileLock

    key = (stage, reading)
    if key not in cache:
        name = f"{stage}-{hashlib.sha1(repr(reading).encode()).hexdigest()[:12]}"
        shared = _shared_cache(folders)
        folder, made = shared / name, shared / name / "made.json"
        with FileLock(str(shared / f"{name}.lock")):
            if not made.exists():
                shutil.rmtree(folder, ignore_errors=True)  # a worker that died while making it
                folder.mkdir()
                db = folder / "warehouse.duckdb"
                if start_from is not None:
                    _copy_duckdb(start_from.db, db)
                with (
                    pytest.MonkeyPatch.context() as patch,
                    ApiSimulator(base_world.snapshot(), reading=reading) as sim,
                ):
                    patch.setenv("SOURCES__ANALYTICS_API__BASE_URL", sim.base_url)
                    patch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(db))
                    patch.setenv("DLT_DATA_DIR", str(folder / "dlt"))
                    assert run().success, stage
                made.write_text(json.dumps({"requests": len(sim.requests)}))
        cache[key] = FullLoad(folder / "warehouse.duckdb", json.loads(made.read_text())["requests"])
    _copy_duckdb(cache[key].db, warehouse)
    return cache[key]


def _copy_duckdb(source: Path, target: Path) -> None:
    """A DuckDB file and its write-ahead log, if one was left (what it has not checkpointed)."""
    shutil.copy(source, target)
    wal, target_wal = source.with_name(source.name + ".wal"), target.with_name(target.name + ".wal")
    target_wal.unlink(missing_ok=True)
    if wal.exists():
        shutil.copy(wal, target_wal)


@pytest.fixture
def full_load(
    reading: Reading,
    base_world: World,
    warehouse: Path,
    warehouses: WarehouseCache,
    tmp_path_factory: pytest.TempPathFactory,
    api: ApiSimulator,
) -> FullLoad:
    """The test's warehouse as a full load of its (untouched) world leaves it (every asset,
    the shared pipeline)."""
    return _cached_warehouse(
        "full_load", materialize, None, reading, base_world, warehouse, warehouses, tmp_path_factory
    )


@pytest.fixture
def refreshed_load(
    full_load: FullLoad,
    reading: Reading,
    base_world: World,
    warehouse: Path,
    warehouses: WarehouseCache,
    tmp_path_factory: pytest.TempPathFactory,
) -> FullLoad:
    """The test's warehouse after a full load and then one run of `activity_refresh`, nothing
    having happened in between."""
    refresh = project_defs().resolve_job_def("activity_refresh").execute_in_process
    return _cached_warehouse(
        "activity_refresh",
        refresh,
        full_load,
        reading,
        base_world,
        warehouse,
        warehouses,
        tmp_path_factory,
    )


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def column_names(db: Path, table: str) -> list[str]:
    return [row[0] for row in query(db, f"DESCRIBE analytics.{table}")]


def ids(db: Path, table: str, column: str = "id") -> list[Any]:
    return sorted(row[0] for row in query(db, f"SELECT {column} FROM analytics.{table}"))


def missing_beyond_the_hourly_promise(
    db: Path, world: World, since: Any, live_before: set[str], first_clock: Any
) -> list[dict[str, Any]]:
    """Events the API lists (since `since`) that the warehouse lacks, except those only the
    daily sweep promises: errors without a session in rooms with no activity since
    `first_clock` (the last run), where `live_before` were the sessions live then."""
    from analytics_assets.simulator.world import parse_iso

    active_rooms = {
        s["room_id"]
        for s in world.sessions
        if s["active"] or s["id"] in live_before or parse_iso(s["created_at"]) >= first_clock
    }
    loaded = {row[0] for row in query(db, "SELECT id FROM analytics.analytics_events")}
    return [
        e
        for e in world.events
        if parse_iso(e["timestamp"]) >= since
        and e["id"] not in loaded
        and not ("session_id" not in e["data"] and e["data"]["room_id"] not in active_rooms)
    ]


def run_source(
    db: Path,
    *,
    resources: tuple[str, ...] = (),
    pipelines_dir: Path | None = None,
    **source_args: Any,
) -> Any:
    """Load with plain dlt (no Dagster): the quickest way to test the source's behaviour;
    `resources` loads only those tables."""
    from analytics_assets.warehouse.pipelines import choose_file_formats

    pipeline = dlt.pipeline(
        pipeline_name="test_source",
        pipelines_dir=str(pipelines_dir) if pipelines_dir else get_dlt_pipelines_dir(),
        destination=dlt.destinations.duckdb(credentials=str(db)),
        dataset_name="analytics",
    )
    source = analytics_api(**source_args)
    if resources:
        source = source.with_resources(*resources)
    choose_file_formats(pipeline, source)
    return pipeline.run(source)


def resources() -> dict[str, Any]:
    """The project's resources, as `defs/resources.py` gives them."""
    return {"dlt": DagsterDltResource(), "warehouse": Warehouse()}


def materialize(selection: list[str] | None = None, **kwargs: Any) -> dg.ExecuteInProcessResult:
    """Materialize the raw assets in-process, each time with a freshly built definition."""
    assets = build_analytics_assets()
    if selection is not None:
        kwargs["selection"] = [dg.AssetKey(["analytics", name]) for name in selection]
    return dg.materialize([assets], resources=resources(), **kwargs)


def reader_pipeline() -> dlt.Pipeline:
    """A pipeline on the configured warehouse, for the oracle to read any destination through
    (`expected.compare`); it works in a directory no run uses."""
    return Warehouse().pipeline(workdir=Path(tempfile.mkdtemp(prefix="analytics_tests_reader_")))


def project_defs() -> dg.Definitions:
    """The project's definitions, as Dagster loads them."""
    return definitions


def run_job(name: str, **kwargs: Any) -> dg.ExecuteInProcessResult:
    """Run one of the project's jobs in-process; it must succeed."""
    result = project_defs().resolve_job_def(name).execute_in_process(**kwargs)
    assert result.success, name
    return result


def free_port() -> int:
    """A loopback port nobody listens on now (free once the probe closes)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def alive(pid: int) -> bool:
    """Running: neither gone nor a zombie waiting for its parent to collect it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def descendants(pid: int) -> set[int]:
    """The processes under `pid` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        children = {child for child, parent in parents.items() if parent in frontier}
        found |= children
        frontier = children
    return found


# ---- a real PostgreSQL server on loopback, for the Postgres tests ---------------------------

#: Set by `.ci/run`: a test whose tools are missing fails instead of being skipped.
REQUIRE_ALL = os.environ.get("ANALYTICS_TESTS_REQUIRE_ALL") == "1"


def skip_or_fail(reason: str) -> NoReturn:
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (ANALYTICS_TESTS_REQUIRE_ALL=1: CI must run this test)")
    pytest.skip(reason)


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
        skip_or_fail(
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
    port = free_port()
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


def create_database(postgres_server: str) -> str:
    """A fresh database on the server; returns its URL."""
    import psycopg2

    name = "t_" + uuid.uuid4().hex[:12]
    connection = psycopg2.connect(postgres_server + "/postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    connection.close()
    return f"{postgres_server}/{name}"


@pytest.fixture
def postgres_db(postgres_server: str) -> str:
    """A fresh database for one test; its URL."""
    return create_database(postgres_server)
