"""Incremental refreshes: a full load, the simulated workspace moves on, the project's jobs run;
the tables are exact and the API was asked as little as the refresh rules allow.

Under the strict reading the API also lists errors without a session (in any room) and
recording events hours after their session ended: the hourly job brings those of rooms with
activity and of sessions ended within the lookback, the daily sweep brings the rest.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from analytics_assets.simulator import STRICT, ApiSimulator, FaultPlan, Reading, World
from analytics_assets.simulator.expected import compare
from analytics_assets.simulator.world import EVENT_RETENTION, iso, parse_iso
from analytics_assets_tests.conftest import (
    BOTH_READINGS,
    FullLoad,
    materialize,
    missing_beyond_the_hourly_promise,
    query,
    run_job,
)


def _wrong(db: Path, world: World, first_clock: datetime, *, skip: tuple[str, ...] = ()) -> list:
    diffs = compare(db, world, events_since=first_clock - EVENT_RETENTION)
    return [d for t, d in diffs.items() if not d.exact and t not in skip]


def _sessions_listed_from_cursors(api: ApiSimulator) -> bool:
    """The sessions table's listings (`active=false`, and `active=true` with `after`) resume
    from the cursors; the only listing without `after` is the live rooms' one (peers)."""
    listings = api.requests_to("/v2/sessions")
    ended = [r for r in listings if r.params.get("active") == ["false"]]
    whole = [r for r in listings if "after" not in r.params]
    return (
        bool(ended)
        and all("after" in r.params for r in ended)
        and all(r.params.get("active") == ["true"] for r in whole)
    )


def _event_ids(db: Path) -> set[str]:
    return {row[0] for row in query(db, "SELECT id FROM analytics.analytics_events")}


@BOTH_READINGS
def test_refresh_after_activity_leaves_every_table_exact(
    api: ApiSimulator, world: World, warehouse: Path, reading: Reading, full_load: FullLoad
) -> None:
    first_clock = world.clock
    live_before = {s["id"] for s in world.sessions if s["active"]}
    rooms_before = {s["room_id"]: s for s in world.sessions}
    with api.moving():
        changed = world.advance(activity=0.04)
    assert changed["ended_sessions"] and changed["new_sessions"] and changed["new_rooms"]
    run_job("activity_refresh")
    run_job("live_peers_refresh")
    assert _wrong(warehouse, world, first_clock, skip=("analytics_events",)) == []
    # Events: all but errors without a session in rooms where nothing else happened, which
    # the daily sweep brings.
    horizon = first_clock - EVENT_RETENTION
    assert (
        missing_beyond_the_hourly_promise(warehouse, world, horizon, live_before, first_clock) == []
    )
    loaded = _event_ids(warehouse)
    waiting = [
        e for e in world.events if e["id"] not in loaded and parse_iso(e["timestamp"]) >= horizon
    ]
    if not reading.sessionless_errors:
        assert waiting == []
    ended = live_before - {s["id"] for s in world.sessions if s["active"]}
    assert ended and rooms_before
    rows = query(warehouse, "SELECT id, active FROM analytics.sessions")
    assert all(not active for sid, active in rows if sid in ended)  # ended sessions show it
    run_job("daily_sweep")
    assert _wrong(warehouse, world, first_clock) == []


