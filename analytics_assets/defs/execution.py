"""Where the steps of a run execute, chosen by `ANALYTICS_ASSETS_EXECUTOR`.

- `in_process` (the default): every step in the run's own process. A process per step costs
  seconds each, and one process keeps DuckDB's single writer in one place.
- `multiprocess`: each step in a process of its own, on the machine that runs the run
  (`deploy/dagster.yaml`).
- `celery`: each step on a Celery worker, wherever workers run (`deploy/celery.yaml`); the
  broker and the results backend come from `DAGSTER_CELERY_BROKER_URL` and
  `DAGSTER_CELERY_BACKEND_URL` (e.g. `redis://host:6379/0`). The run's own process only
  hands the steps out and waits for them.
"""

import os

import dagster as dg

EXECUTOR_ENV = "ANALYTICS_ASSETS_EXECUTOR"
BROKER_ENV = "DAGSTER_CELERY_BROKER_URL"
BACKEND_ENV = "DAGSTER_CELERY_BACKEND_URL"


def celery() -> dg.ExecutorDefinition:
    from dagster_celery import celery_executor  # only where Celery is in use

    return celery_executor.configured(
        {"broker": {"env": BROKER_ENV}, "backend": {"env": BACKEND_ENV}},
        name="celery",
    )


EXECUTORS = {
    "in_process": lambda: dg.in_process_executor,
    "multiprocess": lambda: dg.multiprocess_executor,
    "celery": celery,
}


def executor() -> dg.ExecutorDefinition:
    name = os.environ.get(EXECUTOR_ENV, "in_process")
    if name not in EXECUTORS:
        raise ValueError(f"{EXECUTOR_ENV}={name!r}: expected one of {sorted(EXECUTORS)}")
    return EXECUTORS[name]()


@dg.definitions
def defs() -> dg.Definitions:
    """Project-wide policy: where the steps of every job run."""
    return dg.Definitions(executor=executor())
