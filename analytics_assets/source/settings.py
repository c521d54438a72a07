"""Constants of the analytics API source: where it is, how it retries, what each table holds."""

DEFAULT_BASE_URL = "https://api.100ms.live"
SOURCE_NAME = "analytics_api"
DATASET_NAME = "analytics"

#: The reference allows at most 100 objects a page; fewer pages means fewer requests.
PAGE_SIZE = 100

#: The specification: retry 429/500/502/503/504, 3 retries (4 attempts), backoff factor 2.
RETRY_STATUSES = (429, 500, 502, 503, 504)
REQUEST_MAX_ATTEMPTS = 4
REQUEST_BACKOFF_FACTOR = 2.0
#: Cap on one wait (the reference's 429 asks for 45 s).
REQUEST_MAX_RETRY_DELAY = 60.0
REQUEST_TIMEOUT = 60.0
#: How long one request may wait out 429s in all: the API may answer 429 until the wait it
#: named has passed, and several windows can follow one another.
RATE_LIMIT_MAX_WAIT = 300.0

#: Child requests (peers, settings, destinations, events, recordings) in flight at once, beside
#: one request per listing paging. A 429 pauses them all; lower it if the API asks often.
WORKERS = 10
#: A listing with more pages than this is taken for an API that pages forever.
MAX_PAGES = 10_000

#: Incremental refreshes re-read this much before their cursors, for records the API lists late.
REFRESH_MARGIN_SECONDS = 300.0
#: Sessions that ended this recently are read again by every refresh: events keep arriving
#: after a session ends (`beam.recording.success` once the recording is uploaded).
LATE_EVENT_LOOKBACK_HOURS = 24.0
#: The API keeps events this long; the reconciliation compares counts over this window (or back
#: to the oldest event the API still serves).
EVENT_RETENTION_DAYS = 30

#: Every event type the reference documents: named in event requests only when the API refuses
#: requests without `type` (its track and recording pages mark it required), and in the
#: error-only query of a busy room.
EVENT_TYPES = (
    "track.add.success",
    "track.update.success",
    "track.remove.success",
    "beam.recording.success",
    "client.publish.failed",
    "client.subscribe.failed",
    "client.join.failed",
    "client.disconnected",
    "client.connect.failed",
)
#: Error events, which may carry no `session_id` (a peer that never reached a session).
ERROR_EVENT_TYPES = tuple(t for t in EVENT_TYPES if t.startswith("client."))
#: Recording statuses after which a recording no longer changes.
FINAL_RECORDING_STATUSES = ("completed", "failed")

#: Environment variable names a user sets for the token, named in errors.
TOKEN_ENV_VARS = ("API_TOKEN", "SOURCES__ANALYTICS_API__API_TOKEN")

#: One line per table, shown as the asset's description in Dagster.
RESOURCE_DESCRIPTIONS: dict[str, str] = {
    "rooms": (
        "Rooms (GET /v2/rooms, and ?enabled=false for the disabled ones), merged on id; "
        "refreshes read rooms created since; the daily sweep reads all (renames, disables)."
    ),
    "sessions": (
        "Sessions (GET /v2/sessions), merged on id; refreshes read sessions created since, and "
        "re-read those live last time. Peers (keyed by id in the API) are rows of sessions__peers."
    ),
    "active_room_peers": (
        "Who is in a live room now (GET /v2/active-rooms/{room_id}/peers for each room with a "
        "live session): a snapshot, replaced on every refresh; one row per peer with room_id."
    ),
    "templates": (
        "Room templates (GET /v2/templates), merged on id; roles are rows of templates__roles."
    ),
    "template_settings": (
        "Settings of each template (GET /v2/templates/{id}/settings), one row per template_id."
    ),
    "templates_destinations": (
        "Destinations of each template (GET /v2/templates/{id}/destinations): one row per "
        "(template_id, kind, key); kind is browserRecordings, rtmpDestinations, "
        "hlsDestinations or transcriptions, key the destination's map key."
    ),
    "analytics_events": (
        "Analytics events (GET /v2/analytics/events?room_id=), every type the API serves, "
        "merged on id (insert-only) and kept "
        "beyond the API's 30 days; refreshes read the rooms with activity or with a session "
        "that ended within the lookback; the daily sweep reconciles every room's count with "
        "the API's total (table analytics_events_totals, check events_complete)."
    ),
    "recordings": (
        "Recordings (GET /v2/recordings), merged on id; refreshes read the recordings of "
        "sessions with activity and the unfinished ones changed within the lookback; the "
        "daily sweep reads all."
    ),
}

RESOURCE_NAMES = tuple(RESOURCE_DESCRIPTIONS)
#: The tables that keep a cursor in their dlt state (the others are read whole each run).
CURSOR_TABLES = ("rooms", "sessions", "analytics_events", "recordings")
#: What the API holds per room, as its `total` said; written with analytics_events.
EVENT_TOTALS_TABLE = "analytics_events_totals"

#: Table -> the tables it is derived from, shown as asset dependencies. Peers and events
#: belong to rooms; events are fetched for the sessions with activity.
UPSTREAM: dict[str, list[str]] = {
    "active_room_peers": ["rooms"],
    "analytics_events": ["rooms", "sessions"],
    "template_settings": ["templates"],
    "templates_destinations": ["templates"],
}