def test_refresh_asks_only_where_something_happened(
    api: ApiSimulator, world: World, warehouse: Path, full_load: FullLoad
) -> None:
    was_live = {s["id"] for s in world.sessions if s["active"]}
    known = {s["id"] for s in world.sessions}
    unfinished = {r["session_id"] for r in world.recordings if r["status"] != "completed"}
    ended_recently = {
        s["id"]
        for s in world.sessions
        if not s["active"] and parse_iso(s["updated_at"]) >= world.clock - timedelta(hours=24)
    }
    with api.moving():
        world.advance(activity=0.04)
    api.reset_requests()
    run_job("activity_refresh")
    run_job("live_peers_refresh")

    # Lists of rooms and sessions resume from their cursors.
    assert all("after" in r.params for r in api.requests_to("/v2/rooms"))
    assert _sessions_listed_from_cursors(api)
    # Events: rooms with a session new, live or live last time, or ended within the lookback.
    with_activity = {
        s["id"] for s in world.sessions if s["active"] or s["id"] not in known
    } | was_live
    rooms_of = {s["id"]: s["room_id"] for s in world.sessions}
    wanted = {rooms_of[sid] for sid in with_activity | ended_recently}
    asked = {r.params["room_id"][0] for r in api.requests_to("/v2/analytics/events")}
    assert asked == wanted
    # Recordings: those of sessions with activity, and those not completed last time.
    by_session = {r.params["session_id"][0] for r in api.requests_to("/v2/recordings")}
    assert {rooms_of[s] for s in by_session} <= {rooms_of[s] for s in with_activity | unfinished}
    assert with_activity - known <= by_session
    # Peers only for rooms live now.
    live_rooms = {s["room_id"] for s in world.sessions if s["active"]}
    assert {r.path.split("/")[3] for r in api.requests_to("/v2/active-rooms/")} == live_rooms
    # Nothing else, and nothing asked twice.
    asked_for = [(r.path, sorted(r.params.items())) for r in api.requests]
    assert len(set(map(str, asked_for))) == len(asked_for)
    other = {
        r.path
        for r in api.requests
        if r.path not in ("/v2/rooms", "/v2/sessions", "/v2/analytics/events", "/v2/recordings")
        and not r.path.startswith("/v2/active-rooms/")
    }
    assert other == set()
    assert len(api.requests) <= 0.3 * full_load.requests, (len(api.requests), full_load.requests)


def test_cursor_state_lives_in_the_destination(
    api: ApiSimulator,
    world: World,
    warehouse: Path,
    full_load: FullLoad,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first_clock = world.clock
    run_job("activity_refresh")
    # A new machine: no local dlt working directory, the same warehouse.
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "another_machine"))
    with api.moving():
        world.advance(activity=0.04)
    api.reset_requests()
    run_job("activity_refresh")
    assert all("after" in r.params for r in api.requests_to("/v2/rooms"))
    assert len({r.params["room_id"][0] for r in api.requests_to("/v2/analytics/events")}) < 30
    assert _wrong(warehouse, world, first_clock, skip=("active_room_peers",)) == []


def test_a_jobs_first_run_takes_the_cursors_of_the_shared_pipeline(
    api: ApiSimulator, world: World, warehouse: Path, full_load: FullLoad
) -> None:
    """A warehouse loaded before each job had its own pipeline keeps its place."""
    first_clock = world.clock
    # The warehouse as the shared pipeline, the one every run used before, loaded it.
    with api.moving():
        world.advance(activity=0.04)
    api.reset_requests()
    instance = dg.DagsterInstance.ephemeral()
    result = run_job("activity_refresh", instance=instance)
    assert all("after" in r.params for r in api.requests_to("/v2/rooms"))
    assert _sessions_listed_from_cursors(api)
    assert len(api.requests) < 80
    assert _wrong(warehouse, world, first_clock, skip=("active_room_peers",)) == []
    messages = [record.user_message for record in instance.all_logs(result.run_id)]
    logged = [m for m in messages if "carried over" in m]
    assert logged and "analytics_events" in logged[0] and "sessions" in logged[0]


def test_a_run_of_one_table_never_moves_another_tables_cursor(
    api: ApiSimulator, world: World, warehouse: Path, full_load: FullLoad
) -> None:
    with api.moving():
        world.advance(activity=0.04)
    assert materialize(["analytics_events"]).success  # lists sessions, loads only events
    stale = dict(query(warehouse, "SELECT id, active FROM analytics.sessions"))
    assert stale != {s["id"]: s["active"] for s in world.sessions}  # sessions not loaded yet
    assert materialize(["sessions"]).success
    fresh = dict(query(warehouse, "SELECT id, active FROM analytics.sessions"))
    assert fresh == {s["id"]: s["active"] for s in world.sessions}


def test_full_refresh_ignores_the_cursors(
    api: ApiSimulator, world: World, warehouse: Path, full_load: FullLoad
) -> None:
    api.reset_requests()
    config = {"ops": {"analytics_api": {"config": {"full_refresh": True}}}}
    assert materialize(["rooms", "sessions", "analytics_events"], run_config=config).success
    assert not any("after" in r.params for r in api.requests)
    assert not any("session_id" in r.params for r in api.requests_to("/v2/analytics/events"))
    assert _wrong(warehouse, world, world.clock, skip=("recordings",)) == []


