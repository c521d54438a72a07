"""Which destination, and which DuckDB file: read from dlt's configuration (`.dlt/config.toml`,
the environment), the one settings reference of the project."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dlt


def destination_type() -> str:
    """`DESTINATION_TYPE` (or `destination_type` in `.dlt/config.toml`); DuckDB by default."""
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
