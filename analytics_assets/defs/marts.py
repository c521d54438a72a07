"""Analytics computed in the warehouse from the raw tables: what the reference says people build
on this data. Plain SQL that DuckDB and Postgres both run, through the dlt pipeline's client.

- `peer_minutes_daily`: minutes peers spent in each room, per day (sessions' peers, from
  `joined_at` to `left_at`; a peer still in a room, whose `left_at` is unset (NULL, or the zero
  time in a warehouse loaded before it became NULL), counts once it has left; a stay is counted
  on the day (UTC) it began, whatever the warehouse session's time zone).
- `unmuted_time`: seconds each peer's tracks were unmuted, per track type, following the
  reference: for each track, order its `track.add/update/remove.success` events by time; every
  interval that starts at an event with `mute = false` counts until the track's next event.
- `client_errors_daily`: client errors (the reference's error events: `client.*.failed` and
  `client.disconnected`) per day (UTC) and type.

Each runs in the warehouse pool and holds the warehouse while it rebuilds its table. The checks
of `peer_minutes_daily` and `client_errors_daily` recompute the numbers another way (in Python,
from the raw rows, joined by the peers' own `session_id`), so a wrong expression fails them, not
only a hand edit.
"""

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg

from analytics_assets.defs.keys import WAREHOUSE_POOL, asset_key, warehouse_kinds
from analytics_assets.source.settings import ERROR_EVENT_TYPES
from analytics_assets.warehouse import Warehouse

GROUP_NAME = "analytics_marts"

#: Times before this are "not set": the API sends the Go zero time `0001-01-01T00:00:00Z` where
#: nothing is set. The source loads it as NULL; a warehouse loaded before it did may hold it.
SET_SINCE = "TIMESTAMP '1971-01-01 00:00:00'"

PEER_MINUTES_SQL = f"""
SELECT s.room_id,
       CAST(p.joined_at AT TIME ZONE 'UTC' AS DATE) AS day,
       count(*) AS stays,
       round(sum(EXTRACT(EPOCH FROM (p.left_at - p.joined_at))) / 60.0, 3) AS peer_minutes
FROM {{sessions__peers}} p
JOIN {{sessions}} s ON p._dlt_parent_id = s._dlt_id
WHERE p.left_at > {SET_SINCE} AND p.joined_at > {SET_SINCE}
GROUP BY s.room_id, CAST(p.joined_at AT TIME ZONE 'UTC' AS DATE)
"""

UNMUTED_SQL = """
WITH track_events AS (
    SELECT data__room_id AS room_id,
           data__session_id AS session_id,
           data__peer_id AS peer_id,
           data__track_id AS track_id,
           data__type AS track_type,
           data__mute AS mute,
           "timestamp" AS event_at,
           LEAD("timestamp") OVER (PARTITION BY data__track_id ORDER BY "timestamp", id)
               AS next_event_at
    FROM {analytics_events}
    WHERE type IN ('track.add.success', 'track.update.success', 'track.remove.success')
)
SELECT room_id, session_id, peer_id, track_type,
       count(DISTINCT track_id) AS tracks,
       round(sum(CASE WHEN mute = false AND next_event_at IS NOT NULL
                      THEN EXTRACT(EPOCH FROM (next_event_at - event_at)) ELSE 0 END), 3)
           AS unmuted_seconds
FROM track_events
GROUP BY room_id, session_id, peer_id, track_type
"""

ERROR_TYPES_SQL = ", ".join(f"'{t}'" for t in ERROR_EVENT_TYPES)
CLIENT_ERRORS_SQL = f"""
SELECT CAST("timestamp" AT TIME ZONE 'UTC' AS DATE) AS day, type AS error_type, count(*) AS errors
FROM {{analytics_events}}
WHERE type IN ({ERROR_TYPES_SQL})
GROUP BY CAST("timestamp" AT TIME ZONE 'UTC' AS DATE), type
"""


MART_TABLES = ["peer_minutes_daily", "unmuted_time", "client_errors_daily"]
RAW_TABLES = ["sessions", "sessions__peers", "analytics_events"]


def _names(client: Any) -> dict[str, str]:
    return {name: client.make_qualified_table_name(name) for name in RAW_TABLES + MART_TABLES}


def rebuild(client: Any, table: str, select: str) -> tuple[int, list[tuple[Any, ...]]]:
    """Replace `table` with the result of `select`, in one transaction; return its rows."""
    target = client.make_qualified_table_name(table)
    sql = select.format(**_names(client))
    with client.begin_transaction():
        client.execute_sql(f"DROP TABLE IF EXISTS {target}")
        client.execute_sql(f"CREATE TABLE {target} AS {sql}")
    with client.execute_query(f"SELECT * FROM {target}") as cursor:
        rows = [tuple(r) for r in cursor.fetchall()]
    return len(rows), rows


