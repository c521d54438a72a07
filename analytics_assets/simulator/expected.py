"""What a warehouse loaded from the simulator must hold, and how far a warehouse is from it.

Used by the main job's summary, the benchmark and the tests: one definition of "exact". Every
field the API sends is compared, in every table the API feeds, child tables included, so that a
loader that drops, mangles or leaks a value fails. The expectation is built from the world as
the API would serve it now (under the world's reading), by the project's documented shape rules,
written here independently of the client:

- Names are snake_cased as dlt names them (`createdAt` -> `created_at`); this uses dlt's naming
  convention, which is the warehouse's naming, not the client's code.
- Nested objects are flattened with `__` (`data.room_id` -> `data__room_id`); an empty object
  leaves no column; a null is NULL.
- Lists become child tables `<table>__<field>` (deeper lists `<table>__<field>__<field>`, the
  field's path flattened as a column name would be), rows linked by `_dlt_parent_id` to the
  parent's `_dlt_id`, in order `_dlt_list_idx`; a list of scalars gives rows with a `value`
  column; an empty list gives no rows. A child row is identified by its root object's key and
  the path of list indexes down to it.
- Objects keyed by ids become rows that keep the key (identified by the key, not a position):
  a session's `peers` -> child table `sessions__peers`, each peer's fields with `id` = the map
  key; a live room's peers (`GET /v2/active-rooms/{room_id}/peers`) -> table
  `active_room_peers`, one row per peer with `id` = the map key and `room_id`; a template's
  `roles` (keyed by role name) -> child table `templates__roles` with `name` = the key; a
  template's destinations (`GET /v2/templates/{id}/destinations`: the maps
  `browserRecordings`, `rtmpDestinations`, `hlsDestinations`, `transcriptions`) -> table
  `templates_destinations`, one row per map entry with `template_id`, `kind` (the map's name,
  as sent) and `key` (the map key), plus the destination's fields (its lists as child tables
  `templates_destinations__<field>`).
- `templates` drops its embedded `settings` and `destinations` (their own endpoints load them).
- `template_settings`: one row per template, the settings object's fields plus `template_id`;
  `recording` and `retry` are JSON columns, compared as parsed JSON (an empty `{}` in a JSON
  column may be NULL or `{}`: both are accepted).
- Timestamps (strings like `2024-07-17T11:05:59.736511342Z`: 0 to 9 fraction digits, always
  `Z`) are stored as timestamps to the microsecond (digits beyond 6 are dropped, not rounded);
  the zero time `0001-01-01T00:00:00Z` is stored as NULL wherever it appears (so a column that
  only ever held it may hold only NULLs, or not exist: a missing column is all NULL).
- Every `credentials` object, wherever it appears (JSON columns included), is dropped: no
  column, no value; the rest of its parent object still loads. An RTMP URL
  (`rtmp://host[:port]/app/<stream key>`, a template's `rtmpUrls`) keeps only its scheme and
  host: `rtmp://host[:port]/***` (streaming services put the stream key in the path).
- `analytics_events`: one row per event, `data` flattened, merged on `id`; the table keeps
  events past the API's 30-day retention, so the events expected are those since
  `events_since` (default: what the API serves now), every type the world has (a client that
  sends no `type` gets the undocumented ones too).
- dlt's own columns (`_dlt_id`, `_dlt_load_id`, `_dlt_parent_id`, `_dlt_list_idx`,
  `_dlt_root_id`) are ignored except to link rows, so are variant columns (`<name>__v_<type>`)
  and tables the API does not feed (`analytics_events_totals`, `_dlt_*`, the marts). Numbers
  compare by value (an int equals the same float); booleans only equal booleans.

Each table is read once (timestamps converted to UTC by the database: a DuckDB file of half a
million events compares in seconds).
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any

import duckdb
from dlt.common.normalizers.naming.snake_case import NamingConvention

from analytics_assets.simulator.world import EVENT_RETENTION, World, iso, parse_iso, served

#: Tables the API feeds, with the columns that identify a row.
ROOT_KEYS: dict[str, tuple[str, ...]] = {
    "rooms": ("id",),
    "sessions": ("id",),
    "active_room_peers": ("room_id", "id"),
    "templates": ("id",),
    "template_settings": ("template_id",),
    "templates_destinations": ("template_id", "kind", "key"),
    "analytics_events": ("id",),
    "recordings": ("id",),
}
#: Child tables made from objects keyed by ids: a row is identified by this column (the key).
KEYED_CHILDREN = {"sessions__peers": "id", "templates__roles": "name"}
#: Columns that hold an object as JSON instead of flattening it.
JSON_COLUMNS = {"template_settings": frozenset({"recording", "retry"})}
#: dlt's own columns: only `_dlt_id`, `_dlt_parent_id` and `_dlt_list_idx` are read (to link).
DLT_COLUMNS = frozenset(
    {"_dlt_id", "_dlt_load_id", "_dlt_parent_id", "_dlt_list_idx", "_dlt_root_id"}
)
#: dlt's variant columns (a value of another type than the column's): not compared.
VARIANT = re.compile(
    r"__v_(text|double|bool|bigint|timestamp|json|complex|decimal|wei|date|time|binary)$"
)
TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z")
#: How many differences each table describes in `TableDiff.examples`.
EXAMPLES = 5

_naming = NamingConvention()
#: prefix -> field name -> column name.
_names: dict[str, dict[str, str]] = {}
_times: dict[str, Any] = {}


#: A boolean as compared: never equal to 0, 1 or "true" (a loader that stores `true` as 1 or
#: as text fails). The database turns a boolean column into these, so rows compare as tuples.
TRUE, FALSE = "⟦true⟧", "⟦false⟧"
_FLAGS = {False: FALSE, True: TRUE}

#: (root object's key, path of list indexes or map keys below it).
RowKey = tuple[tuple[Any, ...] | None, tuple[Any, ...]]
Row = dict[str, Any]
Tables = dict[str, dict[RowKey, Row]]


@dataclass
class LoadedTable:
    """One table as loaded: its compared columns, and each row's key and values (in order)."""

    columns: list[str]
    rows: list[tuple[RowKey, tuple[Any, ...]]]


