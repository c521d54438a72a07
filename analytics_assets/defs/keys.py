"""The names every Dagster module shares: the one asset-key scheme, the warehouse's pool, the
kinds shown on assets."""

import dagster as dg

from analytics_assets.source.settings import DATASET_NAME
from analytics_assets.warehouse.settings import destination_type

#: Steps that use the warehouse share this pool; `dagster_home/dagster.yaml` limits it to one
#: step at a time, as DuckDB takes one writer.
WAREHOUSE_POOL = "analytics_warehouse"


def asset_key(table: str) -> dg.AssetKey:
    """The one key scheme: `analytics/<table>`, the warehouse's `analytics.<table>`."""
    return dg.AssetKey([DATASET_NAME, table])


def warehouse_kinds(*extra: str) -> set[str]:
    """The kinds shown on an asset: what made it, and the destination in use."""
    return {*extra, destination_type()}
