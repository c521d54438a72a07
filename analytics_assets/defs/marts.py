"""Analytics computed in the warehouse from the raw tables: what the reference says people build
on this data. Plain SQL that DuckDB and Postgres both run, through the dlt pipeline's client.

- `peer_minutes_daily`: minutes peers spent in each room, per day (sessions' peers, from
  `joined_at` to `left_at`; a peer still in a room counts once it has left; a stay is counted
  on the day (UTC) it began).
- `unmuted_time`: seconds each peer's tracks were unmuted, per track type, following the
  reference: for each track, order its `track.add/update/remove.success` events by time; every
  interval that starts at an event with `mute = false` counts until the track's next event.
- `client_errors_daily`: client errors (`client.*.failed` events) per day (UTC) and type.
"""

from collections.abc import Callable
from typing import Any

import dagster as dg

from analytics_assets.defs.assets import WAREHOUSE_POOL, asset_key
from analytics_assets.defs.schedules import MART_TABLES
from analytics_assets.defs.warehouse import analytics_pipeline

GROUP_NAME = "analytics_marts"

PEER_MINUTES_SQL = """
SELECT s.room_id,
       CAST(p.joined_at AT TIME ZONE 'UTC' AS DATE) AS day,
       count(*) AS stays,
       round(sum(EXTRACT(EPOCH FROM (p.left_at - p.joined_at))) / 60.0, 3) AS peer_minutes
FROM {sessions__peers} p
JOIN {sessions} s ON p._dlt_parent_id = s._dlt_id
WHERE p.left_at IS NOT NULL
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

CLIENT_ERRORS_SQL = """
SELECT CAST("timestamp" AT TIME ZONE 'UTC' AS DATE) AS day, type AS error_type, count(*) AS errors
FROM {analytics_events}
WHERE type LIKE 'client.%.failed'
GROUP BY CAST("timestamp" AT TIME ZONE 'UTC' AS DATE), type
"""


def _tables(client: Any) -> dict[str, str]:
    names = ["sessions", "sessions__peers", "analytics_events"]
    return {name: client.make_qualified_table_name(name) for name in names}


def rebuild(table: str, select: str) -> tuple[int, list[tuple[Any, ...]]]:
    """Replace `table` with the result of `select`, in one transaction; return its rows."""
    with analytics_pipeline().sql_client() as client:
        target = client.make_qualified_table_name(table)
        sql = select.format(**_tables(client))
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


def _mart(
    name: str, sql: str, upstream: list[str], description: str, chart: Callable[..., str] | None
) -> dg.AssetsDefinition:
    @dg.asset(
        key=asset_key(name),
        deps=[asset_key(t) for t in upstream],
        group_name=GROUP_NAME,
        description=description,
        kinds={"sql", "duckdb"},
        pool=WAREHOUSE_POOL,
    )
    def mart() -> dg.MaterializeResult[Any]:
        count, rows = rebuild(name, sql)
        metadata: dict[str, Any] = {"dagster/row_count": dg.MetadataValue.int(count)}
        if chart is not None:
            metadata["chart"] = dg.MetadataValue.md(chart(rows))
        return dg.MaterializeResult(metadata=metadata)

    return mart


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


peer_minutes_daily = _mart(
    "peer_minutes_daily",
    PEER_MINUTES_SQL,
    ["sessions"],
    "Minutes peers spent in each room per day (room_id, day, stays, peer_minutes).",
    _peer_minutes_chart,
)
unmuted_time = _mart(
    "unmuted_time",
    UNMUTED_SQL,
    ["analytics_events"],
    "Seconds each peer was unmuted, per track type (room_id, session_id, peer_id, track_type, "
    "tracks, unmuted_seconds), from track add/update/remove events.",
    None,
)
client_errors_daily = _mart(
    "client_errors_daily",
    CLIENT_ERRORS_SQL,
    ["analytics_events"],
    "Client errors per day and type (day, error_type, errors).",
    _errors_chart,
)

MARTS = [peer_minutes_daily, unmuted_time, client_errors_daily]


def _scalar(sql: str) -> float:
    with analytics_pipeline().sql_client() as client:
        names = {**_tables(client), **{t: client.make_qualified_table_name(t) for t in MART_TABLES}}
        with client.execute_query(sql.format(**names)) as cursor:
            value = cursor.fetchall()[0][0]
    return float(value or 0)


@dg.asset_check(
    asset=peer_minutes_daily, description="No negative stays; minutes add up to the raw peers'."
)
def peer_minutes_add_up() -> dg.AssetCheckResult:
    negative = _scalar("SELECT count(*) FROM {peer_minutes_daily} WHERE peer_minutes < 0")
    total = _scalar("SELECT sum(peer_minutes) FROM {peer_minutes_daily}")
    raw = _scalar(
        "SELECT sum(EXTRACT(EPOCH FROM (left_at - joined_at))) / 60.0 FROM {sessions__peers} "
        "WHERE left_at IS NOT NULL"
    )
    return dg.AssetCheckResult(
        passed=negative == 0 and abs(total - raw) < 0.01 * max(1.0, raw),
        metadata={"negative_rows": int(negative), "minutes": total, "raw_minutes": raw},
    )


@dg.asset_check(
    asset=unmuted_time,
    description="Unmuted time is never negative nor longer than the track lived.",
)
def unmuted_within_track_lifetime() -> dg.AssetCheckResult:
    too_long = _scalar(
        """
        SELECT count(*) FROM {unmuted_time} u JOIN (
            SELECT data__peer_id AS peer_id, data__type AS track_type,
                   EXTRACT(EPOCH FROM (max("timestamp") - min("timestamp"))) AS lived
            FROM {analytics_events} WHERE type LIKE 'track.%'
            GROUP BY data__peer_id, data__type
        ) t ON t.peer_id = u.peer_id AND t.track_type = u.track_type
        WHERE u.unmuted_seconds < 0 OR u.unmuted_seconds > t.lived * u.tracks + 0.001
        """
    )
    return dg.AssetCheckResult(passed=too_long == 0, metadata={"rows_out_of_bounds": int(too_long)})


@dg.asset_check(
    asset=client_errors_daily, description="Error counts add up to the raw error events."
)
def client_errors_add_up() -> dg.AssetCheckResult:
    total = _scalar("SELECT sum(errors) FROM {client_errors_daily}")
    raw = _scalar("SELECT count(*) FROM {analytics_events} WHERE type LIKE 'client.%.failed'")
    return dg.AssetCheckResult(passed=total == raw, metadata={"errors": total, "raw_errors": raw})


MART_CHECKS = [peer_minutes_add_up, unmuted_within_track_lifetime, client_errors_add_up]

defs = dg.Definitions(assets=MARTS, asset_checks=MART_CHECKS)