# ---- the expectation ---------------------------------------------------------------------------
def expected_rows(world: World, *, events_since: datetime | None = None) -> Tables:
    """Per table, the rows a warehouse must hold (keyed by `RowKey`). Events: all served since
    `events_since` (the table keeps history past the API's 30 days); by default what the API
    serves now."""
    try:
        return _expected(world, events_since)
    finally:
        _times.clear()  # a cache of one world's timestamps: not kept between calls


def _expected(world: World, events_since: datetime | None) -> Tables:
    out: Tables = {table: {} for table in ROOT_KEYS}
    unset = world.unset_times
    for room in world.rooms:
        _add(out, "rooms", (room["id"],), room)
    for session in world.sessions:
        rendered = served("sessions", session, unset)
        _add(out, "sessions", (session["id"],), {k: v for k, v in rendered.items() if k != "peers"})
        for key, peer in rendered["peers"].items():
            _add(out, "sessions__peers", (session["id"],), {**peer, "id": key}, (key,))
    for room_id, session in world.live_sessions().items():
        for key, peer in World.peers_now(session).items():
            row = {**peer, "id": key, "room_id": room_id}
            _add(out, "active_room_peers", (room_id, key), row)
    for template in world.templates:
        _add_template(out, template)
    since = events_since or world.clock - EVENT_RETENTION
    cut = _iso_ceiling(since)
    for event in world.events:
        stamp = event["timestamp"]
        # The world's own times compare as strings (one format, to the millisecond).
        if (stamp >= cut) if len(stamp) == len(cut) else (parse_iso(stamp) >= since):
            _add(out, "analytics_events", (event["id"],), event)
    for recording in world.recordings:
        _add(out, "recordings", (recording["id"],), served("recordings", recording, unset))
    return out


def _iso_ceiling(at: datetime) -> str:
    """`at` as the API writes times, rounded up to the millisecond (so that a time written to
    the millisecond is not before `at` exactly when it is not before this string)."""
    if at.microsecond % 1000:
        at += timedelta(microseconds=1000 - at.microsecond % 1000)
    return iso(at)


