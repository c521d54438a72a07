"""A contract test with the reference's own sample responses (`shared/api/examples/`, copied
into `data/api_examples/` so that every clone carries them).

A stub serves each sample file as it is, as the first page of its endpoint; the page after it
is empty (the events samples' own `next` tokens chain them: error -> track -> recording). The
source loads them, and every field of every sample must arrive in its table: the column
present, the value equal. What docs/readings.md says is reshaped is the only difference allowed:

- names are snake_cased (`customerId` -> `customer_id`), nested objects flattened with `__`
  (`data.room_id` -> `data__room_id`), lists become child tables `<table>__<field>`;
- objects keyed by ids become rows keeping the key (`sessions__peers`, `active_room_peers`
  with `room_id`, `templates__roles`, `templates_destinations` with `kind` and `key`);
- templates' embedded `settings` and `destinations` are dropped (their endpoints load them);
- settings' `recording` and `retry` are JSON columns, compared as JSON;
- timestamps are kept to the microsecond (the API sends up to nanoseconds); the zero time
  `0001-01-01T00:00:00Z` ("not set") is NULL;
- fields that hold a secret (customers' storage `credentials`) are dropped, an RTMP URL
  keeps only `rtmp://host[:port]/***` (streaming services put the stream key in its path), and
  a URL's `token` query value is masked (the recorder's `meeting_url?token=...`: the sample's
  is a mode name, a custom meeting URL's an auth token);
- an empty object or list leaves no column and no row.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import duckdb
import pytest
from dlt.common.normalizers.naming.snake_case import NamingConvention

from analytics_assets_tests.conftest import run_source

#: The reference's samples, as `shared/api/examples/` holds them (a missing file fails the tests).
EXAMPLES = Path(__file__).parent / "data" / "api_examples"
NAMING = NamingConvention()
ZERO_TIME = "0001-01-01T00:00:00Z"


def sample(name: str) -> Any:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


EVENT_CHAIN = ["analytics_events_error", "analytics_events_track", "analytics_events_recording"]


class SampleStub:
    """Serves the samples unchanged; a request past them gets the reference's empty page."""

    def __init__(self) -> None:
        stub = self
        self.paths: list[str] = []
        self.live_room = sample("sessions_list")["data"][0]["room_id"]
        #: The room the events' samples are served for (an event belongs to one room).
        self.events_room = sample("rooms_list")["data"][0]["id"]

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                stub.paths.append(url.path)
                status, body = stub.answer(url.path, parse_qs(url.query))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str, params: dict[str, list[str]]) -> tuple[int, Any]:
        start = params.get("start", [None])[0]
        lists = {
            "/v2/rooms": "rooms_list",
            "/v2/sessions": "sessions_list",
            "/v2/templates": "templates_list",
            "/v2/recordings": "recordings_list",
        }
        if path in lists:
            return 200, sample(lists[path]) if start is None else {"limit": 10, "data": []}
        if path == "/v2/analytics/events":
            nexts = [None] + [sample(name)["next"] for name in EVENT_CHAIN]
            if start in nexts[:3] and params.get("room_id") == [self.events_room]:
                return 200, sample(EVENT_CHAIN[nexts.index(start)])
            return 200, {"limit": 10, "total": 0, "next": "", "events": []}
        if path.endswith("/settings"):
            return 200, sample("template_settings")
        if path.endswith("/destinations"):
            return 200, sample("template_destinations_update_response")
        if path == f"/v2/active-rooms/{self.live_room}/peers":
            return 200, sample("active_room_peers")
        return 404, {"code": 404, "message": "not found"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    folder = tmp_path_factory.mktemp("contract")
    db = folder / "samples.duckdb"
    stub = SampleStub()
    try:  # a working directory of its own: another worker may run this module at the same time
        run_source(db, base_url=stub.url, api_token="sample-token", pipelines_dir=folder / "dlt")
    finally:
        stub.close()
    with duckdb.connect(str(db), read_only=True) as con:
        yield con


# ---- what a sample object should become --------------------------------------------------


def leaves(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, value) of every field that lands in the object's own row; lists are child
    tables and are walked separately."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from leaves(inner, (*path, key))
    elif not isinstance(value, list):
        yield path, value


def child_lists(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], list]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from child_lists(inner, (*path, key))
    elif isinstance(value, list):
        yield path, value


