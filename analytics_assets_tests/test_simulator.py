"""The simulator answers as the API reference describes, under each reading; the other tests
rely on it. These tests speak HTTP to it directly, never through the project's client."""

from __future__ import annotations

import time
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import requests

from analytics_assets.simulator import (
    DEFAULT_TOKEN,
    LENIENT,
    STRICT,
    ApiSimulator,
    FaultPlan,
    World,
    generate_world,
)
from analytics_assets.simulator.server import EVENT_TYPES
from analytics_assets.simulator.world import ENTRY_ERRORS, parse_iso

AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}


def get(sim: ApiSimulator, path: str, **params: Any) -> requests.Response:
    return requests.get(sim.base_url + path, params=params, headers=AUTH, timeout=5)


def page_through(sim: ApiSimulator, path: str, limit: int = 50, **params: Any) -> list[dict]:
    """Every page of a list, following `last` naively, until a page brings nothing."""
    pages: list[dict[str, Any]] = []
    start = None
    while len(pages) < 100:
        body = get(sim, path, limit=limit, **params, **({"start": start} if start else {})).json()
        pages.append(body)
        if not body["data"] or "last" not in body or body.get("last") == start:
            break
        start = body["last"]
    return pages


def test_same_seed_and_scale_give_the_same_world() -> None:
    a, b = generate_world(scale=30, seed=5), generate_world(scale=30, seed=5)
    assert a.rooms == b.rooms and a.sessions == b.sessions and a.events == b.events
    assert generate_world(scale=30, seed=6).rooms != a.rooms


def test_world_has_live_rooms_ended_sessions_and_expired_events(world: World) -> None:
    assert any(s["active"] for s in world.sessions)
    assert any(not s["active"] for s in world.sessions)
    assert 0 < len(world.retained_events()) < len(world.events)


