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
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import dagster as dg
from dagster._utils.warnings import SupersessionWarning

from analytics_assets.defs.assets import WAREHOUSE_POOL, asset_key
from analytics_assets.defs.warehouse import existing_tables, sql_client
from analytics_assets.source.settings import EVENT_TOTALS_TABLE

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

SPECS = (
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


def _scalar(client: Any, sql: str) -> int:
    with client.execute_query(sql) as cursor:
        return int(cursor.fetchall()[0][0])


def _primary_key_result(client: Any, table: str) -> dg.AssetCheckResult:
    columns = PRIMARY_KEYS[table]
    name = client.make_qualified_table_name(table)
    cols = ", ".join(columns)
    nulls = _scalar(
        client, f"SELECT count(*) FROM {name} WHERE " + " OR ".join(f"{c} IS NULL" for c in columns)
    )
    repeated = _scalar(
        client,
        f"SELECT count(*) FROM (SELECT {cols} FROM {name} GROUP BY {cols} HAVING count(*) > 1) d",
    )
    return dg.AssetCheckResult(
        asset_key=asset_key(table),
        check_name=PK_CHECK,
        passed=nulls == 0 and repeated == 0,
        metadata={"null_keys": nulls, "repeated_keys": repeated},
    )


def _rooms_exist_result(client: Any, table: str) -> dg.AssetCheckResult:
    column = ROOM_REFERENCES[table]
    name = client.make_qualified_table_name(table)
    rooms = client.make_qualified_table_name("rooms")
    missing = _scalar(
        client,
        f"SELECT count(DISTINCT t.{column}) FROM {name} t "
        f"LEFT JOIN {rooms} r ON r.id = t.{column} WHERE r.id IS NULL",
    )
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
        },
    )


def _not_loaded(check: dg.AssetCheckKey) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=check.asset_key,
        check_name=check.name,
        passed=False,
        metadata={"reason": "the table (or the rooms table) has not been loaded yet"},
    )


@dg.multi_asset_check(specs=SPECS, can_subset=True, name="warehouse_checks", pool=WAREHOUSE_POOL)
def warehouse_checks(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
    with sql_client() as client:
        existing = existing_tables(client)
        for check in sorted(context.selected_asset_check_keys, key=str):
            table = check.asset_key.path[-1]
            if table not in existing or (check.name == ROOM_CHECK and "rooms" not in existing):
                yield _not_loaded(check)
            elif check.name == COMPLETE_CHECK:
                yield _events_complete_result(client, existing)
            elif check.name == PK_CHECK:
                yield _primary_key_result(client, table)
            else:
                yield _rooms_exist_result(client, table)


#: Live peers refresh every 5 minutes: stale after 15. Hourly tables: stale after 2 hours.
#: Built as asset checks (shown and alerting like the others); Dagster marks these builders
#: superseded by FreshnessPolicy, which is not a check, so their warning is silenced here.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", category=SupersessionWarning)
    freshness_checks = [
        *dg.build_last_update_freshness_checks(
            assets=[asset_key("active_room_peers")], lower_bound_delta=timedelta(minutes=15)
        ),
        *dg.build_last_update_freshness_checks(
            assets=[asset_key(t) for t in ("sessions", "analytics_events", "recordings")],
            lower_bound_delta=timedelta(hours=2),
        ),
    ]
    freshness_sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=freshness_checks,
        name="freshness_checks_sensor",
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )

defs = dg.Definitions(
    asset_checks=[warehouse_checks, *freshness_checks],
    sensors=[freshness_sensor],
)
