"""The eight raw tables as Dagster software-defined assets, one per dlt resource.

Keys are `analytics/<table>`, the same as the warehouse's `analytics.<table>`; the group is
`analytics_api`. The specs are written here from the table list rather than made by
`@dlt_assets` from a dlt source and pipeline at import time: that built a pipeline (and its
directory) whenever Dagster loaded the code, and put objects in every asset's metadata that the
UI can only show as "(unserializable)". dagster-dlt still runs each load and reports each
table's materialization. The fan-out (rooms -> peers and events, templates -> settings and
destinations) is declared as dependencies.
"""

import logging
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
from dagster_dlt import DagsterDltResource, DagsterDltTranslator
from dagster_dlt.translator import DltResourceTranslatorData
from dlt.extract import DltSource
from dlt.pipeline.exceptions import PipelineStepFailed

from analytics_assets.defs.checks import WAREHOUSE_CHECK_SPECS, warehouse_checks
from analytics_assets.defs.keys import WAREHOUSE_POOL, asset_key, warehouse_kinds
from analytics_assets.defs.warehouse import (
    SHARED_PIPELINE,
    choose_file_formats,
    event_counts,
    existing_tables,
    inherited_cursors,
    prune_stale_workdirs,
    run_pipeline,
    sql_client,
    warehouse_lock,
)
from analytics_assets.source.settings import (
    DATASET_NAME,
    EVENT_TOTALS_TABLE,
    RESOURCE_DESCRIPTIONS,
    RESOURCE_NAMES,
    UPSTREAM,
)

GROUP_NAME = "analytics_api"

