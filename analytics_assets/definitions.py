"""What Dagster loads (`workspace.yaml`, `dagster dev`, `dg`): wiring only, no logic here."""

import dagster as dg
from dagster_dlt import DagsterDltResource

from analytics_assets.defs import alerts, checks, marts, schedules
from analytics_assets.defs.assets import build_analytics_assets
from analytics_assets.defs.execution import executor

defs = dg.Definitions.merge(
    dg.Definitions(
        assets=[build_analytics_assets()],
        resources={"dlt": DagsterDltResource()},
        executor=executor(),
    ),
    schedules.defs,
    alerts.defs,
    checks.defs,
    marts.defs,
)
