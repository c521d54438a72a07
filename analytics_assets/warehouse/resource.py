"""`Warehouse`: the Dagster resource that owns the destination, the SQL connections on it and the
locks that make runs take turns. Injected into the raw assets, the analytics and the checks.

DuckDB is the default destination; any other dlt destination comes from `DESTINATION_TYPE` (or
`destination_type` in `.dlt/config.toml`) plus that destination's own dlt settings; both can be
set on the resource instead.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import dlt
from dlt.common.destination import Destination
from pydantic import PrivateAttr

from analytics_assets.source.settings import DATASET_NAME
from analytics_assets.warehouse import locks, settings
from analytics_assets.warehouse.pipelines import SHARED_PIPELINE, pipeline_name, run_workdir

#: How long a run waits for another run writing the same tables before it gives up.
LOCK_TIMEOUT_SECONDS = 3600.0


class Warehouse(dg.ConfigurableResource):
    """Where the tables land: a dlt destination and dataset `analytics`, with the locks that
    make runs writing the same tables take turns (a lock file on DuckDB, advisory locks per
    table on Postgres; other destinations rely on the Dagster pool `analytics_warehouse`)."""

    destination_type: str = ""
    """A dlt destination name; empty: dlt's `destination_type` setting, else `duckdb`."""
    duckdb_path: str = ""
    """The DuckDB file; empty: dlt's `DESTINATION__DUCKDB__CREDENTIALS`, else
    `data/warehouse.duckdb` of the checkout."""
    lock_timeout_seconds: float = LOCK_TIMEOUT_SECONDS
    """How long a run waits for another writing the same tables before it fails."""

    _reader: dlt.Pipeline | None = PrivateAttr(default=None)
    _reader_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def kind(self) -> str:
        return self.destination_type or settings.destination_type()

    @property
    def database(self) -> Path:
        """The DuckDB file (DuckDB only)."""
        return Path(self.duckdb_path) if self.duckdb_path else settings.duckdb_path()

    def destination(self) -> Destination[Any, Any]:
        if self.kind != "duckdb":
            # Credentials come from dlt's configuration, e.g. DESTINATION__POSTGRES__CREDENTIALS.
            destination = Destination.from_reference(self.kind)
            if destination is None:
                raise ValueError(f"DESTINATION_TYPE names no dlt destination: {self.kind!r}")
            return destination
        self.database.parent.mkdir(parents=True, exist_ok=True)
        return dlt.destinations.duckdb(credentials=str(self.database))

    def pipeline(self, name: str = SHARED_PIPELINE, *, workdir: Path) -> dlt.Pipeline:
        """A pipeline writing the warehouse, working in `workdir` (no other run's)."""
        return dlt.pipeline(
            pipeline_name=name,
            pipelines_dir=str(workdir),
            destination=self.destination(),
            dataset_name=DATASET_NAME,
        )

    @contextmanager
    def run_pipeline(self, job_name: str | None, run_id: str) -> Iterator[dlt.Pipeline]:
        """The job's pipeline in a working directory of this run's own, removed afterwards."""
        workdir = run_workdir(run_id)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            yield self.pipeline(pipeline_name(job_name), workdir=workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    @contextmanager
    def sql_client(self) -> Iterator[Any]:
        """A dlt SQL client on a connection of its own, open for the block; on DuckDB it holds
        the file (one process at a time may open it)."""
        with self.lock(()), self._reader_pipeline().sql_client() as client:
            yield client

    @contextmanager
    def lock(self, tables: Sequence[str]) -> Iterator[None]:
        """Hold the warehouse for the `tables` this step writes (or reads, on DuckDB) until the
        block ends; wait while another run holds them, saying so, and fail with a clear message
        after `lock_timeout_seconds`."""
        if self.kind == "duckdb":
            with locks.file_lock(self.database, self.lock_timeout_seconds):
                yield
        elif self.kind == "postgres" and tables:
            reader = self._reader_pipeline()
            with locks.advisory_locks(reader.sql_client, tables, self.lock_timeout_seconds):
                yield
        else:
            yield

    def _reader_pipeline(self) -> dlt.Pipeline:
        """A pipeline that no run loads through, for SQL on the warehouse: made once per
        resource (making one resolves its whole configuration), in a directory of its own."""
        with self._reader_lock:
            if self._reader is None:
                workdir = Path(tempfile.mkdtemp(dir=_readers_dir()))
                self._reader = self.pipeline(SHARED_PIPELINE, workdir=workdir)
            return self._reader


def existing_tables(client: Any) -> set[str]:
    """The tables of the dataset that exist in the destination, through a dlt SQL client."""
    with client.execute_query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
        client.dataset_name,
    ) as cursor:
        return {row[0] for row in cursor.fetchall()}


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
