"""Where the tables land: the destination, the dlt pipelines that write it, the locks that make
runs take turns, and `Warehouse`, the Dagster resource that owns all three.

- `settings.py`: which destination (DuckDB unless configured) and which file;
- `pipelines.py`: a dlt pipeline per job, a working directory per run, cursors carried over;
- `locks.py`: runs writing the same tables take turns (a file lock on DuckDB, advisory locks on
  Postgres);
- `resource.py`: the `Warehouse` resource injected into the assets and checks.
"""

from analytics_assets.warehouse.resource import Warehouse, existing_tables

__all__ = ["Warehouse", "existing_tables"]
