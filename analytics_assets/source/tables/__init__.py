"""One module per table, each holding that table's refresh rule: what it asks the API on a
first load, on an incremental refresh and in the daily sweep, and what it keeps in its state."""

from collections.abc import Callable

from dlt.extract import DltResource

from analytics_assets.source.run import Run
from analytics_assets.source.tables.active_room_peers import active_room_peers
from analytics_assets.source.tables.analytics_events import analytics_events
from analytics_assets.source.tables.recordings import recordings
from analytics_assets.source.tables.rooms import rooms
from analytics_assets.source.tables.sessions import sessions
from analytics_assets.source.tables.template_settings import template_settings
from analytics_assets.source.tables.templates import templates
from analytics_assets.source.tables.templates_destinations import templates_destinations

#: Table name -> the function that makes its dlt resource for a run.
TABLES: dict[str, Callable[[Run], DltResource]] = {
    "rooms": rooms,
    "sessions": sessions,
    "active_room_peers": active_room_peers,
    "templates": templates,
    "template_settings": template_settings,
    "templates_destinations": templates_destinations,
    "analytics_events": analytics_events,
    "recordings": recordings,
}
