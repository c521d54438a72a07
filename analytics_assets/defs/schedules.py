"""Refresh jobs, grouped by how often their tables change, and their schedules.

All three are incremental except where noted; each runs the raw assets it names (and their
checks). They are created stopped: turn them on in `dagster dev` under Automation.
"""

import dagster as dg

from analytics_assets.defs.assets import asset_key

LIVE_TABLES = ["rooms", "active_room_peers"]
ACTIVITY_TABLES = ["rooms", "sessions", "analytics_events", "recordings"]
#: Computed from sessions and events: rebuilt after each activity refresh.
MART_TABLES = ["peer_minutes_daily", "unmuted_time", "client_errors_daily"]
CATALOG_TABLES = ["templates", "template_settings", "templates_destinations", "rooms"]

#: Who is in a room changes by the minute. Rooms come along (one request when none is new) so
#: that every peer's room is in the rooms table.
live_peers_job = dg.define_asset_job(
    "live_peers_refresh",
    selection=[asset_key(t) for t in LIVE_TABLES],
    description="Snapshot of the peers in live rooms, plus rooms created since the last run.",
)

#: Sessions start and end, events and recordings follow them.
activity_job = dg.define_asset_job(
    "activity_refresh",
    selection=[asset_key(t) for t in ACTIVITY_TABLES + MART_TABLES],
    description=(
        "Rooms and sessions created since the last run, sessions that were live, their events, "
        "and recordings; then the analytics computed from them."
    ),
)

#: Templates change rarely and are few: read in full. Rooms are re-read in full too, to pick up
#: changes to existing rooms (name, enabled) that the creation-time filter cannot see.
catalog_job = dg.define_asset_job(
    "catalog_refresh",
    selection=[asset_key(t) for t in CATALOG_TABLES],
    config={"ops": {"analytics_api": {"config": {"full_refresh": True}}}},
    description="Templates with their settings and destinations, and every room, in full.",
)

live_peers_schedule = dg.ScheduleDefinition(
    name="live_peers_every_5_minutes", job=live_peers_job, cron_schedule="*/5 * * * *"
)
activity_schedule = dg.ScheduleDefinition(
    name="activity_hourly", job=activity_job, cron_schedule="7 * * * *"
)
catalog_schedule = dg.ScheduleDefinition(
    name="catalog_daily", job=catalog_job, cron_schedule="17 3 * * *"
)

defs = dg.Definitions(
    jobs=[live_peers_job, activity_job, catalog_job],
    schedules=[live_peers_schedule, activity_schedule, catalog_schedule],
)
