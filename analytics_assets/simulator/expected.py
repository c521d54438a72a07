"""What a warehouse loaded from the simulator must hold, and how far a DuckDB file is from it.

Used by the main job's summary, the benchmark and the tests: one definition of "exact".
Each table is compared on its key plus the fields that change after creation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from analytics_assets.simulator.world import EVENT_RETENTION, World, parse_iso

#: The columns compared per table: the key, then what changes over a record's life.
QUERIES = {
    "rooms": "SELECT id, name, enabled FROM analytics.rooms",
    "sessions": "SELECT id, active, updated_at FROM analytics.sessions",
    "sessions__peers": (
        "SELECT s.id, p.id, p.left_at FROM analytics.sessions__peers p "
        "JOIN analytics.sessions s ON p._dlt_parent_id = s._dlt_id"
    ),
    "active_room_peers": "SELECT room_id, id FROM analytics.active_room_peers",
    "templates": "SELECT id FROM analytics.templates",
    "template_settings": "SELECT template_id FROM analytics.template_settings",
    "templates_destinations": "SELECT template_id, kind, key FROM analytics.templates_destinations",
    "analytics_events": "SELECT id FROM analytics.analytics_events",
    "recordings": "SELECT id, status, updated_at FROM analytics.recordings",
}


def expected_rows(world: World, *, events_since: datetime | None = None) -> dict[str, list[tuple]]:
    """The rows per table. Events: all served since `events_since` (our table keeps history
    past the API's 30 days); by default what the API serves now."""
    since = events_since or world.clock - EVENT_RETENTION
    return {
        "rooms": [(r["id"], r["name"], r["enabled"]) for r in world.rooms],
        "sessions": [(s["id"], s["active"], parse_iso(s["updated_at"])) for s in world.sessions],
        "sessions__peers": [
            (s["id"], peer_id, parse_iso(peer["left_at"]) if "left_at" in peer else None)
            for s in world.sessions
            for peer_id, peer in s["peers"].items()
        ],
        "active_room_peers": [
            (room["id"], peer_id)
            for room in world.rooms
            for peer_id in (world.active_peers(room["id"]) or {})
        ],
        "templates": [(t["id"],) for t in world.templates],
        "template_settings": [(t["id"],) for t in world.templates],
        "templates_destinations": [
            (t["id"], kind, key)
            for t in world.templates
            for kind, entries in t["destinations"].items()
            for key in entries
        ],
        "analytics_events": [
            (e["id"],) for e in world.events if parse_iso(e["timestamp"]) >= since
        ],
        "recordings": [
            (r["id"], r["status"], parse_iso(r["updated_at"])) for r in world.recordings
        ],
    }


def loaded_rows(db: Path | Any) -> dict[str, list[tuple]]:
    """The compared columns of every table: from a DuckDB file, or through a dlt pipeline's
    SQL client for any other destination (the same queries run on both)."""
    if isinstance(db, Path):
        with duckdb.connect(str(db), read_only=True) as con:
            return _read(lambda sql, *args: con.execute(sql, list(args)).fetchall())
    with db.sql_client() as client:

        def fetch(sql: str, *args: Any) -> list[tuple]:
            with client.execute_query(sql.replace("?", "%s"), *args) as cursor:
                return [tuple(row) for row in cursor.fetchall()]

        return _read(fetch)


def _read(fetch: Any) -> dict[str, list[tuple]]:
    existing = {
        row[0]
        for row in fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", "analytics"
        )
    }
    return {
        table: [_normalize(row) for row in fetch(sql)]
        if set(re.findall(r"analytics\.(\w+)", sql)) <= existing
        else []
        for table, sql in QUERIES.items()
    }


def _normalize(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(v.astimezone(UTC) if isinstance(v, datetime) else v for v in row)


@dataclass(frozen=True)
class TableDiff:
    table: str
    expected: int
    loaded: int
    missing: int
    unexpected: int
    duplicates: int

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.duplicates)


def compare(
    db: Path | Any, world: World, *, events_since: datetime | None = None
) -> dict[str, TableDiff]:
    """Per table: how many rows are missing, unexpected (or stale) and duplicated."""
    want = expected_rows(world, events_since=events_since)
    have = loaded_rows(db)
    diffs = {}
    for table, rows in want.items():
        expected = {_normalize(r) for r in rows}
        loaded = have.get(table, [])
        distinct = set(loaded)
        diffs[table] = TableDiff(
            table=table,
            expected=len(expected),
            loaded=len(loaded),
            missing=len(expected - distinct),
            unexpected=len(distinct - expected),
            duplicates=len(loaded) - len(distinct),
        )
    return diffs
