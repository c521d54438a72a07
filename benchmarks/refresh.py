"""Requests of a full load against those of the jobs that follow it, at 1x and 4x history.

    .venv/bin/python benchmarks/refresh.py [--scale 400] [--activity 0.04] [--reading strict]

For each history (the workspace as generated, then the same workspace with four times the past:
three times as many older rooms, each with its sessions, recordings and events, all long over,
and exactly the same recent activity) it starts the simulator, runs a full load (every asset),
runs each job once (so that each has its cursors), lets the workspace move on by about
`--activity` (new rooms and sessions with their events, live sessions ending, errors without a
session), and runs each job once more, counting the requests the simulator receives.

It prints, each beside its target:

- at 1x history, the requests of each job against the full load, per endpoint, and what the
  late events' lookback costs (target: the hourly and 5-minute jobs together at most 31% of the
  full load), and whether every table is exact after the daily sweep;
- each job's requests at 4x history against 1x (target: every job that runs hourly or more
  often at most 1.10x; only the daily sweep may grow with history).
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from analytics_assets.simulator import (
    DEFAULT_TOKEN,
    READINGS,
    ApiSimulator,
    Reading,
    World,
    generate_world,
)
from analytics_assets.simulator.expected import compare
from analytics_assets.simulator.world import EVENT_RETENTION, parse_iso

TARGET_REFRESH = 0.31
TARGET_HISTORY = 1.10
JOBS = ("activity_refresh", "live_peers_refresh", "daily_sweep")
FREQUENT = ("activity_refresh", "live_peers_refresh")


@dataclass
class Scenario:
    history: int
    rows: dict[str, tuple[int, float, Counter[str]]] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)
    lookback_rooms: int = 0
    lookback_cost: int = 0
    exact: bool = False
    size: tuple[int, int, int] = (0, 0, 0)


def run_scenario(args: argparse.Namespace, reading: Reading, history: int) -> Scenario:
    workdir = Path(tempfile.mkdtemp(prefix=f"refresh_bench_{history}x_"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)  # DuckDB files of ~70 MB
    world = generate_world(scale=args.scale, seed=args.seed, reading=reading, history=history)
    first_clock = world.clock
    out = Scenario(history, size=(len(world.rooms), len(world.sessions), len(world.recordings)))
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

        from analytics_assets.definitions import defs as definitions

        instance = dg.DagsterInstance.ephemeral()
        quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}

        def run(job_name: str) -> tuple[int, float, Counter[str]]:
            sim.reset_requests()
            job = (
                definitions.resolve_implicit_global_asset_job_def()
                if job_name == "full load"
                else definitions.resolve_job_def(job_name)
            )
            started = time.perf_counter()
            result = job.execute_in_process(instance=instance, run_config=quiet)
            assert result.success, job_name
            by_endpoint = Counter(_endpoint(r.path) for r in sim.requests)
            return len(sim.requests), time.perf_counter() - started, by_endpoint

        out.rows["full load"] = run("full load")
        for job in JOBS:  # each job's first run takes its cursors
            run(job)
        # The lookback's cost: rooms read only because a session there ended within 24 hours.
        was_live = {s["id"] for s in world.sessions if s["active"]}
        known = {s["id"] for s in world.sessions}
        with sim.moving():
            out.changes = world.advance(activity=args.activity)
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
        for job in JOBS:
            out.rows[job] = run(job)
            if job == "activity_refresh":
                asked = {r.params["room_id"][0] for r in sim.requests_to("/v2/analytics/events")}
                out.lookback_cost = len(asked & lookback_rooms)
        out.lookback_rooms = len(lookback_rooms)
        out.exact = _exact(workdir, world, first_clock)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=400, help="rooms in the simulated API")
    parser.add_argument("--activity", type=float, default=0.04)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--reading", choices=sorted(READINGS), default="strict")
    args = parser.parse_args(argv)
    reading = READINGS[args.reading]
    base = run_scenario(args, reading, 1)
    longer = run_scenario(args, reading, 4)

    full = base.rows["full load"][0]
    activity, live = base.rows["activity_refresh"][0], base.rows["live_peers_refresh"][0]
    changes = base.changes
    print(
        f"\nscale {args.scale} rooms, {reading.name} reading; after the full load the workspace "
        f"moved on by {changes['new_sessions']} new sessions, {changes['ended_sessions']} ended, "
        f"{changes['new_rooms']} new rooms, {changes['sessionless_errors']} errors without a "
        "session"
    )
    print(f"\n{'run (1x history)':<38}{'requests':>9}{'of full':>9}{'seconds':>9}")
    rows: list[tuple[str, Any, Any]] = [
        ("full load (every asset)", full, base.rows["full load"][1]),
        ("activity_refresh (hourly job)", activity, base.rows["activity_refresh"][1]),
        ("live_peers_refresh (5-minute job)", live, base.rows["live_peers_refresh"][1]),
        (
            "refresh = activity + live peers",
            activity + live,
            base.rows["activity_refresh"][1] + base.rows["live_peers_refresh"][1],
        ),
        ("daily_sweep (daily)", base.rows["daily_sweep"][0], base.rows["daily_sweep"][1]),
    ]
    for name, count, seconds in rows:
        print(f"{name:<38}{count:>9}{count / full:>9.1%}{seconds:>9.1f}")
    print(f"\n{'requests by endpoint (1x history)':<40}{'full':>6}{'refresh':>9}{'daily':>7}")
    full_by = base.rows["full load"][2]
    for endpoint in sorted(full_by):
        refresh = (
            base.rows["activity_refresh"][2][endpoint]
            + base.rows["live_peers_refresh"][2][endpoint]
        )
        daily = base.rows["daily_sweep"][2][endpoint]
        print(f"  {endpoint:<38}{full_by[endpoint]:>6}{refresh:>9}{daily:>7}")
    print(
        f"\nthe late events' lookback (sessions ended within 24 h): {base.lookback_rooms} rooms "
        f"with no other activity, {base.lookback_cost} of the refresh's requests"
    )
    ok = True
    verdict = "met" if activity + live <= TARGET_REFRESH * full else "MISSED"
    ok &= verdict == "met"
    print(
        f"target: refresh <= {TARGET_REFRESH:.0%} of the full load: {verdict} "
        f"({(activity + live) / full:.1%})"
    )
    print(f"every table exact after the daily sweep: {base.exact and longer.exact}")
    ok &= base.exact and longer.exact

    rooms1, sessions1, recordings1 = base.size
    rooms4, sessions4, recordings4 = longer.size
    print(
        f"\nrequests per job at 1x and 4x history ({rooms1} -> {rooms4} rooms, {sessions1} -> "
        f"{sessions4} sessions, {recordings1} -> {recordings4} recordings; the same activity)"
    )
    print(f"{'job':<24}{'1x':>7}{'4x':>7}{'ratio':>8}  target")
    for job in ("full load", *JOBS):
        one, four = base.rows[job][0], longer.rows[job][0]
        ratio = four / one
        if job in FREQUENT:
            met = ratio <= TARGET_HISTORY
            ok &= met
            target = f"<= {TARGET_HISTORY:.2f}x: {'met' if met else 'MISSED'}"
        else:
            target = "(may grow with history)"
        print(f"{job:<24}{one:>7}{four:>7}{ratio:>7.2f}x  {target}")
    return 0 if ok else 1


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
