"""Where the tables land: the dlt pipeline and its destination, chosen by configuration.

DuckDB is the default; any other dlt destination comes from `DESTINATION_TYPE` (or
`destination_type` in `.dlt/config.toml`) plus that destination's own dlt settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dlt
from dlt.common.destination import Destination
from dlt.extract import DltSource

from analytics_assets.source.settings import DATASET_NAME, SOURCE_NAME

PIPELINE_NAME = SOURCE_NAME


def default_duckdb_path() -> Path:
    """`data/warehouse.duckdb` in the project checkout (else under the working directory).

    Not `analytics.duckdb`: a file named like its dataset makes DuckDB's references ambiguous.
    """
    checkout = Path(__file__).resolve().parents[2]
    root = checkout if (checkout / "pyproject.toml").exists() else Path.cwd()
    return root / "data" / "warehouse.duckdb"


def duckdb_path() -> Path:
    """The DuckDB file in use: dlt's own `DESTINATION__DUCKDB__CREDENTIALS`, else the default."""
    configured = dlt.config.get("destination.duckdb.credentials", str)
    return Path(configured) if configured else default_duckdb_path()


def warehouse_destination() -> Destination[Any, Any]:
    destination_type = dlt.config.get("destination_type", str) or "duckdb"
    if destination_type != "duckdb":
        # Credentials come from dlt's configuration, e.g. DESTINATION__POSTGRES__CREDENTIALS.
        destination = Destination.from_reference(destination_type)
        if destination is None:
            raise ValueError(f"DESTINATION_TYPE names no dlt destination: {destination_type!r}")
        return destination
    path = duckdb_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return dlt.destinations.duckdb(credentials=str(path))


def analytics_pipeline() -> dlt.Pipeline:
    """The pipeline; its working directory is left to dlt (so `DLT_DATA_DIR` applies)."""
    return dlt.pipeline(
        pipeline_name=PIPELINE_NAME,
        destination=warehouse_destination(),
        dataset_name=DATASET_NAME,
    )


def choose_file_formats(pipeline: dlt.Pipeline, source: DltSource) -> None:
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


def existing_tables(client: Any) -> set[str]:
    """The tables of the dataset that exist in the destination, through a dlt SQL client."""
    with client.execute_query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
        client.dataset_name,
    ) as cursor:
        return {row[0] for row in cursor.fetchall()}
