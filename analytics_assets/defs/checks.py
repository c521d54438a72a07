"""Data checks users see beside each asset: keys, references to rooms, completeness against
the API, freshness.

The key, reference and completeness checks run in the warehouse itself (any dlt destination),
in one op so they take one connection, and in the warehouse pool so they never race a load for
DuckDB's lock. They run after every refresh job of their assets.

`events_complete` is the reconciliation made visible: the API's `total` per room (recorded in
`analytics_events_totals` by every whole-room read and by the daily sweep) against the events
the warehouse holds in the same window. A room that falls short is named, with how many events
it lacks, until the next daily sweep reads it again.
"""

import warnings
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

import dagster as dg

from analytics_assets.defs.keys import asset_key
from analytics_assets.source.settings import EVENT_TOTALS_TABLE
from analytics_assets.warehouse import existing_tables

PRIMARY_KEYS: dict[str, list[str]] = {
    "rooms": ["id"],
    "sessions": ["id"],
    "active_room_peers": ["id"],
    "templates": ["id"],
    "template_settings": ["template_id"],
    "templates_destinations": ["template_id", "kind", "key"],
    "analytics_events": ["id"],
    "recordings": ["id"],
}
#: (table, column) -> the rooms they must point at.
ROOM_REFERENCES: dict[str, str] = {
    "active_room_peers": "room_id",
    "analytics_events": "data__room_id",
    "sessions": "room_id",
}
PK_CHECK = "primary_key_unique_and_not_null"
ROOM_CHECK = "rooms_exist"
COMPLETE_CHECK = "events_complete"

#: Evaluated by the raw tables' step, right after each load (`assets.py`).
WAREHOUSE_CHECK_SPECS = (
    [
        dg.AssetCheckSpec(
            PK_CHECK,
            asset=asset_key(table),
            description=f"({', '.join(columns)}) is never null and never repeats.",
        )
        for table, columns in PRIMARY_KEYS.items()
    ]
    + [
        dg.AssetCheckSpec(
            ROOM_CHECK,
            asset=asset_key(table),
            additional_deps=[asset_key("rooms")],
            description=f"Every {column} is the id of a room in the rooms table.",
        )
        for table, column in ROOM_REFERENCES.items()
    ]
    + [
        dg.AssetCheckSpec(
            COMPLETE_CHECK,
            asset=asset_key("analytics_events"),
            description=(
                "Every room holds as many events as the API counted for it (its `total`, recorded "
                "by whole-room reads and the daily sweep) over the API's 30-day window; rooms that "
                "fell short are listed. The daily sweep reads them again."
            ),
        )
    ]
)


def _key_and_reference_counts(client: Any, checks: list[tuple[str, str]]) -> dict[tuple, int]:
    """Every selected key and reference check counted in one query (one pass of the
    warehouse's planner, one round trip): (table, measure) -> count. With no rooms table yet,
    every room a row names is unknown."""
    parts = []
    rooms = client.make_qualified_table_name("rooms")
    if "rooms" not in existing_tables(client):
        rooms = "(SELECT CAST(NULL AS VARCHAR) AS id WHERE 1 = 0)"
    for table, check in checks:
        name = client.make_qualified_table_name(table)
        if check == PK_CHECK:
            columns = PRIMARY_KEYS[table]
            cols = ", ".join(columns)
            nulls = " OR ".join(f"{c} IS NULL" for c in columns)
            parts.append(f"SELECT '{table}', 'null_keys', count(*) FROM {name} WHERE {nulls}")
            parts.append(
                f"SELECT '{table}', 'repeated_keys', count(*) FROM "
                f"(SELECT {cols} FROM {name} GROUP BY {cols} HAVING count(*) > 1) d"
            )
        else:
            column = ROOM_REFERENCES[table]
            parts.append(
                f"SELECT '{table}', 'unknown_room_ids', count(DISTINCT t.{column}) FROM {name} t "
                f"LEFT JOIN {rooms} r ON r.id = t.{column} WHERE r.id IS NULL"
            )
    if not parts:
        return {}
    with client.execute_query(" UNION ALL ".join(parts)) as cursor:
        return {(row[0], row[1]): int(row[2]) for row in cursor.fetchall()}


def _primary_key_result(table: str, counts: dict[tuple, int]) -> dg.AssetCheckResult:
    nulls, repeated = counts[(table, "null_keys")], counts[(table, "repeated_keys")]
    return dg.AssetCheckResult(
        asset_key=asset_key(table),
        check_name=PK_CHECK,
        passed=nulls == 0 and repeated == 0,
        metadata={"null_keys": nulls, "repeated_keys": repeated},
    )


def _rooms_exist_result(table: str, counts: dict[tuple, int]) -> dg.AssetCheckResult:
    missing = counts[(table, "unknown_room_ids")]
    return dg.AssetCheckResult(
        asset_key=asset_key(table),
        check_name=ROOM_CHECK,
        passed=missing == 0,
        # A room created during a refresh can precede its rooms row by one run: warn only.
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"unknown_room_ids": missing},
    )