@BOTH_READINGS
def test_peers_snapshot_empties_when_no_room_is_live(
    api: ApiSimulator, world: World, warehouse: Path, full_load: FullLoad
) -> None:
    """A snapshot with nothing live is an empty table, in the job's first run after a full load
    (its pipeline had never loaded the table) and in the ad hoc runs' pipeline: dlt replaces
    only the tables a run brings rows for, so the empty snapshot is said explicitly."""
    assert query(warehouse, "SELECT count(*) FROM analytics.active_room_peers")[0][0] > 0
    with api.moving():
        for session in world.sessions:
            if session["active"]:
                world.end_session(session, world.clock)
    run_job("live_peers_refresh")
    assert query(warehouse, "SELECT count(*) FROM analytics.active_room_peers") == [(0,)]
    with api.moving():  # a room goes live again, then ends
        live = world.start_session(world.rooms[0], world.clock)
    assert materialize(["active_room_peers"]).success
    rows = query(warehouse, "SELECT DISTINCT room_id FROM analytics.active_room_peers")
    assert rows == [(world.rooms[0]["id"],)]
    with api.moving():
        world.end_session(live, world.clock)
    assert materialize(["active_room_peers"]).success
    assert query(warehouse, "SELECT count(*) FROM analytics.active_room_peers") == [(0,)]


def test_events_history_is_kept_beyond_the_apis_30_days(
    api: ApiSimulator, world: World, warehouse: Path, full_load: FullLoad
) -> None:
    first_clock = world.clock
    loaded_before = query(warehouse, "SELECT count(*) FROM analytics.analytics_events")[0][0]
    with api.moving():
        world.advance(activity=0.02, hours=24 * 20)
    assert len(world.retained_events()) < loaded_before  # the API forgot some
    assert materialize().success
    assert _wrong(warehouse, world, first_clock) == []


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


# ---- what the strict reading adds ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("reading", [STRICT], ids=["strict"], indirect=True)
def test_late_recording_events_are_picked_up_by_the_hourly_refresh(
    api: ApiSimulator, world: World, warehouse: Path, full_load: FullLoad
) -> None:
    """`beam.recording.success` is listed once the upload ends, hours after its session: one
    listed within 24 hours of the session's end is loaded by the next run of the hourly job;
    one listed later, by the next daily sweep."""
    delays: dict[str, timedelta] = {}
    forced = False
    for step in range(9):  # 45 hours, a run every 5 hours
        # Make sure one upload is later than a day (one in ten are, at random), early enough
        # to be listed within the 45 hours.
        assert forced or step <= 3, "no upload pending in the first 15 hours"
        if not forced and world.uploads:
            forced = True
            upload = world.uploads[0]
            recording = next(r for r in world.recordings if r["id"] == upload.recording_id)
            upload.at = parse_iso(recording["stopped_at"]) + timedelta(hours=30)
            upload.event["timestamp"] = iso(upload.at)
            upload.event["data"]["created_at"] = iso(upload.at)
        for upload in world.uploads:
            recording = next(r for r in world.recordings if r["id"] == upload.recording_id)
            delays[upload.event["id"]] = upload.at - parse_iso(recording["stopped_at"])
        with api.moving():
            world.advance(activity=0.04, hours=5)
        run_job("activity_refresh")
        listed = {e["id"] for e in world.events} & set(delays)
        promised = {i for i in listed if delays[i] <= timedelta(hours=24)}
        assert promised <= _event_ids(warehouse), f"step {step}"
    late = {i for i in delays if delays[i] > timedelta(hours=24)} & {e["id"] for e in world.events}
    assert len(delays) >= 5 and late  # both kinds happened
    assert not late <= _event_ids(warehouse)  # later than the lookback: not by the hourly job
    run_job("daily_sweep")
    assert late <= _event_ids(warehouse)  # the reconciliation brings them
    statuses = dict(query(warehouse, "SELECT id, status FROM analytics.recordings"))
    assert statuses == {r["id"]: r["status"] for r in world.recordings}


