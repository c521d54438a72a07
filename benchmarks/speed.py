"""Full-load speed and memory, measured the way a user runs it, beside plain sequential dlt.

    .venv/bin/python benchmarks/speed.py [--scale 1000] [--latency-ms 20] [--memory-scale 5000]

The simulator runs in its own process with `--latency-ms` on every request. Each load runs in a
fresh process into its own DuckDB file:

- the project: `dagster asset materialize -m analytics_assets.definitions --select '*'`, the
  command the README gives, with a fresh `DAGSTER_HOME` so that its event log can be read back;
- the baseline: `benchmarks/plain_dlt.py`, the same endpoints as plain dlt runs them.

It prints, each beside its target:

- the project's wall time against the baseline's (target: at most 0.15x);
- the project's phases: start-up (process start to the load step), dlt's extract, normalize and
  load, the rest of the load step (Dagster's events), the analytics and checks after it, exit;
- the request floor beside the dlt step (target: the step within 1.5x). The floor is the longest
  chain of pages that had to be fetched one after another, plus every other request's latency
  shared by `workers`;
- peak memory (max RSS) of the project at `--scale` and at `--memory-scale` rooms (target: at
  most 1.5x).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from analytics_assets.simulator import DEFAULT_TOKEN
from analytics_assets.simulator.server import STATS_PATH
from analytics_assets.source.settings import WORKERS

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RAW_TABLES_ONLY = ("peer_minutes_daily", "unmuted_time", "client_errors_daily")
TARGET_RATIO = 0.15
TARGET_FLOOR = 1.5
TARGET_MEMORY = 1.5


@dataclass
class Measured:
    name: str
    scale: int
    seconds: float
    requests: int
    rows: int
    peak_mb: float
    longest_chain: int = 0
    phases: dict[str, float] = field(default_factory=dict)

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
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                self.stats()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the simulator did not start")

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + STATS_PATH, timeout=5) as response:
            return dict(json.load(response))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def run_child(args: list[str], env: dict[str, str], log: Path) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and the start time (epoch) of a child process."""
    started_at = time.time()
    started = time.perf_counter()
    with log.open("w") as stderr:
        child = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{args[:4]} failed; see {log}")
    return elapsed, usage.ru_maxrss / 1024, started_at  # KiB on Linux


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
            if t not in RAW_TABLES_ONLY and t != "analytics_events_totals"
        )