def test_requests_without_the_bearer_token_get_401(api: ApiSimulator) -> None:
    response = requests.get(api.base_url + "/v2/rooms", timeout=5)
    assert response.status_code == 401
    assert response.json()["code"] == 401
    wrong = requests.get(api.base_url + "/v2/rooms", headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 401


def test_every_answer_is_dated_by_the_simulated_clock(api: ApiSimulator, world: World) -> None:
    assert parsedate_to_datetime(get(api, "/v2/rooms").headers["Date"]) == world.clock


# ---- lists ---------------------------------------------------------------------------------


def test_list_final_page_carries_last_and_is_followed_by_an_empty_page(
    api: ApiSimulator, world: World
) -> None:
    pages = page_through(api, "/v2/rooms")
    seen = [room["id"] for body in pages for room in body["data"]]
    assert seen == [room["id"] for room in world.rooms]
    assert pages[-1]["data"] == [] and "last" not in pages[-1]
    assert all(body["last"] == body["data"][-1]["id"] for body in pages[:-1])
    assert len(pages) == -(-len(world.rooms) // 50) + 1


def test_list_without_last_on_the_final_page(world: World) -> None:
    with ApiSimulator(world, reading=LENIENT.but(final_page="no_last")) as sim:
        body = get(sim, "/v2/rooms", limit=100, start=world.rooms[-5]["id"]).json()
    assert len(body["data"]) == 4 and "last" not in body


def test_reading_start_inclusive_repeats_the_named_object_and_never_ends_empty(
    world: World,
) -> None:
    with ApiSimulator(world, reading=LENIENT.but(start_inclusive=True)) as sim:
        first = get(sim, "/v2/rooms", limit=50).json()
        second = get(sim, "/v2/rooms", limit=50, start=first["last"]).json()
        assert second["data"][0]["id"] == first["last"]
        final = get(sim, "/v2/rooms", limit=50, start=world.rooms[-1]["id"]).json()
    # The page after the last holds only the object `start` names, with `last` unchanged.
    assert [r["id"] for r in final["data"]] == [world.rooms[-1]["id"]]
    assert final["last"] == world.rooms[-1]["id"]


def test_reading_newest_first(world: World) -> None:
    with ApiSimulator(world, reading=LENIENT.but(newest_first=True)) as sim:
        pages = page_through(sim, "/v2/rooms")
    seen = [room["id"] for body in pages for room in body["data"]]
    assert seen == [room["id"] for room in reversed(world.rooms)]


def test_reading_rooms_enabled_by_default_hides_disabled_rooms(world: World) -> None:
    disabled = {r["id"] for r in world.rooms if not r["enabled"]}
    assert disabled
    with ApiSimulator(world, reading=LENIENT.but(rooms_enabled_by_default=True)) as sim:
        default = {r["id"] for body in page_through(sim, "/v2/rooms") for r in body["data"]}
        only_disabled = {
            r["id"]
            for body in page_through(sim, "/v2/rooms", enabled="false")
            for r in body["data"]
        }
    assert default == {r["id"] for r in world.rooms} - disabled
    assert only_disabled == disabled
    with ApiSimulator(world) as sim:  # lenient: the default listing holds every room
        assert len({r["id"] for b in page_through(sim, "/v2/rooms") for r in b["data"]}) == len(
            world.rooms
        )


def test_reading_sessions_active_by_default_hides_ended_sessions(world: World) -> None:
    live = {s["id"] for s in world.sessions if s["active"]}
    with ApiSimulator(world, reading=LENIENT.but(sessions_active_by_default=True)) as sim:
        default = {s["id"] for b in page_through(sim, "/v2/sessions") for s in b["data"]}
        listed = page_through(sim, "/v2/sessions", active="false")
        ended = {s["id"] for body in listed for s in body["data"]}
    assert default == live
    assert ended == {s["id"] for s in world.sessions} - live


@pytest.mark.parametrize("limit", [0, 9, 101, "ten"])
def test_list_limit_outside_10_to_100_is_a_400(api: ApiSimulator, limit: Any) -> None:
    assert get(api, "/v2/rooms", limit=limit).status_code == 400


def test_list_filters(api: ApiSimulator, world: World) -> None:
    live = get(api, "/v2/sessions", active="true", limit=100).json()["data"]
    assert {s["id"] for s in live} == {s["id"] for s in world.sessions if s["active"]}
    after = world.rooms[len(world.rooms) // 2]["created_at"]
    rooms = get(api, "/v2/rooms", after=after, limit=100).json()["data"]
    assert rooms and all(r["created_at"] >= after for r in rooms)
    recorded = world.recordings[0]
    by_session = get(api, "/v2/recordings", session_id=recorded["session_id"]).json()["data"]
    assert recorded["id"] in {r["id"] for r in by_session}
    assert {r["session_id"] for r in by_session} == {recorded["session_id"]}


# ---- events --------------------------------------------------------------------------------


def test_events_require_room_id(api: ApiSimulator) -> None:
    response = get(api, "/v2/analytics/events")
    assert response.status_code == 400
    assert "room_id" in response.json()["message"]


def test_reading_events_type_required(world: World) -> None:
    room_id = world.retained_events()[0]["data"]["room_id"]
    with ApiSimulator(world, reading=LENIENT.but(events_type_required=True)) as sim:
        assert get(sim, "/v2/analytics/events", room_id=room_id).status_code == 400
        typed = get(sim, "/v2/analytics/events", room_id=room_id, type=list(EVENT_TYPES))
    assert typed.status_code == 200 and typed.json()["total"] > 0
    with ApiSimulator(world) as sim:
        assert get(sim, "/v2/analytics/events", room_id=room_id).status_code == 200


def test_events_page_with_next_until_it_is_empty(api: ApiSimulator, world: World) -> None:
    retained = world.retained_events()
    room_id = max(
        (r["id"] for r in world.rooms),
        key=lambda room_id: sum(e["data"]["room_id"] == room_id for e in retained),
    )
    expected = [e["id"] for e in retained if e["data"]["room_id"] == room_id]
    seen, start = [], None
    while True:
        cursor: dict[str, str] = {"start": start} if start else {}
        body = get(api, "/v2/analytics/events", room_id=room_id, limit=3, **cursor).json()
        seen += [e["id"] for e in body["events"]]
        assert body["total"] == len(expected)
        if not body["next"]:
            break
        start = body["next"]
    assert seen == expected and len(expected) > 3


def test_reading_sessionless_errors_are_missed_by_a_session_filter() -> None:
    world = generate_world(scale=80, seed=3, reading=STRICT)
    orphans = [e for e in world.retained_events() if "session_id" not in e["data"]]
    assert orphans and all(e["type"] in ENTRY_ERRORS for e in orphans)
    with_sessions = {s["room_id"] for s in world.sessions}
    assert any(e["data"]["room_id"] not in with_sessions for e in orphans)
    orphan = orphans[0]
    room_id = orphan["data"]["room_id"]
    with ApiSimulator(world, reading=STRICT) as sim:
        whole = get(sim, "/v2/analytics/events", room_id=room_id, type=list(EVENT_TYPES), limit=100)
        assert orphan["id"] in {e["id"] for e in whole.json()["events"]}
        for session in [s for s in world.sessions if s["room_id"] == room_id]:
            by_session = get(
                sim,
                "/v2/analytics/events",
                room_id=room_id,
                session_id=session["id"],
                type=list(EVENT_TYPES),
                limit=100,
            ).json()["events"]
            assert orphan["id"] not in {e["id"] for e in by_session}
    lenient = generate_world(scale=80, seed=3)
    assert all("session_id" in e["data"] for e in lenient.events)


def test_reading_late_events_are_listed_hours_after_their_session_ended() -> None:
    world = generate_world(scale=80, seed=3, reading=STRICT)
    live = [s for s in world.sessions if s["active"]]
    recorded = {r["session_id"] for r in world.recordings}
    target = next(s for s in live if s["id"] in recorded)
    recording = next(r for r in world.recordings if r["session_id"] == target["id"])
    world._end_session(target, world.clock)
    assert recording["status"] == "running" and "stopped_at" in recording
    beam = next(u.event for u in world.uploads if u.recording_id == recording["id"])
    delay = parse_iso(beam["timestamp"]) - parse_iso(target["updated_at"])
    assert timedelta(minutes=10) <= delay <= timedelta(hours=20)
    assert beam["id"] not in {e["id"] for e in world.events}
    world.advance(activity=0.01, hours=21)
    assert beam["id"] in {e["id"] for e in world.events}
    assert recording["status"] == "completed"


# ---- peers, templates ----------------------------------------------------------------------


def test_active_room_peers_are_keyed_by_peer_id_and_404_when_not_live(
    api: ApiSimulator, world: World
) -> None:
    live = next(s for s in world.sessions if s["active"])
    peers = get(api, f"/v2/active-rooms/{live['room_id']}/peers").json()["peers"]
    assert isinstance(peers, dict) and peers
    assert all(key == peer["id"] for key, peer in peers.items())
    idle = next(r for r in world.rooms if world.live_session(r["id"]) is None)
    assert get(api, f"/v2/active-rooms/{idle['id']}/peers").status_code == 404


def test_settings_and_destinations_are_bare_objects(api: ApiSimulator, world: World) -> None:
    template = world.templates[0]
    settings = get(api, f"/v2/templates/{template['id']}/settings").json()
    assert "id" not in settings and "region" in settings
    destinations = get(api, f"/v2/templates/{template['id']}/destinations").json()
    assert set(destinations) == {
        "browserRecordings",
        "rtmpDestinations",
        "hlsDestinations",
        "transcriptions",
    }


# ---- faults --------------------------------------------------------------------------------


def test_faults_scripted_always_and_recorded(world: World) -> None:
    faults = FaultPlan(scripted={"/v2/rooms": [429, 503]}, always={"/v2/recordings": 502})
    with ApiSimulator(world, faults=faults) as sim:
        first = get(sim, "/v2/rooms")
        assert first.status_code == 429 and first.headers["Retry-After"] == "1"
        assert get(sim, "/v2/rooms").status_code == 503
        assert get(sim, "/v2/rooms").status_code == 200
        assert [get(sim, "/v2/recordings").status_code for _ in range(3)] == [502] * 3
    assert [r.status for r in sim.requests_to("/v2/rooms")] == [429, 503, 200]


def test_reading_rate_limit_in_message_holds_429_until_the_wait_has_passed(world: World) -> None:
    faults = FaultPlan(scripted={"/v2/rooms": [429]}, retry_after=2)
    with ApiSimulator(world, reading=STRICT, faults=faults) as sim:
        told = get(sim, "/v2/rooms")
        assert told.status_code == 429 and "Retry-After" not in told.headers
        assert told.json()["message"] == "rate limit exceeded, retry after 2 seconds"
        again = get(sim, "/v2/templates")  # any endpoint, while the window lasts
        assert again.status_code == 429 and "retry after" in again.json()["message"]
        time.sleep(2.05)
        assert get(sim, "/v2/rooms").status_code == 200


def test_broken_cursors(world: World) -> None:
    with ApiSimulator(world, ignore_start=True) as sim:
        first = get(sim, "/v2/rooms", limit=50).json()
        again = get(sim, "/v2/rooms", limit=50, start=first["last"]).json()
        assert again == first
    with ApiSimulator(world, stuck_cursor=True) as sim:
        first = get(sim, "/v2/rooms", limit=50).json()
        second = get(sim, "/v2/rooms", limit=50, start=first["last"]).json()
        assert second["last"] == first["last"] and second["data"] != first["data"]