@pytest.mark.parametrize("reading", [STRICT], ids=["strict"], indirect=True)
def test_rooms_disabled_and_renamed_later_show_after_the_daily_sweep(
    api: ApiSimulator, world: World, warehouse: Path, full_load: FullLoad
) -> None:
    first_clock = world.clock
    with api.moving():
        world.advance(activity=0.02, renamed=3, disabled=3)
    run_job("activity_refresh")
    assert not compare(warehouse, world)["rooms"].exact  # the hourly job cannot see it
    run_job("daily_sweep")
    rows = dict(query(warehouse, "SELECT id, enabled FROM analytics.rooms"))
    assert rows == {r["id"]: r["enabled"] for r in world.rooms}
    assert _wrong(warehouse, world, first_clock, skip=("active_room_peers",)) == []


@pytest.mark.slow
@BOTH_READINGS
def test_two_days_of_the_projects_jobs_leave_every_table_exact(
    api: ApiSimulator, world: World, warehouse: Path, reading: Reading, full_load: FullLoad
) -> None:
    """Two simulated days of the project's jobs (a run of the activity job every 12 hours, the
    daily sweep each night, the live peers at the end): rooms renamed and disabled, errors
    without sessions, late uploads, and a window in which the API answers 429, along the way."""
    first_clock = world.clock
    instance = dg.DagsterInstance.ephemeral()
    for step in range(4):  # 48 hours
        with api.moving():
            world.advance(activity=0.04, hours=12, renamed=step % 2, disabled=step // 2)
        if step == 2:
            api.faults = FaultPlan(scripted={"/v2/sessions": [429]}, retry_after=1)
        run_job("activity_refresh", instance=instance)
        if step % 2 == 1:  # 03:17 comes round
            run_job("daily_sweep", instance=instance)
    run_job("live_peers_refresh", instance=instance)
    assert any(r.status == 429 for r in api.requests)
    assert _wrong(warehouse, world, first_clock) == []
    with duckdb.connect(str(warehouse), read_only=True) as con:
        short = con.execute(
            "SELECT count(*) FROM analytics.analytics_events_totals t WHERE api_total > "
            "(SELECT count(*) FROM analytics.analytics_events e WHERE e.data__room_id = t.room_id"
            " AND e.timestamp >= t.window_start AND e.timestamp < t.window_end)"
        ).fetchone()
    assert short == (0,)


def test_start_date_bounds_the_first_load_and_refreshes_carry_on(
    api: ApiSimulator, world: World, warehouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`start_date`: rooms and sessions created since then, and the events those need."""
    first_clock = world.clock
    start = world.clock - timedelta(days=20)
    monkeypatch.setenv("SOURCES__ANALYTICS_API__START_DATE", start.strftime("%Y-%m-%d"))
    day = datetime(start.year, start.month, start.day, tzinfo=start.tzinfo)
    assert materialize().success
    rooms = {r["id"] for r in world.rooms if parse_iso(r["created_at"]) >= day}
    sessions = {s["id"] for s in world.sessions if parse_iso(s["created_at"]) >= day}
    needed = rooms | {s["room_id"] for s in world.sessions if s["id"] in sessions}
    assert 0 < len(rooms) < len(world.rooms) and 0 < len(sessions) < len(world.sessions)
    assert {r[0] for r in query(warehouse, "SELECT id FROM analytics.rooms")} == rooms
    assert {r[0] for r in query(warehouse, "SELECT id FROM analytics.sessions")} == sessions
    asked = {r.params["room_id"][0] for r in api.requests_to("/v2/analytics/events")}
    assert asked == needed
    events = {r[0] for r in query(warehouse, "SELECT id FROM analytics.analytics_events")}
    assert events == {e["id"] for e in world.retained_events() if e["data"]["room_id"] in needed}
    # What it cannot bound: templates and recordings have no time filter.
    assert compare(warehouse, world)["templates"].exact
    assert compare(warehouse, world)["recordings"].exact
    assert all(r.params.get("after") for r in api.requests_to("/v2/rooms"))
    # Refreshes carry on from there.
    with api.moving():
        world.advance(activity=0.04)
    api.reset_requests()
    run_job("activity_refresh")
    new = {s["id"] for s in world.sessions if parse_iso(s["created_at"]) >= first_clock}
    loaded = {r[0] for r in query(warehouse, "SELECT id FROM analytics.sessions")}
    assert new and new <= loaded and not (loaded - sessions - new)
