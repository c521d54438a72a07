"""The simulator answers as the API reference describes; the other tests rely on it."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from analytics_assets.simulator import DEFAULT_TOKEN, ApiSimulator, FaultPlan, World, generate_world

AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}


def get(sim: ApiSimulator, path: str, **params: Any) -> requests.Response:
    return requests.get(sim.base_url + path, params=params, headers=AUTH, timeout=5)


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


def test_list_final_page_carries_last_and_is_followed_by_an_empty_page(
    api: ApiSimulator, world: World
) -> None:
    seen, start, pages = [], None, 0
    while True:
        params: dict[str, Any] = {"limit": 50, **({"start": start} if start else {})}
        body = get(api, "/v2/rooms", **params).json()
        pages += 1
        seen += [room["id"] for room in body["data"]]
        if not body["data"]:
            assert "last" not in body
            break
        assert body["last"] == body["data"][-1]["id"]
        start = body["last"]
    assert seen == [room["id"] for room in world.rooms]
    assert pages == -(-len(world.rooms) // 50) + 1


def test_list_without_last_on_the_final_page(world: World) -> None:
    with ApiSimulator(world, final_page="no_last") as sim:
        body = get(sim, "/v2/rooms", limit=100, start=world.rooms[-5]["id"]).json()
    assert len(body["data"]) == 4 and "last" not in body


@pytest.mark.parametrize("limit", [0, 9, 101, "ten"])
def test_list_limit_outside_10_to_100_is_a_400(api: ApiSimulator, limit: Any) -> None:
    assert get(api, "/v2/rooms", limit=limit).status_code == 400


def test_list_filters(api: ApiSimulator, world: World) -> None:
    live = get(api, "/v2/sessions", active="true", limit=100).json()["data"]
    assert {s["id"] for s in live} == {s["id"] for s in world.sessions if s["active"]}
    after = world.rooms[len(world.rooms) // 2]["created_at"]
    rooms = get(api, "/v2/rooms", after=after, limit=100).json()["data"]
    assert rooms and all(r["created_at"] >= after for r in rooms)


def test_events_require_room_id(api: ApiSimulator) -> None:
    response = get(api, "/v2/analytics/events")
    assert response.status_code == 400
    assert "room_id" in response.json()["message"]


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


def test_faults_scripted_always_and_recorded(world: World) -> None:
    faults = FaultPlan(scripted={"/v2/rooms": [429, 503]}, always={"/v2/recordings": 502})
    with ApiSimulator(world, faults=faults) as sim:
        first = get(sim, "/v2/rooms")
        assert first.status_code == 429 and first.headers["Retry-After"] == "1"
        assert get(sim, "/v2/rooms").status_code == 503
        assert get(sim, "/v2/rooms").status_code == 200
        assert [get(sim, "/v2/recordings").status_code for _ in range(3)] == [502] * 3
    assert [r.status for r in sim.requests_to("/v2/rooms")] == [429, 503, 200]
