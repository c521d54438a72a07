"""What Dagster loads (`workspace.yaml`, `dagster dev`): wiring only, no logic here."""

import os

import dagster as dg
from dagster_dlt import DagsterDltResource

from analytics_assets.defs import alerts, checks, marts, schedules
from analytics_assets.defs.assets import build_analytics_assets

EXECUTORS = {"in_process": dg.in_process_executor, "multiprocess": dg.multiprocess_executor}


def executor(name: str) -> dg.ExecutorDefinition:
    if name not in EXECUTORS:
        raise ValueError(f"ANALYTICS_ASSETS_EXECUTOR={name!r}: expected one of {sorted(EXECUTORS)}")
    return EXECUTORS[name]


defs = dg.Definitions.merge(
    dg.Definitions(
        assets=[build_analytics_assets()],
        resources={"dlt": DagsterDltResource()},
        # Locally one process: a process per step costs ~5 s each, and one process keeps
        # DuckDB's single writer in one place. Production (deploy/dagster.yaml) sets
        # ANALYTICS_ASSETS_EXECUTOR=multiprocess: each step in its own process.
        executor=executor(os.environ.get("ANALYTICS_ASSETS_EXECUTOR", "in_process")),
    ),
    schedules.defs,
    alerts.defs,
    checks.defs,
    marts.defs,
)
