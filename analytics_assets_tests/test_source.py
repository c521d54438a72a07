"""The `analytics_api` source against the simulator, one API quirk per test (plain dlt).

Each `test_quirk_...` names the behaviour of the API it covers; `test_reading_...` tests cover a
behaviour the reference leaves open, under the reading that exhibits it.
"""

from __future__ import annotations

import inspect
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
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
    World,
    generate_world,
)
from analytics_assets.simulator.expected import compare
from analytics_assets.source import (
    ApiUnreachableError,
    MissingApiTokenError,
    RepeatingCursorError,
    analytics_api,
)
from analytics_assets.source.run import Run, RunSettings
from analytics_assets.source.settings import EVENT_TYPES, RETRY_STATUSES
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


def test_quirk_final_list_page_carries_last_then_one_empty_page(loaded: Loaded) -> None:
    world, api = loaded.world, loaded.sim
    pages = -(-len(world.rooms) // 100)
    rooms = _plain_room_listing(api)
    assert len(rooms) == pages + 1  # the full pages, then the empty one that ends the chain
    assert [r.params.get("start") for r in rooms][1:] == [
        [world.rooms[min(100 * i, len(world.rooms)) - 1]["id"]] for i in range(1, pages + 1)
    ]
    assert all(r.params["limit"] == ["100"] for r in rooms)


def test_quirk_final_list_page_without_last_needs_no_empty_page(
    list_world: World, warehouse: Path
) -> None:
    world = list_world
    with ApiSimulator(world, reading=LENIENT.but(final_page="no_last")) as sim:
        _load(sim, warehouse, resources=("rooms",))
    assert len(_plain_room_listing(sim)) == -(-len(world.rooms) // 100)
    assert ids(warehouse, "rooms") == sorted(r["id"] for r in world.rooms)


def test_reading_start_inclusive_ends_when_a_page_brings_nothing_new(
    list_world: World, warehouse: Path
) -> None:
    world = list_world
    with ApiSimulator(world, reading=LENIENT.but(start_inclusive=True)) as sim:
        _load(sim, warehouse, resources=("rooms",))
    rooms = _plain_room_listing(sim)
    # 120 rooms: 100, then 21 (one repeated), then only the repeated one: the end.
    assert [len(r.params.get("start", [])) for r in rooms] == [0, 1, 1]
    assert ids(warehouse, "rooms") == sorted(r["id"] for r in world.rooms)  # each once
    assert query(warehouse, "SELECT count(*) FROM analytics.rooms") == [(len(world.rooms),)]


def test_reading_newest_first_changes_nothing(world: World, warehouse: Path) -> None:
    with ApiSimulator(world, reading=LENIENT.but(newest_first=True)) as sim:
        _load(sim, warehouse)
    _exact(warehouse, world)


@pytest.mark.parametrize("broken", ["ignore_start", "stuck_cursor"])
def test_quirk_a_cursor_that_loops_stops_with_an_error_naming_the_endpoint(
    list_world: World, warehouse: Path, broken: str
) -> None:
    with (
        ApiSimulator(list_world, **{broken: True}) as sim,  # type: ignore[arg-type]
        pytest.raises(PipelineStepFailed) as err,
    ):
        _load(sim, warehouse)
    assert any(isinstance(e, RepeatingCursorError) for e in _chain(err.value))
    looping = re.search(r"GET http://127\.0\.0\.1:\d+(/v2/\w+)", str(err.value))
    assert looping
    # It stopped at the page that showed the loop (other tables' requests ran meanwhile).
    assert len([r for r in sim.requests if r.path == looping.group(1)]) <= 4


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


@pytest.mark.parametrize(
    "reading", [LENIENT, LENIENT.but(events_type_required=True)], indirect=True
)
def test_quirk_events_are_asked_per_room_with_every_documented_type(
    api: ApiSimulator, world: World, warehouse: Path, reading: Reading
) -> None:
    _load(api, warehouse, resources=("analytics_events",))
    requests = api.requests_to("/v2/analytics/events")
    assert all(r.status == 200 and r.params["limit"] == ["100"] for r in requests)
    assert all(sorted(r.params["type"]) == sorted(EVENT_TYPES) for r in requests)
    assert all("cursor" not in r.params and "session_id" not in r.params for r in requests)
    # Every room, sessions or not (an error event needs no session), one chain each.
    per_room: dict[str, int] = {}
    for e in world.retained_events():
        per_room[e["data"]["room_id"]] = per_room.get(e["data"]["room_id"], 0) + 1
    assert {r.params["room_id"][0] for r in requests} == {r["id"] for r in world.rooms}
    assert len(requests) == sum(max(1, -(-per_room.get(r["id"], 0) // 100)) for r in world.rooms)
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


def test_retry_policy_defaults_are_the_specification() -> None:
    params = inspect.signature(analytics_api.__wrapped__).parameters  # type: ignore[attr-defined]
    assert params["request_max_attempts"].default == 4  # 3 retries
    assert params["request_backoff_factor"].default == 2.0
    assert params["rate_limit_max_wait"].default >= 60
    assert RETRY_STATUSES == (429, 500, 502, 503, 504)


def test_429_with_retry_after_is_retried_and_honoured(world: World, warehouse: Path) -> None:
    faults = FaultPlan(scripted={"/v2/templates": [429]}, retry_after=1)
    with ApiSimulator(world, faults=faults) as sim:
        _load(sim, warehouse, resources=("templates",))
    told, retried = sim.requests_to("/v2/templates")[:2]
    assert (told.status, retried.status) == (429, 200)
    # Honoured: the backoff alone is 0.01 s here, so only Retry-After explains the wait.
    assert retried.at - told.at >= 0.95
    assert ids(warehouse, "templates") == sorted(t["id"] for t in world.templates)


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


def test_a_429_longer_than_the_cap_fails_naming_the_endpoint(world: World, warehouse: Path) -> None:
    faults = FaultPlan(always={"/v2/recordings": 429}, retry_after=1)
    with ApiSimulator(world, faults=faults) as sim, pytest.raises(PipelineStepFailed) as err:
        _load(sim, warehouse, resources=("recordings",), rate_limit_max_wait=2.5)
    message = str(err.value)
    assert "429" in message and "/v2/recordings" in message and "rate_limit_max_wait" in message
    assert 2 <= len(sim.requests_to("/v2/recordings")) <= 4


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_transient_5xx_then_success_loads_everything(
    world: World, warehouse: Path, status: int
) -> None:
    faults = FaultPlan(scripted={"/v2/sessions": [status]})
    with ApiSimulator(world, faults=faults) as sim:
        _load(sim, warehouse, resources=("sessions",))
    assert [r.status for r in sim.requests_to("/v2/sessions")][:2] == [status, 200]
    assert ids(warehouse, "sessions") == sorted(s["id"] for s in world.sessions)


def test_endpoint_that_always_503s_is_tried_exactly_4_times_then_fails_naming_it(
    world: World, warehouse: Path, caplog: pytest.LogCaptureFixture
) -> None:
    faults = FaultPlan(always={"/v2/recordings": 503})
    with (
        caplog.at_level(logging.WARNING),
        ApiSimulator(world, faults=faults) as sim,
        pytest.raises(PipelineStepFailed) as err,
    ):
        _load(sim, warehouse, resources=("recordings",))
    assert len(sim.requests_to("/v2/recordings")) == 4
    message = str(err.value)
    assert "503" in message and "/v2/recordings" in message
    waits = [r.getMessage() for r in caplog.records if "/v2/recordings" in r.getMessage()]
    assert [re.search(r"attempt (\d) of 4", w).group(1) for w in waits] == ["2", "3", "4"]  # type: ignore[union-attr]


def test_400_is_not_retried(world: World, warehouse: Path) -> None:
    faults = FaultPlan(always={"/v2/rooms": 400})
    with ApiSimulator(world, faults=faults) as sim, pytest.raises(PipelineStepFailed):
        _load(sim, warehouse, resources=("rooms",))
    assert len(sim.requests_to("/v2/rooms")) == 1


def test_unreachable_host_fails_naming_host_and_endpoint(warehouse: Path) -> None:
    port = free_port()  # nobody listens there
    started = time.monotonic()
    with pytest.raises(PipelineStepFailed) as err:
        run_source(warehouse, base_url=f"http://127.0.0.1:{port}", api_token=DEFAULT_TOKEN)
    unreachable = next(e for e in _chain(err.value) if isinstance(e, ApiUnreachableError))
    assert str(unreachable).startswith(f"cannot reach 127.0.0.1:{port} for GET ")
    assert "/v2/" in str(unreachable) and "Connection refused" in str(unreachable)
    assert time.monotonic() - started < 10


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


def test_the_client_takes_proxies_and_ca_bundle_from_the_environment_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What requests would read for every request, read when the client is made: the CA
    bundle, `ALL_PROXY`, and `NO_PROXY` naming the API's host (requests' own rules, once)."""
    from analytics_assets.source.client import _session_for

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    bundle = tmp_path / "ca.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.setenv("ALL_PROXY", "http://proxy.internal:3128")
    session = _session_for("https://api.100ms.live")
    assert session.verify == str(bundle)
    assert session.proxies.get("all") == "http://proxy.internal:3128"
    monkeypatch.setenv("NO_PROXY", "api.100ms.live")
    assert not _session_for("https://api.100ms.live").proxies
    assert _session_for("https://other.example").proxies
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    assert _session_for("https://api.100ms.live").verify is True


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


def _fan_out_run(workers: int = 3) -> Run:
    """A run whose client is never called: only its fan-out is used."""
    client = SimpleNamespace(workers=workers)
    settings = RunSettings(
        tables=frozenset(),
        full_refresh=False,
        sweep=False,
        margin=timedelta(0),
        lookback=timedelta(0),
        retention=timedelta(0),
        start_date=None,
    )
    return Run(client, settings)  # type: ignore[arg-type]


def _pool_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("analytics_api")]


def test_fan_out_pools_are_shut_down_when_a_run_ends_or_stops_early() -> None:
    """A long-lived code server runs many runs: none may leave idle worker threads behind,
    whether the fan-out was read to the end or abandoned (a failed run)."""
    run = _fan_out_run()
    assert sorted(run.fan_out(lambda n: n * n, range(20))) == [n * n for n in range(20)]
    assert _pool_threads() == []

    def slow(n: int) -> int:
        time.sleep(0.01)
        return n

    started = run.fan_out(slow, range(50))
    next(started)
    assert _pool_threads()  # working
    started.close()  # type: ignore[attr-defined]  # (a generator) what a failing run's gets
    assert _pool_threads() == []
