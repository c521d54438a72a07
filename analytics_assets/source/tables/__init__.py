"""One module per table, each holding that table's refresh rule: what it asks the API on a
first load, on an incremental refresh and in the daily sweep, and what it keeps in its state."""

from collections.abc import Callable

from dlt.extract import DltResource

from analytics_assets.source.run import Run
from analytics_assets.source.tables.active_room_peers import active_room_peers_resource
from analytics_assets.source.tables.analytics_events import analytics_events_resource
from analytics_assets.source.tables.recordings import recordings_resource
from analytics_assets.source.tables.rooms import rooms_resource
from analytics_assets.source.tables.sessions import sessions_resource
from analytics_assets.source.tables.template_settings import template_settings_resource
from analytics_assets.source.tables.templates import templates_resource
from analytics_assets.source.tables.templates_destinations import templates_destinations_resource

#: Table name -> the function that makes its dlt resource for a run.
TABLES: dict[str, Callable[[Run], DltResource]] = {
    "rooms": rooms_resource,
    "sessions": sessions_resource,
    "active_room_peers": active_room_peers_resource,
    "templates": templates_resource,
    "template_settings": template_settings_resource,
    "templates_destinations": templates_destinations_resource,
    "analytics_events": analytics_events_resource,
    "recordings": recordings_resource,
}
