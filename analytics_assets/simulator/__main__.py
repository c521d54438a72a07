"""Run the simulator in the foreground: `python -m analytics_assets.simulator --scale 300`."""

from __future__ import annotations

import argparse
import time

from analytics_assets.simulator import (
    DEFAULT_TOKEN,
    READINGS,
    ApiSimulator,
    FaultPlan,
    generate_world,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=300, help="number of rooms")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="the bearer token it accepts")
    parser.add_argument("--app-access-key", default="simulator-access-key")
    parser.add_argument(
        "--app-secret", default="simulator-app-secret-for-local-use-only", help="verifies JWTs"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of 429/5xx answers")
    parser.add_argument(
        "--busy-rooms", type=int, default=0, help="rooms with a long event history (benchmarks)"
    )
    parser.add_argument(
        "--busy-room-events", type=int, default=1300, help="retained events per busy room"
    )
    parser.add_argument(
        "--move-every",
        type=int,
        default=0,
        help="move the world on (World.tick: sessions start and end) every N requests",
    )
    parser.add_argument(
        "--reading",
        choices=sorted(READINGS),
        default="lenient",
        help="how to read the reference where it is ambiguous or strict (see readings.py)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Serve a generated world until interrupted: for trying the pipeline (or a benchmark in
    another process) against the simulator by hand."""
    args = _parser().parse_args(argv)

    reading = READINGS[args.reading]
    world = generate_world(
        scale=args.scale,
        seed=args.seed,
        reading=reading,
        busy_rooms=args.busy_rooms,
        busy_room_events=args.busy_room_events,
    )
    sim = ApiSimulator(
        world,
        reading=reading,
        token=args.token,
        app_access_key=args.app_access_key,
        app_secret=args.app_secret,
        latency=args.latency_ms / 1000,
        faults=FaultPlan(rate=args.fault_rate, seed=args.seed),
        port=args.port,
        move_every=args.move_every,
    ).start()
    print(
        f"analytics API simulator ({reading.name}) on {sim.base_url}: {len(world.rooms)} rooms, "
        f"{len(world.sessions)} sessions, {len(world.retained_events())} events. Ctrl-C stops it."
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sim.stop()


if __name__ == "__main__":
    main()
