"""What Dagster loads (`workspace.yaml`, `dagster dev`, `dg`): every module of `defs/`, each
registering its own assets, checks, jobs, schedules, sensors, resources and executor."""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