RAW_SPECS = [
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


class AnalyticsTranslator(DagsterDltTranslator):
    """Maps each dlt resource to its asset key when dagster-dlt reports the load."""

    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        return super().get_asset_spec(data).replace_attributes(key=asset_key(data.resource.name))


class AnalyticsLoadError(Exception):
    """A load failed; the message names the endpoint and the cause, never a secret."""


_HINTS = {
    401: (
        " (the API rejected the credentials: check API_TOKEN, which expires 7 days after it "
        "was copied, or APP_ACCESS_KEY and APP_SECRET)"
    ),
    403: " (the credentials lack access to this workspace: check which workspace they belong to)",
}


def _cause(exc: BaseException) -> BaseException:
    """The exception that says why: the first of the project's own (they name the endpoint or
    host) or an HTTP error, else the innermost."""
    current: BaseException | None = exc
    innermost = exc
    while current is not None:
        module = type(current).__module__
        if module.startswith("analytics_assets") or type(current).__name__ == "HTTPError":
            return current
        innermost = current
        current = current.__cause__ or current.__context__
    return innermost


class _ToDagsterLog(logging.Handler):
    """Puts the source's warnings (retry waits, rate limits) in the run's log."""

    def __init__(self, context: dg.AssetExecutionContext) -> None:
        super().__init__(level=logging.WARNING)
        self.context = context

    def emit(self, record: logging.LogRecord) -> None:
        self.context.log.warning(record.getMessage())


def run_load(
    context: dg.AssetExecutionContext,
    dlt: DagsterDltResource,
    source: DltSource,
    pipeline: Any,
    client: Any,
) -> Iterator[dg.MaterializeResult[Any]]:
    """Run dlt for the selected assets, then report rows loaded and the table's row count.

    The count is our own query: dagster-dlt's `fetch_row_count()` fails the step when an
    incremental run loads nothing.
    """
    handler = _ToDagsterLog(context)
    source_log = logging.getLogger("analytics_assets")
    source_log.addHandler(handler)
    try:
        choose_file_formats(pipeline, source)
        results = list(
            dlt.run(
                context=context,
                dlt_source=source,
                dlt_pipeline=pipeline,
                dagster_dlt_translator=AnalyticsTranslator(),
            )
        )
    except PipelineStepFailed as exc:
        cause = _cause(exc)
        status = getattr(getattr(cause, "response", None), "status_code", 0)
        hint = _HINTS.get(status, "")
        raise AnalyticsLoadError(
            f"dlt step '{exc.step}' failed: {type(cause).__name__}: {cause}{hint}"
        ) from exc
    finally:
        source_log.removeHandler(handler)
    counts = table_row_counts(client, [r.asset_key.path[-1] for r in results if r.asset_key])
    added = new_columns(pipeline)
    seconds = dlt_step_seconds(pipeline)
    for result in results:
        assert result.asset_key is not None
        table = result.asset_key.path[-1]
        metadata = dict(result.metadata or {})
        metadata.setdefault("rows_loaded", dg.MetadataValue.int(0))
        # The load shared by every table of the run: how long dlt spent on each step.
        metadata["dlt_seconds"] = dg.MetadataValue.json(seconds)
        metadata["dagster/row_count"] = dg.MetadataValue.int(counts.get(table, 0))
        if added.get(table):
            # Schema drift made visible: a field the API started to send, or a type change
            # (dlt keeps the value in a variant column such as `<name>__v_text`).
            metadata["new_columns"] = dg.MetadataValue.json(added[table])
        yield dg.MaterializeResult(asset_key=result.asset_key, metadata=metadata)


def dlt_step_seconds(pipeline: Any) -> dict[str, float]:
    """Seconds dlt spent extracting, normalizing and loading in this run (from its trace)."""
    trace = pipeline.last_trace
    return {
        step.step: round((step.finished_at - step.started_at).total_seconds(), 3)
        for step in (trace.steps if trace else [])
        if step.step in ("extract", "normalize", "load") and step.finished_at
    }


def new_columns(pipeline: Any) -> dict[str, list[str]]:
    """Columns this run added, per table (its own or its nested `<table>__...` tables)."""
    added: dict[str, list[str]] = {}
    trace = pipeline.last_trace
    load_info = trace.last_load_info if trace else None
    for package in load_info.load_packages if load_info else []:
        for table, update in (package.schema_update or {}).items():
            if table.startswith("_dlt") or table == EVENT_TOTALS_TABLE:
                continue
            root = table.split("__", 1)[0]
            prefix = f"{table}." if table != root else ""
            columns = [
                f"{prefix}{c}" for c in update.get("columns", {}) if not c.startswith("_dlt")
            ]
            added.setdefault(root, []).extend(columns)
    return added


def table_row_counts(client: Any, tables: list[str]) -> dict[str, int]:
    """Row counts read from the destination, for the tables that exist there."""
    existing = existing_tables(client)
    present = [t for t in tables if t in existing]
    if not present:
        return {}
    union = " UNION ALL ".join(
        f"SELECT '{t}', count(*) FROM {client.make_qualified_table_name(t)}" for t in present
    )
    with client.execute_query(union) as cursor:
        return {row[0]: int(row[1]) for row in cursor.fetchall()}


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
        specs=RAW_SPECS,
        # Checked in the same step, on the load's own connection, right after it.
        check_specs=WAREHOUSE_CHECK_SPECS,
        can_subset=True,
        name="analytics_api",
        pool=WAREHOUSE_POOL,
    )
    def analytics_api_assets(
        context: dg.AssetExecutionContext, dlt: DagsterDltResource, config: RefreshConfig
    ) -> Iterator[dg.MaterializeResult[Any] | dg.AssetCheckResult]:
        from analytics_assets.source import analytics_api

        make_source = source_factory or analytics_api
        tables = sorted(key.path[-1] for key in context.selected_asset_keys)
        checks = context.selected_asset_check_keys
        if not tables:  # only checks selected
            with sql_client() as client:
                yield from warehouse_checks(client, checks)
            return
        prune_stale_workdirs()
        with (
            warehouse_lock(tables),
            run_pipeline(context.run.job_name, context.run_id) as pipeline,
        ):
            inherited = inherited_cursors(pipeline, tables)
            if inherited:
                context.log.info(
                    f"First run of pipeline {pipeline.pipeline_name}: the cursors of "
                    f"{', '.join(sorted(inherited))} carried over from pipeline {SHARED_PIPELINE}"
                )
            source = make_source(
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
