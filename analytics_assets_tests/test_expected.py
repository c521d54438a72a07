"""The oracle (`simulator/expected.py`) catches a loader that gets any value wrong: each test
builds a tiny warehouse by hand (DuckDB SQL, the shape the documented rules give), breaks one
thing, and expects `compare` to say so. Milliseconds each: no dlt run, no Dagster."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from analytics_assets.simulator.expected import TRUE, compare, credentials_leaked, expected_rows
from analytics_assets.simulator.world import ZERO_TIME, World

CLOCK = datetime(2024, 7, 20, tzinfo=UTC)
ROOM_SECRET, SETTINGS_SECRET = "SIMSECRET-room-0001", "SIMSECRET-settings-0001"


def tiny_template() -> dict[str, Any]:
    """A template with one role, settings that upload with the customer's keys, and one RTMP
    destination with a list of two URLs."""
    return {
        "id": "t1",
        "name": "tpl",
        "customerId": "c1",
        "roles": {"host": {"name": "host", "priority": 1, "permissions": {"endRoom": True}}},
        "settings": {
            "region": "in",
            "recording": {
                "upload": {
                    "type": "s3",
                    "location": "bucket",
                    "credentials": {"key": "AKIASIMSETTINGS", "secretKey": SETTINGS_SECRET},
                }
            },
            "roomState": {"enabled": False},
            "retry": {},
        },
        "destinations": {
            "browserRecordings": {},
            "rtmpDestinations": {
                "default": {"name": "default", "rtmpUrls": ["rtmp://a", "rtmp://b"]}
            },
            "hlsDestinations": {},
            "transcriptions": {},
        },
        "createdAt": "2024-07-01T00:00:00.000Z",
        "updatedAt": "2024-07-01T00:00:00Z",
        "_id": "t1",
        "customer": "c1",
    }


def tiny_room() -> dict[str, Any]:
    """A room with the customer's keys inside, a webhook without headers and no polls."""
    return {
        "id": "r1",
        "name": "room",
        "enabled": True,
        "template_id": "t1",
        "created_at": "2024-07-02T00:00:00.000Z",
        "updated_at": ZERO_TIME,
        "max_duration_seconds": 2000,
        "polls": [],
        "webhook": {"url": "https://hooks.example.invalid/r1", "headers": {}},
        "recording_info": {
            "enabled": True,
            "upload_info": {
                "type": "s3",
                "location": "bucket",
                "credentials": {"key": "AKIASIMROOM", "secret": ROOM_SECRET},
            },
        },
    }


def tiny_world() -> World:
    """One template, room, live session (one peer in, one gone), recording and event, under
    the reading that answers unset times with the zero time."""
    peer = {"session_id": "s1", "name": "Asha", "role": "host", "user_id": "u1"}
    gone = {**peer, "id": "p2", "joined_at": "2024-07-19T23:51:00Z"}
    gone["left_at"] = "2024-07-19T23:55:00.5Z"  # one fraction digit
    session = {
        "id": "s1",
        "room_id": "r1",
        "active": True,
        "peers": {"p1": {**peer, "id": "p1", "joined_at": "2024-07-19T23:50:00.000Z"}, "p2": gone},
        "created_at": "2024-07-19T23:50:00.000Z",
        "updated_at": "2024-07-19T23:50:00.000Z",
    }
    recording = {
        "id": "rec1",
        "room_id": "r1",
        "session_id": "s1",
        "status": "running",
        "created_at": "2024-07-19T23:50:05.000Z",
        "asset_types": ["room-composite", "chat"],
    }
    event = {
        "version": "2.0",
        "id": "e1",
        "timestamp": "2024-07-17T11:05:59.736511942Z",  # 9 digits: .736511, not rounded up
        "type": "track.add.success",
        "data": {"room_id": "r1", "session_id": "s1", "peer_id": "p1", "mute": True, "size": 5},
    }
    return World(
        seed=0,
        clock=CLOCK,
        rng=random.Random(0),
        templates=[tiny_template()],
        rooms=[tiny_room()],
        sessions=[session],
        recordings=[recording],
        events=[event],
        unset_times="zero",
    )


