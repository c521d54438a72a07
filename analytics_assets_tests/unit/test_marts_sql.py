"""The analytics SQL and its checks on a tiny in-memory DuckDB, against numbers worked out by
hand: stays that cross midnight (UTC), a peer still in the room (its `left_at` NULL, or the
zero time of a warehouse loaded before it became NULL), and sessions of the warehouse in other
time zones than UTC."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
import pytest

from analytics_assets.defs import marts

NO_TRACK = [None, None, None]
ZONES = ["UTC", "America/Los_Angeles", "Asia/Kolkata", "Pacific/Kiritimati"]


class DuckClient:
    """The four methods of a dlt SQL client the analytics use, over a DuckDB connection."""

    dataset_name = "analytics"

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def make_qualified_table_name(self, table: str) -> str:
        return f"analytics.{table}"

    @contextmanager
    def begin_transaction(self) -> Iterator[None]:
        self.con.execute("BEGIN")
        yield
        self.con.execute("COMMIT")

    def execute_sql(self, sql: str, *args: Any) -> None:
        self.con.execute(sql, list(args))

    @contextmanager
    def execute_query(self, sql: str, *args: Any) -> Iterator[Any]:
        yield self.con.execute(sql.replace("%s", "?"), list(args))


@pytest.fixture(params=ZONES)
def client(request: pytest.FixtureRequest) -> Iterator[DuckClient]:
    """The raw tables, as dlt loads them, in a warehouse session of the given time zone."""
    con = duckdb.connect()
    con.execute(f"SET TimeZone = '{request.param}'")
    con.execute("CREATE SCHEMA analytics")
    con.execute("CREATE TABLE analytics.sessions (id VARCHAR, room_id VARCHAR, _dlt_id VARCHAR)")
    con.execute(
        "CREATE TABLE analytics.sessions__peers (_dlt_parent_id VARCHAR, id VARCHAR, "
        "session_id VARCHAR, joined_at TIMESTAMPTZ, left_at TIMESTAMPTZ)"
    )
    con.execute(
        'CREATE TABLE analytics.analytics_events (id VARCHAR, type VARCHAR, "timestamp" '
        "TIMESTAMPTZ, data__room_id VARCHAR, data__session_id VARCHAR, data__peer_id VARCHAR, "
        "data__track_id VARCHAR, data__type VARCHAR, data__mute BOOLEAN)"
    )
    con.executemany(
        "INSERT INTO analytics.sessions VALUES (?, ?, ?)",
        [["s1", "room-a", "d1"], ["s2", "room-a", "d2"], ["s3", "room-b", "d3"]],
    )
    peers = [
        # Room A, 30 June: 30 min and 15 min.
        ["d1", "p1", "s1", "2024-06-30 10:00:00+00", "2024-06-30 10:30:00+00"],
        ["d1", "p2", "s1", "2024-06-30 10:05:00+00", "2024-06-30 10:20:00+00"],
        # Room A: 23:50 on 30 June to 00:20 on 1 July (UTC): 30 min, on the day it began.
        ["d2", "p3", "s2", "2024-06-30 23:50:00+00", "2024-07-01 00:20:00+00"],
        # Room B: still in the room, NULL and the zero time: no stay yet.
        ["d3", "p4", "s3", "2024-07-01 11:00:00+00", None],
        ["d3", "p5", "s3", "2024-07-01 11:01:00+00", "0001-01-01 00:00:00+00"],
        # Room B, 1 July 00:10 UTC (30 June in Los Angeles, 1 July in Kolkata): 5 min.
        ["d3", "p6", "s3", "2024-07-01 00:10:00+00", "2024-07-01 00:15:00+00"],
    ]
    con.executemany("INSERT INTO analytics.sessions__peers VALUES (?, ?, ?, ?, ?)", peers)
    track = ["room-a", "s1", "p1", "t1", "audio"]
    events = [
        # p1 audio: unmuted 10:05-10:12 (420 s) and 10:20-10:30 (600 s).
        ["e1", "track.add.success", "2024-06-30 10:00:00+00", *track, True],
        ["e2", "track.update.success", "2024-06-30 10:05:00+00", *track, False],
        ["e3", "track.update.success", "2024-06-30 10:12:00+00", *track, True],
        ["e4", "track.update.success", "2024-06-30 10:20:00+00", *track, False],
        ["e5", "track.remove.success", "2024-06-30 10:30:00+00", *track, False],
        # Errors at 23:59:59 UTC on 30 June and 00:00:01 on 1 July.
        ["e6", "client.join.failed", "2024-06-30 23:59:59+00", "room-a", None, "p9", *NO_TRACK],
        ["e7", "client.join.failed", "2024-07-01 00:00:01+00", "room-a", None, "p9", *NO_TRACK],
        ["e8", "client.publish.failed", "2024-07-01 00:00:02+00", "room-a", "s2", "p3", *NO_TRACK],
    ]
    con.executemany(
        "INSERT INTO analytics.analytics_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", events
    )
    yield DuckClient(con)
    con.close()


def _rebuild(client: DuckClient, name: str) -> list[tuple[Any, ...]]:
    mart = marts.MARTS_BY_NAME[name]
    marts.rebuild(client, mart.name, mart.sql)
    return [
        tuple(str(v) if hasattr(v, "isoformat") else v for v in row)
        for row in client.con.execute(f"SELECT * FROM analytics.{name} ORDER BY ALL").fetchall()
    ]


def test_peer_minutes_count_each_stay_on_its_utc_day_in_any_time_zone(client: DuckClient) -> None:
    assert _rebuild(client, "peer_minutes_daily") == [
        ("room-a", "2024-06-30", 3, 75.0),  # 30 + 15 + the 30 that crossed midnight
        ("room-b", "2024-07-01", 1, 5.0),  # the zero time and NULL left_at: no stay yet
    ]
    assert marts.peer_minutes_add_up(client).passed


def test_unmuted_time_counts_each_unmuted_interval_until_the_next_event(client: DuckClient) -> None:
    assert _rebuild(client, "unmuted_time") == [("room-a", "s1", "p1", "audio", 1, 1020.0)]
    assert marts.unmuted_within_track_lifetime(client).passed


def test_client_errors_fall_on_their_utc_day_in_any_time_zone(client: DuckClient) -> None:
    assert _rebuild(client, "client_errors_daily") == [
        ("2024-06-30", "client.join.failed", 1),
        ("2024-07-01", "client.join.failed", 1),
        ("2024-07-01", "client.publish.failed", 1),
    ]
    assert marts.client_errors_add_up(client).passed


def test_quirk_zero_time_is_never_taken_as_a_time(client: DuckClient) -> None:
    """A stay ending at the Go zero time would be minus two thousand years."""
    rows = _rebuild(client, "peer_minutes_daily")
    assert all(minutes >= 0 for *_, minutes in rows)
    result = marts.peer_minutes_add_up(client)
    assert result.passed and result.metadata["negative_rows"].value == 0


def test_checks_fail_when_the_analytics_disagree_with_the_raw_rows(client: DuckClient) -> None:
    for name in marts.MARTS_BY_NAME:
        _rebuild(client, name)
    client.con.execute("UPDATE analytics.peer_minutes_daily SET peer_minutes = peer_minutes + 1")
    client.con.execute("UPDATE analytics.client_errors_daily SET errors = errors + 1")
    client.con.execute("UPDATE analytics.unmuted_time SET unmuted_seconds = 99999")
    assert not marts.peer_minutes_add_up(client).passed
    assert not marts.client_errors_add_up(client).passed
    assert not marts.unmuted_within_track_lifetime(client).passed
