"""The analytics assets, end to end: a tiny workspace served by the simulator, loaded and
computed by Dagster, checked against numbers worked out by hand. (The SQL and its checks, in
several time zones and on bad data, are unit-tested in `unit/test_marts_sql.py`.)"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from analytics_assets.defs import marts
from analytics_assets.defs.assets import build_analytics_assets
from analytics_assets.simulator import DEFAULT_TOKEN, ApiSimulator, World
from analytics_assets_tests.conftest import resources

CLOCK = dt.datetime(2024, 7, 1, 12, 0, tzinfo=dt.UTC)


def _event(world: World, kind: str, at: str, **data: Any) -> None:
    world.events.append(
        {
            "version": "2.0",
            "id": f"ev-{len(world.events):03d}",
            "timestamp": at,
            "type": kind,
            "data": data,
        }
    )


def _peer(pid: str, sid: str, joined: str, left: str | None = None) -> dict[str, Any]:
    peer = {
        "id": pid,
        "session_id": sid,
        "name": pid,
        "role": "host",
        "user_id": pid,
        "joined_at": joined,
    }
    if left:
        peer["left_at"] = left
    return peer


def _session(
    sid: str, room: str, live: bool, created: str, updated: str, *peers: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": sid,
        "room_id": room,
        "customer_id": "c",
        "active": live,
        "peers": {p["id"]: p for p in peers},
        "created_at": created,
        "updated_at": updated,
    }


@pytest.fixture
def tiny_world() -> World:
    """Two rooms; every number below is worked out by hand from these records."""
    world = World(seed=0, clock=CLOCK)
    world.add_template(CLOCK - dt.timedelta(days=10))
    room_a = world.add_room(CLOCK - dt.timedelta(days=5))["id"]
    room_b = world.add_room(CLOCK - dt.timedelta(days=4))["id"]
    day1, day2 = "2024-06-30", "2024-07-01"
    world.sessions = [
        # Room A, day 1: P1 stays 30 min, P2 15 min.
        _session(
            "s1",
            room_a,
            False,
            f"{day1}T10:00:00.000Z",
            f"{day1}T10:30:00.000Z",
            _peer("p1", "s1", f"{day1}T10:00:00.000Z", f"{day1}T10:30:00.000Z"),
            _peer("p2", "s1", f"{day1}T10:05:00.000Z", f"{day1}T10:20:00.000Z"),
        ),
        # Room A, day 2: P3 stays 45 min.
        _session(
            "s2",
            room_a,
            False,
            f"{day2}T09:00:00.000Z",
            f"{day2}T09:45:00.000Z",
            _peer("p3", "s2", f"{day2}T09:00:00.000Z", f"{day2}T09:45:00.000Z"),
        ),
        # Room B: live, P4 has not left, so counts nowhere yet.
        _session(
            "s3",
            room_b,
            True,
            f"{day2}T11:00:00.000Z",
            f"{day2}T11:00:00.000Z",
            _peer("p4", "s3", f"{day2}T11:00:00.000Z"),
        ),
    ]
    a1 = {"room_id": room_a, "session_id": "s1", "peer_id": "p1", "track_id": "t1", "type": "audio"}
    v1 = {"room_id": room_a, "session_id": "s1", "peer_id": "p1", "track_id": "t2", "type": "video"}
    a2 = {"room_id": room_a, "session_id": "s1", "peer_id": "p2", "track_id": "t3", "type": "audio"}
    # P1 audio: unmuted 10:05-10:12 (420 s) and 10:20-10:30 (600 s) = 1020 s.
    _event(world, "track.add.success", f"{day1}T10:00:00.000Z", **a1, mute=True)
    _event(world, "track.update.success", f"{day1}T10:05:00.000Z", **a1, mute=False)
    _event(world, "track.update.success", f"{day1}T10:12:00.000Z", **a1, mute=True)
    _event(world, "track.update.success", f"{day1}T10:20:00.000Z", **a1, mute=False)
    _event(world, "track.remove.success", f"{day1}T10:30:00.000Z", **a1, mute=False)
    # P1 video: unmuted from add to remove, 600 s.
    _event(world, "track.add.success", f"{day1}T10:00:00.000Z", **v1, mute=False)
    _event(world, "track.remove.success", f"{day1}T10:10:00.000Z", **v1, mute=False)
    # P2 audio: unmuted throughout, an update that stays unmuted: 60 + 840 = 900 s.
    _event(world, "track.add.success", f"{day1}T10:05:00.000Z", **a2, mute=False)
    _event(world, "track.update.success", f"{day1}T10:06:00.000Z", **a2, mute=False)
    _event(world, "track.remove.success", f"{day1}T10:20:00.000Z", **a2, mute=False)
    # Errors: two on day 1 (one join, one publish), one publish on day 2.
    err = {"room_id": room_a, "session_id": "s1", "peer_id": "p2", "error_code": 4006}
    _event(world, "client.join.failed", f"{day1}T10:01:00.000Z", **err)
    _event(world, "client.publish.failed", f"{day1}T10:02:00.000Z", **err)
    _event(world, "client.publish.failed", f"{day2}T09:10:00.000Z", **{**err, "session_id": "s2"})
    world.recordings = []
    world.room_a, world.room_b = room_a, room_b  # type: ignore[attr-defined]
    return world


def test_marts_match_hand_computed_numbers(
    tiny_world: World, warehouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ApiSimulator(tiny_world) as sim:
        monkeypatch.setenv("SOURCES__ANALYTICS_API__BASE_URL", sim.base_url)
        monkeypatch.setenv("API_TOKEN", DEFAULT_TOKEN)
        result = dg.materialize(
            [build_analytics_assets(), marts.analytics_marts], resources=resources()
        )
    assert result.success
    room_a = tiny_world.room_a  # type: ignore[attr-defined]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        minutes = con.execute(
            "SELECT room_id, CAST(day AS VARCHAR), stays, peer_minutes "
            "FROM analytics.peer_minutes_daily ORDER BY 2"
        ).fetchall()
        unmuted = con.execute(
            "SELECT peer_id, track_type, tracks, unmuted_seconds "
            "FROM analytics.unmuted_time ORDER BY 1, 2"
        ).fetchall()
        errors = con.execute(
            "SELECT CAST(day AS VARCHAR), error_type, errors "
            "FROM analytics.client_errors_daily ORDER BY 1, 2"
        ).fetchall()
    assert minutes == [(room_a, "2024-06-30", 2, 45.0), (room_a, "2024-07-01", 1, 45.0)]
    assert unmuted == [
        ("p1", "audio", 1, 1020.0),
        ("p1", "video", 1, 600.0),
        ("p2", "audio", 1, 900.0),
    ]
    assert errors == [
        ("2024-06-30", "client.join.failed", 1),
        ("2024-06-30", "client.publish.failed", 1),
        ("2024-07-01", "client.publish.failed", 1),
    ]
    checks = {
        e.check_name: e.passed
        for e in result.get_asset_check_evaluations()
        if e.asset_key.path[-1] in marts.MARTS_BY_NAME
    }
    assert checks == {
        "peer_minutes_add_up": True,
        "unmuted_within_track_lifetime": True,
        "client_errors_add_up": True,
    }
    assert all(e.passed for e in result.get_asset_check_evaluations())  # no recordings: no rows
    charts = {
        e.materialization.asset_key.path[-1]: e.materialization.metadata.get("chart")
        for e in result.get_asset_materialization_events()
    }
    chart = charts["peer_minutes_daily"]
    assert chart is not None and "2024-06-30" in chart.value and "█" in chart.value  # type: ignore[operator]