def bar_chart(title: str, rows: list[tuple[str, float]], unit: str, width: int = 30) -> str:
    """A chart the Dagster UI shows as it is: a markdown table with bars."""
    peak = max((value for _, value in rows), default=0) or 1
    lines = [f"**{title}**", "", f"| | {unit} | |", "|---|---:|---|"]
    for label, value in rows:
        lines.append(f"| {label} | {value:,.1f} | `{'█' * max(1, round(width * value / peak))}` |")
    return "\n".join(lines)


def _peer_minutes_chart(rows: list[tuple[Any, ...]]) -> str:
    per_day: dict[str, float] = {}
    for _room, day, _stays, minutes in rows:
        per_day[str(day)] = per_day.get(str(day), 0.0) + float(minutes)
    last_days = sorted(per_day.items())[-14:]
    return bar_chart(
        "Peer minutes per day, all rooms (last 14 days with activity)", last_days, "minutes"
    )


def _errors_chart(rows: list[tuple[Any, ...]]) -> str:
    per_type: dict[str, float] = {}
    for _day, error_type, errors in rows:
        per_type[error_type] = per_type.get(error_type, 0) + errors
    return bar_chart("Client errors by type", sorted(per_type.items()), "errors")


@dataclass(frozen=True)
class Mart:
    name: str
    sql: str
    upstream: list[str]
    description: str
    chart: Callable[[list[tuple[Any, ...]]], str] | None = None


MARTS_BY_NAME = {
    mart.name: mart
    for mart in (
        Mart(
            "peer_minutes_daily",
            PEER_MINUTES_SQL,
            ["sessions"],
            "Minutes peers spent in each room per day (room_id, day, stays, peer_minutes).",
            _peer_minutes_chart,
        ),
        Mart(
            "unmuted_time",
            UNMUTED_SQL,
            ["analytics_events"],
            "Seconds each peer was unmuted, per track type (room_id, session_id, peer_id, "
            "track_type, tracks, unmuted_seconds), from track add/update/remove events.",
        ),
        Mart(
            "client_errors_daily",
            CLIENT_ERRORS_SQL,
            ["analytics_events"],
            "Client errors per day and type (day, error_type, errors): the reference's error "
            "events.",
            _errors_chart,
        ),
    )
}


def _rows(client: Any, sql: str) -> list[tuple[Any, ...]]:
    with client.execute_query(sql.format(**_names(client))) as cursor:
        return [tuple(row) for row in cursor.fetchall()]


def _is_set(value: Any) -> bool:
    return isinstance(value, datetime) and value.year > 1970


def _utc_day(value: datetime) -> date:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).date()


def _differences(
    mart: Mapping[Any, tuple[float, ...]], recomputed: Mapping[Any, tuple[float, ...]]
) -> list[str]:
    """The cells where the mart and the recomputation disagree, described."""
    wrong = []
    for key in sorted(set(mart) | set(recomputed), key=str):
        have, want = mart.get(key), recomputed.get(key)
        if (
            have is None
            or want is None
            or any(abs(a - b) > 0.01 for a, b in zip(have, want, strict=False))
        ):
            wrong.append(f"{key}: mart {have}, raw rows {want}")
    return wrong


def _result(wrong: list[str], checked: int, **extra: Any) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=not wrong,
        metadata={
            "cells_checked": checked,
            "cells_wrong": len(wrong),
            "examples": dg.MetadataValue.md("\n".join(f"- {w}" for w in wrong[:10]) or "none"),
            **extra,
        },
    )


def peer_minutes_add_up(client: Any) -> dg.AssetCheckResult:
    mart = {
        (room, str(day)): (float(stays), float(minutes))
        for room, day, stays, minutes in _rows(
            client, "SELECT room_id, day, stays, peer_minutes FROM {peer_minutes_daily}"
        )
    }
    stays: Counter[tuple[str, str]] = Counter()
    minutes: Counter[tuple[str, str]] = Counter()
    for room, joined, left in _rows(
        client,
        "SELECT s.room_id, p.joined_at, p.left_at FROM {sessions__peers} p "
        "JOIN {sessions} s ON s.id = p.session_id "
        # The zero time ("not set") is filtered here too: away from UTC, year 1 is not a time
        # Python can hold.
        f"WHERE p.left_at > {SET_SINCE} AND p.joined_at > {SET_SINCE}",
    ):
        if not (_is_set(joined) and _is_set(left)):
            continue  # a stay not over counts once it is
        key = (room, str(_utc_day(joined)))
        stays[key] += 1
        minutes[key] += (left - joined).total_seconds() / 60.0
    recomputed = {key: (float(stays[key]), round(minutes[key], 3)) for key in stays}
    negative = sum(1 for _, m in mart.values() if m < 0)
    wrong = _differences(mart, recomputed)
    return _result(wrong, len(recomputed), negative_rows=negative)