def column(path: tuple[str, ...]) -> str:
    return "__".join(NAMING.normalize_identifier(part) for part in path)


def same(loaded: Any, expected: Any) -> bool:
    if expected == ZERO_TIME:  # "not set"
        return loaded is None
    if isinstance(expected, str) and expected.startswith(("rtmp://", "rtmps://")):
        scheme, rest = expected.split("://", 1)
        host, _, path = rest.partition("/")
        expected = f"{scheme}://{host}/***" if path else expected
    elif isinstance(expected, str) and "://" in expected and "token=" in expected:
        expected = re.sub(r"([?&]token=)[^&#]+", r"\1***", expected)
    if isinstance(loaded, datetime) and isinstance(expected, str):
        text = expected.replace("Z", "+00:00")
        if "." in text:  # Python keeps microseconds: the API sends up to nanoseconds
            head, rest = text.split(".", 1)
            zone = rest.lstrip("0123456789")
            text = f"{head}.{rest[: len(rest) - len(zone)][:6]}{zone}"
        return loaded == datetime.fromisoformat(text)
    return bool(loaded == expected)


def check_object(
    con: duckdb.DuckDBPyConnection,
    table: str,
    where: str,
    obj: dict[str, Any],
    *,
    json_columns: tuple[str, ...] = (),
) -> list[str]:
    """Compare one object with its row (and its lists with their child rows); return what is
    missing or different, described."""
    rows = con.execute(f"SELECT * FROM analytics.{table} WHERE {where}").fetchall()
    if len(rows) != 1:
        return [f"{table} where {where}: {len(rows)} rows"]
    names = [d[0] for d in con.description]
    row = dict(zip(names, rows[0], strict=True))
    problems = []
    for path, value in leaves({k: v for k, v in obj.items() if k not in json_columns}):
        name = column(path)
        if value in (None, ZERO_TIME) and name not in row:
            continue  # a null nobody has filled yet leaves no column
        if name not in row:
            problems.append(f"{table}.{name}: no such column")
        elif not same(row[name], value):
            problems.append(f"{table}.{name}: {row[name]!r} != {value!r}")
    for name in json_columns:
        loaded = row.get(name)
        loaded = json.loads(loaded) if isinstance(loaded, str) else loaded
        if loaded != obj[name]:
            problems.append(f"{table}.{name}: {loaded!r} != {obj[name]!r}")
    for path, items in child_lists({k: v for k, v in obj.items() if k not in json_columns}):
        child = f"{table}__{column(path)}"
        got = (
            con.execute(
                f"SELECT * FROM analytics.{child} WHERE _dlt_parent_id = ? ORDER BY _dlt_list_idx",
                [row["_dlt_id"]],
            ).fetchall()
            if items
            else []
        )
        child_names = [d[0] for d in con.description] if items else []
        if len(got) != len(items):
            problems.append(f"{child}: {len(got)} rows for {len(items)} items")
            continue
        for loaded_row, item in zip(got, items, strict=True):
            values = dict(zip(child_names, loaded_row, strict=True))
            if not isinstance(item, dict):
                if not same(values.get("value"), item):
                    problems.append(f"{child}.value: {values.get('value')!r} != {item!r}")
                continue
            for leaf, value in leaves(item):
                name = column(leaf)
                if name not in values and value is not None:
                    problems.append(f"{child}.{name}: no such column")
                elif name in values and not same(values[name], value):
                    problems.append(f"{child}.{name}: {values[name]!r} != {value!r}")
    return problems