def _add_template(out: Tables, template: dict[str, Any]) -> None:
    """A template's rows: itself (without settings and destinations), its roles (keyed by
    name), its settings row, and one row per destination map entry."""
    tid = template["id"]
    skip = ("settings", "destinations", "roles")
    _add(out, "templates", (tid,), {k: v for k, v in template.items() if k not in skip})
    for name, role in template["roles"].items():
        _add(out, "templates__roles", (tid,), {**role, "name": name}, (name,))
    _add(out, "template_settings", (tid,), {**template["settings"], "template_id": tid})
    for kind, entries in template["destinations"].items():
        for key, destination in entries.items():
            row = {**destination, "template_id": tid, "kind": kind, "key": key}
            _add(out, "templates_destinations", (tid, kind, key), row)


def _add(
    out: Tables, table: str, root: tuple[Any, ...], obj: dict[str, Any], path: tuple = ()
) -> None:
    row: Row = {}
    _flatten(out, table, root, path, obj, "", row)
    out.setdefault(table, {})[(root, path)] = row


def _flatten(
    out: Tables,
    table: str,
    root: tuple[Any, ...],
    path: tuple[Any, ...],
    obj: dict[str, Any],
    prefix: str,
    row: Row,
) -> None:
    """One object's fields into `row` (nested objects flattened with `__`), its lists into
    child tables; `credentials` dropped wherever they are. (Written for speed: half a million
    events pass through here.)"""
    json_columns = JSON_COLUMNS.get(table) if not prefix else None
    names = _names.get(prefix)
    if names is None:
        names = _names[prefix] = {}
    for key, value in obj.items():
        name = names.get(key)
        if name is None:
            name = names[key] = prefix + _naming.normalize_identifier(key)
        kind = type(value)
        if key == "credentials":
            continue
        if kind is str:
            row[name] = _string(value)
        elif json_columns and name in json_columns:
            row[name] = _json_value(value)
        elif kind is dict:
            _flatten(out, table, root, path, value, name + "__", row)
        elif kind is bool:
            row[name] = _FLAGS[value]
        elif kind is list:
            child = f"{table}__{name}"
            for i, item in enumerate(value):
                if type(item) is dict:
                    _add(out, child, root, item, (*path, i))
                else:
                    out.setdefault(child, {})[(root, (*path, i))] = {"value": _scalar(item)}
        else:
            row[name] = value


def _string(value: str) -> Any:
    if value[-1:] == "Z":
        return _timestamp(value)
    if value[:4].lower() == "rtmp":
        return _rtmp(value)
    return value


def _rtmp(value: str) -> str:
    """An RTMP URL as stored: its scheme and host only (no user, no stream key in its path)."""
    match = re.match(r"(?i)(rtmps?://)([^@/\s]*@)?([^/\s?#]+)(.*)$", value, re.DOTALL)
    if match is None or (match.group(2) is None and match.group(4) in ("", "/")):
        return value
    return f"{match.group(1)}{match.group(3)}/***"


