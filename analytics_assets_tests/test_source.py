"""The `analytics_api` source against the simulator, one API quirk per test (plain dlt).

Each `test_quirk_...` names the behaviour of the API it covers; `test_reading_...` tests cover a
behaviour the reference leaves open, under the reading that exhibits it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from analytics_assets.simulator import (
    DEFAULT_TOKEN,
    LENIENT,
    STRICT,
    ApiSimulator,
    FaultPlan,
    Reading,
    RecordedRequest,
    World,
    generate_world,
)
from analytics_assets.simulator.expected import compare, credentials_leaked
from analytics_assets.simulator.server import CUT_BODY, STALL_BODY
from analytics_assets.simulator.world import EVENT_RETENTION, iso
from analytics_assets.source import ApiHttpError, MissingApiTokenError
from analytics_assets.source.settings import EVENT_TYPES
from analytics_assets_tests.conftest import (
    BOTH_READINGS,
    TEST_SCALE,
    column_names,
    free_port,
    ids,
    query,
    run_source,
)


def _load(sim: ApiSimulator, db: Path, **kwargs: Any) -> None:
    run_source(db, base_url=sim.base_url, api_token=DEFAULT_TOKEN, **kwargs)


@dataclass
class Loaded:
    """One full load of the standard (lenient) world, which many quirks are read from."""

    world: World
    db: Path
    sim: ApiSimulator


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    folder = tmp_path_factory.mktemp("standard_load")
    world = generate_world(scale=TEST_SCALE, seed=11)
    with ApiSimulator(world) as sim:
        _load(sim, folder / "warehouse.duckdb", pipelines_dir=folder / "dlt")
    yield Loaded(world, folder / "warehouse.duckdb", sim)


@pytest.fixture
def list_world() -> World:
    """A world with more rooms than one page of a list holds (100)."""
    world = generate_world(scale=TEST_SCALE, seed=11)
    assert len(world.rooms) > 100
    return world


#: The tables the hourly job loads.
ACTIVITY = ["rooms", "sessions", "analytics_events", "recordings"]
#: Tables a load of the four activity tables leaves empty.
NOT_LOADED = ("active_room_peers", "templates", "template_settings", "templates_destinations")


def _exact(db: Path, world: World) -> None:
    assert [d for d in compare(db, world).values() if not d.exact] == []


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


@BOTH_READINGS
def test_every_table_holds_exactly_the_api_rows_once(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    _load(api, warehouse)
    _exact(warehouse, world)
    assert ids(warehouse, "analytics_events") == sorted(e["id"] for e in world.retained_events())


# ---- lists ---------------------------------------------------------------------------------


def _plain_room_listing(sim: ApiSimulator) -> list:
    return [r for r in sim.requests_to("/v2/rooms") if "enabled" not in r.params]


@pytest.mark.parametrize("final_page", ["empty_page", "null_data", "empty_last", "no_last"])
@pytest.mark.parametrize("rooms", [120, 100])
def test_quirk_the_end_of_a_list_in_every_form_ends_the_listing_with_nothing_lost(
    list_world: World, warehouse: Path, final_page: str, rooms: int
) -> None:
    """The end of a list has been seen as `last` kept on a short final page, `last: ""`, a
    page with `data: null` and no `last` at all. A short page ends the listing (the vendor's
    own client's rule); a full final page needs one more request unless it says it is the end."""
    world = list_world
    world.rooms = world.rooms[:rooms]
    with ApiSimulator(world, reading=LENIENT.but(final_page=final_page)) as sim:
        _load(sim, warehouse, resources=("rooms",))
    says_end = final_page in ("empty_last", "no_last")
    assert len(_plain_room_listing(sim)) == 1 if rooms == 100 and says_end else 2
    assert ids(warehouse, "rooms") == sorted(r["id"] for r in world.rooms)


def test_reading_start_inclusive_ends_when_a_page_brings_nothing_new(
    list_world: World, warehouse: Path
) -> None:
    world = list_world
    with ApiSimulator(world, reading=LENIENT.but(start_inclusive=True)) as sim:
        _load(sim, warehouse, resources=("rooms",))
    rooms = _plain_room_listing(sim)
    # 120 rooms: 100, then 21 (one repeated): short, the end.
    assert [len(r.params.get("start", [])) for r in rooms] == [0, 1]
    assert ids(warehouse, "rooms") == sorted(r["id"] for r in world.rooms)  # each once
    assert query(warehouse, "SELECT count(*) FROM analytics.rooms") == [(len(world.rooms),)]


@pytest.mark.parametrize(
    "reading", [LENIENT, LENIENT.but(rooms_enabled_by_default=True)], indirect=True
)
def test_reading_disabled_rooms_are_loaded_with_enabled_false(
    api: ApiSimulator, world: World, warehouse: Path, reading: Reading
) -> None:
    disabled = sorted(r["id"] for r in world.rooms if not r["enabled"])
    assert disabled
    _load(api, warehouse, resources=("rooms",))
    rows = query(warehouse, "SELECT id FROM analytics.rooms WHERE NOT enabled ORDER BY id")
    assert [r[0] for r in rows] == disabled
    assert any(r.params.get("enabled") == ["false"] for r in api.requests_to("/v2/rooms"))


# ---- live rooms' peers -----------------------------------------------------------------------


def test_quirk_active_peers_object_becomes_rows_with_their_room(loaded: Loaded) -> None:
    world, warehouse = loaded.world, loaded.db
    expected = sorted(
        (room["id"], peer_id)
        for room in world.rooms
        for peer_id in (world.active_peers(room["id"]) or {})
    )
    assert expected
    assert (
        sorted(query(warehouse, "SELECT room_id, id FROM analytics.active_room_peers")) == expected
    )
    assert {"metadata", "joined_at", "role", "user_id"} <= set(
        column_names(warehouse, "active_room_peers")
    )


def test_quirk_peers_are_fetched_only_for_rooms_with_a_live_session(loaded: Loaded) -> None:
    world, api = loaded.world, loaded.sim
    live_rooms = {s["room_id"] for s in world.sessions if s["active"]}
    listing = api.requests_to("/v2/sessions")
    assert any(r.params.get("active") == ["true"] for r in listing)
    peers_requests = api.requests_to("/v2/active-rooms/")
    assert sorted(r.path.split("/")[3] for r in peers_requests) == sorted(live_rooms)


def test_quirk_room_that_ended_since_the_listing_answers_404_no_rows_no_failure(
    world: World, warehouse: Path
) -> None:
    ended, *others = sorted({s["room_id"] for s in world.sessions if s["active"]})
    faults = FaultPlan(always={f"/v2/active-rooms/{ended}/peers": 404})
    with ApiSimulator(world, faults=faults) as sim:
        _load(sim, warehouse, resources=("active_room_peers",))
    rooms = {r[0] for r in query(warehouse, "SELECT room_id FROM analytics.active_room_peers")}
    assert rooms == set(others)


def test_quirk_live_room_with_an_empty_peers_object_gives_no_rows(
    world: World, warehouse: Path
) -> None:
    emptied = next(s for s in world.sessions if s["active"])
    for peer in emptied["peers"].values():
        peer["left_at"] = peer["joined_at"]  # everyone left; the session is still live
    with ApiSimulator(world, reading=LENIENT.but(inactive_peers="empty")) as sim:
        _load(sim, warehouse, resources=("active_room_peers",))
    assert any(r.status == 200 for r in sim.requests_to(f"/v2/active-rooms/{emptied['room_id']}"))
    rooms = {r[0] for r in query(warehouse, "SELECT room_id FROM analytics.active_room_peers")}
    assert emptied["room_id"] not in rooms and rooms


# ---- shapes --------------------------------------------------------------------------------


def test_quirk_session_peers_keyed_by_id_become_child_rows(loaded: Loaded) -> None:
    world, warehouse = loaded.world, loaded.db
    rows = query(
        warehouse,
        "SELECT s.id, p.id, p.left_at IS NULL FROM analytics.sessions s "
        "JOIN analytics.sessions__peers p ON p._dlt_parent_id = s._dlt_id",
    )
    expected = [
        (s["id"], pid, "left_at" not in peer)
        for s in world.sessions
        for pid, peer in s["peers"].items()
    ]
    assert sorted(rows) == sorted(expected)


def test_no_table_has_a_column_named_after_an_id(loaded: Loaded) -> None:
    warehouse = loaded.db
    id_like = re.compile(r"[0-9a-f]{24}|[0-9a-f]{8}_?[0-9a-f]{4}_?[0-9a-f]{4}")
    columns = query(
        warehouse,
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'analytics'",
    )
    assert not [c for c in columns if id_like.search(c[1])]
    assert len(columns) < 400  # bounded: grows with field names, not with data


def test_quirk_settings_have_no_id_and_are_keyed_by_template(loaded: Loaded) -> None:
    world, warehouse = loaded.world, loaded.db
    rows = dict(query(warehouse, "SELECT template_id, region FROM analytics.template_settings"))
    assert rows == {t["id"]: t["settings"]["region"] for t in world.templates}
    assert {"region", "retry", "recording"} <= set(column_names(warehouse, "template_settings"))


def test_quirk_destinations_map_key_is_the_identity_names_repeat(loaded: Loaded) -> None:
    world, warehouse = loaded.world, loaded.db
    rows = query(
        warehouse,
        "SELECT template_id, kind, key, name, height, auto_stop_timeout "
        "FROM analytics.templates_destinations",
    )
    expected = [
        (t["id"], kind, key, d["name"], d.get("height"), d.get("autoStopTimeout"))
        for t in world.templates
        for kind, entries in t["destinations"].items()
        for key, d in entries.items()
    ]
    assert sorted(rows, key=str) == sorted(expected, key=str)
    assert any(kind == "browserRecordings" for _, kind, *_ in rows)
    names = [(t, kind, name) for t, kind, _, name, *_ in rows]
    assert len(set(names)) < len(names)  # repeated names survive: the key tells them apart


# ---- events --------------------------------------------------------------------------------


def test_quirk_event_types_are_not_named_when_the_api_accepts_none(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    """The current docs make `type` optional, defaulting to every supported type, and types
    are added upstream: a request that named the documented ones would miss the others."""
    new = [e["id"] for e in world.retained_events() if e["type"] not in EVENT_TYPES]
    assert new  # the lenient world has types the reference does not document
    _load(api, warehouse, resources=("analytics_events",))
    requests = api.requests_to("/v2/analytics/events")
    assert all(r.status == 200 and r.params["limit"] == ["100"] for r in requests)
    assert not any("type" in r.params or "session_id" in r.params for r in requests)
    # Every room, sessions or not (an error event needs no session), one chain each.
    per_room: dict[str, int] = {}
    for e in world.retained_events():
        per_room[e["data"]["room_id"]] = per_room.get(e["data"]["room_id"], 0) + 1
    assert {r.params["room_id"][0] for r in requests} == {r["id"] for r in world.rooms}
    assert len(requests) == sum(max(1, -(-per_room.get(r["id"], 0) // 100)) for r in world.rooms)
    assert ids(warehouse, "analytics_events") == sorted(e["id"] for e in world.retained_events())


@pytest.mark.parametrize("reading", [STRICT], ids=["strict"], indirect=True)
def test_reading_event_types_required_are_named_after_one_refusal(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    """Where the API demands `type` (the track and recording pages mark it required), the
    run's first request learns it from the 400 and every request names the documented types."""
    _load(api, warehouse, resources=("analytics_events",))
    requests = api.requests_to("/v2/analytics/events")
    refused = [r for r in requests if r.status == 400]
    assert len(refused) == 1 and "type" not in refused[0].params
    named = [r for r in requests if r.status == 200]
    assert all(sorted(r.params["type"]) == sorted(EVENT_TYPES) for r in named)
    assert ids(warehouse, "analytics_events") == sorted(e["id"] for e in world.retained_events())


def test_reading_sessionless_errors_in_rooms_without_sessions_are_loaded(
    warehouse: Path,
) -> None:
    world = generate_world(scale=80, seed=3, reading=STRICT)
    with_sessions = {s["room_id"] for s in world.sessions}
    orphans = [
        e["id"]
        for e in world.retained_events()
        if "session_id" not in e["data"] and e["data"]["room_id"] not in with_sessions
    ]
    assert orphans
    with ApiSimulator(world, reading=STRICT) as sim:
        _load(sim, warehouse, resources=("analytics_events",))
    loaded = {row[0] for row in query(warehouse, "SELECT id FROM analytics.analytics_events")}
    assert set(orphans) <= loaded


def test_events_follow_next_across_pages(world: World, warehouse: Path) -> None:
    busy = world.rooms[0]
    for _ in range(6):  # enough sessions in one room for more than a page of events
        world.add_session(busy, world.clock - timedelta(hours=5), live=False)
        world.add_session(busy, world.clock - timedelta(hours=3), live=False)
    expected = [e["id"] for e in world.retained_events() if e["data"]["room_id"] == busy["id"]]
    assert len(expected) > 100
    with ApiSimulator(world) as sim:
        _load(sim, warehouse, resources=("analytics_events",))
    chain = [
        r for r in sim.requests_to("/v2/analytics/events") if r.params["room_id"] == [busy["id"]]
    ]
    assert len(chain) == -(-len(expected) // 100)
    assert "start" not in chain[0].params and all("start" in r.params for r in chain[1:])
    loaded = query(
        warehouse,
        f"SELECT id FROM analytics.analytics_events WHERE data__room_id = '{busy['id']}'",
    )
    assert sorted(r[0] for r in loaded) == sorted(expected)


# ---- retries -------------------------------------------------------------------------------


def test_reading_429_with_its_wait_only_in_the_message_is_waited_out(
    world: World, warehouse: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The API answers 429 for 3 s, saying so only in its message; the backoff alone
    # (0.01 s here, 4 attempts) would give up long before.
    faults = FaultPlan(scripted={"/v2/templates": [429]}, retry_after=3)
    reading = LENIENT.but(rate_limit_in_message=True)
    with (
        caplog.at_level(logging.WARNING),
        ApiSimulator(world, reading=reading, faults=faults) as sim,
    ):
        _load(sim, warehouse, resources=("templates",))
    limited = [r for r in sim.requests if r.status == 429]
    first_ok = min(r.at for r in sim.requests if r.status == 200 and r.at > limited[0].at)
    assert first_ok - limited[0].at >= 2.9
    assert ids(warehouse, "templates") == sorted(t["id"] for t in world.templates)
    waits = [r.getMessage() for r in caplog.records if "429" in r.getMessage()]
    assert waits and "retry after 3 seconds" in waits[0] and "/v2/templates" in waits[0]


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
def test_proxy_and_no_proxy_of_the_environment_are_obeyed(
    world: World, warehouse: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """The client reads the proxy settings once, not for every request: still obeyed. The
    simulator stands in for the proxy (it answers a request for an absolute URL as a proxy
    relays it), so a host that does not exist is reached through it."""
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with ApiSimulator(world) as proxy:
        monkeypatch.setenv(variable, proxy.base_url)
        run_source(
            warehouse,
            resources=("templates",),
            base_url="http://api.example.invalid",
            api_token=DEFAULT_TOKEN,
        )
    assert proxy.requests_to("/v2/templates")
    assert ids(warehouse, "templates") == sorted(t["id"] for t in world.templates)
    # NO_PROXY naming the API's host: straight to it, never to the (dead) proxy.
    monkeypatch.setenv(variable, f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with ApiSimulator(world) as sim:
        _load(sim, warehouse, resources=("templates",))
    assert sim.requests_to("/v2/templates")


# ---- credentials ---------------------------------------------------------------------------


def test_wrong_token_fails_on_the_first_request_with_401_and_never_shows_the_token(
    api: ApiSimulator, warehouse: Path
) -> None:
    secret = "wrong-token-0123456789"
    with pytest.raises(PipelineStepFailed) as err:
        run_source(warehouse, base_url=api.base_url, api_token=secret)
    assert "401" in str(err.value) and "/v2/" in str(err.value)
    assert secret not in str(err.value) and secret not in repr(err.value)
    assert len(api.requests) <= 6  # the listings start together; none is retried


def test_missing_token_names_api_token_and_sends_nothing(
    api: ApiSimulator, warehouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("API_TOKEN")
    with pytest.raises(PipelineStepFailed) as err:
        run_source(warehouse, base_url=api.base_url)
    assert "API_TOKEN" in str(err.value)
    assert any(isinstance(e, MissingApiTokenError) for e in _chain(err.value))
    assert api.requests == []


# ---- what a run leaves behind --------------------------------------------------------------


def test_quirk_customers_storage_credentials_never_reach_the_warehouse(
    api: ApiSimulator, world: World, warehouse: Path, tmp_path: Path
) -> None:
    """Rooms carry the customer's cloud keys in `recording_info.upload_info.credentials`,
    template settings in `recording.upload.credentials` (and the templates list embeds the
    settings): no key or secret may reach a table, a staging table, dlt's files or its state;
    the rest of each object still loads."""
    secrets = world.credential_values()
    assert secrets
    _load(api, warehouse, pipelines_dir=tmp_path / "dlt")
    assert credentials_leaked(warehouse, world) == []
    files = [f for f in (tmp_path / "dlt").rglob("*") if f.is_file()]
    assert files  # the load packages dlt kept, its schema and state
    assert not [f for f in files for secret in secrets if secret.encode() in f.read_bytes()]
    with_uploads = [r for r in world.rooms if "recording_info" in r]
    located = query(
        warehouse,
        "SELECT id, recording_info__upload_info__location FROM analytics.rooms "
        "WHERE recording_info__upload_info__location IS NOT NULL",
    )
    assert sorted(located) == sorted(
        (r["id"], r["recording_info"]["upload_info"]["location"]) for r in with_uploads
    )
    assert not [c for c in column_names(warehouse, "rooms") if "credential" in c]
    recording = [
        json.loads(r)
        for (r,) in query(
            warehouse,
            "SELECT recording FROM analytics.template_settings WHERE recording IS NOT NULL",
        )
    ]
    assert recording and all("credentials" not in r["upload"] for r in recording)
    assert all(r["upload"]["location"] for r in recording)
    _exact(warehouse, world)


@pytest.mark.parametrize("reading", [STRICT], ids=["strict"], indirect=True)
def test_quirk_unset_times_arrive_as_the_zero_time_and_load_as_null(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    """The API sends the Go zero time `0001-01-01T00:00:00Z` where nothing is set (a live
    peer's `left_at`, a room's `updated_at`, a running recording's `stopped_at`): NULL here."""
    _load(api, warehouse, resources=("rooms", "sessions", "recordings"))
    assert query(warehouse, "SELECT count(*) FROM analytics.rooms WHERE updated_at IS NOT NULL")[
        0
    ] == (0,)
    in_room = {
        pid
        for s in world.sessions
        if s["active"]
        for pid, peer in s["peers"].items()
        if "left_at" not in peer
    }
    assert in_room
    rows = dict(query(warehouse, "SELECT id, left_at FROM analytics.sessions__peers"))
    assert all(rows[pid] is None for pid in in_room)
    years = query(
        warehouse,
        "SELECT min(year(left_at)), min(year(updated_at)) FROM analytics.sessions__peers, "
        "analytics.sessions",
    )
    assert years[0][0] > 2000 and years[0][1] > 2000
    diffs = compare(warehouse, world)
    assert [d for t, d in diffs.items() if not d.exact and t in ("rooms", "sessions__peers")] == []


@pytest.mark.parametrize("fault", [CUT_BODY, STALL_BODY])
def test_quirk_a_connection_that_drops_or_stalls_inside_a_body_is_retried(
    world: World, warehouse: Path, fault: str
) -> None:
    """A body cut half way, or a read that stalls after the headers, is retried under the same
    policy as a dropped connection, and the tables come out whole."""
    faults = FaultPlan(
        scripted={"/v2/rooms": [fault], "/v2/analytics/events": [None, fault, fault]},
        slow_seconds=1.0,
    )
    with ApiSimulator(world, faults=faults) as sim:
        _load(sim, warehouse, request_timeout=0.5)
    hit = [r for r in sim.requests if r.fault == fault]
    assert len(hit) == 3
    for told in hit:  # each asked again, and answered
        again = [r for r in sim.requests if r.path == told.path and r.params == told.params]
        assert again[-1].status == 200 and again[-1].fault is None
    _exact(warehouse, world)


def test_quirk_an_error_names_the_apis_message_and_details(world: World, warehouse: Path) -> None:
    """Errors come as `{"code", "message", "details": [...]}`; the run's error carries both."""
    with (
        ApiSimulator(world, faults=FaultPlan(always={"/v2/recordings": 403})) as sim,
        pytest.raises(PipelineStepFailed) as err,
    ):
        _load(sim, warehouse, resources=("recordings",))
    failed = next(e for e in _chain(err.value) if isinstance(e, ApiHttpError))
    assert failed.status == 403 and failed.details
    message = str(failed)
    assert f"GET {sim.base_url}/v2/recordings answered 403" in message
    assert failed.api_message in message and all(d in message for d in failed.details)
    assert len(sim.requests_to("/v2/recordings")) == 1  # a 4xx is not retried


# ---- a world that moves while a run pages --------------------------------------------------


def test_quirk_a_session_that_starts_while_the_listing_pages_is_never_skipped(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    """S starts just after the live sessions were listed, so the full load sees it in neither
    listing; T starts more than the refresh margin later and ends before the ended sessions are
    listed, so the load sees T. A cursor committed at T would put S before every later listing
    for good. No cursor goes past the API's clock when the listing started."""
    with api.moving():  # no session live: none holds the next run's listing back
        for session in world.sessions:
            if session["active"]:
                world.end_session(session, world.clock)
    idle = [r for r in world.rooms if r["enabled"]]
    started: dict[str, dict[str, Any]] = {}

    def between_the_listings(sim: ApiSimulator, request: RecordedRequest) -> None:
        live_listing = request.path == "/v2/sessions" and request.params.get("active") == ["true"]
        if started or not live_listing:
            return
        started["S"] = sim.world.start_session(idle[0], sim.world.clock, live=True)
        sim.world.clock += timedelta(minutes=10)  # more than the 5-minute refresh margin
        t = sim.world.start_session(idle[1], sim.world.clock - timedelta(minutes=1))
        sim.world.end_session(t, sim.world.clock)
        started["T"] = t

    api.on_request = between_the_listings
    _load(api, warehouse, resources=("sessions",), tables=["sessions"])
    loaded = set(ids(warehouse, "sessions"))
    assert started["T"]["id"] in loaded and started["S"]["id"] not in loaded
    api.on_request = None
    with api.moving():
        world.clock += timedelta(hours=1)
    _load(api, warehouse, resources=("sessions",), tables=["sessions"])  # the next refresh
    assert started["S"]["id"] in set(ids(warehouse, "sessions"))
    with api.moving():
        world.end_session(started["S"], world.clock)
        world.clock += timedelta(hours=1)
    _load(api, warehouse, resources=("sessions",), tables=["sessions"])
    assert (
        dict(query(warehouse, "SELECT id, active FROM analytics.sessions"))[started["S"]["id"]]
        is False
    )


@BOTH_READINGS
def test_quirk_a_load_while_the_world_moves_is_exact_after_the_next_refresh(
    world: World, warehouse: Path, reading: Reading
) -> None:
    """Sessions start and end between the pages of a run (every 5th request moves the world on
    by two minutes); the next refresh, with the world still, makes every table exact. (The
    API's 30 days move with its clock: events that expired while the run paged may or may not
    have been read before they did.)"""
    first_clock = world.clock
    with ApiSimulator(world, reading=reading, move_every=5) as sim:
        _load(sim, warehouse, tables=ACTIVITY)
        assert sim.ticks
        sim.move_every = 0
        with sim.moving():
            world.clock += timedelta(minutes=30)
        _load(sim, warehouse, tables=ACTIVITY)
    diffs = compare(warehouse, world, events_since=first_clock - EVENT_RETENTION)
    # Events, and so their child tables' rows, are checked as sets below.
    skip = ("analytics_events", *NOT_LOADED)
    assert [d for t, d in diffs.items() if not d.exact and not t.startswith(skip)] == []
    loaded = set(ids(warehouse, "analytics_events"))
    lacking = {
        re.search(r"\[([^/\]]+)", example).group(1)  # type: ignore[union-attr]
        for table, diff in diffs.items()
        if table.startswith("analytics_events__")
        for example in diff.examples
    }
    assert not lacking & loaded  # a loaded event has every child row
    assert {e["id"] for e in world.retained_events()} <= loaded <= {e["id"] for e in world.events}


def test_quirk_a_recording_in_a_status_never_final_stops_being_polled_after_the_lookback(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    """`completed` and `failed` are final; a recording left `starting` (or in a status the
    project does not know) is polled hourly for `late_event_lookback_hours` after it last
    changed, then left to the daily sweep."""
    stuck = next(r for r in world.recordings if r["status"] == "completed")
    stuck.update(status="uploading_somewhere_new", updated_at=iso(world.clock))
    session = stuck["session_id"]
    _load(api, warehouse, resources=("recordings",))
    for hours, polled in ((1, True), (30, False)):
        with api.moving():
            world.clock += timedelta(hours=hours)
        api.reset_requests()
        _load(api, warehouse, resources=("recordings",))
        asked = {r.params.get("session_id", [""])[0] for r in api.requests_to("/v2/recordings")}
        assert (session in asked) is polled, hours


def test_quirk_settings_json_columns_keep_each_objects_own_keys(
    world: World, warehouse: Path
) -> None:
    """`retry` is often `{}` and sometimes `{"maxAttempts": 3}`: each row holds its own object
    (DuckDB's jsonl reader would make `{}` a `{"maxAttempts": null}`)."""
    first, second, *_ = world.templates
    first["settings"]["retry"] = {"maxAttempts": 3}
    second["settings"]["retry"] = {}
    with ApiSimulator(world) as sim:
        _load(sim, warehouse, resources=("templates", "template_settings"))
    rows = dict(query(warehouse, "SELECT template_id, retry FROM analytics.template_settings"))
    assert json.loads(rows[first["id"]]) == {"maxAttempts": 3}
    assert rows[second["id"]] in (None, "{}")
    assert compare(warehouse, world)["template_settings"].exact
