"""A local, faithful simulator of the analytics API, for tests and offline runs."""

from analytics_assets.simulator.server import (
    DEFAULT_TOKEN,
    ApiSimulator,
    FaultPlan,
    RecordedRequest,
)
from analytics_assets.simulator.world import World, generate_world

__all__ = [
    "DEFAULT_TOKEN",
    "ApiSimulator",
    "FaultPlan",
    "RecordedRequest",
    "World",
    "generate_world",
]
