"""A local HTTP simulator of the analytics API's eight GET endpoints.

It answers the way `shared/api/API_NOTES.md` describes the reference, including its awkward
parts, so that the pipeline and its tests meet them offline. Where the reference is ambiguous or
strict, it plays the `Reading` it is given (`readings.py`): `start` inclusive or not, lists
newest first or oldest first, how a list ends (`final_page`), rooms listed without `enabled`
being all rooms or the enabled ones (sessions without `active`: all, or the live ones), events'
`type` optional or required, a 429's wait in a header or only in its message, unset times absent
or the zero time, and how far the API's clock runs behind (`clock_behind_seconds`).

- bearer auth: the static token, or a management token (HS256 JWT) signed with `app_secret`
  for `app_access_key`, signature and claims checked, `iat`/`nbf`/`exp` against the API's own
  clock (which may run behind the machine's); anything else is a 401;
- lists (`rooms`, `sessions`, `templates`, `recordings`) page with `limit`/`start`/`last`;
- events page with an opaque `next`, require `room_id` (400 without), filter by `type` (none:
  every supported type, the undocumented ones included; `events_type_required`: 400), `error`,
  `session_id` (which never matches an event without one) and the other ids, count the
  matches in `total`, and only serve 30 days;
- active-room peers are an object keyed by peer id; a room that is not live answers 404 or an
  empty object (the reading's `inactive_peers`);
- settings and destinations are bare objects (settings carry the customer's storage keys);
- every error is `{"code", "message", "details": [...]}`, `details` saying what was wrong;
- every answer's `Date` header is the simulated clock, as a real server's is its own;
- faults: scripted or random 429, 5xx, dropped connections, answers slower than the client
  waits, 200s with an HTML page or cut-off JSON, bodies cut half way (`CUT_BODY`) or stalled
  after the headers (`STALL_BODY`), and latency; broken cursors (`ignore_start`: lists answer
  the first page whatever `start` says; `stuck_cursor`: lists page on but hand back the same
  `last`; `endless_pages`: events always hand out a fresh `next`);
- a world that moves while a run pages: `on_request` (a test's script, run after each request
  is answered) and `move_every` (`World.tick()` after every N-th request).

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
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jwt

from analytics_assets.simulator.readings import LENIENT, Reading
from analytics_assets.simulator.world import (
    ERROR_TYPES_ALL,
    NEW_EVENT_TYPES,
    World,
    iso,
    parse_iso,
    served,
)

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
#: Every type the simulator serves: the documented ones and those the reference does not
#: document ("event types are open"). A request without `type` gets all of them.
SUPPORTED_EVENT_TYPES = (*EVENT_TYPES, *NEW_EVENT_TYPES)
#: What `error=true` selects: the client failures.
ERROR_EVENT_TYPES = frozenset(ERROR_TYPES_ALL)
#: The claims the reference lists for a management token.
TOKEN_CLAIMS = ["access_key", "type", "version", "jti", "iat", "nbf", "exp"]


class ApiError(Exception):
    """An error answer: `{"code", "message", "details"}`, as the vendor's client shows it."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        fault: int | None = None,
        *,
        details: list[str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.fault = fault  # set when injected, not earned
        self.details = details if details is not None else [message]

    def body(self) -> dict[str, Any]:
        return {"code": self.status, "message": self.message, "details": self.details}


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    params: dict[str, list[str]]
    #: The status answered; 0 for a connection dropped without an answer.
    status: int
    #: `time.monotonic()` when the request arrived.
    at: float = 0.0
    #: The injected fault, if any (a status, or drop / slow / html200 / badjson / cutbody /
    #: stallbody).
    fault: str | None = None


#: Faults that are not a status: a connection closed without an answer, an answer slower than
#: the client waits, a 200 carrying an HTML error page, a 200 whose JSON is cut off.
DROP, SLOW, HTML_200, BAD_JSON = "drop", "slow", "html200", "badjson"
#: A 200 whose headers announce the whole body, of which half is sent before the connection
#: closes (the client's read fails half way: an incomplete read, not an HTTP error).
CUT_BODY = "cutbody"
#: A 200 whose headers and first half of the body are sent, then nothing for `slow_seconds`
#: before the rest (a client whose read timeout is shorter times out after the headers).
STALL_BODY = "stallbody"
Fault = int | str
RANDOM_FAULTS: tuple[Fault, ...] = (*TRANSIENT_STATUSES, DROP, SLOW, CUT_BODY, STALL_BODY)


@dataclass
class FaultPlan:
    """Which requests fail, and how.

    `scripted` maps a path prefix to faults answered, in order, before it answers normally
    (None in the list: that request is answered normally);
    `always` maps a path prefix to a fault it answers every time; `rate` is the share of other
    requests that get a random transient fault (429 with `Retry-After`, 5xx, a dropped
    connection, a slow answer, a body cut half way or stalled after the headers), seeded. A
    transient fault clears: the same request is not given more than `max_consecutive` random
    faults in a row (the retry policy allows 3 retries).
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
            details=["rate limit exceeded"],
        )
    return ApiError(
        status, "internal error, please retry", fault=status, details=["internal server error"]
    )


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


@dataclass(frozen=True)
class Answer:
    """What one request is answered: status, body bytes, headers, and the fault, if any."""

    status: int
    payload: bytes
    headers: dict[str, str]
    fault: Fault | None
    content_type: str = "application/json"
    #: The `Date` header: the simulated clock when the answer was made (a hook may move the
    #: clock on before it is written).
    date: str = ""


Hook = Callable[["ApiSimulator", RecordedRequest], None]


class ApiSimulator:
    """Serves a `World` on loopback. Use as a context manager, or `start()`/`stop()`.

    `on_request(sim, request)` is called, holding the simulator's lock, once each API request
    has been answered and recorded and before the answer is written, so that whatever the
    client asks after reading it sees what the hook changed (tests script scenarios with it:
    "after the last page of live sessions, start a session"). `move_every=N` calls
    `world.tick()` after every N-th API request: a busy workspace that moves while a run pages.
    """

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
        on_request: Hook | None = None,
        move_every: int = 0,
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
        self.on_request = on_request
        self.move_every = move_every
        #: What `move_every` made the world do, one `tick()` report each.
        self.ticks: list[dict[str, int]] = []
        self.requests: list[RecordedRequest] = []
        #: The most requests it was answering at once.
        self.max_in_flight = 0
        self._in_flight = 0
        #: collection -> (the key it was sorted for, the objects in id order, their ids).
        self._sorted: dict[str, tuple[tuple[int, int, int], list[dict[str, Any]], list[str]]] = {}
        self.lock = threading.RLock()
        self._server = _Server((host, port), _handler_for(self))
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ApiSimulator:
        self.world.room_events("")  # index the events now, not on a run's first request
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
        fault = self._admit(path, auth, request_key)
        with self.lock:
            return self._route(path, params), fault

    def respond(
        self,
        path: str,
        params: dict[str, list[str]],
        auth: str | None,
        request_key: str = "",
        arrived: float = 0.0,
    ) -> Answer:
        """Answer one API request, record it and run the hooks (`move_every`, `on_request`).
        The body is serialised holding the lock, so a world moving in another thread cannot
        change it half way."""
        headers: dict[str, str] = {}
        date = self.date_header()
        try:
            fault = self._admit(path, auth, request_key)
            with self.lock:
                date = self.date_header()
                payload = json.dumps(self._route(path, params)).encode()
            status = 200
        except ApiError as exc:
            status, payload = exc.status, json.dumps(exc.body()).encode()
            headers, fault = exc.headers, exc.fault
        content_type = "application/json"
        if fault == HTML_200:
            content_type = "text/html"
            payload = b"<html><body><h1>502 Bad Gateway</h1>nginx</body></html>"
        elif fault == BAD_JSON:
            payload = payload[: len(payload) // 2]
        recorded = RecordedRequest(
            path, params, 0 if fault == DROP else status, arrived, _fault_name(fault)
        )
        with self.lock:
            self.requests.append(recorded)
            if self.move_every and len(self.requests) % self.move_every == 0:
                self.ticks.append(self.world.tick())
            if self.on_request is not None:
                self.on_request(self, recorded)
        return Answer(status, payload, headers, fault, content_type, date)

    def _admit(self, path: str, auth: str | None, request_key: str) -> Fault | None:
        """Latency, authentication, an ongoing rate limit and injected faults: what happens
        before a request reaches the data. Returns the fault that is not a status, if any."""
        if self.latency:
            time.sleep(self.latency)
        problem = self._token_problem(auth)
        if problem:
            message = "unauthorized: token missing, invalid or expired"
            raise ApiError(401, message, details=[problem])
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
        return fault

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
        return self._token_problem(header) is None

    def _token_problem(self, header: str | None) -> str | None:
        """What is wrong with the bearer token, or None: the static token, or a management
        token signed with the app secret (HS256, the reference's claims) that is valid by the
        API's own clock, which runs `clock_behind_seconds` behind this machine's: a token
        whose `iat` or `nbf` is later than the API's now is not valid yet (the vendor's SDK
        backdates both to absorb that skew). PyJWT's own time checks use the local clock, so
        they are off and done here."""
        if header == f"Bearer {self.token}":
            return None
        if not (header and header.startswith("Bearer ")):
            return "token is missing"
        if not self.app_secret:
            return "token is invalid"
        try:
            claims = jwt.decode(
                header.removeprefix("Bearer "),
                self.app_secret,
                algorithms=["HS256"],
                options={
                    "require": TOKEN_CLAIMS,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            return f"token is invalid: {exc}"
        if (
            claims["access_key"] != self.app_access_key
            or claims["type"] != "management"
            or claims["version"] != 2
        ):
            return "token is invalid: access_key, type or version"
        times = [claims[name] for name in ("iat", "nbf", "exp")]
        if not all(isinstance(t, int | float) and not isinstance(t, bool) for t in times):
            return "token is invalid: iat, nbf and exp must be numbers"
        now = time.time() - self.reading.clock_behind_seconds
        if times[0] > now or times[1] > now:
            return "token is not valid yet (iat or nbf is later than the server's time)"
        if times[2] <= now:
            return "token is expired"
        with self.lock:
            self.tokens_seen.add(claims["jti"])
        return None

    def _route(self, path: str, params: dict[str, list[str]]) -> Any:
        for pattern, handler in self._routes():
            match = pattern.fullmatch(path)
            if match:
                return handler(params, *(unquote(g) for g in match.groups()))
        raise ApiError(404, f"no such endpoint: {path}", details=["endpoint not found"])

    def _routes(self) -> list[tuple[re.Pattern[str], Callable[..., Any]]]:
        return [
            (re.compile(r"/v2/(rooms|sessions|templates|recordings)"), self._list),
            (re.compile(r"/v2/active-rooms/([^/]+)/peers"), self._active_peers),
            (re.compile(r"/v2/templates/([^/]+)/settings"), self._template_settings),
            (re.compile(r"/v2/templates/([^/]+)/destinations"), self._template_destinations),
            (re.compile(r"/v2/analytics/events"), self._events),
        ]

    def _in_id_order(self, collection: str) -> tuple[list[dict[str, Any]], list[str]]:
        """A collection in id order (ids begin with the creation time: creation order), and its
        ids; sorted again only when the world has changed (a test may append out of order)."""
        items: list[dict[str, Any]] = getattr(self.world, collection)
        key = (id(items), len(items), self.world.version)
        cached = self._sorted.get(collection)
        if cached is None or cached[0] != key:
            ordered = sorted(items, key=_id)
            cached = (key, ordered, [_id(item) for item in ordered])
            self._sorted[collection] = cached
        return cached[1], cached[2]

    def _list(self, params: dict[str, list[str]], collection: str) -> dict[str, Any]:
        limit = _limit(params, minimum=_MIN_LIMIT[collection])
        wanted = self._list_filters(params, collection)
        ordered, ids = self._in_id_order(collection)
        start = params["start"][0] if "start" in params else None
        if self.stuck_cursor and start is not None:  # a broken API: `last` never moves
            items = [item for item in self._walk(ordered, ids, None) if wanted(item)]
            with self.lock:
                served_before = self._stuck_pages.get((collection, start), 0) + 1
                self._stuck_pages[(collection, start)] = served_before
            page = items[served_before * limit : (served_before + 1) * limit]
            rendered = self._rendered(collection, page)
            return {"limit": limit, "data": rendered, "last": start} if page else {"data": page}
        page, more = [], False
        for item in self._walk(ordered, ids, None if self.ignore_start else start):
            if wanted(item):
                if len(page) == limit:
                    more = True
                    break
                page.append(item)
        return self._list_body(limit, self._rendered(collection, page), more)

    def _rendered(self, collection: str, page: list[dict[str, Any]]) -> list[dict[str, Any]]:
        unset = self.reading.unset_times
        return [served(collection, item, unset) for item in page]

    def _walk(
        self, ordered: list[dict[str, Any]], ids: list[str], start: str | None
    ) -> Iterable[dict[str, Any]]:
        """The objects after the one `start` names, in the listing's order (newest first or
        oldest first, as the reading says); under the inclusive reading the named object is
        served again. Found by bisection on the ids, not by filtering every object."""
        inclusive = self.reading.start_inclusive
        if self.reading.newest_first:
            end = len(ids)
            if start is not None:
                end = bisect_right(ids, start) if inclusive else bisect_left(ids, start)
            return (ordered[i] for i in range(end - 1, -1, -1))
        begin = 0
        if start is not None:
            begin = bisect_left(ids, start) if inclusive else bisect_right(ids, start)
        return itertools.islice(ordered, begin, None)

    def _list_filters(
        self, params: dict[str, list[str]], collection: str
    ) -> Callable[[dict[str, Any]], bool]:
        """The listing's filters as one test: its fields, and creation time (`after`/`before`,
        inclusive); rooms' `enabled` and sessions' `active` default to true under readings."""
        reading = self.reading
        if collection == "rooms" and "enabled" not in params and reading.rooms_enabled_by_default:
            params = {**params, "enabled": ["true"]}  # "Default: true"
        live_only = reading.sessions_active_by_default
        if collection == "sessions" and "active" not in params and live_only:
            params = {**params, "active": ["true"]}  # "Default: true"
        fields = [
            (field_name, params[param][0])
            for param, field_name in _LIST_FILTERS[collection].items()
            if param in params
        ]
        after = _parse_time_param(params["after"][0], "after") if "after" in params else None
        before = _parse_time_param(params["before"][0], "before") if "before" in params else None

        def wanted(item: dict[str, Any]) -> bool:
            if any(_as_param(item.get(name)) != value for name, value in fields):
                return False
            if after is None and before is None:
                return True
            created = parse_iso(item["created_at"])
            return (after is None or created >= after) and (before is None or created <= before)

        return wanted

    def _list_body(self, limit: int, page: list[dict[str, Any]], more: bool) -> dict[str, Any]:
        """A page as the reading ends lists (`final_page`): `last` on every page but the final
        one's is the last object's id; the final page carries it too (`empty_page`,
        `null_data`: the next page is empty, its `data` a list or null), carries `""`
        (`empty_last`) or carries none (`no_last`)."""
        final_page = self.reading.final_page
        body: dict[str, Any] = {"limit": limit, "data": page}
        if more or (page and final_page in ("empty_page", "null_data")):
            body["last"] = page[-1]["id"]
        elif final_page == "empty_last":
            body["last"] = ""
        if not page and final_page == "null_data":
            body["data"] = None
        return body

    def _active_peers(self, params: dict[str, list[str]], room_id: str) -> dict[str, Any]:
        peers = self.world.active_peers(room_id)
        if peers is None:
            if self.reading.inactive_peers == "404":
                raise ApiError(404, f"room {room_id} is not active", details=["room is not active"])
            peers = {}
        return {"peers": peers}

    def _template(self, template_id: str) -> dict[str, Any]:
        template = self.world.template(template_id)
        if template is None:
            raise ApiError(404, f"template {template_id} not found", details=["template not found"])
        return template

    def _template_settings(self, params: dict[str, list[str]], template_id: str) -> Any:
        return self._template(template_id)["settings"]

    def _template_destinations(self, params: dict[str, list[str]], template_id: str) -> Any:
        return self._template(template_id)["destinations"]

    def _events(self, params: dict[str, list[str]]) -> dict[str, Any]:
        room_id = _event_params(params, self.reading)
        limit = _limit(params, minimum=1)
        # "Results are a snapshot taken at the first call": the pages after it serve the room
        # as it was then, whatever has been listed or has expired since.
        offset, as_of = _decode_next(params["start"][0], room_id) if "start" in params else (0, "")
        events = self.world.room_events(room_id, parse_iso(as_of) if as_of else None)
        as_of = as_of or iso(self.world.clock)
        if "type" in params:  # a request that names its types sees only those
            types = set(params["type"])
            events = [e for e in events if e["type"] in types]
        if params.get("error", [""])[0] == "true":
            events = [e for e in events if e["type"] in ERROR_EVENT_TYPES]
        for param in ("session_id", "peer_id", "user_id", "beam_id"):
            if param in params:
                events = [e for e in events if e["data"].get(param) == params[param][0]]
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
            "next": _encode_next(room_id, offset + limit, as_of) if more else "",
            "events": page,
        }


def _event_params(params: dict[str, list[str]], reading: Reading) -> str:
    """Check an events request's parameters; returns its room. `room_id` is required; `type`
    is required too under `events_type_required`, else it defaults to every supported type;
    a type the API does not support, or an `error` other than true/false, is a 400."""
    if not params.get("room_id", [""])[0]:
        raise ApiError(400, "room_id is required", details=["room_id is required"])
    if "type" not in params and reading.events_type_required:
        raise ApiError(
            400,
            "type is required",
            details=["type is required", f"type must be one of: {', '.join(EVENT_TYPES)}"],
        )
    unknown = sorted(set(params.get("type", [])) - set(SUPPORTED_EVENT_TYPES))
    if unknown:
        raise ApiError(
            400, f"invalid type: {unknown[0]}", details=[f"type is invalid: {t}" for t in unknown]
        )
    if params.get("error", ["true"])[0] not in ("true", "false"):
        raise ApiError(400, "invalid error filter", details=["error must be true or false"])
    return params["room_id"][0]


def _id(item: dict[str, Any]) -> str:
    return str(item["id"])


def _limit(params: dict[str, list[str]], *, minimum: int) -> int:
    raw = params.get("limit", ["10"])[0]
    detail = f"limit must be between {minimum} and 100"
    try:
        limit = int(raw)
    except ValueError:
        raise ApiError(400, f"invalid limit: {raw!r}", details=[detail]) from None
    if not minimum <= limit <= 100:
        raise ApiError(400, detail, details=[detail])
    return limit


def _as_param(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _parse_time_param(value: str, name: str) -> Any:
    try:
        return parse_iso(value)
    except ValueError:
        detail = f"{name} is invalid: expected YYYY-MM-DDTHH:mm:ss.sssZ"
        raise ApiError(400, f"invalid {name}", details=[detail]) from None


def _encode_next(room_id: str, offset: int, as_of: str) -> str:
    """An opaque `next`: the room, where the next page starts, and when the query's snapshot
    was taken (the simulated clock at its first call)."""
    raw = json.dumps({"r": room_id, "o": offset, "t": as_of}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_next(token: str, room_id: str) -> tuple[int, str]:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        if decoded["r"] != room_id:
            raise ValueError
        return int(decoded["o"]), str(decoded["t"])
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, "invalid start token", details=["start is invalid"]) from None


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
            url = urlsplit(self.path)  # the absolute form too (a client whose proxy is this)
            if url.path == STATS_PATH:  # the simulator's own: not part of the API, not counted
                self._send(Answer(200, json.dumps(sim.stats()).encode(), {}, None))
                return
            params = parse_qs(url.query, keep_blank_values=True)
            auth = self.headers.get("Authorization")
            answer = sim.respond(url.path, params, auth, request_key=self.path, arrived=arrived)
            if answer.fault == DROP:
                self.close_connection = True  # hang up without an answer
                return
            self._send(answer)

        def _send(self, answer: Answer) -> None:
            """Write the answer; a cut body stops half way and hangs up, a stalled one waits
            `slow_seconds` half way (both after headers that announce the whole body)."""
            payload = answer.payload
            self._date = answer.date
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if answer.fault not in (CUT_BODY, STALL_BODY):
                self.wfile.write(payload)
                return
            half = len(payload) // 2
            self.wfile.write(payload[:half])
            self.wfile.flush()
            if answer.fault == CUT_BODY:
                self.close_connection = True  # the rest never comes
                return
            time.sleep(sim.faults.slow_seconds)
            self.wfile.write(payload[half:])

        def date_time_string(self, timestamp: float | None = None) -> str:
            return getattr(self, "_date", "") or sim.date_header()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the request log is `sim.requests`

    return Handler
