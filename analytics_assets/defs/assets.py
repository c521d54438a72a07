"""The eight raw tables as Dagster software-defined assets, one per dlt resource.

Keys are `analytics/<table>`, the same as the warehouse's `analytics.<table>`; the group is
`analytics_api`. The specs are written here from the table list rather than made by
`@dlt_assets` from a dlt source and pipeline at import time: that built a pipeline (and its
directory) whenever Dagster loaded the code, and put objects in every asset's metadata that the
UI can only show as "(unserializable)". dagster-dlt still runs each load and reports each
table's materialization. The fan-out (rooms -> peers and events, templates -> settings and
destinations) is declared as dependencies.
"""

from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
from dagster_dlt import DagsterDltResource
from dlt.extract import DltSource

from analytics_assets.defs.checks import WAREHOUSE_CHECK_SPECS, warehouse_checks
from analytics_assets.defs.keys import WAREHOUSE_POOL, asset_key, warehouse_kinds
from analytics_assets.defs.loading import run_load
from analytics_assets.source.settings import (
    DATASET_NAME,
    RESOURCE_DESCRIPTIONS,
    RESOURCE_NAMES,
    UPSTREAM,
)
from analytics_assets.warehouse import Warehouse
from analytics_assets.warehouse.pipelines import (
    SHARED_PIPELINE,
    event_counts,
    inherited_cursors,
    prune_stale_workdirs,
)

GROUP_NAME = "analytics_api"


def raw_specs() -> list[dg.AssetSpec]:
    return [
        dg.AssetSpec(
            key=asset_key(table),
            deps=[asset_key(upstream) for upstream in UPSTREAM.get(table, [])],
            description=RESOURCE_DESCRIPTIONS[table],
            group_name=GROUP_NAME,
            kinds=warehouse_kinds("dlt"),
            metadata={"dagster/table_name": f"{DATASET_NAME}.{table}"},
        )
        for table in RESOURCE_NAMES
    ]


class RefreshConfig(dg.Config):
    """Run configuration of the raw assets (Launchpad: `ops: analytics_api: config:`)."""

    full_refresh: bool = False
    """Ignore the incremental cursors and read everything the API serves (merged, so no
    duplicates; events beyond the API's 30 days stay)."""
    sweep: bool = False
    """The daily sweep: rooms and recordings read in full, events reconciled room by room
    with the API's totals (rooms that fell short are read again)."""


def build_analytics_assets(
    source_factory: Callable[..., DltSource] | None = None,
) -> dg.AssetsDefinition:
    """The multi-asset of the eight raw tables. The source is built anew for every run
    (dagster issue 34052: reusing one across materializations corrupts its schema)."""

    @dg.multi_asset(
        specs=raw_specs(),
        # Checked in the same step, on the load's own connection, right after it.
        check_specs=WAREHOUSE_CHECK_SPECS,
        can_subset=True,
        name="analytics_api",
        pool=WAREHOUSE_POOL,
    )
    def analytics_api_assets(
        context: dg.AssetExecutionContext,
        dlt: DagsterDltResource,
        warehouse: Warehouse,
        config: RefreshConfig,
    ) -> Iterator[dg.MaterializeResult[Any] | dg.AssetCheckResult]:
        from analytics_assets.source import analytics_api

        tables = sorted(key.path[-1] for key in context.selected_asset_keys)
        checks = context.selected_asset_check_keys
        if not tables:  # only checks selected
            with warehouse.sql_client() as client:
                yield from warehouse_checks(client, checks)
            return
        prune_stale_workdirs()
        with (
            warehouse.lock(tables),
            warehouse.run_pipeline(context.run.job_name, context.run_id) as pipeline,
        ):
            inherited = inherited_cursors(pipeline, tables)
            if inherited:
                context.log.info(
                    f"First run of pipeline {pipeline.pipeline_name}: the cursors of "
                    f"{', '.join(sorted(inherited))} carried over from pipeline {SHARED_PIPELINE}"
                )
            source = (source_factory or analytics_api)(
                tables=tables,
                full_refresh=config.full_refresh,
                sweep=config.sweep,
                event_counts=event_counts(pipeline),
                inherited_state=inherited,
            )
            with pipeline.sql_client() as client:  # one connection for the counts and checks
                yield from run_load(context, dlt, source, pipeline, client)
                yield from warehouse_checks(client, checks)

    return analytics_api_assets


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=[build_analytics_assets()])
