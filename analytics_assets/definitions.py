"""What Dagster loads (`workspace.yaml`, `dagster dev`): wiring only, no logic here."""

import dagster as dg
from dagster_dlt import DagsterDltResource

from analytics_assets.defs import alerts, checks, marts, schedules
from analytics_assets.defs.assets import build_analytics_assets

defs = dg.Definitions.merge(
    dg.Definitions(
        assets=[build_analytics_assets()],
        resources={"dlt": DagsterDltResource()},
        # One multi-asset step and its checks: a process per step would cost ~5 s each for
        # nothing, and one process keeps DuckDB's single writer in one place.
        executor=dg.in_process_executor,
    ),
    schedules.defs,
    alerts.defs,
    checks.defs,
    marts.defs,
)
