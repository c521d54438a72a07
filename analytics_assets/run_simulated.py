"""The main job, offline: a full load of every asset from the local API simulator into DuckDB.

`python -m analytics_assets.run_simulated [--scale 300] [--reading strict]` starts the
simulator on loopback, points the source at it, materializes every asset in-process (the eight
tables and the analytics computed from them) and prints, per table, the rows in DuckDB beside
the rows the API serves, the analytics tables' rows, the requests made and the time taken.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import duckdb

from analytics_assets.simulator import DEFAULT_TOKEN, READINGS, ApiSimulator, generate_world
from analytics_assets.simulator.expected import compare

ANALYTICS_TABLES = ("peer_minutes_daily", "unmuted_time", "client_errors_daily")
BASE_URL_ENV = "SOURCES__ANALYTICS_API__BASE_URL"


def simulated_api_env(base_url: str, db: Path) -> dict[str, str]:
    """The settings that point the project at the local simulator and a DuckDB file, over any
    the user configured for the real API (in the environment or `.dlt/secrets.toml`): the
    simulator's token, and no app key or secret, whose minted tokens it would refuse."""
    return {
        BASE_URL_ENV: base_url,
        "SOURCES__ANALYTICS_API__API_TOKEN": DEFAULT_TOKEN,
        "SOURCES__ANALYTICS_API__APP_ACCESS_KEY": "",
        "SOURCES__ANALYTICS_API__APP_SECRET": "",
        "DESTINATION__DUCKDB__CREDENTIALS": str(db),
    }


DEFAULT_DB = Path("data") / "simulated.duckdb"


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=300, help="rooms in the simulated API")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--reading",
        choices=sorted(READINGS),
        default="lenient",
        help="how the simulator reads the reference where it is ambiguous or strict",
    )
    parser.add_argument(
        "--duckdb", type=Path, default=None, help=f"recreated on every run; default: {DEFAULT_DB}"
    )
    return parser.parse_args(argv)


def _fresh_database(db: Path) -> None:
    """Never the configured warehouse: this file holds a simulated world and is recreated."""
    db.parent.mkdir(parents=True, exist_ok=True)
    for stale in (db, db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)  # a full load of this simulated world, from scratch


def _load_everything() -> Any:
    """Every asset, in this process, on an instance kept in memory."""
    # Imported only now: the definitions read the configuration set before.
    import dagster as dg

    from analytics_assets.definitions import defs

    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _summary(db: Path, world: Any) -> bool:
    """Rows per table beside the API's (every field compared), then the analytics' rows."""
    diffs = compare(db, world)
    print(f"\n{'table':<24}{'rows in DuckDB':>16}{'rows in the API':>17}")
    for diff in diffs.values():
        flag = (
            ""
            if diff.exact
            else (
                f"   <-- {diff.missing} missing, {diff.unexpected} unexpected, "
                f"{diff.wrong_values} with a wrong value"
            )
        )
        print(f"{diff.table:<24}{diff.loaded:>16}{diff.expected:>17}{flag}")
    with duckdb.connect(str(db), read_only=True) as con:
        print(f"\n{'analytics table':<24}{'rows in DuckDB':>16}")
        for table in ANALYTICS_TABLES:
            rows = con.execute(f"SELECT count(*) FROM analytics.{table}").fetchone()
            print(f"{table:<24}{rows[0] if rows else 0:>16}")
    return all(diff.exact for diff in diffs.values())


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    reading = READINGS[args.reading]
    world = generate_world(scale=args.scale, seed=args.seed, reading=reading)
    db: Path = args.duckdb or DEFAULT_DB
    with ApiSimulator(world, reading=reading, latency=args.latency_ms / 1000) as sim:
        _fresh_database(db)
        os.environ.update(simulated_api_env(sim.base_url, db.resolve()))
        os.environ.pop("DESTINATION_TYPE", None)
        print(f"Simulator at {sim.base_url} with {args.scale} rooms; loading into {db} ...")
        started = time.perf_counter()
        result = _load_everything()
        elapsed = time.perf_counter() - started
        requests = len(sim.requests)
    if not result.success:
        print("The load failed; see the error above.", file=sys.stderr)
        return 1
    exact = _summary(db, world)
    print(
        f"\n{requests} API requests in {elapsed:.1f} s; the tables are in schema analytics of {db}"
    )
    return 0 if exact else 2


if __name__ == "__main__":
    sys.exit(main())
