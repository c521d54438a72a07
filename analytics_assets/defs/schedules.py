"""Refresh jobs, grouped by how often their tables change, and their schedules.

Each job runs the raw assets it names (and their checks); each has its own dlt pipeline, so its
own cursors (`warehouse/pipelines.py`). The live and hourly jobs share no table, so on a server
warehouse they load at the same time; the daily sweep shares tables with the hourly job and takes
turns with it. The schedules are created stopped: turn them on in `dagster dev` under Automation.
"""

import dagster as dg

from analytics_assets.defs.keys import asset_key
from analytics_assets.defs.marts import MART_TABLES

LIVE_TABLES = ["active_room_peers"]
ACTIVITY_TABLES = ["rooms", "sessions", "analytics_events", "recordings"]
SWEEP_TABLES = [
    "templates",
    "template_settings",
    "templates_destinations",
    "rooms",
    "recordings",
    "analytics_events",
]

#: Who is in a room changes by the minute: a snapshot of the live rooms' peers.
live_peers_job = dg.define_asset_job(
    "live_peers_refresh",
    selection=[asset_key(t) for t in LIVE_TABLES],
    description="Snapshot of the peers in live rooms.",
)

#: Sessions start and end, events and recordings follow them.
activity_job = dg.define_asset_job(
    "activity_refresh",
    selection=[asset_key(t) for t in ACTIVITY_TABLES + MART_TABLES],
    description=(
        "Rooms and sessions created since the last run, sessions that were live, the events of "
        "rooms with activity or with a session ended within the lookback, the recordings of "
        "sessions with activity and those not yet completed; then the analytics."
    ),
)

#: What the hourly rules cannot see: templates (few, no change filter), renamed and disabled
#: rooms, recordings that changed after they were final, and events the API holds that the
#: warehouse lacks (errors in rooms without activity, events later than the lookback, rows lost).
#: The analytics computed from events alone (peer minutes come from sessions: hourly).
EVENT_MARTS = ["unmuted_time", "client_errors_daily"]

sweep_job = dg.define_asset_job(
    "daily_sweep",
    selection=[asset_key(t) for t in SWEEP_TABLES + EVENT_MARTS],
    config={"ops": {"analytics_api": {"config": {"sweep": True}}}},
    description=(
        "Templates with their settings and destinations, every room and recording, and the "
        "events reconciled room by room with the API's totals; then the analytics of events."
    ),
)

live_peers_schedule = dg.ScheduleDefinition(
    name="live_peers_every_5_minutes", job=live_peers_job, cron_schedule="*/5 * * * *"
)
activity_schedule = dg.ScheduleDefinition(
    name="activity_hourly", job=activity_job, cron_schedule="7 * * * *"
)
sweep_schedule = dg.ScheduleDefinition(
    name="daily_sweep_at_0317", job=sweep_job, cron_schedule="17 3 * * *"
)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        jobs=[live_peers_job, activity_job, sweep_job],
        schedules=[live_peers_schedule, activity_schedule, sweep_schedule],
    )