def _scalar(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return _string(value)
    if kind is bool:
        return _FLAGS[value]
    return value


def _timestamp(value: str) -> Any:
    """A timestamp string as stored: UTC to the microsecond (truncated), the zero time NULL;
    any other string as it is."""
    known = _times.get(value, _times)  # (the cache itself: not seen yet)
    if known is not _times:
        return known
    match = TIMESTAMP.fullmatch(value)
    if match is None:
        return value
    fraction = (match.group(2) or "")[:6].ljust(6, "0")
    stamp = datetime.fromisoformat(match.group(1)).replace(microsecond=int(fraction))
    _times[value] = result = None if stamp == datetime(1, 1, 1) else stamp
    return result


def _json_value(value: Any) -> Any:
    """A JSON column's value as compared: parsed, `credentials` dropped, `{}` as NULL."""
    if isinstance(value, str):
        value = json.loads(value)
    value = _without_credentials(value)
    return None if value == {} else value


def _without_credentials(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_credentials(v) for k, v in value.items() if k != "credentials"}
    if isinstance(value, list):
        return [_without_credentials(v) for v in value]
    return value


# ---- the warehouse -----------------------------------------------------------------------------
Fetch = Callable[..., list[tuple[Any, ...]]]


def loaded_rows(db: Path | Any) -> dict[str, LoadedTable]:
    """Every table the API feeds (root tables and their children), each read once: from a
    DuckDB file, or through a dlt pipeline's SQL client for any other destination (the same
    queries run on both)."""
    if isinstance(db, Path):
        with duckdb.connect(str(db), read_only=True) as con:
            return _read(lambda sql, *args: con.execute(sql, list(args)).fetchall(), "analytics")
    with db.sql_client() as client:

        def fetch(sql: str, *args: Any) -> list[tuple]:
            with client.execute_query(sql.replace("?", "%s"), *args) as cursor:
                return [tuple(row) for row in cursor.fetchall()]

        return _read(fetch, getattr(db, "dataset_name", None) or "analytics")


def _read(fetch: Fetch, schema: str) -> dict[str, LoadedTable]:
    columns: dict[str, list[tuple[str, str]]] = {}
    for table, column, data_type in fetch(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? ORDER BY table_name, ordinal_position",
        schema,
    ):
        columns.setdefault(table, []).append((column, str(data_type).lower()))
    fed = [t for t in columns if t in ROOT_KEYS or any(t.startswith(f"{r}__") for r in ROOT_KEYS)]
    parents = {t for t in fed if any(u.startswith(f"{t}__") for u in fed)}
    links: dict[Any, RowKey] = {}  # _dlt_id -> the row's key, for its children
    tables = {}
    for table in sorted(fed, key=lambda t: (t.count("__"), t)):  # parents before children
        read = _read_table(fetch, schema, table, columns[table], links, table in parents)
        tables[table] = read
    return tables


def _read_table(
    fetch: Fetch,
    schema: str,
    table: str,
    columns: list[tuple[str, str]],
    links: dict[Any, RowKey],
    parent: bool,
) -> LoadedTable:
    """One table's compared columns, each row keyed: a root row by its key columns, a child
    row by its parent's key plus its list index (or, keyed children, its key column). The
    database does the conversions it can (timestamps to UTC, booleans to `TRUE`/`FALSE`), so
    a row is compared as the tuple it is fetched as."""
    present = {name for name, _ in columns}
    compared = [(n, t) for n, t in columns if n not in DLT_COLUMNS and not VARIANT.search(n)]
    linking = ["_dlt_id"] if parent and "_dlt_id" in present else []
    if table not in ROOT_KEYS:
        linking += [n for n in ("_dlt_parent_id", "_dlt_list_idx") if n in present]
    select = [_select(name, data_type) for name, data_type in compared]
    select += [f'"{name}"' for name in linking]
    if not select:
        return LoadedTable([], [])
    rows = fetch(f'SELECT {", ".join(select)} FROM "{schema}"."{table}"')
    order = [name for name, _ in compared]
    json_at = [i for i, (n, t) in enumerate(compared) if _is_json(table, n, t)]
    if json_at:
        rows = [_parsed(row, json_at) for row in rows]
    width = len(order)
    at = {name: width + i for i, name in enumerate(linking)}
    if table in ROOT_KEYS:
        keys = _root_keys(rows, [order.index(c) if c in order else None for c in ROOT_KEYS[table]])
    else:
        keyed = KEYED_CHILDREN.get(table)
        step = order.index(keyed) if keyed in order else at.get("_dlt_list_idx")
        keys = _child_keys(rows, at.get("_dlt_parent_id"), step, links)
    if "_dlt_id" in at:
        own = at["_dlt_id"]
        for key, row in zip(keys, rows, strict=True):
            links[row[own]] = key
    values = [row[:width] for row in rows] if linking else rows
    return LoadedTable(order, list(zip(keys, values, strict=True)))


def _root_keys(rows: list[tuple[Any, ...]], key_at: list[int | None]) -> list[RowKey]:
    if len(key_at) == 1 and key_at[0] is not None:
        i = key_at[0]
        return [((row[i],), ()) for row in rows]
    return [(tuple(None if i is None else row[i] for i in key_at), ()) for row in rows]


def _child_keys(
    rows: list[tuple[Any, ...]],
    parent_at: int | None,
    step_at: int | None,
    links: dict[Any, RowKey],
) -> list[RowKey]:
    """A child row's key: its parent's, plus its own step (list index, or key). A row whose
    parent is not found is an orphan (root None): never expected."""
    keys: list[RowKey] = []
    for row in rows:
        found = None if parent_at is None else links.get(row[parent_at])
        step = None if step_at is None else row[step_at]
        keys.append((None, (step,)) if found is None else (found[0], (*found[1], step)))
    return keys


def _select(name: str, data_type: str) -> str:
    """A column as selected: a timestamp with time zone converted to naive UTC by the
    database (much cheaper to fetch than an aware one), a boolean as `TRUE`/`FALSE`."""
    if "timestamp" in data_type and "with time zone" in data_type:
        return f"\"{name}\" AT TIME ZONE 'UTC'"
    if data_type == "boolean":
        return f"CASE WHEN \"{name}\" THEN '{TRUE}' WHEN NOT \"{name}\" THEN '{FALSE}' END"
    return f'"{name}"'


def _is_json(table: str, name: str, data_type: str) -> bool:
    """A JSON column (one stored as text too: it is compared as parsed JSON either way)."""
    return name in JSON_COLUMNS.get(table, ()) or data_type in ("json", "jsonb")


def _parsed(row: tuple[Any, ...], json_at: list[int]) -> tuple[Any, ...]:
    values = list(row)
    for i in json_at:
        values[i] = _loaded_json(values[i])
    return tuple(values)


def _loaded_json(value: Any) -> Any:
    """Parsed as loaded (credentials left in, to be caught); `{}` as NULL."""
    if isinstance(value, str):
        value = json.loads(value)
    return None if value == {} else value


# ---- the comparison ----------------------------------------------------------------------------
@dataclass(frozen=True)
class TableDiff:
    table: str
    expected: int
    loaded: int
    missing: int
    unexpected: int
    duplicates: int
    #: Rows whose key matches but a value differs (a column lost, mangled or leaked).
    wrong_values: int = 0
    #: A few of the differences, described: table, key, column, expected vs loaded.
    examples: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.duplicates or self.wrong_values)


