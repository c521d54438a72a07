"""Full-load speed and memory: the project against a plain sequential dlt run, side by side.

    .venv/bin/python benchmarks/speed.py [--scale 1000] [--latency-ms 20] [--memory-scale 5000]

The simulator runs in its own process (so its data is not counted in anyone's memory), with
the given latency on every request. Each load runs in a fresh child process into its own DuckDB
file; the script prints wall time, requests, rows per second and peak memory (max RSS) of each,
then the two targets: the project's time at most 0.3x the plain run's, and its peak memory at
`--memory-scale` rooms less than twice that at `--scale` rooms.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import duckdb

from analytics_assets.defs.schedules import MART_TABLES
from analytics_assets.simulator import DEFAULT_TOKEN
from analytics_assets.simulator.server import STATS_PATH

HERE = Path(__file__).resolve().parent
PROJECT_LOAD = (
    "from analytics_assets.definitions import defs; "
    "quiet = {'loggers': {'console': {'config': {'log_level': 'ERROR'}}}}; "
    "result = defs.resolve_implicit_global_asset_job_def().execute_in_process(run_config=quiet); "
    "raise SystemExit(0 if result.success else 1)"
)


@dataclass
class Measured:
    name: str
    scale: int
    seconds: float
    requests: int
    rows: int
    peak_mb: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


class Simulator:
    """The simulator as a separate process on a free loopback port."""

    def __init__(self, scale: int, latency_ms: float) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "analytics_assets.simulator",
                f"--scale={scale}",
                f"--port={self.port}",
                f"--latency-ms={latency_ms}",
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                self.requests()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the simulator did not start")

    def requests(self) -> int:
        with urllib.request.urlopen(self.url + STATS_PATH, timeout=5) as response:
            return int(json.load(response)["requests"])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def run_child(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of a child process."""
    started = time.perf_counter()
    child = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{args[:3]} failed")
    return elapsed, usage.ru_maxrss / 1024  # KiB on Linux


def count_rows(db: Path) -> int:
    """Rows of the raw tables (nested ones included), not of the analytics computed from them,
    so both runs are counted alike."""
    with duckdb.connect(str(db), read_only=True) as con:
        tables = con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'analytics' AND table_name NOT LIKE '\\_dlt%' ESCAPE '\\'"
        ).fetchall()
        return sum(
            con.execute(f'SELECT count(*) FROM analytics."{t}"').fetchall()[0][0]
            for (t,) in tables
            if t not in MART_TABLES
        )


def measure(name: str, sim: Simulator, scale: int, workdir: Path) -> Measured:
    db = workdir / f"{name}_{scale}.duckdb"
    env = {**os.environ, "DLT_DATA_DIR": str(workdir / f"dlt_{name}_{scale}")}
    if name == "project":
        env.update(
            SOURCES__ANALYTICS_API__BASE_URL=sim.url,
            SOURCES__ANALYTICS_API__API_TOKEN=DEFAULT_TOKEN,
            DESTINATION__DUCKDB__CREDENTIALS=str(db),
        )
        args = [sys.executable, "-c", PROJECT_LOAD]
    else:
        args = [sys.executable, str(HERE / "plain_dlt.py"), sim.url, DEFAULT_TOKEN, str(db)]
    before = sim.requests()
    seconds, peak = run_child(args, env)
    return Measured(name, scale, seconds, sim.requests() - before, count_rows(db), peak)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--memory-scale", type=int, default=5000)
    parser.add_argument("--skip-plain", action="store_true", help="only the project's runs")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="speed_bench_"))

    runs: list[Measured] = []
    sim = Simulator(args.scale, args.latency_ms)
    try:
        runs.append(measure("project", sim, args.scale, workdir))
        if not args.skip_plain:
            runs.append(measure("plain_dlt", sim, args.scale, workdir))
    finally:
        sim.stop()
    if args.memory_scale:
        sim = Simulator(args.memory_scale, args.latency_ms)
        try:
            runs.append(measure("project", sim, args.memory_scale, workdir))
        finally:
            sim.stop()

    print(f"\nlatency {args.latency_ms:g} ms per request; {os.cpu_count()} cores")
    header = f"{'run':<12}{'rooms':>7}{'seconds':>9}{'requests':>10}{'rows':>9}"
    print(header + f"{'rows/s':>9}{'peak MB':>9}")
    for r in runs:
        print(
            f"{r.name:<12}{r.scale:>7}{r.seconds:>9.1f}{r.requests:>10}{r.rows:>9}"
            f"{r.rows_per_second:>9.0f}{r.peak_mb:>9.0f}"
        )
    ok = True
    project = runs[0]
    plain = next((r for r in runs if r.name == "plain_dlt"), None)
    if plain:
        ratio = project.seconds / plain.seconds
        ok &= ratio <= 0.3
        print(f"\nproject time / plain dlt time: {ratio:.2f} (target <= 0.30)")
    big = next((r for r in runs if r.scale == args.memory_scale and r is not project), None)
    if big:
        growth = big.peak_mb / project.peak_mb
        ok &= growth < 2
        print(
            f"peak memory at {big.scale} rooms / at {project.scale} rooms: {growth:.2f} "
            "(target < 2)"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
