"""Where the tables land, and how runs share it.

DuckDB is the default destination; any other dlt destination comes from `DESTINATION_TYPE` (or
`destination_type` in `.dlt/config.toml`) plus that destination's own dlt settings.

Runs side by side. Two runs never share a dlt working directory or a state record:

- Each job has its own dlt pipeline, so its own state record in the warehouse, holding the
  cursors of the tables that job loads (`analytics_api__activity_refresh`, ...). Ad hoc runs
  (the UI's "Materialize", `dagster asset materialize`) use `analytics_api`, the pipeline every
  run used before jobs had their own: a job's first run takes its tables' cursors from it, so a
  warehouse loaded before carries on where it was.
- Each run works in its own directory (`<dlt data dir>/runs/<run id>`), removed when it ends;
  its state is restored from the warehouse, where it is stored with the data it describes.

Runs that write the same table take turns (`warehouse_lock`): on DuckDB, which takes one writer
at a time, a lock file beside the database serializes every run touching it; on Postgres, a
session advisory lock per table serializes only the runs that share a table, so jobs on
different tables load at the same time. Other destinations rely on the Dagster pool.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import dlt
from dlt.common.destination import Destination
from dlt.common.pipeline import get_dlt_pipelines_dir

from analytics_assets.source.settings import DATASET_NAME, SOURCE_NAME

logger = logging.getLogger(__name__)

#: The pipeline of ad hoc runs, and of every run before each job had its own.
SHARED_PIPELINE = SOURCE_NAME
#: How long a run waits for another run writing the same tables before it gives up.
LOCK_TIMEOUT_SECONDS = 3600.0


def destination_type() -> str:
    return dlt.config.get("destination_type", str) or "duckdb"


def default_duckdb_path() -> Path:
    """`data/warehouse.duckdb` in the project checkout (else under the working directory).

    Not `analytics.duckdb`: a file named like its dataset makes DuckDB's references ambiguous.
    """
    checkout = Path(__file__).resolve().parents[2]
    root = checkout if (checkout / "pyproject.toml").exists() else Path.cwd()
    return root / "data" / "warehouse.duckdb"


def duckdb_path() -> Path:
    """The DuckDB file in use: dlt's own `DESTINATION__DUCKDB__CREDENTIALS` (a path), or the
    `database` of a `[destination.duckdb.credentials]` table, else the default.

    `.dlt/config.toml` sets `[destination.duckdb.credentials.global_config]` (DuckDB's memory
    cap), so the setting is a table, not a path, unless a path is configured: read as a string
    it would name a file `{"global_config": ...}` in the working directory.
    """
    configured: Any = dlt.config.get("destination.duckdb.credentials")
    if isinstance(configured, Mapping) or not configured:
        configured = dlt.config.get("destination.duckdb.credentials.database", str)
    return Path(str(configured)) if configured else default_duckdb_path()


def warehouse_destination() -> Destination[Any, Any]:
    kind = destination_type()
    if kind != "duckdb":
        # Credentials come from dlt's configuration, e.g. DESTINATION__POSTGRES__CREDENTIALS.
        destination = Destination.from_reference(kind)
        if destination is None:
            raise ValueError(f"DESTINATION_TYPE names no dlt destination: {kind!r}")
        return _capabilities_resolved_once(destination)
    path = duckdb_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return _capabilities_resolved_once(dlt.destinations.duckdb(credentials=str(path)))


def _capabilities_resolved_once(destination: Destination[Any, Any]) -> Destination[Any, Any]:
    """The destination, resolving the configuration its capabilities depend on once per
    configuration section.

    Each time dlt asks a destination for its capabilities without a configuration (17 times
    in a full load here), it resolves a partial configuration from every provider again: about
    19 ms each, a sixth of a small run. Within one section (none while the pipeline is made,
    the pipeline's own while it extracts and normalizes, where `<PIPELINE>__DESTINATION__...`
    settings apply) the answer does not change while the destination lives, so each section's
    is resolved once; dlt still computes the capabilities on every call, for the naming
    convention it passes. The method is replaced on this object only, so the object no longer
    pickles: dlt does not pickle destinations (a pipeline's state leaves them out).
    """
    capabilities = destination.capabilities
    resolved: dict[tuple[str | None, tuple[str, ...]] | None, Any] = {}

    def capabilities_once(config: Any = None, naming: Any = None) -> Any:
        if config is None:
            section = _config_section()
            if section not in resolved:
                resolved[section] = _partial_configuration(destination)
            config = resolved[section]
        return capabilities(config, naming)

    destination.capabilities = capabilities_once  # type: ignore[method-assign]
    return destination


def _config_section() -> tuple[str | None, tuple[str, ...]] | None:
    """The configuration section dlt resolves in now (the pipeline's, inside a pipeline step)."""
    from dlt.common.configuration.container import Container
    from dlt.common.configuration.specs.config_section_context import ConfigSectionContext

    container = Container()
    if ConfigSectionContext not in container:
        return None
    context = container[ConfigSectionContext]
    return context.pipeline_name, tuple(context.sections)


def _partial_configuration(destination: Destination[Any, Any]) -> Any:
    """What dlt's `Destination.capabilities()` resolves when given no configuration: the
    explicit settings plus whatever the providers hold, credentials not required."""
    initial = destination.spec()
    initial.update(destination.config_params)
    credentials = initial.credentials
    if not credentials:
        credentials = destination.spec.credentials_type(initial)()
        credentials.__is_resolved__ = True
    elif hasattr(credentials, "copy"):
        credentials = credentials.copy()
    config = destination.spec(credentials=credentials)
    try:
        return destination.configuration(config, accept_partial=True)
    except Exception:  # as dlt does: an invalid native value falls back to the bare spec
        return config


def pipeline_name(job_name: str | None) -> str:
    """The dlt pipeline, and so the state record, of a job's runs."""
    if not job_name or job_name.startswith("__"):  # "__ASSET_JOB": ad hoc materializations
        return SHARED_PIPELINE
    return f"{SHARED_PIPELINE}__{job_name}"


def analytics_pipeline(name: str = SHARED_PIPELINE, *, workdir: Path | None = None) -> dlt.Pipeline:
    """A pipeline writing the warehouse; `workdir` is its private working directory (dlt's
    default directory when None, for reading the warehouse only)."""
    return dlt.pipeline(
        pipeline_name=name,
        pipelines_dir=str(workdir) if workdir else get_dlt_pipelines_dir(),
        destination=warehouse_destination(),
        dataset_name=DATASET_NAME,
    )


@contextmanager
def run_pipeline(job_name: str | None, run_id: str) -> Iterator[dlt.Pipeline]:
    """The job's pipeline in a working directory of this run's own, removed afterwards."""
    workdir = Path(get_dlt_pipelines_dir()) / "runs" / run_id
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        yield analytics_pipeline(pipeline_name(job_name), workdir=workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def inherited_cursors(pipeline: dlt.Pipeline, tables: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The cursors a job's pipeline takes over from the shared pipeline, for the tables it has
    none of yet: a warehouse loaded before jobs had their own pipelines keeps its place."""
    if pipeline.pipeline_name == SHARED_PIPELINE:
        return {}
    own = _stored_resources(pipeline, pipeline.pipeline_name)
    missing = [t for t in tables if not own.get(t)]
    if not missing:
        return {}
    shared = _stored_resources(pipeline, SHARED_PIPELINE)
    return {t: shared[t] for t in missing if shared.get(t)}


def _stored_resources(pipeline: dlt.Pipeline, name: str) -> dict[str, Any]:
    from dlt.destinations.exceptions import DatabaseUndefinedRelation, DestinationUndefinedEntity
    from dlt.pipeline.state_sync import load_pipeline_state_from_destination

    try:
        with pipeline.destination_client() as client:
            state = load_pipeline_state_from_destination(name, client)  # type: ignore[arg-type]
    except (DestinationUndefinedEntity, DatabaseUndefinedRelation):
        return {}
    if not state:
        return {}
    return dict(state.get("sources", {}).get(SOURCE_NAME, {}).get("resources", {}))


_readers = threading.local()


def _reader_client() -> Any:
    """A dlt SQL client for reading and running SQL (the analytics, the checks, the locks): one
    per thread and warehouse, from a pipeline in a directory of its own that no run loads
    through. Made once: making a pipeline and its client resolves their whole configuration."""
    kind = destination_type()
    if kind == "duckdb":
        where = str(duckdb_path())
    else:  # the warehouse named by its credentials, kept only as a digest
        credentials: Any = dlt.secrets.get(f"destination.{kind}.credentials")
        where = hashlib.sha256(repr(credentials).encode()).hexdigest()
    clients = _readers.__dict__.setdefault("clients", {})
    if (kind, where) not in clients:
        workdir = Path(tempfile.mkdtemp(dir=_readers_dir()))
        clients[(kind, where)] = analytics_pipeline(SHARED_PIPELINE, workdir=workdir).sql_client()
    return clients[(kind, where)]


_readers_dir_lock = threading.Lock()
_readers_dir_path: list[Path] = []


def _readers_dir() -> Path:
    """One temporary directory per process for the readers' pipelines, removed when the
    process exits: a code server or a run process leaves nothing behind in /tmp."""
    with _readers_dir_lock:
        if not _readers_dir_path:
            path = Path(tempfile.mkdtemp(prefix="analytics_readers_"))
            atexit.register(shutil.rmtree, path, ignore_errors=True)
            _readers_dir_path.append(path)
        return _readers_dir_path[0]


@contextmanager
def sql_client() -> Iterator[Any]:
    """A dlt SQL client on the warehouse, open for the block; it holds the warehouse on DuckDB
    (one process at a time may open the file)."""
    with warehouse_lock(()), _reader_client() as client:
        yield client


def existing_tables(client: Any) -> set[str]:
    """The tables of the dataset that exist in the destination, through a dlt SQL client."""
    with client.execute_query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
        client.dataset_name,
    ) as cursor:
        return {row[0] for row in cursor.fetchall()}


def event_counts(pipeline: dlt.Pipeline) -> Any:
    """`since -> {room_id: events in the warehouse since then}`, for the reconciliation."""

    def counts(since: datetime) -> Mapping[str, int]:
        with pipeline.sql_client() as client:
            if "analytics_events" not in existing_tables(client):
                return {}
            table = client.make_qualified_table_name("analytics_events")
            with client.execute_query(
                f'SELECT data__room_id, count(*) FROM {table} WHERE "timestamp" >= %s '
                "GROUP BY data__room_id",
                since,
            ) as cursor:
                return {row[0]: int(row[1]) for row in cursor.fetchall()}

    return counts


# ---- runs that write the same tables take turns ----------------------------------------------


@contextmanager
def warehouse_lock(
    tables: Sequence[str], *, timeout: float = LOCK_TIMEOUT_SECONDS
) -> Iterator[None]:
    """Hold the warehouse for the `tables` this step writes (or reads, on DuckDB) until the
    block ends; wait while another run holds them, saying so, and fail with a clear message
    after `timeout` seconds."""
    kind = destination_type()
    if kind == "duckdb":
        with _file_lock(duckdb_path(), timeout):
            yield
    elif kind == "postgres" and tables:
        with _advisory_locks(sorted(set(tables)), timeout):
            yield
    else:
        yield


@contextmanager
def _file_lock(db: Path, timeout: float) -> Iterator[None]:
    from filelock import FileLock, Timeout

    db.parent.mkdir(parents=True, exist_ok=True)
    # One lock object per file in this process, re-entrant across its threads: a step that
    # holds the warehouse may open more connections; other processes wait.
    lock = FileLock(str(db) + ".lock", is_singleton=True, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.warning("Waiting for another run to finish with %s (DuckDB takes one writer)", db)
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise TimeoutError(
                f"Another run held {db} for more than {timeout:.0f} s; gave up waiting "
                "(nothing was written)"
            ) from None
    try:
        yield
    finally:
        lock.release()


#: Held by a run that may create the dataset, the staging dataset or dlt's own tables: two
#: first loads at the same time would race on `CREATE SCHEMA` and `CREATE TABLE _dlt_...`.
SETUP_LOCK = "(dataset setup)"


@contextmanager
def _advisory_locks(tables: Sequence[str], timeout: float) -> Iterator[None]:
    """Postgres session advisory locks, one per table, taken in one order (no deadlock) on a
    connection of their own, released when it closes (even if the process dies)."""
    with sql_client() as client:
        if not _set_up(client):
            tables = [SETUP_LOCK, *tables]
        for table in tables:
            key = _lock_key(f"{DATASET_NAME}.{table}")
            deadline = time.monotonic() + timeout
            waiting = False
            while not _try_lock(client, key):
                if not waiting:
                    logger.warning("Waiting for another run writing %s.%s", DATASET_NAME, table)
                    waiting = True
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"Another run kept writing {DATASET_NAME}.{table} for more than "
                        f"{timeout:.0f} s; gave up waiting (nothing was written)"
                    )
                time.sleep(0.5)
        yield


def _set_up(client: Any) -> bool:
    """Whether the dataset, its staging dataset and dlt's tables exist already."""
    schemas = f"'{client.dataset_name}', '{client.dataset_name}_staging'"
    with client.execute_query(
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name IN (" + schemas + ")"
    ) as cursor:
        both = cursor.fetchone()[0] == 2
    return both and "_dlt_version" in existing_tables(client)


def _try_lock(client: Any, key: int) -> bool:
    with client.execute_query("SELECT pg_try_advisory_lock(%s)", key) as cursor:
        return bool(cursor.fetchone()[0])


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big", signed=True)


def prune_stale_workdirs(max_age_seconds: float = 7 * 86400) -> None:
    """Remove the working directories that killed runs left behind."""
    runs = Path(get_dlt_pipelines_dir()) / "runs"
    if not runs.is_dir():
        return
    cutoff = time.time() - max_age_seconds
    for entry in runs.iterdir():
        try:
            if entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue


def choose_file_formats(pipeline: dlt.Pipeline, source: Any) -> None:
    """On DuckDB, load through jsonl files: about 5x faster than dlt's default insert
    statements (TRAPS). Not for replaced tables: they are small, and may be replaced by nothing,
    and an empty jsonl file makes DuckDB's reader invent a column `json` (Binder Error). Other
    destinations keep their preferred format. Per table, because a run-wide
    `loader_file_format` overrides every table's own."""
    if pipeline.destination.destination_name != "duckdb":
        return
    for resource in source.selected_resources.values():
        replaced = resource.write_disposition == "replace"
        resource.apply_hints(file_format="insert_values" if replaced else "jsonl")