def compare(
    db: Path | Any, world: World, *, events_since: datetime | None = None
) -> dict[str, TableDiff]:
    """Per table (child tables included): how many rows are missing, unexpected (or stale),
    duplicated, or hold a wrong value, with a few examples. The garbage collector is paused
    meanwhile: the millions of (acyclic) values built here would only make it scan, again and
    again, for nothing (a quarter of the time at half a million events)."""
    paused = gc.isenabled()
    gc.disable()
    try:
        want = expected_rows(world, events_since=events_since)
        have = loaded_rows(db)
        tables = [*want, *(t for t in have if t not in want)]
        return {
            table: _diff(table, want.get(table, {}), have.get(table, LoadedTable([], [])))
            for table in tables
        }
    finally:
        if paused:
            gc.enable()


def _diff(table: str, want: dict[RowKey, Row], have: LoadedTable) -> TableDiff:
    seen: dict[RowKey, tuple[Any, ...]] = {}
    for key, values in have.rows:
        seen.setdefault(key, values)
    match = _Matcher(have.columns)
    examples: list[str] = []
    wrong = 0
    for key, row in want.items():
        loaded = seen.get(key)
        if loaded is None or match(row, loaded):
            continue
        wrong += 1
        if len(examples) < EXAMPLES:
            examples += _differences(table, key, row, dict(zip(have.columns, loaded, strict=True)))
    missing = [key for key in want if key not in seen]
    unexpected = [key for key in seen if key not in want]
    examples += [f"{table} {_key(k)}: missing" for k in missing[:EXAMPLES]]
    examples += [f"{table} {_key(k)}: not expected" for k in unexpected[:EXAMPLES]]
    return TableDiff(
        table=table,
        expected=len(want),
        loaded=len(have.rows),
        missing=len(missing),
        unexpected=len(unexpected),
        duplicates=len(have.rows) - len(seen),
        wrong_values=wrong,
        examples=examples[: EXAMPLES * 3],
    )