#: The warehouse a correct load of `tiny_world()` leaves, as the documented rules shape it.
WAREHOUSE = """
CREATE SCHEMA analytics;
CREATE TABLE analytics.rooms AS SELECT 'r1' AS id, 'room' AS name, true AS enabled,
    't1' AS template_id, TIMESTAMPTZ '2024-07-02 00:00:00+00' AS created_at,
    NULL::TIMESTAMPTZ AS updated_at, 2000 AS max_duration_seconds,
    'https://hooks.example.invalid/r1' AS webhook__url, true AS recording_info__enabled,
    's3' AS recording_info__upload_info__type,
    'bucket' AS recording_info__upload_info__location, 'L1' AS _dlt_load_id, 'd-r1' AS _dlt_id;
CREATE TABLE analytics.sessions AS SELECT 's1' AS id, 'r1' AS room_id, true AS active,
    TIMESTAMPTZ '2024-07-19 23:50:00+00' AS created_at,
    TIMESTAMPTZ '2024-07-19 23:50:00+00' AS updated_at, 'd-s1' AS _dlt_id;
CREATE TABLE analytics.sessions__peers AS SELECT * FROM (VALUES
    ('p1', 's1', 'Asha', 'host', 'u1', TIMESTAMPTZ '2024-07-19 23:50:00+00', NULL::TIMESTAMPTZ,
     'd-s1', 0, 'd-p1'),
    ('p2', 's1', 'Asha', 'host', 'u1', TIMESTAMPTZ '2024-07-19 23:51:00+00',
     TIMESTAMPTZ '2024-07-19 23:55:00.5+00', 'd-s1', 1, 'd-p2'))
    t(id, session_id, name, role, user_id, joined_at, left_at, _dlt_parent_id, _dlt_list_idx,
      _dlt_id);
CREATE TABLE analytics.active_room_peers AS SELECT 'p1' AS id, 'Asha' AS name, 'u1' AS user_id,
    '' AS metadata, 'host' AS role, TIMESTAMPTZ '2024-07-19 23:50:00+00' AS joined_at,
    'r1' AS room_id, 'd-a1' AS _dlt_id;
CREATE TABLE analytics.templates AS SELECT 't1' AS id, 'tpl' AS name, 'c1' AS customer_id,
    TIMESTAMPTZ '2024-07-01 00:00:00+00' AS created_at,
    TIMESTAMPTZ '2024-07-01 00:00:00+00' AS updated_at, 't1' AS _id, 'c1' AS customer,
    'd-t1' AS _dlt_id;
CREATE TABLE analytics.templates__roles AS SELECT 'host' AS name, 1 AS priority,
    true AS permissions__end_room, 'd-t1' AS _dlt_parent_id, 0 AS _dlt_list_idx,
    'd-t1-host' AS _dlt_id, 'd-t1' AS _dlt_root_id;
CREATE TABLE analytics.template_settings AS SELECT 'in' AS region,
    '{"upload": {"type": "s3", "location": "bucket"}}'::JSON AS recording,
    false AS room_state__enabled, '{}'::JSON AS retry, 't1' AS template_id, 'd-ts1' AS _dlt_id;
CREATE TABLE analytics.templates_destinations AS SELECT 'default' AS name,
    't1' AS template_id, 'rtmpDestinations' AS kind, 'default' AS key, 'd-td1' AS _dlt_id;
CREATE TABLE analytics.templates_destinations__rtmp_urls AS SELECT * FROM (VALUES
    ('rtmp://a', 'd-td1', 0, 'd-u0'), ('rtmp://b', 'd-td1', 1, 'd-u1'))
    t(value, _dlt_parent_id, _dlt_list_idx, _dlt_id);
CREATE TABLE analytics.analytics_events AS SELECT '2.0' AS version, 'e1' AS id,
    TIMESTAMPTZ '2024-07-17 11:05:59.736511+00' AS timestamp, 'track.add.success' AS type,
    'r1' AS data__room_id, 's1' AS data__session_id, 'p1' AS data__peer_id,
    true AS data__mute, 5 AS data__size, 'd-e1' AS _dlt_id;
CREATE TABLE analytics.recordings AS SELECT 'rec1' AS id, 'r1' AS room_id,
    's1' AS session_id, 'running' AS status, TIMESTAMPTZ '2024-07-19 23:50:05+00' AS created_at,
    'd-rec1' AS _dlt_id;
CREATE TABLE analytics.recordings__asset_types AS SELECT * FROM (VALUES
    ('room-composite', 'd-rec1', 0, 'd-at0'), ('chat', 'd-rec1', 1, 'd-at1'))
    t(value, _dlt_parent_id, _dlt_list_idx, _dlt_id);
-- Not fed by the API: ignored.
CREATE TABLE analytics.analytics_events_totals AS SELECT 'r1' AS room_id, 99 AS api_total;
"""