def _events_complete_result(client: Any, existing: set[str]) -> dg.AssetCheckResult:
    key = asset_key("analytics_events")
    if EVENT_TOTALS_TABLE not in existing:
        return dg.AssetCheckResult(
            asset_key=key,
            check_name=COMPLETE_CHECK,
            passed=True,
            metadata={"rooms_counted": 0, "note": "no room counted by the API yet"},
        )
    totals = client.make_qualified_table_name(EVENT_TOTALS_TABLE)
    events = client.make_qualified_table_name("analytics_events")
    with client.execute_query(
        f"""
        SELECT t.room_id, t.api_total, count(e.id) AS loaded
        FROM {totals} t LEFT JOIN {events} e
          ON e.data__room_id = t.room_id
         AND e."timestamp" >= t.window_start AND e."timestamp" < t.window_end
        GROUP BY t.room_id, t.api_total
        """
    ) as cursor:
        rows = cursor.fetchall()
    short = sorted(
        ((room, int(total) - int(loaded)) for room, total, loaded in rows if loaded < total),
        key=lambda item: (-item[1], item[0]),
    )
    table = "\n".join(
        ["| room_id | events missing |", "|---|---:|"]
        + [f"| {room} | {missing} |" for room, missing in short[:50]]
    )
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=COMPLETE_CHECK,
        passed=not short,
        metadata={
            "rooms_counted": len(rows),
            "rooms_short": len(short),
            "events_missing": sum(missing for _, missing in short),
            "rooms_short_list": dg.MetadataValue.md(table if short else "none"),
            # More in the warehouse than the API counts: events the API has forgotten within
            # the window (its retention is not what `event_retention_days` says) or events
            # listed after it counted. Not a failure; a hint if it grows.
            "rooms_with_more": sum(1 for _, total, loaded in rows if loaded > total),
        },
    )


def _no_rows(check: dg.AssetCheckKey) -> dg.AssetCheckResult:
    """dlt creates a table with its first row: a loaded table the API had nothing for does not
    exist yet, and there is nothing in it to be wrong."""
    return dg.AssetCheckResult(
        asset_key=check.asset_key,
        check_name=check.name,
        passed=True,
        metadata={"rows_checked": 0, "note": "no rows yet: the API has had none to load"},
    )


def warehouse_checks(
    client: Any, selected: Iterable[dg.AssetCheckKey]
) -> Iterator[dg.AssetCheckResult]:
    """The selected key, reference and completeness checks, through a dlt SQL client."""
    existing = existing_tables(client)
    ready: list[dg.AssetCheckKey] = []
    empty: list[dg.AssetCheckKey] = []
    for check in sorted(selected, key=str):
        (ready if check.asset_key.path[-1] in existing else empty).append(check)
    counts = _key_and_reference_counts(
        client,
        [(c.asset_key.path[-1], c.name) for c in ready if c.name in (PK_CHECK, ROOM_CHECK)],
    )
    for check in ready:
        table = check.asset_key.path[-1]
        if check.name == COMPLETE_CHECK:
            yield _events_complete_result(client, existing)
        elif check.name == PK_CHECK:
            yield _primary_key_result(table, counts)
        else:
            yield _rooms_exist_result(table, counts)
    for check in empty:
        yield _no_rows(check)


#: Live peers refresh every 5 minutes: stale after 15. Hourly tables: stale after 2 hours.
#: Built as asset checks (shown and alerting like the others, through the failure sensor);
#: Dagster marks these builders superseded by `FreshnessPolicy`, which is not a check, raises no
#: alert, and is evaluated only where the instance opts in (`freshness: enabled`), so their
#: warning is silenced here.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", category=dg.SupersessionWarning)
    freshness_checks = [
        *dg.build_last_update_freshness_checks(
            assets=[asset_key("active_room_peers")], lower_bound_delta=timedelta(minutes=15)
        ),
        *dg.build_last_update_freshness_checks(
            assets=[asset_key(t) for t in ("sessions", "analytics_events", "recordings")],
            lower_bound_delta=timedelta(hours=2),
        ),
    ]
    #: Dagster's own rule for when a freshness check is due: never run yet, or, after a pass,
    #: once the time its result gave (`dagster/fresh_until_timestamp`) has come. Not registered
    #: itself: it would also run the checks of assets never loaded, which can only fail.
    _due_by_dagster = dg.build_sensor_for_freshness_checks(
        freshness_checks=freshness_checks, name="freshness_every_5_minutes"
    )
FRESHNESS_CHECKS = [key for check in freshness_checks for key in check.check_keys]

freshness_job = dg.define_asset_job(
    "check_freshness",
    selection=dg.AssetSelection.checks(*FRESHNESS_CHECKS),
    description="The freshness checks of the assets that have been loaded at least once.",
)


@dg.sensor(
    name="freshness_every_5_minutes",
    job=freshness_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Every 5 minutes, checks that the live peers (15 minutes) and the hourly tables "
        "(2 hours) were loaded recently, when a check is due (Dagster's rule: its last pass "
        "said until when the asset is fresh). An asset never loaded is not checked: freshness "
        "applies once there is data to be fresh."
    ),
)
def freshness_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    loaded = {
        key
        for key in FRESHNESS_CHECKS
        if context.instance.get_latest_materialization_event(key.asset_key) is not None
    }
    if not loaded:
        return dg.SkipReason("nothing loaded yet: freshness applies once there is data")
    due = _due_by_dagster(context)
    keys = [k for k in getattr(due, "asset_check_keys", None) or [] if k in loaded]
    if not keys:
        return dg.SkipReason("no freshness check of a loaded asset is due")
    return dg.SensorResult(run_requests=[dg.RunRequest(asset_check_keys=keys)])


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        asset_checks=freshness_checks, jobs=[freshness_job], sensors=[freshness_sensor]
    )