def phases(home: Path, started_at: float, ended_at: float) -> dict[str, float]:
    """Seconds per phase, from the run's event log in `home` and the dlt metadata."""
    script = f"""
import json, logging, os
os.environ["DAGSTER_HOME"] = {str(home)!r}
logging.disable(logging.WARNING)
import dagster as dg
instance = dg.DagsterInstance.get()
run = instance.get_runs()[0]
records = instance.all_logs(run.run_id)
steps, dlt = {{}}, {{}}
for r in records:
    event = r.dagster_event
    if event is None:
        continue
    if event.event_type_value in ("STEP_START", "STEP_SUCCESS"):
        steps.setdefault(r.step_key, {{}})[event.event_type_value] = r.timestamp
    if event.event_type_value == "ASSET_MATERIALIZATION" and not dlt:
        meta = event.event_specific_data.materialization.metadata
        if "dlt_seconds" in meta:
            dlt = meta["dlt_seconds"].value
print(json.dumps({{"steps": steps, "dlt": dlt, "last": records[-1].timestamp}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO
    )
    log = json.loads(done.stdout.strip().splitlines()[-1])
    load = log["steps"]["analytics_api"]
    after = [s["STEP_SUCCESS"] for k, s in log["steps"].items() if k != "analytics_api"]
    dlt = log["dlt"]
    step = load["STEP_SUCCESS"] - load["STEP_START"]
    return {
        "start-up": load["STEP_START"] - started_at,
        "extract": dlt.get("extract", 0.0),
        "normalize": dlt.get("normalize", 0.0),
        "load": dlt.get("load", 0.0),
        "rest of the load step": step - sum(dlt.values()),
        "analytics and checks": max(after, default=load["STEP_SUCCESS"]) - load["STEP_SUCCESS"],
        "exit": ended_at - log["last"],
        "dlt step": sum(dlt.values()),
        "load step": step,
    }


def measure(name: str, sim: Simulator, scale: int, workdir: Path) -> Measured:
    db = workdir / f"{name}_{scale}.duckdb"
    log = workdir / f"{name}_{scale}.log"
    env = {**os.environ, "DLT_DATA_DIR": str(workdir / f"dlt_{name}_{scale}")}
    home = workdir / f"dagster_home_{scale}"
    if name == "project":
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env.update(
            SOURCES__ANALYTICS_API__BASE_URL=sim.url,
            SOURCES__ANALYTICS_API__API_TOKEN=DEFAULT_TOKEN,
            DESTINATION__DUCKDB__CREDENTIALS=str(db),
            DAGSTER_HOME=str(home),
        )
        args = [
            str(Path(sys.executable).parent / "dagster"),
            "asset",
            "materialize",
            "-m",
            "analytics_assets.definitions",
            "--select",
            "*",
        ]
    else:
        args = [sys.executable, str(HERE / "plain_dlt.py"), sim.url, DEFAULT_TOKEN, str(db)]
    before = sim.stats()["requests"]
    seconds, peak, started_at = run_child(args, env, log)
    stats = sim.stats()
    measured = Measured(
        name,
        scale,
        seconds,
        stats["requests"] - before,
        count_rows(db),
        peak,
        longest_chain=stats["longest_chain"],
    )
    if name == "project":
        measured.phases = phases(home, started_at, started_at + seconds)
    return measured


def cpu_probe() -> float:
    """Seconds for a fixed pure-Python loop, the best of three: a shared or throttled machine
    shows here, so that figures taken on different days can be compared."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        sum(i * i for i in range(10**7))
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--memory-scale", type=int, default=5000)
    parser.add_argument("--skip-plain", action="store_true", help="only the project's runs")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="speed_bench_"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)  # DuckDB files of ~70 MB
    latency = args.latency_ms / 1000

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

    print(
        f"\nlatency {args.latency_ms:g} ms per request; {os.cpu_count()} cores; workers {WORKERS}; "
        f"this machine's speed: {cpu_probe():.2f} s for a pure-Python loop of 10^7 squares "
        "(the project's time follows it, the plain run's mostly the latency)"
    )
    header = f"{'run':<12}{'rooms':>7}{'seconds':>9}{'requests':>10}{'rows':>9}"
    print(header + f"{'rows/s':>9}{'peak MB':>9}")
    for r in runs:
        print(
            f"{r.name:<12}{r.scale:>7}{r.seconds:>9.1f}{r.requests:>10}{r.rows:>9}"
            f"{r.rows_per_second:>9.0f}{r.peak_mb:>9.0f}"
        )
    ok = True
    project = runs[0]
    print(f"\nphases of the project's full load at {project.scale} rooms (seconds):")
    for phase, seconds in project.phases.items():
        if phase not in ("dlt step", "load step"):
            print(f"  {phase:<24}{seconds:>7.2f}")
    plain = next((r for r in runs if r.name == "plain_dlt"), None)
    if plain:
        ratio = project.seconds / plain.seconds
        ok &= ratio <= TARGET_RATIO
        verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
        print(
            f"\nproject (CLI) / plain dlt: {project.seconds:.1f} s / {plain.seconds:.1f} s = "
            f"{ratio:.3f} (target <= {TARGET_RATIO}): {verdict}"
        )
    chain = project.longest_chain
    floor = chain * latency + (project.requests - chain) * latency / WORKERS
    step = project.phases["dlt step"]
    ok &= step <= TARGET_FLOOR * floor
    print(
        f"request floor: {chain} chained pages x {args.latency_ms:g} ms + "
        f"{project.requests - chain} requests x {args.latency_ms:g} ms / {WORKERS} workers = "
        f"{floor:.2f} s; dlt step (extract + normalize + load) {step:.2f} s = {step / floor:.2f}x "
        f"(target <= {TARGET_FLOOR}x): {'met' if step <= TARGET_FLOOR * floor else 'MISSED'}; "
        f"the whole Dagster step {project.phases['load step']:.2f} s"
    )
    big = next((r for r in runs if r.scale == args.memory_scale and r is not project), None)
    if big:
        growth = big.peak_mb / project.peak_mb
        ok &= growth <= TARGET_MEMORY
        print(
            f"peak memory at {big.scale} rooms / at {project.scale} rooms: {big.peak_mb:.0f} / "
            f"{project.peak_mb:.0f} MB = {growth:.2f} (target <= {TARGET_MEMORY}): "
            f"{'met' if growth <= TARGET_MEMORY else 'MISSED'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