def warehouse(tmp_path: Path, *changes: str) -> Path:
    """The correct tiny warehouse, then `changes` (SQL) applied to it."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    db = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(WAREHOUSE)
        for change in changes:
            con.execute(change)
    return db


def wrong(db: Path, world: World | None = None) -> dict[str, Any]:
    """The tables that are not exact, with their differences."""
    diffs = compare(db, world or tiny_world())
    return {t: d for t, d in diffs.items() if not d.exact}


def test_a_correct_tiny_warehouse_is_exact(tmp_path: Path) -> None:
    diffs = compare(warehouse(tmp_path), tiny_world())
    assert {t: d for t, d in diffs.items() if not d.exact} == {}
    assert diffs["sessions__peers"].expected == 2 and "rooms__polls" not in diffs  # no polls
    assert "analytics_events_totals" not in diffs
    assert credentials_leaked(warehouse(tmp_path / "again"), tiny_world()) == []


def test_the_expectation_follows_the_shape_rules() -> None:
    rows = expected_rows(tiny_world())
    room = rows["rooms"][(("r1",), ())]
    assert room["updated_at"] is None and room["enabled"] == TRUE
    assert "recording_info__upload_info__credentials__secret" not in room
    assert not any(name.startswith("webhook__headers") for name in room)
    event = rows["analytics_events"][(("e1",), ())]
    assert event["timestamp"] == datetime(2024, 7, 17, 11, 5, 59, 736511)
    assert rows["sessions__peers"][(("s1",), ("p1",))]["left_at"] is None  # the zero time
    settings = rows["template_settings"][(("t1",), ())]
    assert settings["recording"] == {"upload": {"type": "s3", "location": "bucket"}}
    assert settings["retry"] is None


def test_a_wrong_value_is_caught_and_described(tmp_path: Path) -> None:
    found = wrong(warehouse(tmp_path, "UPDATE analytics.rooms SET name = 'mangled'"))
    assert list(found) == ["rooms"] and found["rooms"].wrong_values == 1
    assert found["rooms"].examples == ["rooms [r1] name: expected 'room', loaded 'mangled'"]


def test_a_missing_value_or_column_is_caught(tmp_path: Path) -> None:
    nulled = wrong(
        warehouse(tmp_path, "UPDATE analytics.analytics_events SET data__peer_id = NULL")
    )
    assert nulled["analytics_events"].wrong_values == 1
    dropped = wrong(
        warehouse(tmp_path / "b", "ALTER TABLE analytics.recordings DROP COLUMN status")
    )
    assert "(no such column)" in dropped["recordings"].examples[0]


def test_a_missing_or_extra_child_row_is_caught(tmp_path: Path) -> None:
    found = wrong(warehouse(tmp_path, "DELETE FROM analytics.sessions__peers WHERE id = 'p2'"))
    assert list(found) == ["sessions__peers"] and found["sessions__peers"].missing == 1
    extra = "INSERT INTO analytics.recordings__asset_types VALUES ('summary', 'd-rec1', 2, 'x')"
    assert wrong(warehouse(tmp_path / "b", extra))["recordings__asset_types"].unexpected == 1
    swapped = (
        "UPDATE analytics.templates_destinations__rtmp_urls SET _dlt_list_idx = 1 - _dlt_list_idx"
    )
    assert (
        wrong(warehouse(tmp_path / "c", swapped))["templates_destinations__rtmp_urls"].wrong_values
        == 2
    )


def test_a_leaked_credential_is_caught(tmp_path: Path) -> None:
    leak = (
        "ALTER TABLE analytics.rooms ADD COLUMN recording_info__upload_info__credentials__secret "
        f"VARCHAR DEFAULT '{ROOM_SECRET}'"
    )
    db = warehouse(tmp_path, leak)
    assert wrong(db)["rooms"].wrong_values == 1
    assert credentials_leaked(db, tiny_world()) == [
        "analytics.rooms.recording_info__upload_info__credentials__secret"
    ]
    in_json = (
        "UPDATE analytics.template_settings SET recording = "
        f"""'{{"upload": {{"type": "s3", "location": "bucket", "credentials": """
        f"""{{"key": "AKIASIMSETTINGS", "secretKey": "{SETTINGS_SECRET}"}}}}}}'"""
    )
    assert wrong(warehouse(tmp_path / "b", in_json))["template_settings"].wrong_values == 1


