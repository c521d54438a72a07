"""A local HTTP simulator of the analytics API's eight GET endpoints.

It answers the way `shared/api/API_NOTES.md` describes the reference, including its awkward
parts, so that the pipeline and its tests meet them offline. Where the reference is ambiguous or
strict, it plays the `Reading` it is given (`readings.py`): `start` inclusive or not, lists
newest first or oldest first, rooms listed without `enabled` being all rooms or the enabled ones
(sessions without `active`: all, or the live ones),
events' `type` optional or required, a 429's wait in a header or only in its message.

- bearer auth: the static token, or a management token (HS256 JWT) signed with `app_secret`
  for `app_access_key`, signature, claims and expiry checked; anything else is a 401;
- lists (`rooms`, `sessions`, `templates`, `recordings`) page with `limit`/`start`/`last`;
- events page with an opaque `next`, require `room_id` (400 without), filter by `type`,
  `session_id` (which never matches an event without one) and the other ids, count the
  matches in `total`, and only serve 30 days;
- active-room peers are an object keyed by peer id; a room that is not live answers 404 or an
  empty object (the reading's `inactive_peers`);
- settings and destinations are bare objects;
- every answer's `Date` header is the simulated clock, as a real server's is its own;
- faults: scripted or random 429, 5xx, dropped connections, answers slower than the client
  waits, 200s with an HTML page or cut-off JSON, and latency; broken cursors (`ignore_start`:
  lists answer the first page whatever `start` says; `stuck_cursor`: lists page on but hand back
  the same `last`; `endless_pages`: events always hand out a fresh `next`).

Every request is recorded in `ApiSimulator.requests` so tests can assert what the API saw.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jwt

from analytics_assets.simulator.readings import LENIENT, Reading
from analytics_assets.simulator.world import World, parse_iso

DEFAULT_TOKEN = "simulator-management-token"
STATS_PATH = "/_simulator/stats"
TRANSIENT_STATUSES = (429, 500, 502, 503, 504)
#: The event types the reference documents (the track, recording and error events pages).
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


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        fault: int | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.fault = fault  # set when injected, not earned


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    params: dict[str, list[str]]
    #: The status answered; 0 for a connection dropped without an answer.
    status: int
    #: `time.monotonic()` when the request arrived.
    at: float = 0.0
    #: The injected fault, if any (a status, or drop / slow / html200 / badjson).
    fault: str | None = None


#: Faults that are not a status: a connection closed without an answer, an answer slower than
#: the client waits, a 200 carrying an HTML error page, a 200 whose JSON is cut off.
DROP, SLOW, HTML_200, BAD_JSON = "drop", "slow", "html200", "badjson"
Fault = int | str
RANDOM_FAULTS: tuple[Fault, ...] = (*TRANSIENT_STATUSES, DROP, SLOW)


@dataclass
class FaultPlan:
    """Which requests fail, and how.

    `scripted` maps a path prefix to faults answered, in order, before it answers normally
    (None in the list: that request is answered normally);
    `always` maps a path prefix to a fault it answers every time; `rate` is the share of other
    requests that get a random transient fault (429 with `Retry-After`, 5xx, a dropped
    connection, a slow answer), seeded. A transient fault clears: the same request is not given
    more than `max_consecutive` random faults in a row (the retry policy allows 3 retries).
    """

    scripted: dict[str, list[Fault | None]] = field(default_factory=dict)
    always: dict[str, Fault] = field(default_factory=dict)
    rate: float = 0.0
    retry_after: int = 1
    slow_seconds: float = 2.0
    max_consecutive: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._streak: dict[str, int] = {}
        # Which requests fail is random; the kinds take turns, so a few faults cover them all.
        self._kinds = itertools.cycle(RANDOM_FAULTS)

    def fault_for(self, path: str, request_key: str = "") -> Fault | None:
        with self._lock:
            for prefix, fault in self.always.items():
                if path.startswith(prefix):
                    return fault
            for prefix, queue in self.scripted.items():
                if path.startswith(prefix) and queue:
                    return queue.pop(0)
            key = request_key or path
            streak = self._streak.get(key, 0)
            if self.rate and streak < self.max_consecutive and self._rng.random() < self.rate:
                self._streak[key] = streak + 1
                return next(self._kinds)
            self._streak.pop(key, None)
        return None


def _error(status: int, retry_after: int, *, header: bool = True) -> ApiError:
    if status == 429:
        return ApiError(
            429,
            f"rate limit exceeded, retry after {retry_after} seconds",
            {"Retry-After": str(retry_after)} if header else {},
            fault=429,
        )
    return ApiError(status, "internal error, please retry", fault=status)


def _fault_name(fault: Fault | None) -> str | None:
    return None if fault is None else str(fault)


_LIST_FILTERS: dict[str, dict[str, str]] = {
    # query parameter -> field it filters on ("after"/"before" compare creation times)
    "rooms": {"enabled": "enabled", "name": "name", "template_id": "template_id"},
    "sessions": {"room_id": "room_id", "active": "active"},
    "recordings": {"room_id": "room_id", "session_id": "session_id", "status": "status"},
    "templates": {},
}
_MIN_LIMIT = {"rooms": 10, "sessions": 10, "templates": 10, "recordings": 1}


class ApiSimulator:
    """Serves a `World` on loopback. Use as a context manager, or `start()`/`stop()`."""

    def __init__(
        self,
        world: World,
        *,
        token: str = DEFAULT_TOKEN,
        reading: Reading = LENIENT,
        latency: float = 0.0,
        faults: FaultPlan | None = None,
        app_access_key: str | None = None,
        app_secret: str | None = None,
        ignore_start: bool = False,
        stuck_cursor: bool = False,
        endless_pages: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.world = world
        self.reading = reading
        self.token = token
        self.latency = latency
        self.faults = faults or FaultPlan()
        self.ignore_start = ignore_start
        self.stuck_cursor = stuck_cursor
        #: (collection, start) -> pages served for it, for `stuck_cursor`.
        self._stuck_pages: dict[tuple[str, str], int] = {}
        #: Under `rate_limit_in_message`: every request is a 429 until this `time.monotonic()`.
        self._limited_until = 0.0
        self.app_access_key = app_access_key
        self.app_secret = app_secret
        #: The `jti` of every management token it accepted.
        self.tokens_seen: set[str] = set()
        self.endless_pages = endless_pages
        self.requests: list[RecordedRequest] = []
        #: The most requests it was answering at once.
        self.max_in_flight = 0
        self._in_flight = 0
        self.lock = threading.RLock()
        self._server = _Server((host, port), _handler_for(self))
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ApiSimulator:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ApiSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- what tests ask ----------------------------------------------------------------------
    def requests_to(self, prefix: str) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    def stats(self) -> dict[str, Any]:
        """Requests received so far, for a benchmark that runs the simulator in another process
        (`GET /_simulator/stats`): their number, the most answered at once, and the longest
        chain of pages that had to be asked one after another (the requests of one listing,
        which differ only in `start`)."""
        with self.lock:
            chains: dict[str, int] = {}
            for request in self.requests:
                if request.status != 200:
                    continue
                rest = sorted((k, v) for k, v in request.params.items() if k != "start")
                key = f"{request.path}?{rest}"
                chains[key] = chains.get(key, 0) + 1
            return {
                "requests": len(self.requests),
                "max_in_flight": self.max_in_flight,
                "longest_chain": max(chains.values(), default=0),
            }

    def reset_requests(self) -> None:
        with self.lock:
            self.requests.clear()

    @contextmanager
    def moving(self) -> Iterator[World]:
        """Hold the world still against concurrent requests while a test changes it."""
        with self.lock:
            yield self.world

    # ---- request handling --------------------------------------------------------------------
    def handle(
        self, path: str, params: dict[str, list[str]], auth: str | None, request_key: str = ""
    ) -> tuple[Any, Fault | None]:
        """The body to answer, and the non-status fault to answer it with, if any."""
        if self.latency:
            time.sleep(self.latency)
        if not self._authorized(auth):
            raise ApiError(401, "unauthorized: token missing, invalid or expired")
        self._still_limited()
        fault = self.faults.fault_for(path, request_key)
        if fault == 429 and self.reading.rate_limit_in_message:
            with self.lock:
                self._limited_until = time.monotonic() + self.faults.retry_after
            self._still_limited()
        if isinstance(fault, int):
            raise _error(fault, self.faults.retry_after)
        if fault == SLOW:
            time.sleep(self.faults.slow_seconds)
        with self.lock:
            return self._route(path, params), fault

    def _still_limited(self) -> None:
        """Under `rate_limit_in_message`, a 429 holds until its wait has passed: every request
        until then is a 429 whose message names the seconds left, with no `Retry-After`."""
        with self.lock:
            left = self._limited_until - time.monotonic()
        if left > 0:
            raise _error(429, math.ceil(left), header=False)

    def date_header(self) -> str:
        """The server's `Date`: the simulated clock, so a client sees the API's own "now"."""
        return format_datetime(self.world.clock, usegmt=True)

    def _authorized(self, header: str | None) -> bool:
        """The static token, or a management token signed with the app secret: HS256, the
        reference's claims, not expired and not before its `nbf`."""
        if header == f"Bearer {self.token}":
            return True
        if not (self.app_secret and header and header.startswith("Bearer ")):
            return False
        try:
            claims = jwt.decode(
                header.removeprefix("Bearer "),
                self.app_secret,
                algorithms=["HS256"],
                options={"require": ["access_key", "type", "version", "jti", "iat", "nbf", "exp"]},
            )
        except jwt.PyJWTError:
            return False
        valid = (
            claims["access_key"] == self.app_access_key
            and claims["type"] == "management"
            and claims["version"] == 2
        )
        if valid:
            with self.lock:
                self.tokens_seen.add(claims["jti"])
        return valid

    def _route(self, path: str, params: dict[str, list[str]]) -> Any:
        for pattern, handler in self._routes():
            match = pattern.fullmatch(path)
            if match:
                return handler(params, *(unquote(g) for g in match.groups()))
        raise ApiError(404, f"no such endpoint: {path}")

    def _routes(self) -> list[tuple[re.Pattern[str], Callable[..., Any]]]:
        return [
            (re.compile(r"/v2/(rooms|sessions|templates|recordings)"), self._list),
            (re.compile(r"/v2/active-rooms/([^/]+)/peers"), self._active_peers),
            (re.compile(r"/v2/templates/([^/]+)/settings"), self._template_settings),
            (re.compile(r"/v2/templates/([^/]+)/destinations"), self._template_destinations),
            (re.compile(r"/v2/analytics/events"), self._events),
        ]

    def _list(self, params: dict[str, list[str]], collection: str) -> dict[str, Any]:
        # Ids begin with the creation time: id order is creation order, newest first or last
        # as the reading says (a test may have appended out of order).
        newest_first = self.reading.newest_first
        items: list[dict[str, Any]] = sorted(
            getattr(self.world, collection), key=_id, reverse=newest_first
        )
        limit = _limit(params, minimum=_MIN_LIMIT[collection])
        if (
            collection == "rooms"
            and "enabled" not in params
            and self.reading.rooms_enabled_by_default
        ):
            params = {**params, "enabled": ["true"]}  # "Default: true"
        live_only = self.reading.sessions_active_by_default
        if collection == "sessions" and "active" not in params and live_only:
            params = {**params, "active": ["true"]}  # "Default: true"
        for param, field_name in _LIST_FILTERS[collection].items():
            if param in params:
                wanted = params[param][0]
                items = [i for i in items if _as_param(i.get(field_name)) == wanted]
        for param, keep in (("after", lambda a, b: a >= b), ("before", lambda a, b: a <= b)):
            if param in params:
                bound = _parse_time_param(params[param][0], param)
                items = [i for i in items if keep(parse_iso(i["created_at"]), bound)]
        start = params["start"][0] if "start" in params else None
        if self.stuck_cursor and start is not None:  # a broken API: `last` never moves
            with self.lock:
                served = self._stuck_pages.get((collection, start), 0) + 1
                self._stuck_pages[(collection, start)] = served
            page = items[served * limit : (served + 1) * limit]
            return {"limit": limit, "data": page, "last": start} if page else {"data": page}
        if start is not None and not self.ignore_start:
            items = [i for i in items if _after_start(i["id"], start, newest_first, self.reading)]
        page = items[:limit]
        body: dict[str, Any] = {"limit": limit, "data": page}
        has_more = len(items) > limit
        if page and (has_more or self.reading.final_page == "empty_page"):
            body["last"] = page[-1]["id"]
        return body

    def _events_by_room(self) -> dict[str, list[dict[str, Any]]]:
        """Retained events per room, rebuilt only when the world has moved on."""
        world = self.world
        key = (id(world.events), len(world.events), world.clock)
        if getattr(self, "_events_key", None) != key:
            index: dict[str, list[dict[str, Any]]] = {}
            for event in world.retained_events():
                index.setdefault(event["data"].get("room_id"), []).append(event)
            self._events_index, self._events_key = index, key
        return self._events_index

    def _active_peers(self, params: dict[str, list[str]], room_id: str) -> dict[str, Any]:
        peers = self.world.active_peers(room_id)
        if peers is None:
            if self.reading.inactive_peers == "404":
                raise ApiError(404, f"room {room_id} is not active")
            peers = {}
        return {"peers": peers}

    def _template(self, template_id: str) -> dict[str, Any]:
        template = self.world.template(template_id)
        if template is None:
            raise ApiError(404, f"template {template_id} not found")
        return template

    def _template_settings(self, params: dict[str, list[str]], template_id: str) -> Any:
        return self._template(template_id)["settings"]

    def _template_destinations(self, params: dict[str, list[str]], template_id: str) -> Any:
        return self._template(template_id)["destinations"]

    def _events(self, params: dict[str, list[str]]) -> dict[str, Any]:
        if "room_id" not in params:
            raise ApiError(400, "room_id is required")
        if "type" not in params and self.reading.events_type_required:
            raise ApiError(400, "type is required")
        unknown = sorted(set(params.get("type", [])) - set(EVENT_TYPES))
        if unknown:
            raise ApiError(400, f"invalid type: {unknown[0]}")
        room_id = params["room_id"][0]
        limit = _limit(params, minimum=1)
        events = self._events_by_room().get(room_id, [])
        if "type" in params:
            events = [e for e in events if e["type"] in params["type"]]
        for param in ("session_id", "peer_id", "user_id", "beam_id"):
            if param in params:
                events = [e for e in events if e["data"].get(param) == params[param][0]]
        offset = _decode_next(params["start"][0], room_id) if "start" in params else 0
        page = events[offset : offset + limit]
        more = offset + limit < len(events)
        if self.endless_pages and events:  # a broken API: a fresh page, and `next`, forever
            page = [
                {**events[(offset + i) % len(events)], "id": f"endless-{offset + i}"}
                for i in range(limit)
            ]
            more = True
        return {
            "limit": limit,
            "total": len(events),
            "next": _encode_next(room_id, offset + limit) if more else "",
            "events": page,
        }


