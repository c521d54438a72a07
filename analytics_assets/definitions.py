"""What Dagster loads (`workspace.yaml`, `dagster dev`, `dg`): every module of `defs/`, each
registering its own assets, checks, jobs, schedules, sensors, resources and executor.

A `Definitions` object, built once when the module is imported: the CLI loads its code location
several times in one command, and a `@dg.definitions` function would build the whole tree each
time (six times for one `dagster asset materialize`, measured)."""

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
