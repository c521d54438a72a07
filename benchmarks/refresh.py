"""Requests of a full load against those of the incremental refreshes that follow it.

    .venv/bin/python benchmarks/refresh.py [--scale 400] [--activity 0.04] [--reading strict]

Starts the simulator, runs a full load (every asset), lets the simulated workspace move on by
about `--activity` (new rooms and sessions with their events, live sessions ending), runs the
scheduled jobs once and prints the requests the simulator received for each, per endpoint,
beside the target (the hourly and 5-minute jobs at most 30% of the full load), what the late
events' lookback costs, and whether every table is exact after the daily sweep.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

from analytics_assets.simulator import DEFAULT_TOKEN, READINGS, ApiSimulator, World, generate_world
from analytics_assets.simulator.expected import compare
from analytics_assets.simulator.world import EVENT_RETENTION, parse_iso

TARGET = 0.30


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=400, help="rooms in the simulated API")
    parser.add_argument("--activity", type=float, default=0.04)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--reading", choices=sorted(READINGS), default="strict")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="refresh_bench_"))
    reading = READINGS[args.reading]
    world = generate_world(scale=args.scale, seed=args.seed, reading=reading)
    first_clock = world.clock
    with ApiSimulator(world, reading=reading) as sim:
        os.environ.update(
            {
                "SOURCES__ANALYTICS_API__BASE_URL": sim.base_url,
                "SOURCES__ANALYTICS_API__API_TOKEN": DEFAULT_TOKEN,
                "DESTINATION__DUCKDB__CREDENTIALS": str(workdir / "bench.duckdb"),
                "DLT_DATA_DIR": str(workdir / "dlt"),
            }
        )
        import dagster as dg

        from analytics_assets.definitions import defs

        instance = dg.DagsterInstance.ephemeral()
        quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}

        def run(job_name: str) -> tuple[int, float, Counter[str]]:
            sim.reset_requests()
            job = (
                defs.resolve_implicit_global_asset_job_def()
                if job_name == "full load"
                else defs.resolve_job_def(job_name)
            )
            started = time.perf_counter()
            result = job.execute_in_process(instance=instance, run_config=quiet)
            assert result.success, job_name
            by_endpoint = Counter(_endpoint(r.path) for r in sim.requests)
            return len(sim.requests), time.perf_counter() - started, by_endpoint

        full, full_s, full_by = run("full load")
        # Sessions ended within the lookback (24 h) before the refresh, and the rooms with
        # activity: the lookback's cost is the rooms read only because of it.
        was_live = {s["id"] for s in world.sessions if s["active"]}
        known = {s["id"] for s in world.sessions}
        with sim.moving():
            changes = world.advance(activity=args.activity)
        horizon = world.clock - timedelta(hours=24)
        active_rooms = {
            s["room_id"]
            for s in world.sessions
            if s["active"] or s["id"] in was_live or s["id"] not in known
        }
        lookback_rooms = {
            s["room_id"]
            for s in world.sessions
            if not s["active"] and parse_iso(s["updated_at"]) >= horizon
        } - active_rooms
        activity, activity_s, activity_by = run("activity_refresh")
        asked = {r.params["room_id"][0] for r in sim.requests_to("/v2/analytics/events")}
        lookback_cost = len(asked & lookback_rooms)
        live, live_s, live_by = run("live_peers_refresh")
        sweep, sweep_s, sweep_by = run("daily_sweep")
        exact = _exact(workdir, world, first_clock)

    hourly = activity + live
    print(
        f"\nscale {args.scale} rooms, {reading.name} reading; after the full load the workspace "
        f"moved on by {changes['new_sessions']} new sessions, {changes['ended_sessions']} ended, "
        f"{changes['new_rooms']} new rooms, {changes['sessionless_errors']} errors without a "
        "session"
    )
    print(f"\n{'run':<38}{'requests':>9}{'of full':>9}{'seconds':>9}")
    rows = [
        ("full load (every asset)", full, full_s),
        ("activity_refresh (hourly job)", activity, activity_s),
        ("live_peers_refresh (5-minute job)", live, live_s),
        ("refresh = activity + live peers", hourly, activity_s + live_s),
        ("daily_sweep (daily)", sweep, sweep_s),
    ]
    for name, count, seconds in rows:
        print(f"{name:<38}{count:>9}{count / full:>9.1%}{seconds:>9.1f}")
    print(f"\n{'requests by endpoint':<40}{'full':>6}{'refresh':>9}{'daily':>7}")
    for endpoint in sorted(full_by):
        refresh = activity_by.get(endpoint, 0) + live_by.get(endpoint, 0)
        print(f"  {endpoint:<38}{full_by[endpoint]:>6}{refresh:>9}{sweep_by.get(endpoint, 0):>7}")
    print(
        f"\nthe late events' lookback (sessions ended within 24 h): {len(lookback_rooms)} rooms "
        f"with no other activity, {lookback_cost} of the refresh's requests"
    )
    verdict = "met" if hourly <= TARGET * full else "MISSED"
    print(f"target: refresh <= {TARGET:.0%} of the full load: {verdict} ({hourly / full:.1%})")
    print(f"every table exact after the refresh and the daily sweep: {exact}")
    return 0 if exact and verdict == "met" else 1


def _endpoint(path: str) -> str:
    parts = path.split("/")
    if len(parts) > 4 and parts[2] in ("active-rooms", "templates"):
        parts[3] = "{id}"
    return "/".join(parts)


def _exact(workdir: Path, world: World, first_clock: datetime) -> bool:
    diffs = compare(workdir / "bench.duckdb", world, events_since=first_clock - EVENT_RETENTION)
    wrong = [d for d in diffs.values() if not d.exact]
    for diff in wrong:
        print(f"  not exact: {diff}", file=sys.stderr)
    return not wrong


if __name__ == "__main__":
    sys.exit(main())