def unmuted_within_track_lifetime(client: Any) -> dg.AssetCheckResult:
    too_long = _rows(
        client,
        """
        SELECT count(*) FROM {unmuted_time} u JOIN (
            SELECT data__peer_id AS peer_id, data__type AS track_type,
                   EXTRACT(EPOCH FROM (max("timestamp") - min("timestamp"))) AS lived
            FROM {analytics_events} WHERE type LIKE 'track.%'
            GROUP BY data__peer_id, data__type
        ) t ON t.peer_id = u.peer_id AND t.track_type = u.track_type
        WHERE u.unmuted_seconds < 0 OR u.unmuted_seconds > t.lived * u.tracks + 0.001
        """,
    )[0][0]
    return dg.AssetCheckResult(passed=too_long == 0, metadata={"rows_out_of_bounds": int(too_long)})


def client_errors_add_up(client: Any) -> dg.AssetCheckResult:
    mart = {
        (str(day), kind): (float(errors),)
        for day, kind, errors in _rows(
            client, "SELECT day, error_type, errors FROM {client_errors_daily}"
        )
    }
    # Every client event is an error event in the reference: counted from the raw table with
    # no list of types shared with the mart's SQL.
    counted: Counter[tuple[str, str]] = Counter(
        (str(_utc_day(at)), kind)
        for at, kind in _rows(
            client, "SELECT \"timestamp\", type FROM {analytics_events} WHERE type LIKE 'client.%'"
        )
    )
    recomputed = {key: (float(n),) for key, n in counted.items()}
    return _result(_differences(mart, recomputed), len(recomputed))


#: (check, asset, what it checks, how)
_CHECKS: list[tuple[str, str, str, Callable[[Any], dg.AssetCheckResult]]] = [
    (
        "peer_minutes_add_up",
        "peer_minutes_daily",
        "Every (room, day) agrees with the raw peers' stays, recomputed in Python (peers joined "
        "to sessions by their own session_id); no stay is negative.",
        peer_minutes_add_up,
    ),
    (
        "unmuted_within_track_lifetime",
        "unmuted_time",
        "Unmuted time is never negative nor longer than the track lived.",
        unmuted_within_track_lifetime,
    ),
    (
        "client_errors_add_up",
        "client_errors_daily",
        "Every (day, type) agrees with the raw client events, counted again in Python.",
        client_errors_add_up,
    ),
]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key=asset_key(mart.name),
            deps=[asset_key(t) for t in mart.upstream],
            group_name=GROUP_NAME,
            description=mart.description,
            kinds=warehouse_kinds("sql"),
        )
        for mart in MARTS_BY_NAME.values()
    ],
    check_specs=[
        dg.AssetCheckSpec(name, asset=asset_key(asset), description=description)
        for name, asset, description, _ in _CHECKS
    ],
    name="analytics_marts",
    can_subset=True,
    pool=WAREHOUSE_POOL,
)
def analytics_marts(
    context: dg.AssetExecutionContext, warehouse: Warehouse
) -> Iterator[dg.MaterializeResult[Any] | dg.AssetCheckResult]:
    """The selected analytics, rebuilt one after another in one step on one connection, then
    their checks. The locks on the tables it rebuilds are held on a connection of their own for
    the whole step: two rebuilds take turns."""
    selected = sorted(context.selected_asset_keys, key=str)
    checks = {(key.asset_key.path[-1], key.name) for key in context.selected_asset_check_keys}
    with warehouse.lock([key.path[-1] for key in selected]), warehouse.sql_client() as client:
        for key in selected:
            mart = MARTS_BY_NAME[key.path[-1]]
            count, rows = rebuild(client, mart.name, mart.sql)
            metadata: dict[str, Any] = {"dagster/row_count": dg.MetadataValue.int(count)}
            if mart.chart is not None:
                metadata["chart"] = dg.MetadataValue.md(mart.chart(rows))
            yield dg.MaterializeResult(asset_key=key, metadata=metadata)
        for name, asset, _, check in _CHECKS:
            if (asset, name) in checks:
                result = check(client)
                yield dg.AssetCheckResult(
                    asset_key=asset_key(asset),
                    check_name=name,
                    passed=result.passed,
                    metadata=result.metadata,
                )


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=[analytics_marts])
