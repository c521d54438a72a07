"""The eight raw tables as Dagster software-defined assets, one per dlt resource.

Keys are `analytics/<table>`, the same as the warehouse's `analytics.<table>`; the group is
`analytics_api`. The fan-out (rooms -> peers and events, templates -> settings and
destinations) is set here because dagster-dlt's default makes children siblings of their parent.
"""

from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
from dagster_dlt import DagsterDltResource, DagsterDltTranslator, dlt_assets
from dagster_dlt.translator import DltResourceTranslatorData
from dlt.extract import DltSource
from dlt.pipeline.exceptions import PipelineStepFailed

from analytics_assets.defs.warehouse import (
    analytics_pipeline,
    choose_file_formats,
    existing_tables,
)
from analytics_assets.source import analytics_api
from analytics_assets.source.settings import DATASET_NAME, RESOURCE_DESCRIPTIONS, UPSTREAM

GROUP_NAME = "analytics_api"
#: DuckDB takes one writer at a time: every run that writes the warehouse shares this pool.
WAREHOUSE_POOL = "analytics_warehouse"


def asset_key(table: str) -> dg.AssetKey:
    """The one key scheme: `analytics/<table>`."""
    return dg.AssetKey([DATASET_NAME, table])


class AnalyticsTranslator(DagsterDltTranslator):
    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        spec = super().get_asset_spec(data)
        name = data.resource.name
        return spec.replace_attributes(
            key=asset_key(name),
            deps=[asset_key(upstream) for upstream in UPSTREAM.get(name, [])],
            description=RESOURCE_DESCRIPTIONS[name],
            group_name=GROUP_NAME,
        )


class AnalyticsLoadError(Exception):
    """A load failed; the message names the endpoint and the cause, never a secret."""


_HINTS = {
    401: (
        " (the API rejected the credentials: check API_TOKEN, which expires 7 days after it "
        "was copied, or APP_ACCESS_KEY and APP_SECRET)"
    ),
    403: " (the credentials lack access to this workspace: check which workspace they belong to)",
}


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None or exc.__context__ is not None:
        nxt = exc.__cause__ or exc.__context__
        assert nxt is not None
        exc = nxt
    return exc


def run_load(
    context: dg.AssetExecutionContext,
    dlt: DagsterDltResource,
    source: DltSource,
) -> Iterator[dg.MaterializeResult[Any]]:
    """Run dlt for the selected assets, then report rows loaded and the table's row count.

    The count is our own query: dagster-dlt's `fetch_row_count()` fails the step when an
    incremental run loads nothing.
    """
    pipeline = analytics_pipeline()
    try:
        choose_file_formats(pipeline, source)
        results = list(dlt.run(context=context, dlt_source=source, dlt_pipeline=pipeline))
    except PipelineStepFailed as exc:
        cause = _root_cause(exc)
        status = getattr(getattr(cause, "response", None), "status_code", 0)
        hint = _HINTS.get(status, "")
        raise AnalyticsLoadError(
            f"dlt step '{exc.step}' failed: {type(cause).__name__}: {cause}{hint}"
        ) from exc
    counts = table_row_counts(pipeline, [r.asset_key.path[-1] for r in results if r.asset_key])
    added = new_columns(pipeline)
    for result in results:
        assert result.asset_key is not None
        table = result.asset_key.path[-1]
        metadata = dict(result.metadata or {})
        metadata.setdefault("rows_loaded", dg.MetadataValue.int(0))
        metadata["dagster/row_count"] = dg.MetadataValue.int(counts.get(table, 0))
        if added.get(table):
            # Schema drift made visible: a field the API started to send, or a type change
            # (dlt keeps the value in a variant column such as `<name>__v_text`).
            metadata["new_columns"] = dg.MetadataValue.json(added[table])
        yield dg.MaterializeResult(asset_key=result.asset_key, metadata=metadata)


def new_columns(pipeline: Any) -> dict[str, list[str]]:
    """Columns this run added, per table (its own or its nested `<table>__...` tables)."""
    added: dict[str, list[str]] = {}
    trace = pipeline.last_trace
    load_info = trace.last_load_info if trace else None
    for package in load_info.load_packages if load_info else []:
        for table, update in (package.schema_update or {}).items():
            if table.startswith("_dlt"):
                continue
            root = table.split("__", 1)[0]
            prefix = f"{table}." if table != root else ""
            columns = [
                f"{prefix}{c}" for c in update.get("columns", {}) if not c.startswith("_dlt")
            ]
            added.setdefault(root, []).extend(columns)
    return added


def table_row_counts(pipeline: Any, tables: list[str]) -> dict[str, int]:
    """Row counts read from the destination, for the tables that exist there."""
    counts: dict[str, int] = {}
    with pipeline.sql_client() as client:
        existing = existing_tables(client)
        for table in tables:
            if table in existing:
                name = client.make_qualified_table_name(table)
                with client.execute_query(f"SELECT count(*) FROM {name}") as cursor:
                    counts[table] = int(cursor.fetchall()[0][0])
    return counts


class RefreshConfig(dg.Config):
    """Run configuration of the raw assets (Launchpad: `ops: analytics_api: config:`)."""

    full_refresh: bool = False
    """Ignore the incremental cursors and read everything the API serves (merged, so no
    duplicates; events beyond the API's 30 days stay)."""


def build_analytics_assets(
    source_factory: Callable[..., DltSource] = analytics_api,
) -> dg.AssetsDefinition:
    """The multi-asset; a new source is built for every run (dagster issue 34052: reusing one
    across materializations corrupts its schema)."""

    @dlt_assets(
        dlt_source=source_factory(),
        dlt_pipeline=analytics_pipeline(),
        name="analytics_api",
        dagster_dlt_translator=AnalyticsTranslator(),
        pool=WAREHOUSE_POOL,
    )
    def analytics_api_assets(
        context: dg.AssetExecutionContext, dlt: DagsterDltResource, config: RefreshConfig
    ) -> Iterator[dg.MaterializeResult[Any]]:
        tables = [key.path[-1] for key in context.selected_asset_keys]
        source = source_factory(tables=tables, full_refresh=config.full_refresh)
        yield from run_load(context, dlt, source)

    return analytics_api_assets
