"""`make dev`: Dagster's UI on this machine (`dg dev`), ready to run every job.

    python -m analytics_assets.dev [--port 3000] [--scale 300] [--reading lenient]
        [--dagster-home dagster_home] [--duckdb data/simulated.duckdb]

When no base URL is configured (`[sources.analytics_api] base_url` in `.dlt/`, or
`SOURCES__ANALYTICS_API__BASE_URL`), the API is the local simulator: it starts here, beside the
UI, serves a simulated workspace of `--scale` rooms, and stops when the UI does; tables go to
`data/simulated.duckdb`. A configured base URL (the real API) means no simulator: the
credentials and the warehouse are the configured ones. Either way Dagster keeps its runs and
schedules in `dagster_home/` (whose `dagster.yaml` keeps the warehouse's pool at one step).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import dlt

from analytics_assets.run_simulated import BASE_URL_ENV, simulated_api_env
from analytics_assets.simulator import READINGS, ApiSimulator, generate_world

REPO = Path(__file__).resolve().parents[1]


def configured_base_url() -> str | None:
    """The base URL the user set, if any (the code's default is not a choice)."""
    return os.environ.get(BASE_URL_ENV) or dlt.config.get("sources.analytics_api.base_url", str)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3000, help="the UI's port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--scale", type=int, default=300, help="rooms of the simulated API")
    parser.add_argument("--reading", choices=sorted(READINGS), default="lenient")
    parser.add_argument(
        "--dagster-home", type=Path, default=REPO / "dagster_home", help="Dagster's storage"
    )
    parser.add_argument(
        "--duckdb",
        type=Path,
        default=REPO / "data" / "simulated.duckdb",
        help="the warehouse when the simulator serves the API",
    )
    return parser.parse_args(argv)


def _simulator(args: argparse.Namespace, env: dict[str, str]) -> ApiSimulator | None:
    """The local simulator, pointed at by `env`, unless a base URL is configured."""
    base_url = configured_base_url()
    if base_url:
        print(f"API: {base_url} (configured); no simulator.", flush=True)
        return None
    reading = READINGS[args.reading]
    world = generate_world(scale=args.scale, reading=reading)
    simulator = ApiSimulator(world, reading=reading).start()
    db = args.duckdb.resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    env.update(simulated_api_env(simulator.base_url, db))
    env.pop("DESTINATION_TYPE", None)
    print(
        f"API: the local simulator at {simulator.base_url} ({args.scale} rooms, "
        f"{reading.name} reading), tables in {db}. Set [sources.analytics_api] base_url "
        f"(or {BASE_URL_ENV}) to use the real API.",
        flush=True,
    )
    return simulator


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    # Ctrl-C stops everything, even where a shell started this with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    env = {**os.environ, "DAGSTER_HOME": str(args.dagster_home.resolve())}
    simulator = _simulator(args, env)
    print(f"Dagster UI: http://{args.host}:{args.port}", flush=True)
    dg = Path(sys.executable).parent / "dg"
    command = [str(dg), "dev", "--port", str(args.port), "--host", args.host]
    ui: subprocess.Popen[bytes] | None = None
    try:
        # `dg dev` runs the webserver, the daemon and code servers: in a process group of their
        # own, stopped together however this process is asked to stop. (SIGINT is handled
        # here, so the exec gives `dg dev` its default action even if a shell ignored it.)
        ui = subprocess.Popen(
            command,
            cwd=REPO,
            env={**env, "VIRTUAL_ENV": str(dg.parents[1])},
            start_new_session=True,
        )
        for stop in (signal.SIGTERM, signal.SIGHUP):  # `kill`, a closed terminal
            signal.signal(stop, _raise_interrupt)
        return ui.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        if ui is not None:
            _stop(ui)
        if simulator is not None:
            simulator.stop()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop(ui: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """Stop the group as Ctrl-C stops `dg dev`, then kill what is left after a grace period."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(ui.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        ui.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):  # whatever of the group outlived `dg dev`
        os.killpg(ui.pid, signal.SIGKILL)
    ui.wait()


if __name__ == "__main__":
    sys.exit(main())
