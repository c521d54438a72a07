"""The oracle checked with the vendor's own client: the Node server SDK (`@100mslive/server-sdk`,
pinned in `vendor_sdk/package.json`) reads the simulator as it reads the real API.

The SDK mints its own management tokens (HS256 from the access key and secret, `iat`/`nbf` 10 s
in the past), pages lists by passing `last` back as `start` and stops on a short page, and pages
events by `next`. Its base URL is fixed, so the test points it at the simulator through
`HTTPS_PROXY`, which its HTTP client honours; the simulator answers the absolute-form request
line as HTTP/1.1 servers must.

Quirks covered: `start` is exclusive in the vendor's own reading (under the inclusive reading
the SDK counts every page's repeated object twice: 62 rooms for 60), and minted tokens must be
accepted by an API whose clock runs behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from analytics_assets.simulator import LENIENT, ApiSimulator, Reading, World, generate_world
from analytics_assets_tests.conftest import skip_or_fail

SDK_DIR = Path(__file__).parent / "vendor_sdk"
ACCESS_KEY = "vendor-sdk-access-key"
SECRET = "vendor-sdk-app-secret-of-32-chars!"
TRACK_TYPES = ["track.add.success", "track.update.success", "track.remove.success"]
#: The SDK stops paging events after the first page (it looks for `last`, which events never
#: carry), so events are asked in pages of the API's largest limit, for rooms that fit in one.
EVENT_LIMIT = 100
LIST_LIMIT = 30


def read_with_sdk(sim: ApiSimulator, plan: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not (SDK_DIR / "node_modules" / "@100mslive" / "server-sdk").is_dir():
        skip_or_fail("node or the vendor SDK is missing (`make test` runs `npm ci` in vendor_sdk/)")
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HTTPS_PROXY": sim.base_url,
        "HMS_ACCESS_KEY": ACCESS_KEY,
        "HMS_SECRET": SECRET,
        "PLAN": str(tmp_path / "plan.json"),
        "OUT": str(tmp_path / "out.json"),
    }
    done = subprocess.run(
        [node, "read_listings.js"],
        cwd=SDK_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads((tmp_path / "out.json").read_text())
    return result


def one_page_rooms(world: World, count: int) -> dict[str, list[str]]:
    """Rooms whose track events fit in one page, with those events' ids in time order."""
    found: dict[str, list[str]] = {}
    for room in world.rooms:
        events = [e["id"] for e in world.room_events(room["id"]) if e["type"] in TRACK_TYPES]
        if 0 < len(events) <= EVENT_LIMIT:
            found[room["id"]] = events
        if len(found) == count:
            break
    return found


def sdk_plan(event_rooms: list[str]) -> dict[str, Any]:
    return {
        "limit": LIST_LIMIT,
        "event_limit": EVENT_LIMIT,
        "event_rooms": event_rooms,
        "track_types": TRACK_TYPES,
    }


def serve(reading: Reading) -> tuple[World, ApiSimulator]:
    world = generate_world(scale=60, seed=7, reading=reading)
    sim = ApiSimulator(world, reading=reading, app_access_key=ACCESS_KEY, app_secret=SECRET)
    return world, sim


def test_the_vendor_sdk_reads_every_listing_whole_under_the_lenient_reading(
    tmp_path: Path,
) -> None:
    world, sim = serve(LENIENT)
    rooms_with_events = one_page_rooms(world, 3)
    assert len(rooms_with_events) == 3
    plan = sdk_plan([*rooms_with_events])
    with sim:
        got = read_with_sdk(sim, plan, tmp_path)
    ended = [s["id"] for s in world.sessions if not s["active"]]
    live = [s["id"] for s in world.sessions if s["active"]]
    assert sorted(got["rooms"]) == sorted(r["id"] for r in world.rooms)
    assert sorted(got["ended_sessions"]) == sorted(ended)
    assert sorted(got["live_sessions"]) == sorted(live)
    assert sorted(got["recordings"]) == sorted(r["id"] for r in world.recordings)
    assert got["track_events"] == rooms_with_events
    # The workspace the issue reports: 60 rooms, 81 sessions (4 live), 33 recordings.
    assert (len(got["rooms"]), len(ended) + len(live), len(live)) == (60, 81, 4)
    assert len(got["recordings"]) == 33
    # Every request carried a token the SDK minted itself, and every one was accepted.
    assert sim.tokens_seen and {r.status for r in sim.requests} == {200}


def test_the_vendor_sdk_counts_repeats_under_an_inclusive_start_so_the_api_excludes_it(
    tmp_path: Path,
) -> None:
    reading = LENIENT.but(name="inclusive start", start_inclusive=True, clock_behind_seconds=5.0)
    world, sim = serve(reading)
    plan = sdk_plan([])
    with sim:
        got = read_with_sdk(sim, plan, tmp_path)
    room_pages = sum(1 for r in sim.requests if r.path == "/v2/rooms")
    rooms = Counter(got["rooms"])
    assert set(rooms) == {r["id"] for r in world.rooms}
    # Each page after the first repeats the object `start` named, and the SDK keeps it.
    assert sum(rooms.values()) == len(world.rooms) + room_pages - 1 == 62
    assert sorted(n for n in rooms.values() if n > 1) == [2] * (room_pages - 1)
    # Its tokens, dated 10 s back, are valid for an API whose clock runs 5 s behind.
    assert sim.tokens_seen and {r.status for r in sim.requests} == {200}
