"""Incremental refreshes: a full load, the simulated workspace moves on, one refresh; tables exact
and the API asked as little as the refresh rules allow."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from analytics_assets.simulator import ApiSimulator, World
from analytics_assets.simulator.expected import compare
from analytics_assets.simulator.world import EVENT_RETENTION
from analytics_assets_tests.conftest import materialize, query


def _exact(db: Path, world: World, first_clock: datetime) -> None:
    diffs = compare(db, world, events_since=first_clock - EVENT_RETENTION)
    assert [d for d in diffs.values() if not d.exact] == []


def test_refresh_after_activity_leaves_every_table_exact(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    first_clock = world.clock
    assert materialize().success
    live_before = {s["id"] for s in world.sessions if s["active"]}
    with api.moving():
        changed = world.advance(activity=0.04)
    assert changed["ended_sessions"] and changed["new_sessions"] and changed["new_rooms"]
    assert materialize().success
    _exact(warehouse, world, first_clock)
    ended = live_before - {s["id"] for s in world.sessions if s["active"]}
    assert ended
    rows = query(warehouse, "SELECT id, active FROM analytics.sessions")
    assert all(not active for sid, active in rows if sid in ended)  # ended sessions show it
    rooms_of_ended = {s["room_id"] for s in world.sessions if s["id"] in ended}
    peers_rooms = {
        r[0] for r in query(warehouse, "SELECT room_id FROM analytics.active_room_peers")
    }
    assert not (rooms_of_ended & peers_rooms)  # their peers are gone from the snapshot


def test_refresh_asks_only_where_something_happened(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    assert materialize().success
    full_load = len(api.requests)
    was_live = {s["id"] for s in world.sessions if s["active"]}
    known = {s["id"] for s in world.sessions}
    with api.moving():
        world.advance(activity=0.04)
    api.reset_requests()
    assert materialize().success

    # Lists of rooms and sessions resume from their cursors.
    assert all("after" in r.params for r in api.requests_to("/v2/rooms"))
    assert all(
        "after" in r.params for r in api.requests_to("/v2/sessions") if "active" not in r.params
    )
    # Events only for sessions that are new, live, or were live last time.
    with_activity = {
        s["id"] for s in world.sessions if s["active"] or s["id"] not in known
    } | was_live
    asked = {r.params["session_id"][0] for r in api.requests_to("/v2/analytics/events")}
    assert asked <= with_activity
    assert {s for s in with_activity if s not in known or s in was_live} <= asked
    # Peers only for rooms live now.
    live_rooms = {s["room_id"] for s in world.sessions if s["active"]}
    assert {r.path.split("/")[3] for r in api.requests_to("/v2/active-rooms/")} == live_rooms
    assert len(api.requests) <= 0.3 * full_load, (len(api.requests), full_load)


def test_cursor_state_lives_in_the_destination(
    api: ApiSimulator,
    world: World,
    warehouse: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first_clock = world.clock
    assert materialize().success
    # A new machine: no local dlt working directory, the same warehouse.
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "another_machine"))
    with api.moving():
        world.advance(activity=0.04)
    api.reset_requests()
    assert materialize().success
    assert all("after" in r.params for r in api.requests_to("/v2/rooms"))
    assert all("session_id" in r.params for r in api.requests_to("/v2/analytics/events"))
    _exact(warehouse, world, first_clock)


def test_a_run_of_one_table_never_moves_another_tables_cursor(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    assert materialize().success
    with api.moving():
        world.advance(activity=0.04)
    assert materialize(["analytics_events"]).success  # lists sessions, loads only events
    stale = dict(query(warehouse, "SELECT id, active FROM analytics.sessions"))
    assert stale != {s["id"]: s["active"] for s in world.sessions}  # sessions not loaded yet
    assert materialize(["sessions"]).success
    fresh = dict(query(warehouse, "SELECT id, active FROM analytics.sessions"))
    assert fresh == {s["id"]: s["active"] for s in world.sessions}


def test_full_refresh_ignores_the_cursors(api: ApiSimulator, world: World, warehouse: Path) -> None:
    assert materialize().success
    api.reset_requests()
    config = {"ops": {"analytics_api": {"config": {"full_refresh": True}}}}
    assert materialize(["rooms", "sessions", "analytics_events"], run_config=config).success
    assert not any("after" in r.params for r in api.requests)
    assert not any("session_id" in r.params for r in api.requests_to("/v2/analytics/events"))
    _exact(warehouse, world, world.clock)


def test_peers_snapshot_empties_when_no_room_is_live(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    assert materialize(["active_room_peers"]).success
    assert query(warehouse, "SELECT count(*) FROM analytics.active_room_peers")[0][0] > 0
    with api.moving():
        for session in world.sessions:
            if session["active"]:
                world._end_session(session, world.clock)
    assert materialize(["active_room_peers"]).success
    assert query(warehouse, "SELECT count(*) FROM analytics.active_room_peers") == [(0,)]


def test_events_history_is_kept_beyond_the_apis_30_days(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    first_clock = world.clock
    assert materialize().success
    loaded_before = query(warehouse, "SELECT count(*) FROM analytics.analytics_events")[0][0]
    with api.moving():
        world.advance(activity=0.02, hours=24 * 20)
    assert len(world.retained_events()) < loaded_before  # the API forgot some
    assert materialize().success
    _exact(warehouse, world, first_clock)


def test_destinations_removed_upstream_leave_the_table(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    assert materialize(["templates", "templates_destinations"]).success
    with api.moving():
        first = world.templates[0]
        first["destinations"] = {kind: {} for kind in first["destinations"]}
    assert materialize(["templates", "templates_destinations"]).success
    assert compare(warehouse, world)["templates_destinations"].exact
    with api.moving():  # no destinations anywhere: the table and its nested tables empty
        for template in world.templates:
            template["destinations"] = {}
    assert materialize(["templates", "templates_destinations"]).success
    assert query(warehouse, "SELECT count(*) FROM analytics.templates_destinations") == [(0,)]
    assert query(warehouse, "SELECT count(*) FROM analytics.templates_destinations__layers") == [
        (0,)
    ]
