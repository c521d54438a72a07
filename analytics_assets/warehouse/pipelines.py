"""The dlt pipelines that write the warehouse, so that runs side by side never share a dlt
working directory or a state record:

- Each job has its own dlt pipeline, so its own state record in the warehouse, holding the
  cursors of the tables that job loads (`analytics_api__activity_refresh`, ...). Ad hoc runs
  (the UI's "Materialize", `dagster asset materialize`) use `analytics_api`, the pipeline every
  run used before jobs had their own: a job's first run takes its tables' cursors from it, so a
  warehouse loaded before carries on where it was.
- Each run works in its own directory (`<dlt data dir>/pipelines/runs/<run id>`), removed when
  it ends; its state is restored from the warehouse, where it is stored with the data it
  describes.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import dlt
from dlt.common.pipeline import get_dlt_pipelines_dir

from analytics_assets.source.settings import CURSOR_TABLES, SOURCE_NAME

#: The pipeline of ad hoc runs, and of every run before each job had its own.
SHARED_PIPELINE = SOURCE_NAME


def pipeline_name(job_name: str | None) -> str:
    """The dlt pipeline, and so the state record, of a job's runs."""
    if not job_name or job_name.startswith("__"):  # "__ASSET_JOB": ad hoc materializations
        return SHARED_PIPELINE
    return f"{SHARED_PIPELINE}__{job_name}"


def run_workdir(run_id: str) -> Path:
    """The working directory of one run."""
    return Path(get_dlt_pipelines_dir()) / "runs" / run_id


def inherited_cursors(pipeline: dlt.Pipeline, tables: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The cursors a job's pipeline takes over from the shared pipeline, for the tables it has
    none of yet: a warehouse loaded before jobs had their own pipelines keeps its place.
    Only tables that keep a cursor can inherit one: for a job of other tables (the live peers,
    every 5 minutes) neither its own state nor the shared pipeline's is read here (dlt restores
    its own when it runs)."""
    tables = [t for t in tables if t in CURSOR_TABLES]
    if pipeline.pipeline_name == SHARED_PIPELINE or not tables:
        return {}
    own = _stored_resources(pipeline)
    missing = [t for t in tables if not own.get(t)]
    if not missing:
        return {}
    # The shared pipeline's state, read through a pipeline of that name in a directory of its
    # own (runs side by side never share one), restored from the warehouse by dlt.
    with tempfile.TemporaryDirectory(prefix="dlt-shared-state-") as work:
        shared_pipeline = dlt.pipeline(
            SHARED_PIPELINE,
            pipelines_dir=work,
            destination=pipeline.destination,
            dataset_name=pipeline.dataset_name,
        )
        shared = _stored_resources(shared_pipeline)
    return {t: shared[t] for t in missing if shared.get(t)}


def _stored_resources(pipeline: dlt.Pipeline) -> dict[str, Any]:
    """The source's resource states the warehouse holds for this pipeline (`sync_destination`
    restores them; nothing if the warehouse has no state yet)."""
    from dlt.destinations.exceptions import DatabaseUndefinedRelation, DestinationUndefinedEntity

    try:
        pipeline.sync_destination()
    except (DestinationUndefinedEntity, DatabaseUndefinedRelation):
        return {}
    state = pipeline.state
    return dict(state.get("sources", {}).get(SOURCE_NAME, {}).get("resources", {}))


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
    """On DuckDB, load through files DuckDB reads itself: Parquet for the events (dlt is given
    them as Arrow tables, `source/columnar.py`), jsonl for the other tables, about 5x faster
    than dlt's default insert statements (TRAPS). Not for replaced tables (small, may be
    replaced by nothing, and an empty jsonl file makes DuckDB's reader invent a column `json`:
    Binder Error), nor for tables with JSON columns (small too; see below). Other destinations
    keep their preferred format. Per table, because a
    run-wide `loader_file_format` overrides every table's own."""
    if pipeline.destination.destination_name != "duckdb":
        return
    for resource in source.selected_resources.values():
        columns = resource.columns if isinstance(resource.columns, dict) else {}
        has_json = any(c.get("data_type") == "json" for c in columns.values())
        if resource.write_disposition == "replace" or has_json:
            # DuckDB's jsonl reader types a JSON column as a struct of every key it saw in any
            # row: an empty object would load as {"key": null}, keys the API never sent.
            resource.apply_hints(file_format="insert_values")
        elif resource.name == "analytics_events":
            resource.apply_hints(file_format="parquet")
        else:
            resource.apply_hints(file_format="jsonl")


#: Rooms counted per query by the reconciliation (two parameters each).
COUNT_BATCH = 1000


def event_counts(pipeline: dlt.Pipeline) -> Any:
    """`{room_id: since} -> {room_id: events in the warehouse since then}`, for the
    reconciliation: each room over its own window, rooms a thousand to a query."""
    from analytics_assets.warehouse.resource import existing_tables

    def counts(windows: Mapping[str, datetime]) -> Mapping[str, int]:
        found: dict[str, int] = {}
        with pipeline.sql_client() as client:
            if "analytics_events" not in existing_tables(client):
                return found
            table = client.make_qualified_table_name("analytics_events")
            rooms = list(windows.items())
            for start in range(0, len(rooms), COUNT_BATCH):
                batch = rooms[start : start + COUNT_BATCH]
                values = ", ".join(["(%s, %s)"] * len(batch))
                query = (
                    f"WITH w (room_id, since) AS (VALUES {values}) "
                    f"SELECT w.room_id, count(*) FROM w JOIN {table} AS e "
                    'ON e.data__room_id = w.room_id AND e."timestamp" >= w.since '
                    "GROUP BY w.room_id"
                )
                params = [value for pair in batch for value in pair]
                with client.execute_query(query, *params) as cursor:
                    found.update((row[0], int(row[1])) for row in cursor.fetchall())
        return found

    return counts