def _q(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# ---- one test per sample -------------------------------------------------------------------


def test_rooms_sample(loaded: duckdb.DuckDBPyConnection) -> None:
    problems = []
    for room in sample("rooms_list")["data"]:
        problems += check_object(loaded, "rooms", f"id = {_q(room['id'])}", room)
    assert problems == []


def test_sessions_sample_with_peers_as_rows(loaded: duckdb.DuckDBPyConnection) -> None:
    problems = []
    for session in sample("sessions_list")["data"]:
        plain = {k: v for k, v in session.items() if k != "peers"}
        problems += check_object(loaded, "sessions", f"id = {_q(session['id'])}", plain)
        for peer_id, peer in session["peers"].items():
            problems += check_object(loaded, "sessions__peers", f"id = {_q(peer_id)}", peer)
    assert problems == []


def test_active_room_peers_sample_as_rows_with_their_room(
    loaded: duckdb.DuckDBPyConnection,
) -> None:
    room_id = sample("sessions_list")["data"][0]["room_id"]
    problems = []
    peers = sample("active_room_peers")["peers"]
    for peer_id, peer in peers.items():
        row = {**peer, "room_id": room_id}
        problems += check_object(loaded, "active_room_peers", f"id = {_q(peer_id)}", row)
    assert problems == []
    assert loaded.execute("SELECT count(*) FROM analytics.active_room_peers").fetchone() == (
        len(peers),
    )


def test_templates_sample_with_roles_as_rows(loaded: duckdb.DuckDBPyConnection) -> None:
    problems = []
    for template in sample("templates_list")["data"]:
        plain = {
            k: v for k, v in template.items() if k not in ("roles", "settings", "destinations")
        }
        problems += check_object(loaded, "templates", f"id = {_q(template['id'])}", plain)
        parent = loaded.execute(
            "SELECT _dlt_id FROM analytics.templates WHERE id = ?", [template["id"]]
        ).fetchone()
        assert parent is not None
        for name, role in template["roles"].items():
            where = f"name = {_q(name)} AND _dlt_parent_id = {_q(parent[0])}"
            problems += check_object(loaded, "templates__roles", where, role)
    assert problems == []


def test_template_settings_sample(loaded: duckdb.DuckDBPyConnection) -> None:
    settings = sample("template_settings")
    problems = []
    for template in sample("templates_list")["data"]:
        problems += check_object(
            loaded,
            "template_settings",
            f"template_id = {_q(template['id'])}",
            {**settings, "template_id": template["id"]},
            json_columns=("recording", "retry"),
        )
    assert problems == []


def test_template_destinations_sample_one_row_per_kind_and_key(
    loaded: duckdb.DuckDBPyConnection,
) -> None:
    destinations = sample("template_destinations_update_response")
    problems = []
    for template in sample("templates_list")["data"]:
        for kind, entries in destinations.items():
            for key, destination in entries.items():
                where = (
                    f"template_id = {_q(template['id'])} AND kind = {_q(kind)} AND key = {_q(key)}"
                )
                problems += check_object(loaded, "templates_destinations", where, destination)
    assert problems == []


@pytest.mark.parametrize("name", EVENT_CHAIN)
def test_events_samples(loaded: duckdb.DuckDBPyConnection, name: str) -> None:
    problems = []
    for event in sample(name)["events"]:
        problems += check_object(loaded, "analytics_events", f"id = {_q(event['id'])}", event)
    assert problems == []


def test_recordings_sample(loaded: duckdb.DuckDBPyConnection) -> None:
    problems = []
    for recording in sample("recordings_list")["data"]:
        problems += check_object(loaded, "recordings", f"id = {_q(recording['id'])}", recording)
    assert problems == []


def test_every_sample_is_covered() -> None:
    covered = {
        "rooms_list",
        "sessions_list",
        "active_room_peers",
        "templates_list",
        "template_settings",
        "template_destinations_update_response",
        "recordings_list",
        *EVENT_CHAIN,
    }
    assert {path.stem for path in EXAMPLES.glob("*.json")} == covered


def test_samples_are_served_as_they_are() -> None:
    stub = SampleStub()
    try:
        status, body = stub.answer("/v2/rooms", {})
        assert (status, body) == (200, sample("rooms_list"))
        room = {"room_id": [stub.events_room]}
        events = [stub.answer("/v2/analytics/events", room)[1]]
        while events[-1]["next"]:
            following = {**room, "start": [events[-1]["next"]]}
            events.append(stub.answer("/v2/analytics/events", following)[1])
        assert events[:3] == [sample(name) for name in EVENT_CHAIN]
    finally:
        stub.close()


def test_a_field_the_loader_dropped_would_fail_the_contract(tmp_path: Path) -> None:
    """The comparison itself: a row lacking a field, or holding another value, is reported."""
    db = tmp_path / "wrong.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE SCHEMA analytics")
        con.execute("CREATE TABLE analytics.rooms (id VARCHAR, name VARCHAR, _dlt_id VARCHAR)")
        con.execute("INSERT INTO analytics.rooms VALUES ('r1', 'other', 'x')")
        problems = check_object(con, "rooms", "id = 'r1'", {"id": "r1", "name": "a", "size": 3})
    assert problems == ["rooms.name: 'other' != 'a'", "rooms.size: no such column"]