def test_a_zero_time_stored_as_a_timestamp_is_caught(tmp_path: Path) -> None:
    zero = "UPDATE analytics.rooms SET updated_at = TIMESTAMPTZ '0001-01-01 00:00:00+00'"
    assert wrong(warehouse(tmp_path, zero))["rooms"].wrong_values == 1
    live = "UPDATE analytics.sessions__peers SET left_at = TIMESTAMPTZ '0001-01-01 00:00:00+00'"
    assert wrong(warehouse(tmp_path / "b", live))["sessions__peers"].wrong_values == 2


def test_types_count_a_boolean_as_1_or_a_timestamp_as_text_is_caught(tmp_path: Path) -> None:
    as_int = "ALTER TABLE analytics.analytics_events ALTER COLUMN data__mute SET DATA TYPE INTEGER"
    assert wrong(warehouse(tmp_path, as_int))["analytics_events"].wrong_values == 1
    as_text = "ALTER TABLE analytics.recordings ALTER COLUMN created_at SET DATA TYPE VARCHAR"
    assert wrong(warehouse(tmp_path / "b", as_text))["recordings"].wrong_values == 1
    rounded = "UPDATE analytics.analytics_events SET timestamp = timestamp + INTERVAL 1 MICROSECOND"
    assert wrong(warehouse(tmp_path / "c", rounded))["analytics_events"].wrong_values == 1


def test_duplicates_orphans_and_empty_json(tmp_path: Path) -> None:
    twice = "INSERT INTO analytics.recordings SELECT * FROM analytics.recordings"
    assert wrong(warehouse(tmp_path, twice))["recordings"].duplicates == 1
    orphan = "UPDATE analytics.sessions__peers SET _dlt_parent_id = 'gone' WHERE id = 'p1'"
    found = wrong(warehouse(tmp_path / "b", orphan))["sessions__peers"]
    assert found.missing == 1 and found.unexpected == 1
    null_retry = "UPDATE analytics.template_settings SET retry = NULL"
    assert wrong(warehouse(tmp_path / "c", null_retry)) == {}  # {} may load as NULL


def test_events_since_and_tables_the_api_does_not_feed(tmp_path: Path) -> None:
    db = warehouse(tmp_path, "CREATE TABLE analytics.rooms__polls (value VARCHAR)")
    assert wrong(db) == {}  # an empty child table is fine
    later = datetime(2024, 7, 18, tzinfo=UTC)  # the event is older: not expected
    events = compare(db, tiny_world(), events_since=later)["analytics_events"]
    assert events.unexpected == 1 and events.expected == 0


@pytest.mark.parametrize("table", ["rooms", "templates", "analytics_events"])
def test_a_table_that_is_not_there_is_all_missing(tmp_path: Path, table: str) -> None:
    db = warehouse(tmp_path, f"DROP TABLE analytics.{table}")
    assert wrong(db)[table].missing == 1