def _id(item: dict[str, Any]) -> str:
    return str(item["id"])


def _after_start(item_id: str, start: str, newest_first: bool, reading: Reading) -> bool:
    """Whether an object comes after the one `start` names, in the listing's order; under the
    inclusive reading the named object itself is served again."""
    if reading.start_inclusive and item_id == start:
        return True
    return item_id < start if newest_first else item_id > start


def _limit(params: dict[str, list[str]], *, minimum: int) -> int:
    raw = params.get("limit", ["10"])[0]
    try:
        limit = int(raw)
    except ValueError:
        raise ApiError(400, f"invalid limit: {raw!r}") from None
    if not minimum <= limit <= 100:
        raise ApiError(400, f"limit must be between {minimum} and 100")
    return limit


def _as_param(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _parse_time_param(value: str, name: str) -> Any:
    try:
        return parse_iso(value)
    except ValueError:
        raise ApiError(400, f"invalid {name}: expected YYYY-MM-DDTHH:mm:ss.sssZ") from None


def _encode_next(room_id: str, offset: int) -> str:
    raw = json.dumps({"r": room_id, "o": offset}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_next(token: str, room_id: str) -> int:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        if decoded["r"] != room_id:
            raise ValueError
        return int(decoded["o"])
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, "invalid start token") from None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a killed run, a test ending) is not the server's error.
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handle_error(request, client_address)


