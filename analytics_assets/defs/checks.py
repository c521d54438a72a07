"""Data checks users see beside each asset: keys, references to rooms, freshness.

The key and reference checks run in the warehouse itself (any dlt destination), in one op so
they take one connection, and in the warehouse pool so they never race a load for DuckDB's lock.
They run after every refresh job of their assets.
"""

import warnings
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import dagster as dg
from dagster._utils.warnings import SupersessionWarning

from analytics_assets.defs.assets import WAREHOUSE_POOL, asset_key
from analytics_assets.defs.schedules import ACTIVITY_TABLES
from analytics_assets.defs.warehouse import analytics_pipeline, existing_tables

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

SPECS = [
    dg.AssetCheckSpec(
        PK_CHECK,
        asset=asset_key(table),
        description=f"({', '.join(columns)}) is never null and never repeats.",
    )
    for table, columns in PRIMARY_KEYS.items()
] + [
    dg.AssetCheckSpec(
        ROOM_CHECK,
        asset=asset_key(table),
        additional_deps=[asset_key("rooms")],
        description=f"Every {column} is the id of a room in the rooms table.",
    )
    for table, column in ROOM_REFERENCES.items()
]


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


def _not_loaded(check: dg.AssetCheckKey) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=check.asset_key,
        check_name=check.name,
        passed=False,
        metadata={"reason": "the table (or the rooms table) has not been loaded yet"},
    )


@dg.multi_asset_check(specs=SPECS, can_subset=True, name="warehouse_checks", pool=WAREHOUSE_POOL)
def warehouse_checks(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
    with analytics_pipeline().sql_client() as client:
        existing = existing_tables(client)
        for check in sorted(context.selected_asset_check_keys, key=str):
            table = check.asset_key.path[-1]
            if table not in existing or (check.name == ROOM_CHECK and "rooms" not in existing):
                yield _not_loaded(check)
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
            assets=[asset_key(t) for t in ACTIVITY_TABLES if t != "rooms"],
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
