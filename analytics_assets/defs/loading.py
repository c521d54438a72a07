"""One dlt load inside a Dagster step: run it through dagster-dlt, turn a failure into an error
that says why (endpoint, cause, a hint for bad credentials; never a secret), and report each
table's rows, columns added and dlt's own timings as materialization metadata."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster_dlt import DagsterDltResource, DagsterDltTranslator
from dagster_dlt.translator import DltResourceTranslatorData
from dlt.extract import DltSource
from dlt.pipeline.exceptions import PipelineStepFailed

from analytics_assets.defs.keys import asset_key
from analytics_assets.source.errors import ApiHttpError
from analytics_assets.source.settings import EVENT_TOTALS_TABLE
from analytics_assets.warehouse import existing_tables
from analytics_assets.warehouse.pipelines import choose_file_formats


class AnalyticsTranslator(DagsterDltTranslator):
    """Maps each dlt resource to its asset key when dagster-dlt reports the load."""

    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        return super().get_asset_spec(data).replace_attributes(key=asset_key(data.resource.name))


class AnalyticsLoadError(Exception):
    """A load failed; the message names the endpoint and the cause, never a secret."""


HINTS = {
    401: (
        " (the API rejected the credentials: check API_TOKEN, which expires 7 days after it "
        "was copied, or APP_ACCESS_KEY and APP_SECRET)"
    ),
    403: (
        " (refused: the credentials may lack access to this workspace, or the API refuses this "
        "object, e.g. a disabled room; see the API's message)"
    ),
}


def cause_of(exc: BaseException) -> BaseException:
    """The exception that says why: the first of the project's own (they name the endpoint or
    host), else the innermost."""
    current: BaseException | None = exc
    innermost = exc
    while current is not None:
        if type(current).__module__.startswith("analytics_assets"):
            return current
        innermost = current
        current = current.__cause__ or current.__context__
    return innermost


def load_error(exc: PipelineStepFailed) -> AnalyticsLoadError:
    cause = cause_of(exc)
    hint = HINTS.get(cause.status, "") if isinstance(cause, ApiHttpError) else ""
    return AnalyticsLoadError(
        f"dlt step '{exc.step}' failed: {type(cause).__name__}: {cause}{hint}"
    )


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
        raise load_error(exc) from exc
    finally:
        source_log.removeHandler(handler)
    counts = table_row_counts(client, [r.asset_key.path[-1] for r in results if r.asset_key])
    for result in results:
        assert isinstance(result, dg.MaterializeResult) and result.asset_key is not None
        metadata = table_metadata(pipeline, result, counts)
        yield dg.MaterializeResult(asset_key=result.asset_key, metadata=metadata)


def table_metadata(
    pipeline: Any, result: dg.MaterializeResult[Any], counts: dict[str, int]
) -> dict[str, Any]:
    assert result.asset_key is not None
    table = result.asset_key.path[-1]
    metadata = dict(result.metadata or {})
    metadata.setdefault("rows_loaded", dg.MetadataValue.int(0))
    # The load shared by every table of the run: how long dlt spent on each step.
    metadata["dlt_seconds"] = dg.MetadataValue.json(dlt_step_seconds(pipeline))
    metadata["dagster/row_count"] = dg.MetadataValue.int(counts.get(table, 0))
    added = new_columns(pipeline).get(table)
    if added:
        # Schema drift made visible: a field the API started to send, or a type change
        # (dlt keeps the value in a variant column such as `<name>__v_text`).
        metadata["new_columns"] = dg.MetadataValue.json(added)
    return metadata


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
