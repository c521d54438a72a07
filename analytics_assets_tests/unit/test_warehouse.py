"""Where the tables land: the DuckDB file, the pipeline (so the state record) of each job, and
the cursors a job's first run inherits (on a tiny DuckDB file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dlt
import pytest

from analytics_assets.source.settings import SOURCE_NAME
from analytics_assets.warehouse import Warehouse
from analytics_assets.warehouse import pipelines as pipelines_module
from analytics_assets.warehouse.pipelines import (
    SHARED_PIPELINE,
    inherited_cursors,
    pipeline_name,
    run_workdir,
)
from analytics_assets.warehouse.settings import default_duckdb_path, duckdb_path
from analytics_assets_tests.conftest import REPO


def test_duckdb_file_is_the_default_unless_a_path_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The committed config.toml makes `[destination.duckdb.credentials]` a table (DuckDB's
    memory cap): with no path configured the warehouse is `data/warehouse.duckdb` of the
    checkout, never a file named after that table."""
    monkeypatch.delenv("DESTINATION__DUCKDB__CREDENTIALS")
    assert duckdb_path() == default_duckdb_path() == REPO / "data" / "warehouse.duckdb"
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS__DATABASE", str(tmp_path / "a.duckdb"))
    assert duckdb_path() == tmp_path / "a.duckdb"
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(tmp_path / "b.duckdb"))
    assert duckdb_path() == tmp_path / "b.duckdb"
    assert Warehouse().database == tmp_path / "b.duckdb"
    assert Warehouse(duckdb_path=str(tmp_path / "c.duckdb")).database == tmp_path / "c.duckdb"


def test_destination_is_duckdb_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Warehouse().kind == "duckdb"
    assert Warehouse().destination().destination_name == "duckdb"
    monkeypatch.setenv("DESTINATION_TYPE", "postgres")
    assert Warehouse().kind == "postgres"
    assert Warehouse(destination_type="duckdb").kind == "duckdb"
    # dlt's own error names the destination and how to configure one.
    with pytest.raises(Exception, match="no_such_destination"):
        Warehouse(destination_type="no_such_destination").destination()


def test_each_job_has_its_own_pipeline_and_each_run_its_own_directory() -> None:
    """Runs side by side never share a state record (a job each) or a working directory (a
    run each); ad hoc runs use the pipeline every run used before jobs had their own."""
    assert pipeline_name("activity_refresh") == f"{SHARED_PIPELINE}__activity_refresh"
    assert pipeline_name("__ASSET_JOB") == pipeline_name(None) == SHARED_PIPELINE
    assert run_workdir("run-a").name == "run-a" and run_workdir("run-b").name == "run-b"
    assert run_workdir("run-a").parent == run_workdir("run-b").parent  # side by side


def _shared_pipeline_with_a_rooms_cursor(database: Path, pipelines_dir: Path) -> None:
    """A warehouse that the shared pipeline loaded once, leaving a cursor for rooms."""

    @dlt.source(name=SOURCE_NAME)
    def source() -> Any:
        @dlt.resource(name="rooms")
        def rooms() -> Any:
            dlt.current.resource_state()["created"] = "2026-11-30T10:00:00Z"
            yield {"id": "room-1"}

        return rooms

    shared = dlt.pipeline(
        SHARED_PIPELINE,
        pipelines_dir=str(pipelines_dir / "shared"),
        destination=dlt.destinations.duckdb(str(database)),
        dataset_name="analytics",
    )
    shared.run(source())


def test_a_jobs_first_run_inherits_cursors_only_for_tables_that_keep_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live peers' job (every 5 minutes) keeps no cursor: nothing is synced to look for one
    (neither its own state nor the shared pipeline's); the activity job's first run takes the
    shared rooms cursor."""
    database = tmp_path / "w.duckdb"
    _shared_pipeline_with_a_rooms_cursor(database, tmp_path)
    syncs: list[str] = []
    stored = pipelines_module._stored_resources

    def counting(pipeline: dlt.Pipeline) -> dict[str, Any]:
        syncs.append(pipeline.pipeline_name)
        return stored(pipeline)

    monkeypatch.setattr(pipelines_module, "_stored_resources", counting)

    def job(name: str) -> dlt.Pipeline:
        return dlt.pipeline(
            pipeline_name(name),
            pipelines_dir=str(tmp_path / name),
            destination=dlt.destinations.duckdb(str(database)),
            dataset_name="analytics",
        )

    assert inherited_cursors(job("live_peers_refresh"), ["active_room_peers"]) == {}
    assert syncs == []
    found = inherited_cursors(job("activity_refresh"), ["rooms", "active_room_peers"])
    assert found == {"rooms": {"created": "2026-11-30T10:00:00Z"}}
    assert syncs == [pipeline_name("activity_refresh"), SHARED_PIPELINE]
