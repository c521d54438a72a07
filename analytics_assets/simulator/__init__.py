"""A local, faithful simulator of the analytics API, for tests and offline runs.

Written from the reference (`shared/api/API_NOTES.md`), never from the client: it imports
nothing from the client (the dlt source package), so that it cannot share its assumptions.
"""

from analytics_assets.simulator.readings import LENIENT, READINGS, STRICT, Reading
from analytics_assets.simulator.server import (
    DEFAULT_TOKEN,
    ApiSimulator,
    FaultPlan,
    RecordedRequest,
)
from analytics_assets.simulator.world import World, generate_world

__all__ = [
    "DEFAULT_TOKEN",
    "LENIENT",
    "READINGS",
    "STRICT",
    "ApiSimulator",
    "FaultPlan",
    "Reading",
    "RecordedRequest",
    "World",
    "generate_world",
]
