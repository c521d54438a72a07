"""The simulator answers as the API reference describes, under each reading; the other tests
rely on it. These tests speak HTTP to it directly, never through the project's client."""

from __future__ import annotations

import collections
import time
import uuid
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import jwt
import pytest
import requests

from analytics_assets.simulator import (
    DEFAULT_TOKEN,
    LENIENT,
    STRICT,
    ApiSimulator,
    FaultPlan,
    RecordedRequest,
    World,
    generate_world,
)
from analytics_assets.simulator.server import (
    CUT_BODY,
    EVENT_TYPES,
    RANDOM_FAULTS,
    STALL_BODY,
    SUPPORTED_EVENT_TYPES,
)
from analytics_assets.simulator.world import (
    ENTRY_ERRORS,
    ERROR_TYPES_ALL,
    NEW_EVENT_TYPES,
    ZERO_TIME,
    parse_iso,
)

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


# ---- how a list ends (`final_page`) ----------------------------------------------------------


def list_pages(sim: ApiSimulator, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every page of a list as the vendor's client reads it: `last` back as `start`, until a
    page brings no objects (its `data` empty or null) or no usable `last` (missing or "")."""
    pages: list[dict[str, Any]] = []
    start = None
    while len(pages) < 20:
        cursor: dict[str, str] = {"start": start} if start else {}
        body = get(sim, path, limit=50, **params, **cursor).json()
        pages.append(body)
        if not body["data"] or not body.get("last") or body["last"] == start:
            break
        start = body["last"]
    return pages


@pytest.mark.parametrize("final_page", ["empty_page", "null_data", "empty_last", "no_last"])
def test_reading_final_page(world: World, final_page: str) -> None:
    """120 rooms, 50 a page: two full pages, a final page of 20, then as the reading ends it."""
    with ApiSimulator(world, reading=LENIENT.but(final_page=final_page)) as sim:
        pages = list_pages(sim, "/v2/rooms")
        nothing = get(sim, "/v2/rooms", limit=10, name="no-such-room").json()
    seen = [room["id"] for body in pages for room in body["data"] or []]
    assert seen == [room["id"] for room in world.rooms]
    assert all(body["last"] == body["data"][-1]["id"] for body in pages[:2])
    final = pages[2]
    assert len(final["data"]) == 20
    if final_page in ("empty_page", "null_data"):
        assert final["last"] == final["data"][-1]["id"] and len(pages) == 4
        after = pages[3]
        assert "last" not in after
        assert after["data"] == ([] if final_page == "empty_page" else None)
        assert nothing["data"] == after["data"] and "last" not in nothing
    else:
        assert len(pages) == 3
        assert final.get("last", "absent") == ("" if final_page == "empty_last" else "absent")
        assert nothing["data"] == []
        assert nothing.get("last", "absent") == final.get("last", "absent")


@pytest.mark.parametrize("final_page", ["empty_page", "null_data", "empty_last", "no_last"])
def test_reading_final_page_with_start_inclusive(world: World, final_page: str) -> None:
    """Under the inclusive reading a page after the final one holds only the named object,
    `last` unchanged, whichever way lists end; the final page itself ends as the reading says."""
    reading = LENIENT.but(final_page=final_page, start_inclusive=True)
    with ApiSimulator(world, reading=reading) as sim:
        final = get(sim, "/v2/rooms", limit=50, start=world.rooms[-20]["id"]).json()
        after = get(sim, "/v2/rooms", limit=50, start=world.rooms[-1]["id"]).json()
    assert [r["id"] for r in final["data"]] == [r["id"] for r in world.rooms[-20:]]
    assert [r["id"] for r in after["data"]] == [world.rooms[-1]["id"]]
    if final_page in ("empty_page", "null_data"):
        assert final["last"] == after["last"] == world.rooms[-1]["id"]
    elif final_page == "empty_last":
        assert final["last"] == after["last"] == ""
    else:
        assert "last" not in final and "last" not in after


# ---- unset times -------------------------------------------------------------------------


def _running_recording(world: World) -> dict[str, Any]:
    """A recording of a live session (started in idle rooms until one records)."""
    for recording in world.recordings:
        if "stopped_at" not in recording:
            return recording
    live = world.live_sessions()
    for room in world.rooms:
        if room["id"] not in live and room["enabled"]:
            session = world.start_session(room, world.clock - timedelta(minutes=1))
            found = [r for r in world.recordings if r["session_id"] == session["id"]]
            if found:
                return found[0]
    raise AssertionError("no room recorded")


@pytest.mark.parametrize("unset_times", ["absent", "zero"])
def test_reading_unset_times(world: World, unset_times: str) -> None:
    """A live peer's `left_at` and a running recording's `stopped_at` are absent, or the Go
    zero time; rooms' `updated_at` is the zero time either way; the world is unchanged."""
    recording = _running_recording(world)
    with ApiSimulator(world, reading=LENIENT.but(unset_times=unset_times)) as sim:
        live = get(sim, "/v2/sessions", active="true", limit=100).json()["data"]
        recordings = get(sim, "/v2/recordings", session_id=recording["session_id"]).json()["data"]
        rooms = get(sim, "/v2/rooms", limit=100).json()["data"]
    peers = [peer for session in live for peer in session["peers"].values()]
    still_in = [peer for peer in peers if peer.get("left_at", ZERO_TIME) == ZERO_TIME]
    assert still_in
    served_recording = next(r for r in recordings if r["id"] == recording["id"])
    if unset_times == "absent":
        assert all("left_at" not in peer for peer in still_in)
        assert "stopped_at" not in served_recording
    else:
        assert all(peer["left_at"] == ZERO_TIME for peer in still_in)
        assert served_recording["stopped_at"] == ZERO_TIME
    assert {room["updated_at"] for room in rooms} == {ZERO_TIME}
    live_in_world = [s for s in world.sessions if s["active"]]
    assert any("left_at" not in p for s in live_in_world for p in s["peers"].values())
    assert "stopped_at" not in recording


# ---- event types ---------------------------------------------------------------------------


def _busiest_room(world: World) -> str:
    counts = collections.Counter(e["data"]["room_id"] for e in world.retained_events())
    return counts.most_common(1)[0][0]


def test_reading_new_event_types_come_without_type_and_only_when_named(world: World) -> None:
    room_id = _busiest_room(world)
    retained = [e for e in world.retained_events() if e["data"]["room_id"] == room_id]
    new = [e["id"] for e in retained if e["type"] in NEW_EVENT_TYPES]
    assert 0.15 < len(new) / len(retained) < 0.35  # about a quarter of a room's events
    with ApiSimulator(world) as sim:
        everything = get(sim, "/v2/analytics/events", room_id=room_id, limit=100).json()
        documented = get(
            sim, "/v2/analytics/events", room_id=room_id, limit=100, type=list(EVENT_TYPES)
        ).json()
        joins = get(
            sim, "/v2/analytics/events", room_id=room_id, limit=100, type="peer.join.success"
        ).json()
        errors = get(sim, "/v2/analytics/events", room_id=room_id, limit=100, error="true").json()
        unknown = get(sim, "/v2/analytics/events", room_id=room_id, type="peer.dance.success")
    assert everything["total"] == len(retained)
    assert documented["total"] == len(retained) - len(new)
    assert {e["type"] for e in documented["events"]} <= set(EVENT_TYPES)
    assert joins["total"] > 0 and {e["type"] for e in joins["events"]} == {"peer.join.success"}
    assert {e["type"] for e in errors["events"]} <= set(ERROR_TYPES_ALL)
    assert unknown.status_code == 400
    assert unknown.json()["details"] == ["type is invalid: peer.dance.success"]


def test_strict_world_has_no_new_types_yet_the_api_supports_them() -> None:
    world = generate_world(scale=40, seed=3, reading=STRICT)
    assert not [e for e in world.events if e["type"] in NEW_EVENT_TYPES]
    room_id = _busiest_room(world)
    with ApiSimulator(world, reading=STRICT) as sim:
        named = get(sim, "/v2/analytics/events", room_id=room_id, type=list(SUPPORTED_EVENT_TYPES))
    assert named.status_code == 200 and named.json()["total"] > 0


def test_reading_events_type_required_says_so_in_details(world: World) -> None:
    with ApiSimulator(world, reading=STRICT) as sim:
        response = get(sim, "/v2/analytics/events", room_id=world.rooms[0]["id"])
    body = response.json()
    assert response.status_code == 400 and body["code"] == 400
    assert "type" in body["message"] and "type is required" in body["details"]


# ---- tokens and clock skew -------------------------------------------------------------------

KEY, SECRET = "sim-access-key", "sim-app-secret-for-the-clock-skew-tests"


def _token(issued: int, *, lifetime: int = 3600) -> str:
    claims = {
        "access_key": KEY,
        "type": "management",
        "version": 2,
        "jti": str(uuid.uuid4()),
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime,
    }
    return jwt.encode(claims, SECRET, algorithm="HS256")


def _with_token(sim: ApiSimulator, token: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.get(sim.base_url + "/v2/templates", headers=headers, timeout=5)


def test_reading_clock_behind_refuses_a_token_issued_now(world: World) -> None:
    """The API's clock runs 5 s behind: a token whose `iat`/`nbf` is now is not valid yet to
    it; one backdated 10 s (as the vendor's SDK mints them) is."""
    now = int(time.time())
    with ApiSimulator(world, reading=STRICT, app_access_key=KEY, app_secret=SECRET) as sim:
        refused = _with_token(sim, _token(now))
        accepted = _with_token(sim, _token(now - 10))
        expired = _with_token(sim, _token(now - 7200))
    assert refused.status_code == 401 and "not valid yet" in refused.json()["details"][0]
    assert accepted.status_code == 200 and len(sim.tokens_seen) == 1
    assert expired.status_code == 401 and expired.json()["details"] == ["token is expired"]
    with ApiSimulator(world, reading=LENIENT, app_access_key=KEY, app_secret=SECRET) as sim:
        assert _with_token(sim, _token(now)).status_code == 200  # no skew: fine


# ---- errors --------------------------------------------------------------------------------


def test_every_error_body_says_what_was_wrong_in_details(world: World) -> None:
    idle = next(r for r in world.rooms if r["id"] not in world.live_sessions())
    faults = FaultPlan(scripted={"/v2/recordings": [429, 503]})
    with ApiSimulator(world, faults=faults) as sim:
        answers = [
            requests.get(sim.base_url + "/v2/rooms", timeout=5),
            get(sim, "/v2/analytics/events"),
            get(sim, "/v2/analytics/events", room_id=idle["id"], type="nope"),
            get(sim, "/v2/analytics/events", room_id=idle["id"], type=EVENT_TYPES[0], start="x"),
            get(sim, "/v2/rooms", limit=5),
            get(sim, "/v2/rooms", after="yesterday"),
            get(sim, f"/v2/active-rooms/{idle['id']}/peers"),
            get(sim, "/v2/templates/nope/settings"),
            get(sim, "/v2/nothing-here"),
            get(sim, "/v2/recordings"),
            get(sim, "/v2/recordings"),
        ]
    statuses = [401, 400, 400, 400, 400, 400, 404, 404, 404, 429, 503]
    assert [a.status_code for a in answers] == statuses
    for answer in answers:
        body = answer.json()
        assert body["code"] == answer.status_code and isinstance(body["message"], str)
        assert body["details"] and all(isinstance(d, str) and d for d in body["details"])
    assert answers[1].json()["details"] == ["room_id is required"]
    assert answers[4].json()["details"] == ["limit must be between 10 and 100"]


# ---- bodies cut or stalled -------------------------------------------------------------------


def test_fault_cut_body_drops_the_connection_half_way(world: World) -> None:
    assert CUT_BODY in RANDOM_FAULTS and STALL_BODY in RANDOM_FAULTS
    with ApiSimulator(world, faults=FaultPlan(scripted={"/v2/rooms": [CUT_BODY]})) as sim:
        response = requests.get(sim.base_url + "/v2/rooms", headers=AUTH, timeout=5, stream=True)
        assert response.status_code == 200 and int(response.headers["Content-Length"]) > 100
        with pytest.raises(
            (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)
        ):
            response.content  # noqa: B018
        assert get(sim, "/v2/rooms").status_code == 200  # answered in full the next time
    assert [(r.status, r.fault) for r in sim.requests] == [(200, "cutbody"), (200, None)]


def test_fault_stall_body_times_out_a_shorter_read_timeout_after_the_headers(
    world: World,
) -> None:
    faults = FaultPlan(scripted={"/v2/rooms": [STALL_BODY, STALL_BODY]}, slow_seconds=1.0)
    with ApiSimulator(world, faults=faults) as sim:
        url = sim.base_url + "/v2/rooms"
        started = time.monotonic()
        response = requests.get(url, headers=AUTH, timeout=(2, 0.3), stream=True)
        assert response.status_code == 200  # the headers came in time
        with pytest.raises((requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
            response.content  # noqa: B018
        assert time.monotonic() - started < 0.9
        faults.slow_seconds = 0.3  # a patient client gets the whole body, late
        patient = requests.get(url, headers=AUTH, timeout=(2, 2))
        assert len(patient.json()["data"]) == 10
    assert [r.fault for r in sim.requests] == ["stallbody", "stallbody"]


# ---- customers' storage credentials ------------------------------------------------------------


def test_credentials_are_inside_rooms_and_template_settings(world: World) -> None:
    with ApiSimulator(world) as sim:
        rooms = [r for body in list_pages(sim, "/v2/rooms") for r in body["data"]]
        templates = get(sim, "/v2/templates", limit=100).json()["data"]
        settings = [get(sim, f"/v2/templates/{t['id']}/settings").json() for t in templates]
    in_rooms = [
        r["recording_info"]["upload_info"]["credentials"] for r in rooms if "recording_info" in r
    ]
    in_settings = [s["recording"]["upload"]["credentials"] for s in settings if s["recording"]]
    assert in_rooms and in_settings
    assert all(c["key"].startswith("AKIASIM") for c in in_rooms + in_settings)
    assert all(c["secret"].startswith("SIMSECRET-") for c in in_rooms)
    assert all(c["secretKey"].startswith("SIMSECRET-") for c in in_settings)
    embedded = [t["settings"]["recording"] for t in templates]
    # The templates list carries them too.
    assert in_settings == [r["upload"]["credentials"] for r in embedded if r]
    values = {v for c in in_rooms + in_settings for v in c.values()}
    assert world.credential_values() == values
    for name in ("app_id", "customer", "enabled_source_template", "polls", "webhook"):
        assert any(name in room for room in rooms), name
    webhooks = [r["webhook"] for r in rooms if "webhook" in r]
    assert all(w["url"].startswith("https://") and set(w) == {"url", "headers"} for w in webhooks)
    assert not any("SIMSECRET" in str(w) or "AKIASIM" in str(w) for w in webhooks)


# ---- a world that moves while a run pages ------------------------------------------------------


def test_tick_moves_the_clock_starts_and_ends_sessions_and_lists_what_became_due(
    world: World,
) -> None:
    assert World._end_session is World.end_session
    before = world.clock
    live_before = {s["id"] for s in world.sessions if s["active"]}
    with ApiSimulator(world) as sim:
        assert get(sim, "/v2/sessions", active="true", limit=100).json()["data"]
        changed = world.tick(minutes=2, starts=2, ends=1)
        live_after = {
            s["id"] for s in get(sim, "/v2/sessions", active="true", limit=100).json()["data"]
        }
        started = live_after - live_before
        assert changed["started"] == 2 == len(started) and changed["ended"] == 1
        assert len(live_before - live_after) == 1 and world.clock == before + timedelta(minutes=2)
        new = next(s for s in world.sessions if s["id"] in started)
        with pytest.raises(ValueError, match="already has a live session"):
            world.start_session(next(r for r in world.rooms if r["id"] == new["room_id"]), before)
        world.tick(minutes=5, starts=0, ends=0)  # the new peers' tracks come up
        listed = get(sim, "/v2/analytics/events", room_id=new["room_id"], session_id=new["id"])
        assert listed.json()["total"] == len(
            [e for e in world.retained_events() if e["data"].get("session_id") == new["id"]]
        )
        assert "track.add.success" in {e["type"] for e in listed.json()["events"]}


def test_move_every_a_listing_read_page_by_page_sees_a_session_start(world: World) -> None:
    known = {s["id"] for s in world.sessions}
    with ApiSimulator(world, move_every=1) as sim:
        pages = list_pages(sim, "/v2/sessions")
    seen = [s["id"] for body in pages for s in body["data"] or []]
    assert len(sim.ticks) == len(pages) and sum(t["started"] for t in sim.ticks) == len(pages)
    assert set(seen) - known  # started between pages, listed at the end (oldest first)
    assert len(seen) == len(set(seen))


def test_on_request_runs_after_each_answer_before_the_next_request(world: World) -> None:
    """The scenario: after the (last) page of live sessions, a session starts; the next
    listing, and the new room's peers, see it."""
    idle = next(r for r in world.rooms if r["enabled"] and r["id"] not in world.live_sessions())
    calls: list[RecordedRequest] = []

    def script(sim: ApiSimulator, request: RecordedRequest) -> None:
        calls.append(request)
        if request.path == "/v2/sessions" and len(calls) == 1:
            sim.world.start_session(idle, sim.world.clock)

    with ApiSimulator(world, on_request=script) as sim:
        first = get(sim, "/v2/sessions", active="true", limit=100).json()["data"]
        second = get(sim, "/v2/sessions", active="true", limit=100).json()["data"]
        peers = get(sim, f"/v2/active-rooms/{idle['id']}/peers").json()["peers"]
    assert idle["id"] not in {s["room_id"] for s in first}
    assert idle["id"] in {s["room_id"] for s in second} and peers
    assert [c.path for c in calls] == [
        "/v2/sessions",
        "/v2/sessions",
        f"/v2/active-rooms/{idle['id']}/peers",
    ]


# ---- busy rooms ----------------------------------------------------------------------------


def test_busy_rooms_hold_long_histories_and_are_served_by_room() -> None:
    plain = generate_world(scale=60, seed=3)
    world = generate_world(scale=60, seed=3, busy_rooms=4, busy_room_events=400)
    counts = collections.Counter(e["data"]["room_id"] for e in world.retained_events())
    busy = [room_id for room_id, n in counts.items() if n >= 400]
    assert len(busy) == 4 and all(counts[room_id] < 440 for room_id in busy)
    assert world.rooms == plain.rooms  # the rest of the world is the same
    quiet = [e for e in plain.events if e["data"]["room_id"] not in busy]
    assert [e for e in world.events if e["data"]["room_id"] not in busy] == quiet
    kinds = {e["type"] for e in world.retained_events() if e["data"]["room_id"] == busy[0]}
    assert {"track.add.success", "track.update.success", "track.remove.success"} <= kinds
    assert "beam.recording.success" in kinds and kinds & set(ERROR_TYPES_ALL)
    with ApiSimulator(world) as sim:
        started = time.perf_counter()
        body = get(sim, "/v2/analytics/events", room_id=busy[0], limit=100).json()
        assert time.perf_counter() - started < 0.5
    assert body["total"] == counts[busy[0]] and len(body["events"]) == 100


def test_events_pages_are_a_snapshot_taken_at_the_first_call() -> None:
    """ "Results are a snapshot taken at the first call": while a query pages, events that expire
    (the 30 days move with the clock) or are listed meanwhile do not shift its pages."""
    world = generate_world(scale=60, seed=3, busy_rooms=1, busy_room_events=300)
    counts = collections.Counter(e["data"]["room_id"] for e in world.retained_events())
    room_id, total = counts.most_common(1)[0]
    with ApiSimulator(world) as sim:
        first = get(sim, "/v2/analytics/events", room_id=room_id, limit=100).json()
        snapshot = [e["id"] for e in world.room_events(room_id)]
        with sim.moving():
            world.clock += timedelta(days=10)  # the oldest events expire
            world.start_session(world.rooms[0], world.clock)
        pages = [first]
        while pages[-1]["next"]:
            pages.append(
                get(sim, "/v2/analytics/events", room_id=room_id, start=pages[-1]["next"]).json()
            )
        fresh = get(sim, "/v2/analytics/events", room_id=room_id, limit=100).json()
    assert [e["id"] for page in pages for e in page["events"]] == snapshot
    assert first["total"] == total and fresh["total"] < total  # a new query: a new snapshot