class _Matcher:
    """Whether a loaded row holds exactly an expected row's values: each expected value at
    its column, and no other value (as many non-NULL values loaded as expected). Rows of one
    shape (the same fields) share a plan, so half a million events compare in about a
    second. An expected field without a column must be NULL (a missing column is all NULL)."""

    def __init__(self, columns: list[str]) -> None:
        self.at = {name: i for i, name in enumerate(columns)}
        self.plans: dict[tuple[str, ...], _Plan] = {}

    def __call__(self, row: Row, loaded: tuple[Any, ...]) -> bool:
        shape = tuple(row)
        plan = self.plans.get(shape)
        if plan is None:
            plan = self.plans[shape] = self._plan(shape)
        getter, kept, absent = plan
        values = tuple(row.values())
        if absent:
            if any(values[i] is not None for i in absent):
                return False
            values = tuple(values[i] for i in kept)
        return getter(loaded) == values and (
            len(loaded) - loaded.count(None) == len(values) - values.count(None)
        )

    def _plan(self, shape: tuple[str, ...]) -> _Plan:
        kept = [i for i, name in enumerate(shape) if name in self.at]
        absent = [i for i, name in enumerate(shape) if name not in self.at]
        positions = [self.at[shape[i]] for i in kept]
        getter: Callable[[tuple[Any, ...]], tuple[Any, ...]]
        if len(positions) == 1:
            only = positions[0]
            getter = lambda loaded: (loaded[only],)  # noqa: E731
        elif not positions:
            getter = lambda loaded: ()  # noqa: E731
        else:
            getter = itemgetter(*positions)
        return getter, kept, absent


_Plan = tuple[Callable[[tuple[Any, ...]], tuple[Any, ...]], list[int], list[int]]


def _differences(table: str, key: RowKey, want: Row, have: Row) -> list[str]:
    described = []
    for column in sorted(want.keys() | have.keys()):
        expected, loaded = want.get(column), have.get(column)
        if not _same(expected, loaded):
            where = "" if column in have else " (no such column)"
            described.append(
                f"{table} {_key(key)} {column}: expected {_show(expected)}, "
                f"loaded {_show(loaded)}{where}"
            )
    return described[:EXAMPLES]


def _same(a: Any, b: Any) -> bool:
    return bool(a == b)


def _show(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat() + "Z"
    if value in (TRUE, FALSE):
        return "true" if value == TRUE else "false"
    return repr(value)


def _key(key: RowKey) -> str:
    root, path = key
    shown = "/".join(str(part) for part in (*(root or ("?",)), *path))
    return f"[{shown}]"


def credentials_leaked(db: Path, world: World) -> list[str]:
    """Where a storage key or secret of the world sits in a DuckDB file, if anywhere: every
    text and JSON column of every table, in every schema, is searched (a helper for tests and
    the benchmark; `compare` already fails a leak into the tables the API feeds)."""
    secrets = world.credential_values()
    found: list[str] = []
    with duckdb.connect(str(db), read_only=True) as con:
        for schema, table, column in con.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns "
            "WHERE data_type IN ('VARCHAR', 'JSON')"
        ).fetchall():
            # The world's keys and secrets all carry a marker: the database finds candidates.
            candidates = con.execute(
                f'SELECT DISTINCT CAST("{column}" AS VARCHAR) FROM "{schema}"."{table}" '
                f"WHERE contains(CAST(\"{column}\" AS VARCHAR), 'SIMSECRET-') "
                f"OR contains(CAST(\"{column}\" AS VARCHAR), 'AKIASIM')"
            ).fetchall()
            if any(secret in value for (value,) in candidates for secret in secrets):
                found.append(f"{schema}.{table}.{column}")
    return found
