"""The `analytics_api` source against the simulator, one API quirk per test (plain dlt)."""

from __future__ import annotations

import inspect
import re
from datetime import timedelta
from pathlib import Path

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from analytics_assets.simulator import DEFAULT_TOKEN, ApiSimulator, FaultPlan, World
from analytics_assets.source import (
    MissingApiTokenError,
    RepeatingCursorError,
    analytics_api,
)
from analytics_assets.source.settings import RETRY_STATUSES
from analytics_assets_tests.conftest import column_names, ids, query, run_source

LIST_ENDPOINTS = ("/v2/rooms", "/v2/sessions", "/v2/templates", "/v2/recordings")


def _load(sim: ApiSimulator, db: Path, **kwargs: object) -> None:
    run_source(db, base_url=sim.base_url, api_token=DEFAULT_TOKEN, **kwargs)


def test_every_table_holds_exactly_the_api_rows_once(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    _load(api, warehouse)
    assert ids(warehouse, "rooms") == sorted(r["id"] for r in world.rooms)
    assert ids(warehouse, "sessions") == sorted(s["id"] for s in world.sessions)
    assert ids(warehouse, "templates") == sorted(t["id"] for t in world.templates)
    assert ids(warehouse, "recordings") == sorted(r["id"] for r in world.recordings)
    assert ids(warehouse, "analytics_events") == sorted(e["id"] for e in world.retained_events())
    assert ids(warehouse, "template_settings", "template_id") == sorted(
        t["id"] for t in world.templates
    )


def test_quirk_final_list_page_carries_last_then_one_empty_page(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    _load(api, warehouse)
    pages = -(-len(world.rooms) // 100)
    rooms = api.requests_to("/v2/rooms")
    assert len(rooms) == pages + 1  # the full pages, then the empty one that ends the chain
    assert [r.params.get("start") for r in rooms][1:] == [
        [world.rooms[min(100 * i, len(world.rooms)) - 1]["id"]] for i in range(1, pages + 1)
    ]
    assert all(r.params["limit"] == ["100"] for r in rooms)


def test_quirk_final_list_page_without_last_needs_no_empty_page(
    world: World, warehouse: Path
) -> None:
    with ApiSimulator(world, final_page="no_last") as sim:
        _load(sim, warehouse)
    assert len(sim.requests_to("/v2/rooms")) == -(-len(world.rooms) // 100)
    assert ids(warehouse, "rooms") == sorted(r["id"] for r in world.rooms)


def test_quirk_repeating_cursor_stops_with_an_error_naming_the_endpoint(
    world: World, warehouse: Path
) -> None:
    with ApiSimulator(world, repeat_cursor=True) as sim, pytest.raises(PipelineStepFailed) as err:
        _load(sim, warehouse)
    assert "/v2/" in str(err.value) and "twice" in str(err.value)
    assert isinstance(err.value.__context__ or err.value.__cause__, Exception)
    assert any(isinstance(e, RepeatingCursorError) for e in _chain(err.value))
    assert len(sim.requests) < 20


def test_quirk_active_peers_object_becomes_rows_with_their_room(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    _load(api, warehouse)
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


def test_quirk_peers_are_fetched_only_for_rooms_with_a_live_session(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    _load(api, warehouse)
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
        _load(sim, warehouse)
    rooms = {r[0] for r in query(warehouse, "SELECT room_id FROM analytics.active_room_peers")}
    assert rooms == set(others)


def test_quirk_live_room_with_an_empty_peers_object_gives_no_rows(
    world: World, warehouse: Path
) -> None:
    emptied = next(s for s in world.sessions if s["active"])
    for peer in emptied["peers"].values():
        peer["left_at"] = peer["joined_at"]  # everyone left; the session is still live
    with ApiSimulator(world) as sim:
        _load(sim, warehouse)
    assert any(r.status == 200 for r in sim.requests_to(f"/v2/active-rooms/{emptied['room_id']}"))
    rooms = {r[0] for r in query(warehouse, "SELECT room_id FROM analytics.active_room_peers")}
    assert emptied["room_id"] not in rooms and rooms


def test_quirk_session_peers_keyed_by_id_become_child_rows(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    _load(api, warehouse)
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


def test_no_table_has_a_column_named_after_an_id(api: ApiSimulator, warehouse: Path) -> None:
    _load(api, warehouse)
    id_like = re.compile(r"[0-9a-f]{24}|[0-9a-f]{8}_?[0-9a-f]{4}_?[0-9a-f]{4}")
    columns = query(
        warehouse,
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'analytics'",
    )
    assert not [c for c in columns if id_like.search(c[1])]
    assert len(columns) < 400  # bounded: grows with field names, not with data


def test_quirk_settings_have_no_id_and_are_keyed_by_template(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    _load(api, warehouse)
    rows = dict(query(warehouse, "SELECT template_id, region FROM analytics.template_settings"))
    assert rows == {t["id"]: t["settings"]["region"] for t in world.templates}
    assert {"region", "retry", "recording"} <= set(column_names(warehouse, "template_settings"))


def test_quirk_destinations_map_key_is_the_identity_names_repeat(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    _load(api, warehouse)
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


def test_quirk_events_need_room_id_so_the_first_load_fetches_them_per_room_with_next(
    api: ApiSimulator, world: World, warehouse: Path
) -> None:
    _load(api, warehouse)
    requests = api.requests_to("/v2/analytics/events")
    assert all(r.status == 200 and r.params["limit"] == ["100"] for r in requests)
    assert all("cursor" not in r.params and "session_id" not in r.params for r in requests)
    # Only rooms with sessions can have events: one chain per such room, paged by `next`.
    per_room: dict[str, int] = {}
    for e in world.retained_events():
        per_room[e["data"]["room_id"]] = per_room.get(e["data"]["room_id"], 0) + 1
    rooms_with_sessions = {s["room_id"] for s in world.sessions}
    assert {r.params["room_id"][0] for r in requests} == rooms_with_sessions
    assert len(requests) == sum(max(1, -(-per_room.get(r, 0) // 100)) for r in rooms_with_sessions)
    assert ids(warehouse, "analytics_events") == sorted(e["id"] for e in world.retained_events())


def test_events_follow_next_across_pages(world: World, warehouse: Path) -> None:
    busy = world.rooms[0]
    for _ in range(6):  # enough sessions in one room for more than a page of events
        world.add_session(busy, world.clock - timedelta(hours=5), live=False)
        world.add_session(busy, world.clock - timedelta(hours=3), live=False)
    expected = [e["id"] for e in world.retained_events() if e["data"]["room_id"] == busy["id"]]
    assert len(expected) > 100
    with ApiSimulator(world) as sim:
        _load(sim, warehouse)
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
    assert RETRY_STATUSES == (429, 500, 502, 503, 504)


def test_429_with_retry_after_is_retried_and_honoured(world: World, warehouse: Path) -> None:
    faults = FaultPlan(scripted={"/v2/templates": [429]}, retry_after=1)
    with ApiSimulator(world, faults=faults) as sim:
        _load(sim, warehouse)
    told, retried = sim.requests_to("/v2/templates")[:2]
    assert (told.status, retried.status) == (429, 200)
    # Honoured: the backoff alone is 0.01 s here, so only Retry-After explains the wait.
    assert retried.at - told.at >= 0.95
    assert ids(warehouse, "templates") == sorted(t["id"] for t in world.templates)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_transient_5xx_then_success_loads_everything(
    world: World, warehouse: Path, status: int
) -> None:
    faults = FaultPlan(scripted={"/v2/sessions": [status]})
    with ApiSimulator(world, faults=faults) as sim:
        _load(sim, warehouse)
    assert [r.status for r in sim.requests_to("/v2/sessions")][:2] == [status, 200]
    assert ids(warehouse, "sessions") == sorted(s["id"] for s in world.sessions)


def test_endpoint_that_always_503s_is_tried_exactly_4_times_then_fails_naming_it(
    world: World, warehouse: Path
) -> None:
    faults = FaultPlan(always={"/v2/recordings": 503})
    with ApiSimulator(world, faults=faults) as sim, pytest.raises(PipelineStepFailed) as err:
        _load(sim, warehouse)
    assert len(sim.requests_to("/v2/recordings")) == 4
    message = str(err.value)
    assert "503" in message and "/v2/recordings" in message


def test_400_is_not_retried(world: World, warehouse: Path) -> None:
    faults = FaultPlan(always={"/v2/rooms": 400})
    with ApiSimulator(world, faults=faults) as sim, pytest.raises(PipelineStepFailed):
        _load(sim, warehouse)
    assert len(sim.requests_to("/v2/rooms")) == 1


# ---- credentials ---------------------------------------------------------------------------


def test_wrong_token_fails_on_the_first_request_with_401_and_never_shows_the_token(
    api: ApiSimulator, warehouse: Path
) -> None:
    secret = "wrong-token-0123456789"
    with pytest.raises(PipelineStepFailed) as err:
        run_source(warehouse, base_url=api.base_url, api_token=secret)
    assert "401" in str(err.value) and "/v2/" in str(err.value)
    assert secret not in str(err.value) and secret not in repr(err.value)
    assert len(api.requests) <= 4  # the lists start together; none is retried


def test_missing_token_names_api_token_and_sends_nothing(
    api: ApiSimulator, warehouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("API_TOKEN")
    with pytest.raises(PipelineStepFailed) as err:
        run_source(warehouse, base_url=api.base_url)
    assert "API_TOKEN" in str(err.value)
    assert any(isinstance(e, MissingApiTokenError) for e in _chain(err.value))
    assert api.requests == []


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen
