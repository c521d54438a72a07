"""Events as Arrow tables: the same rows, without dlt's per-row work.

Events are most of what the API sends (a busy workspace holds half a million). Handed to dlt as
Python dicts, every value is encoded again by its extractor, decoded and typed one row at a
time by its normalizer, and written as text for the loader: about 8,000 events a second here.
As Arrow tables, dlt writes them as Parquet and loads them as they are.

The events are turned into tables a batch at a time (`EventColumns.items`, about `BATCH_ROWS`
events): written back as JSON lines (orjson) and read by Arrow's JSON reader, which parses and
types them in C++ without holding Python's lock, then handled column by column. Per event that
costs a few microseconds of Python; converting value by value in Python cost fifteen.

The rows are the ones dlt makes of the dicts, by the same documented rules:

- nested objects flattened with `__` into snake_cased names (`data.roomId` -> `data__room_id`,
  dlt's naming convention); an empty object leaves no column; a null is NULL;
- timestamps (ISO 8601 with a zone, 0 to 9 fraction digits) as timestamps to the microsecond,
  the Go zero time as NULL; any other text stays text: Arrow's reader would take `2024-01-01`
  or a zone-less `2024-01-01 10:00:00` for a time, so a field it reads as one is read again as
  text (and remembered for the run's later batches); secrets dropped and masked as `shapes.py`
  does;
- an event that carries a list (an error's `devices`, a recording's `rtmp`) keeps the dict
  path, so that its lists become child tables as everywhere else;
- a batch Arrow cannot type as one table (a field that is a number in one event and a string
  in another), or whose types differ from those the table already has, keeps the dict path
  too: dlt then makes its variant columns, as it would have.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeAlias

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
from dlt.common.normalizers.naming.snake_case import NamingConvention

from analytics_assets.source.shapes import clean_in_place, is_secret_field, mask_secret_in_url

#: An ISO 8601 date-time as the API writes them, with a zone.
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)", re.ASCII)
#: Fraction digits beyond the microsecond, dropped (not rounded) before the cast.
_NANOS = r"(\.\d{6})\d+"
_TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")
#: The Go zero time: "not set".
_ZERO_TIME = "0001-01-01T00:00:00"
#: Arrow types as the dlt data types they load as.
_DLT_TYPES = {
    pa.string(): "text",
    pa.int64(): "bigint",
    pa.float64(): "double",
    pa.bool_(): "bool",
    _TIMESTAMP_TYPE: "timestamp",
}

Item: TypeAlias = pa.Table | list[dict[str, Any]]
#: The events' primary key.
KEY = "id"
#: Events per Arrow table handed to dlt: dlt merges each table's schema into its own, and each
#: batch costs a few dozen Arrow calls, so fewer, larger tables cost less.
BATCH_ROWS = 20_000


class NotColumnar(Exception):
    """A batch that must keep the dict path."""


class EventColumns:
    """Turns batches of events into Arrow tables, for one run. `known` holds the dlt data types
    the table already has (column -> type); each batch's types must agree with them."""

    def __init__(self, known: Mapping[str, str] | None = None) -> None:
        self._naming = NamingConvention()
        self._names: dict[str, dict[str, str]] = {}
        self._timestamps: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._known: dict[str, str] = dict(known or {})
        #: Key paths Arrow's reader took for times: read as text from then on.
        self._as_text: set[tuple[str, ...]] = set()

    def items(self, events: list[dict[str, Any]]) -> list[Item]:
        """What dlt is given for these events: an Arrow table of the flat ones, the others
        (with a list, or in a batch Arrow cannot type) as cleaned dicts."""
        if not events:
            return []
        try:
            table, nested = self._read(events)
        except NotColumnar:
            return [clean_in_place(events)]
        rows = clean_in_place([events[i] for i in nested])
        return [
            *([table] if table is not None and table.num_rows else []),
            *([rows] if rows else []),
        ]

    def _read(self, events: list[dict[str, Any]]) -> tuple[pa.Table | None, list[int]]:
        """The flat events as a table, and the positions of those that carry a list."""
        lines = b"\n".join(map(orjson.dumps, events))
        with self._lock:
            as_text = frozenset(self._as_text)
        read = _parse(lines, as_text)
        times = _time_paths(read.schema)
        if times:  # Arrow's idea of a time, not the API's: read those fields as text
            with self._lock:
                self._as_text |= times
                as_text = frozenset(self._as_text)
            read = _parse(lines, as_text)
            if _time_paths(read.schema):
                raise NotColumnar("a field Arrow reads as a time")
        columns, nested = self._columns(read)
        positions = pc.indices_nonzero(nested).to_pylist() if nested is not None else []
        if positions:
            keep = pc.invert(nested)
            columns = {name: column.filter(keep) for name, column in columns.items()}
        columns = {name: c for name, c in columns.items() if c.null_count < len(c)}
        return (self._table(columns) if columns else None), positions

    def _columns(self, read: pa.Table) -> tuple[dict[str, pa.Array], pa.Array | None]:
        """Column -> values (nested objects flattened, secrets left out), and which events
        carry a non-empty list."""
        columns: dict[str, pa.Array] = {}
        nested: pa.Array | None = None
        stack: list[tuple[str, list[tuple[str, pa.Array]]]] = [
            ("", [(name, read.column(name).combine_chunks()) for name in read.column_names])
        ]
        while stack:
            prefix, fields = stack.pop()
            names = self._names_under(prefix)
            for key, child in fields:
                name = names.get(key)
                if name is None:
                    name = names[key] = self._name(prefix, key)
                kind = child.type
                if not name or pa.types.is_null(kind):
                    continue
                if pa.types.is_struct(kind):
                    inner = [(f.name, a) for f, a in zip(kind, child.flatten(), strict=True)]
                    stack.append((name + "__", inner))
                elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
                    has = pc.fill_null(pc.greater(pc.list_value_length(child), 0), False)
                    nested = has if nested is None else pc.or_(nested, has)
                else:
                    columns[name] = child
        return columns, nested

    def _names_under(self, prefix: str) -> dict[str, str]:
        """Key -> column name under a prefix ("" for a key that holds a secret)."""
        names = self._names.get(prefix)
        if names is None:
            names = self._names[prefix] = {}
        return names

    def _name(self, prefix: str, key: str) -> str:
        return "" if is_secret_field(key) else prefix + self._naming.normalize_identifier(key)

    def _table(self, columns: dict[str, pa.Array]) -> pa.Table:
        arrays = {}
        for name, array in columns.items():
            if pa.types.is_string(array.type):
                array = self._strings(name, array)
            arrays[name] = self._as_known(name, array)
        with self._lock:
            for name, array in arrays.items():
                self._known.setdefault(name, _DLT_TYPES[array.type])
        # The key is never null, as its column in dlt's schema says.
        schema = pa.schema(pa.field(n, a.type, nullable=n != KEY) for n, a in arrays.items())
        return pa.Table.from_arrays(list(arrays.values()), schema=schema)

    def _strings(self, name: str, array: pa.Array) -> pa.Array:
        """Timestamps cast (zero time NULL); secrets inside URLs masked."""
        is_time = self._timestamps.get(name)
        if is_time is None:
            first = array.drop_null()[0].as_py()
            is_time = self._timestamps[name] = _TIMESTAMP.fullmatch(first) is not None
        if is_time:
            unset = pc.starts_with(array, _ZERO_TIME)
            array = pc.if_else(unset, pa.scalar(None, pa.string()), array)
            try:
                return pc.cast(pc.replace_substring_regex(array, _NANOS, r"\1"), _TIMESTAMP_TYPE)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise NotColumnar(name) from exc  # not all times: dlt keeps both (a variant)
        if pc.any(pc.match_substring(array, "://")).as_py():
            return pa.array([mask_secret_in_url(v) if v else v for v in array.to_pylist()])
        return array

    def _as_known(self, name: str, array: pa.Array) -> pa.Array:
        """The array as the type the column already has; a batch that does not fit keeps the
        dict path."""
        if array.type not in _DLT_TYPES:
            raise NotColumnar(name)
        known = self._known.get(name)
        if known is None or known == _DLT_TYPES[array.type]:
            return array
        if known == "double" and array.type == pa.int64():
            return array.cast(pa.float64())
        raise NotColumnar(name)


def _parse(lines: bytes, as_text: frozenset[tuple[str, ...]]) -> pa.Table:
    """JSON lines as one table, the fields at `as_text` as text, the others as Arrow infers."""
    options = pa_json.ReadOptions(use_threads=False, block_size=max(len(lines), 1 << 16) + 1)
    parse = pa_json.ParseOptions(
        newlines_in_values=False,
        explicit_schema=_text_schema(as_text),
        unexpected_field_behavior="infer",
    )
    try:
        return pa_json.read_json(io.BytesIO(lines), options, parse)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise NotColumnar("the events do not make one table") from exc


def _time_paths(fields: Iterable[pa.Field], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """The key paths of the fields Arrow typed as times, at any depth (not inside lists: events
    with lists keep the dict path)."""
    found: set[tuple[str, ...]] = set()
    for field in fields:
        if pa.types.is_timestamp(field.type) or pa.types.is_date(field.type):
            found.add((*prefix, field.name))
        elif pa.types.is_struct(field.type):
            found |= _time_paths(field.type, (*prefix, field.name))
    return found


def _text_schema(paths: frozenset[tuple[str, ...]]) -> pa.Schema | None:
    """A schema that types the fields at these key paths as text (their parents as objects)."""
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for key in path[:-1]:
            child = node.setdefault(key, {})
            if child is None:
                raise NotColumnar(".".join(path))  # a time in one batch, an object in another
            node = child
        node.setdefault(path[-1], None)

    def fields(node: dict[str, Any]) -> list[pa.Field]:
        return [
            pa.field(key, pa.string() if child is None else pa.struct(fields(child)))
            for key, child in node.items()
        ]

    return pa.schema(fields(tree)) if tree else None


def known_columns(schema_tables: Mapping[str, Any], table: str) -> dict[str, str]:
    """The data types a table's columns have in a dlt schema (`schema.tables`)."""
    columns = (schema_tables.get(table) or {}).get("columns") or {}
    return {name: col["data_type"] for name, col in columns.items() if col.get("data_type")}


def batched(events: Iterator[list[dict[str, Any]]], columns: EventColumns) -> Iterator[Item]:
    """The events, in batches of about `BATCH_ROWS`, as `EventColumns.items` makes them."""
    waiting: list[dict[str, Any]] = []
    for chunk in events:
        waiting.extend(chunk)
        if len(waiting) >= BATCH_ROWS:
            yield from columns.items(waiting)
            waiting = []
    yield from columns.items(waiting)