def _handler_for(sim: ApiSimulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real API would offer
        disable_nagle_algorithm = True  # else each response waits ~40 ms for a delayed ACK

        def do_GET(self) -> None:
            arrived = time.monotonic()
            with sim.lock:
                sim._in_flight += 1
                sim.max_in_flight = max(sim.max_in_flight, sim._in_flight)
            try:
                self._answer(arrived)
            finally:
                with sim.lock:
                    sim._in_flight -= 1

        def _answer(self, arrived: float) -> None:
            url = urlsplit(self.path)
            if url.path == STATS_PATH:  # the simulator's own: not part of the API, not counted
                self._send(200, "application/json", json.dumps(sim.stats()).encode(), {})
                return
            params = parse_qs(url.query, keep_blank_values=True)
            headers: dict[str, str] = {}
            content_type, fault = "application/json", None
            try:
                body, fault = sim.handle(
                    url.path, params, self.headers.get("Authorization"), request_key=self.path
                )
                status = 200
            except ApiError as exc:
                status, body, headers = (
                    exc.status,
                    {"code": exc.status, "message": exc.message},
                    exc.headers,
                )
                fault = exc.fault
            payload = json.dumps(body).encode()
            if fault == HTML_200:
                content_type = "text/html"
                payload = b"<html><body><h1>502 Bad Gateway</h1>nginx</body></html>"
            elif fault == BAD_JSON:
                payload = payload[: len(payload) // 2]
            with sim.lock:
                recorded = 0 if fault == DROP else status
                sim.requests.append(
                    RecordedRequest(url.path, params, recorded, arrived, _fault_name(fault))
                )
            if fault == DROP:
                self.close_connection = True  # hang up without an answer
                return
            self._send(status, content_type, payload, headers)

        def _send(
            self, status: int, content_type: str, payload: bytes, headers: dict[str, str]
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def date_time_string(self, timestamp: float | None = None) -> str:
            return sim.date_header()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the request log is `sim.requests`

    return Handler
