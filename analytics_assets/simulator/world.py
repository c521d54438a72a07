"""Deterministic data for the simulated analytics API.

The shapes follow the reference's own samples (`shared/api/examples/`): ObjectId-like ids that
sort by creation time, sessions with `peers` keyed by peer id, templates with camelCase
timestamps and embedded settings/destinations, events with a nested `data` object. The same
seed, scale and reading always give the same world.

Beyond the samples, the vendor's notes add (section "What the vendor's own client and docs add"):
customers' storage credentials inside rooms (`recording_info.upload_info.credentials`) and
template settings (`recording.upload.credentials`), the room fields the samples lack (`app_id`,
`customer`, `enabled_source_template`, `polls`, `webhook`), and event types the reference does
not document (`new_event_types`). Those are drawn from a random stream of their own (`extras`),
so that a seed gives the same rooms, sessions and events it gave before they were modelled.

Time is simulated: `clock` is the API's "now". Anything dated later (a track unmuted in a minute,
a recording uploaded in three hours) waits in `pending` and is listed once `advance()` or
`tick()` moves the clock past it, as the real API lists events when they happen.

The world's own data is canonical: a time not set yet is an absent key (a live peer has no
`left_at`). How it is answered (absent, or the zero time) is the reading's `unset_times`,
applied when it is served (`served()`).
"""

from __future__ import annotations

import copy
import random
import string
import uuid
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from analytics_assets.simulator.readings import LENIENT, Reading

#: The simulated "now". Fixed so a seed gives the same world on every machine and day.
DEFAULT_CLOCK = datetime(2024, 7, 1, 12, 0, 0, tzinfo=UTC)
#: The API keeps analytics events this long.
EVENT_RETENTION = timedelta(days=30)
#: Days over which a world's rooms were created (its recent past).
DEFAULT_HISTORY_DAYS = 60
#: The Go zero time: what the API answers for a time that is not set (`unset_times="zero"`).
ZERO_TIME = "0001-01-01T00:00:00Z"

ROLES = ("host", "guest", "viewer", "teacher", "student")
REGIONS = ("in", "us", "eu")
S3_REGIONS = ("us-east-1", "eu-west-1", "ap-south-1")
TRACK_TYPES = ("audio", "video")
#: Errors of peers inside a session (they carry its `session_id`).
SESSION_ERRORS = ("client.publish.failed", "client.subscribe.failed", "client.disconnected")
#: Errors of peers that may never reach a session (`session_id` may be missing).
ENTRY_ERRORS = ("client.join.failed", "client.connect.failed")
#: Errors a peer may meet; under the lenient reading every error names its session.
ERROR_TYPES_ALL = (*SESSION_ERRORS, *ENTRY_ERRORS)
#: Event types the reference does not document ("event types are open"): a peer joining and
#: leaving, listed only under the world behaviour `new_event_types`.
PEER_JOIN, PEER_LEAVE = "peer.join.success", "peer.leave.success"
NEW_EVENT_TYPES = (PEER_JOIN, PEER_LEAVE)
#: Where the ids of the undocumented events come from: derived from the peer, so that adding
#: them draws nothing from the world's random stream.
_EVENT_NAMESPACE = uuid.UUID("5f0c7d1e-9a8b-4c3d-8e2f-100000000001")


def iso(ts: datetime) -> str:
    """Format a time the way the API does: `YYYY-MM-DDTHH:mm:ss.sssZ` (milliseconds truncated;
    `isoformat` rather than `strftime`: a busy world formats a million of them)."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def served(collection: str, item: dict[str, Any], unset_times: str) -> dict[str, Any]:
    """An object as the API answers it under a reading's `unset_times`: under `zero` a live
    session peer gets `left_at` and a recording not yet stopped `stopped_at`, both the Go zero
    time; under `absent` the object as the world holds it (no key). Copies only what changes,
    so the world's own data stays canonical (`"left_at" in peer` still means it has left)."""
    if unset_times != "zero":
        return item
    if collection == "sessions":
        peers = {
            key: peer if "left_at" in peer else {**peer, "left_at": ZERO_TIME}
            for key, peer in item["peers"].items()
        }
        return {**item, "peers": peers}
    if collection == "recordings" and "stopped_at" not in item:
        return {**item, "stopped_at": ZERO_TIME}
    return item


def uuid4_string(bits: int) -> str:
    """`str(uuid.UUID(int=bits, version=4))`, without building the object (a busy world makes
    half a million of them)."""
    bits = (bits & ~(0xC000 << 48) | 0x8000 << 48) & ~(0xF000 << 64) | 4 << 76
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _token(rng: random.Random, length: int, alphabet: str) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


@dataclass
class Upload:
    """A recording whose upload ends at `at`: it turns `completed` and its event is listed."""

    at: datetime
    recording_id: str
    event: dict[str, Any]
    #: The recording itself, when known (saves searching the recordings for it).
    recording: dict[str, Any] | None = None


#: room id -> (the (timestamp, id) keys, the events), in time order.
EventIndex = dict[str, tuple[list[tuple[str, str]], list[dict[str, Any]]]]


@dataclass
class World:
    """Everything the simulated workspace holds, plus the clock that moves it on."""

    seed: int
    clock: datetime = DEFAULT_CLOCK
    templates: list[dict[str, Any]] = field(default_factory=list)
    rooms: list[dict[str, Any]] = field(default_factory=list)
    sessions: list[dict[str, Any]] = field(default_factory=list)
    recordings: list[dict[str, Any]] = field(default_factory=list)
    #: Events the API lists now (expired ones included: `retained_events()` filters them).
    events: list[dict[str, Any]] = field(default_factory=list)
    #: Events dated after `clock`: listed once the clock passes them.
    pending: list[dict[str, Any]] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    #: A second random stream for what was modelled later (credentials, the rooms' extra
    #: fields): drawing from it leaves the worlds of a seed as they were.
    extras: random.Random = field(default_factory=random.Random)
    customer_id: str = "627cdddff2e4e30487862ad1"
    app_id: str = "627cdde4f2e4e30487862ad3"
    #: World behaviours of the reading (see `Reading`): errors without a session, late uploads,
    #: undocumented event types; and how it renders unset times (for the oracle).
    sessionless_errors: bool = False
    late_events: bool = False
    new_event_types: bool = False
    unset_times: str = "absent"
    #: Live peer id -> the track data of its add events, to close the tracks when it leaves.
    tracks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: Live peer id -> what its `peer.leave.success` event will say (under `new_event_types`).
    peer_data: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Rooms of a longer past (`generate_world(history=...)`) that `advance()` leaves quiet.
    dormant: set[str] = field(default_factory=set)
    #: Bumped by every change the world makes to itself: caches of the server key on it.
    version: int = 0
    _index: tuple[int, int, EventIndex] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    # ---- ids -------------------------------------------------------------------------------
    def object_id(self, at: datetime) -> str:
        """A Mongo ObjectId-like id: 4 bytes of creation time, then 8 random bytes."""
        return f"{int(at.timestamp()):08x}{self.rng.getrandbits(64):016x}"

    def uuid(self) -> str:
        return uuid4_string(self.rng.getrandbits(128))

    # ---- views the server needs ---------------------------------------------------------------
    def live_session(self, room_id: str) -> dict[str, Any] | None:
        for session in reversed(self.sessions):
            if session["room_id"] == room_id and session["active"]:
                return session
        return None

    def live_sessions(self) -> dict[str, dict[str, Any]]:
        """Room id -> its live session, in one pass (`live_session` for every room at once)."""
        return {s["room_id"]: s for s in self.sessions if s["active"]}

    @staticmethod
    def peers_now(session: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The peers still in a live session, as the active-room peers endpoint shows them."""
        return {
            peer_id: {
                "id": peer_id,
                "name": peer["name"],
                "user_id": peer["user_id"],
                "metadata": peer.get("metadata", ""),
                "role": peer["role"],
                "joined_at": peer["joined_at"],
            }
            for peer_id, peer in session["peers"].items()
            if "left_at" not in peer
        }

    def active_peers(self, room_id: str) -> dict[str, dict[str, Any]] | None:
        """Peers now in the room, keyed by peer id; None when the room has no live session."""
        session = self.live_session(room_id)
        return None if session is None else self.peers_now(session)

    def template(self, template_id: str) -> dict[str, Any] | None:
        return next((t for t in self.templates if t["id"] == template_id), None)

    def retained_events(self) -> list[dict[str, Any]]:
        """The events the API still serves: the last 30 days."""
        horizon = self.clock - EVENT_RETENTION
        return [e for e in self.events if parse_iso(e["timestamp"]) >= horizon]

    def room_events(self, room_id: str, as_of: datetime | None = None) -> list[dict[str, Any]]:
        """A room's retained events in time order, from an index built once and kept up to
        date as events are listed, so that serving a page of a busy room does not re-filter
        the whole workspace. (A change made to `events` from outside that keeps its length is
        not seen; appending, removing or replacing the list is.)

        `as_of` (a time not later than the clock) gives the room's events as the API held them
        then: its 30 days back from that time, and nothing dated later (the snapshot a paged
        query keeps from its first call, in the reference's words)."""
        keys, events = self._event_index().get(room_id, ([], []))
        at = as_of or self.clock
        horizon = at - EVENT_RETENTION
        if horizon.microsecond % 1000:  # events are dated to the millisecond: round up
            horizon += timedelta(microseconds=1000 - horizon.microsecond % 1000)
        first = bisect_left(keys, (iso(horizon),))
        if as_of is None:
            return events[first:]
        return events[first : bisect_right(keys, (iso(at), "\uffff"))]

    def _event_index(self) -> EventIndex:
        index = self._index
        if index is None or index[0] != id(self.events) or index[1] != len(self.events):
            rooms: EventIndex = {}
            for event in sorted(self.events, key=_event_key):
                keys, events = rooms.setdefault(event["data"].get("room_id"), ([], []))
                keys.append(_event_key(event))
                events.append(event)
            self._index = index = (id(self.events), len(self.events), rooms)
        return index[2]

    def _list_event(self, event: dict[str, Any]) -> None:
        """Append an event to what the API lists, and to the index if there is one."""
        self.events.append(event)
        self.version += 1
        index = self._index
        if index is None or index[0] != id(self.events) or index[1] != len(self.events) - 1:
            self._index = None
            return
        keys, events = index[2].setdefault(event["data"].get("room_id"), ([], []))
        at = bisect_right(keys, _event_key(event))
        keys.insert(at, _event_key(event))
        events.insert(at, event)
        self._index = (index[0], index[1] + 1, index[2])

    def credential_values(self) -> set[str]:
        """Every storage key and secret the world holds (rooms' `recording_info`, templates'
        settings), wherever a `credentials` object sits: a warehouse must hold none of them."""
        found: set[str] = set()

        def walk(value: Any) -> None:
            if isinstance(value, dict):
                for key, inner in value.items():
                    if key == "credentials" and isinstance(inner, dict):
                        found.update(str(v) for v in inner.values() if v)
                    else:
                        walk(inner)
            elif isinstance(value, list):
                for inner in value:
                    walk(inner)

        walk(self.rooms)
        walk(self.templates)
        return found

    # ---- generation ----------------------------------------------------------------------------
    def add_template(self, created: datetime) -> dict[str, Any]:
        tid = self.object_id(created)
        name = f"template-{len(self.templates) + 1:04d}"
        roles = self._roles()
        settings = self._settings(name)
        template = {
            "id": tid,
            "name": name,
            "customerId": self.customer_id,
            "roles": roles,
            "settings": settings,
            "destinations": self._destinations(),
            "createdAt": iso(created),
            "updatedAt": iso(created),
            "_id": tid,
            "customer": self.customer_id,
        }
        self.templates.append(template)
        self.version += 1
        return template

    def _roles(self) -> dict[str, Any]:
        rng = self.rng
        roles: dict[str, Any] = {}
        for role in rng.sample(ROLES, k=rng.randint(2, 3)):
            roles[role] = {
                "name": role,
                "publishParams": {
                    "allowed": rng.sample(["audio", "video", "screen"], k=rng.randint(1, 3)),
                    "audio": {"bitRate": 32, "codec": "opus"},
                    "video": {"bitRate": rng.choice([300, 500]), "codec": "vp8", "frameRate": 30},
                },
                "subscribeParams": {"subscribeToRoles": [*sorted(roles), role]},
                "permissions": {"endRoom": role in ("host", "teacher"), "mute": True},
                "priority": 1,
                "maxPeerCount": 0,
            }
        return roles

    def _settings(self, name: str) -> dict[str, Any]:
        """A template's settings; half of them upload recordings to the customer's bucket,
        with the customer's keys (`recording.upload.credentials`: `key`, `secretKey`)."""
        rng = self.rng
        region = rng.choice(REGIONS)
        uploads = rng.random() >= 0.5
        upload = self._upload_info("secretKey", f"templates/{name}/") if uploads else None
        return {
            "region": region,
            "recording": {"upload": upload} if upload else None,
            "roomState": {
                "messageInterval": rng.choice([1, 5]),
                "sendPeerList": rng.random() < 0.5,
                "stopRoomStateOnJoin": True,
                "enabled": rng.random() < 0.5,
            },
            "retry": {} if rng.random() < 0.7 else {"maxAttempts": 3},
        }

    def _upload_info(self, secret_field: str, prefix: str) -> dict[str, Any]:
        """Where a customer's recordings go, with the customer's cloud keys (recognisable:
        `AKIASIM...` and `SIMSECRET-...`, so a test can look for them in a warehouse)."""
        x = self.extras
        return {
            "type": "s3",
            "location": f"sim-customer-recordings-{x.randint(1, 99):02d}",
            "prefix": prefix,
            "options": {"region": x.choice(S3_REGIONS)},
            "credentials": {
                "key": "AKIASIM" + _token(x, 13, string.ascii_uppercase + string.digits),
                secret_field: "SIMSECRET-" + _token(x, 30, string.ascii_letters + string.digits),
            },
        }

    def _destinations(self) -> dict[str, Any]:
        rng = self.rng
        destinations: dict[str, Any] = {
            "browserRecordings": {},
            "rtmpDestinations": {},
            "hlsDestinations": {},
            "transcriptions": {},
        }
        # Map keys are the destinations' identities; names inside repeat on purpose.
        for i in range(rng.randint(1, 2)):
            key = "default" if i == 0 else self.uuid()
            destinations["browserRecordings"][key] = {
                "name": "default",
                "width": 1280,
                "height": rng.choice([720, 1080]),
                "maxDuration": 3600,
                "autoStopTimeout": rng.choice([600, 1800, 3600]),
                "thumbnails": {"enabled": False, "width": 0, "height": 0, "offsets": []},
            }
        if rng.random() < 0.6:
            destinations["rtmpDestinations"]["default"] = {
                "name": "default",
                "width": 1080,
                "height": 1920,
                "maxDuration": 1800,
                "rtmpUrls": ["rtmp://example.com:443/stream"],
                "recordingEnabled": True,
                "autoStopTimeout": 1800,
            }
        if rng.random() < 0.5:
            destinations["hlsDestinations"]["default"] = {
                "name": "default",
                "maxDuration": 28800,
                "layers": [{"width": 1080, "height": 720, "videoBitrate": 1100}],
                "playlistType": "event",
                "autoStopTimeout": 7200,
            }
        if rng.random() < 0.3:
            destinations["transcriptions"]["default"] = {
                "name": "default",
                "role": "host",
                "modes": ["recorded"],
                "outputModes": ["txt", "srt"],
            }
        return destinations

    def add_room(self, created: datetime) -> dict[str, Any]:
        rng = self.rng
        template = rng.choice(self.templates)
        rid = self.object_id(created)
        name = f"room-{len(self.rooms) + 1:05d}"
        room: dict[str, Any] = {
            "id": rid,
            "name": name,
            "enabled": rng.random() < 0.95,
            "description": f"Room {name}",
            "customer_id": self.customer_id,
            "recording_source_template": rng.random() < 0.5,
            "template_id": template["id"],
            "template": template["name"],
            "region": template["settings"]["region"],
            "created_at": iso(created),
            "key": f"{self.customer_id}:{name}",
            "updated_at": ZERO_TIME,
            "large_room": rng.random() < 0.1,
            "max_duration_seconds": rng.choice([2000, 10000]),
        }
        if rng.random() < 0.3:
            room["recording"] = {"enabled": rng.random() < 0.5}
        self._room_extras(room)
        self.rooms.append(room)
        self.version += 1
        return room

    def _room_extras(self, room: dict[str, Any]) -> None:
        """The room fields the reference's samples lack but the vendor's client shows: the
        app and customer, `enabled_source_template`, poll ids, a webhook, and for some rooms
        `recording_info` with the customer's bucket and keys (`credentials`: `key`, `secret`)."""
        x = self.extras
        if x.random() < 0.7:
            room.update(app_id=self.app_id, customer=self.customer_id)
        if x.random() < 0.5:
            room["enabled_source_template"] = x.random() < 0.5
        if x.random() < 0.25:
            room["polls"] = [str(uuid.UUID(int=x.getrandbits(128), version=4)) for _ in "ab"]
            del room["polls"][x.randint(0, 2) :]  # zero, one or two polls
        if x.random() < 0.3:
            headers = {} if x.random() < 0.7 else {"X-Source": "100ms-simulator"}
            room["webhook"] = {
                "url": f"https://hooks.example.invalid/100ms/{room['name']}",
                "headers": headers,
            }
        if x.random() < 0.25:
            upload = self._upload_info("secret", f"rooms/{room['name']}/")
            room["recording_info"] = {"enabled": True, "upload_info": upload}

    def add_session(
        self, room: dict[str, Any], started: datetime, *, live: bool, join_within: int = 120
    ) -> dict:
        """A session of `room` started at `started`, with peers joining within `join_within`
        seconds of it; ended unless `live` (or unless it would have ended in the future)."""
        rng = self.rng
        sid = self.object_id(started)
        peers: dict[str, dict[str, Any]] = {}
        duration = timedelta(minutes=rng.randint(5, 90))
        live = live or started + duration > self.clock  # cannot have ended in the future
        for _ in range(rng.randint(1, 4)):
            pid = self.uuid()
            joined = started + timedelta(seconds=rng.randint(0, join_within))
            peer: dict[str, Any] = {
                "id": pid,
                "session_id": sid,
                "name": rng.choice(["John", "Nick", "Asha", "Mei", "Olu", "Sara"]),
                "role": rng.choice(ROLES),
                "user_id": f"user-{rng.randint(1, 5000)}",
                "joined_at": iso(joined),
            }
            if self.extras.random() < 0.05:  # names are free text, some look like dates
                peer["name"] = (
                    f"2024-{self.extras.randint(1, 12):02d}-{self.extras.randint(1, 28):02d}"
                )
            if not live:
                peer["left_at"] = iso(joined + duration - timedelta(seconds=rng.randint(0, 60)))
            peers[pid] = peer
        session = {
            "id": sid,
            "room_id": room["id"],
            "customer_id": self.customer_id,
            "active": live,
            "peers": peers,
            "created_at": iso(started),
            "updated_at": iso(started if live else started + duration),
        }
        self.sessions.append(session)
        self.version += 1
        self._add_events(room, session)
        if rng.random() < 0.3:
            self._add_recording(session, started)
        return session

    def start_session(
        self, room: dict[str, Any], at: datetime, *, live: bool = True
    ) -> dict[str, Any]:
        """A session starts in `room` at `at` (not later than the clock), its peers joining
        by the clock: for tests and `tick()` that move the world while a run pages."""
        if at > self.clock:
            raise ValueError(f"a session cannot start after the clock ({at} > {self.clock})")
        if live and any(s["room_id"] == room["id"] and s["active"] for s in self.sessions):
            raise ValueError(f"room {room['id']} already has a live session")
        within = min(120, int((self.clock - at).total_seconds()))
        return self.add_session(room, at, live=live, join_within=within)

    def _add_recording(self, session: dict[str, Any], started: datetime) -> None:
        created = started + timedelta(seconds=5)
        recording: dict[str, Any] = {
            "id": self.object_id(created),
            "room_id": session["room_id"],
            "session_id": session["id"],
            "status": "running",
            "created_at": iso(created),
            "started_at": iso(created + timedelta(seconds=3)),
            "updated_at": iso(created),
            "meeting_url": "https://app.example.invalid/preview/meeting",
            "started_by": next(iter(session["peers"])),
            "stopped_by": "",
            "asset_types": ["room-composite", "chat"],
        }
        self.recordings.append(recording)
        if not session["active"]:
            self._stop_recording(recording, parse_iso(session["updated_at"]))

    def _stop_recording(self, recording: dict[str, Any], stopped: datetime) -> None:
        """The recording stops with its session; it completes once uploaded, and only then is
        its `beam.recording.success` event listed: seconds later, or hours under late events."""
        recording.update(stopped_at=iso(stopped), updated_at=iso(stopped))
        if not self.late_events:
            delay = timedelta(seconds=5)
        elif self.rng.random() < 0.9:
            delay = timedelta(minutes=self.rng.randint(10, 20 * 60))
        else:  # a long recording's upload: later than a day
            delay = timedelta(minutes=self.rng.randint(26 * 60, 40 * 60))
        uploaded = stopped + delay
        started = parse_iso(recording["started_at"])
        event = {
            "version": "2.0",
            "id": self.uuid(),
            "timestamp": iso(uploaded),
            "type": "beam.recording.success",
            "data": {
                "beam_id": recording["id"],
                "room_id": recording["room_id"],
                "session_id": recording["session_id"],
                "peer_id": recording["started_by"],
                "created_at": iso(uploaded),
                "duration": int((stopped - started).total_seconds()),
                "started_at": recording["started_at"],
                "stopped_at": iso(stopped),
                "max_width": 1280,
                "max_height": 720,
                "recording_path": f"s3://bucket/prefix/{recording['id']}.mp4",
                "size": self.rng.randint(10**6, 10**9),
                # Where it was streamed too, as the sample shows (`rtmp`: a list of objects);
                # a stream URL carries the stream key in its path.
                "rtmp": [
                    {"url": f"rtmp://live.example.invalid/app/sk-{self.extras.getrandbits(40):x}"}
                ]
                if self.extras.random() < 0.3
                else [],
            },
        }
        self.uploads.append(Upload(uploaded, recording["id"], event, recording))
        self._release(self.clock)

    def _event(
        self, kind: str, at: datetime, data: dict[str, Any], event_id: str | None = None
    ) -> None:
        event: dict[str, Any] = {
            "version": "2.0",
            "id": event_id or self.uuid(),
            "timestamp": iso(at),
        }
        event.update(type=kind, data=data)
        if at > self.clock:
            self.pending.append(event)
            self.version += 1
        else:
            self._list_event(event)

    def _peer_event(self, kind: str, at: datetime, data: dict[str, Any]) -> None:
        """An undocumented event of a peer; its id is derived from the peer (see
        `_EVENT_NAMESPACE`), so a world has them without drawing anything else differently."""
        event_id = str(uuid.uuid5(_EVENT_NAMESPACE, f"{data['peer_id']}/{kind}"))
        self._event(kind, at, data, event_id)

    def _add_events(self, room: dict[str, Any], session: dict[str, Any]) -> None:
        rng = self.rng
        for peer in session["peers"].values():
            base = {
                "room_id": room["id"],
                "session_id": session["id"],
                "room_name": room["name"],
                "peer_id": peer["id"],
                "user_id": peer["user_id"],
                "user_name": peer["name"],
                "joined_at": peer["joined_at"],
                "role": peer["role"],
            }
            joined = parse_iso(peer["joined_at"])
            if self.new_event_types:
                self._peer_event(PEER_JOIN, joined, {**base, "template_id": room["template_id"]})
            if rng.random() < 0.15:
                self._event(
                    rng.choice(SESSION_ERRORS if self.sessionless_errors else ERROR_TYPES_ALL),
                    joined + timedelta(seconds=1),
                    {
                        **base,
                        "template_id": room["template_id"],
                        "error_code": rng.choice([4005, 4006, 1003]),
                        "error_name": "ICEDisconnected",
                        "error_message": "Ice connection state DISCONNECTED",
                        "is_terminal": False,
                        "devices": self._devices(),
                    },
                )
            self._add_tracks(base, peer)
            if self.new_event_types and "left_at" in peer:
                self._leave_event(base, room["template_id"], parse_iso(peer["left_at"]))
            elif self.new_event_types:
                self.peer_data[peer["id"]] = {**base, "template_id": room["template_id"]}

    def _add_tracks(self, base: dict[str, Any], peer: dict[str, Any]) -> None:
        """A peer's audio and video tracks: added muted, unmuted later, removed as it leaves
        (a live peer's tracks are remembered, to be removed when it leaves)."""
        rng = self.rng
        joined = parse_iso(peer["joined_at"])
        for track_type in TRACK_TYPES:
            track = {
                **base,
                "track_id": self.uuid(),
                "stream_id": self.uuid(),
                "type": track_type,
                "source": "regular",
                "started_at": iso(joined + timedelta(seconds=2)),
            }
            self._event("track.add.success", joined + timedelta(seconds=2), {**track, "mute": True})
            self._event(
                "track.update.success",
                joined + timedelta(seconds=rng.randint(10, 200)),
                {**track, "mute": False},
            )
            if "left_at" in peer:
                left = parse_iso(peer["left_at"])
                self._event(
                    "track.remove.success", left, {**track, "mute": False, "stopped_at": iso(left)}
                )
            else:
                self.tracks.setdefault(peer["id"], []).append(track)

    def _leave_event(self, base: dict[str, Any], template_id: str, left: datetime) -> None:
        joined = parse_iso(base["joined_at"])
        data = {
            **base,
            "template_id": template_id,
            "left_at": iso(left),
            "duration": max(0, int((left - joined).total_seconds())),
            "reason": "peer_request",
        }
        self._peer_event(PEER_LEAVE, left, data)

    def _devices(self) -> dict[str, list[str]]:
        """The peer's devices, as the error events' sample shows them (lists, often empty):
        lists inside events, which a loader turns into child tables."""
        x = self.extras
        cameras = ["FaceTime HD Camera", "USB Camera", "OBS Virtual Camera"]
        microphones = ["Default - MacBook Pro Microphone", "Headset Microphone"]
        return {
            "videoInput": x.sample(cameras, k=x.choice([0, 0, 1, 2])),
            "audioInput": x.sample(microphones, k=x.choice([0, 1])),
            "audioOutput": [],
        }

    def add_sessionless_error(self, room: dict[str, Any], at: datetime) -> None:
        """A peer that failed to connect or join: the event names the room, not a session."""
        rng = self.rng
        self._event(
            rng.choice(ENTRY_ERRORS),
            at,
            {
                "room_id": room["id"],
                "room_name": room["name"],
                "peer_id": self.uuid(),
                "user_id": f"user-{rng.randint(1, 5000)}",
                "user_name": rng.choice(["John", "Nick", "Asha", "Mei", "Olu", "Sara"]),
                "role": rng.choice(ROLES),
                "template_id": room["template_id"],
                "error_code": rng.choice([1003, 4002, 6008]),
                "error_name": "WebsocketConnectionLost",
                "error_message": "could not connect to the room",
                "is_terminal": True,
            },
        )

    # ---- time passing ----------------------------------------------------------------------
    def advance(
        self,
        activity: float = 0.04,
        hours: float = 1.0,
        *,
        renamed: int = 0,
        disabled: int = 0,
    ) -> dict[str, int]:
        """Move the clock on and let the workspace live: about `activity` x rooms new sessions
        (some still live), half of the live sessions end (peers leave, recordings stop, track
        events close), a few new rooms appear, and, under the reading's world behaviours, peers
        fail to join rooms with or without sessions. `renamed` and `disabled` rooms change too
        (rooms change after creation; the creation-time filter cannot see it). Returns what
        changed, for reports."""
        rng = self.rng
        start = self.clock
        self.clock = start + timedelta(hours=hours)
        self.version += 1
        rooms = [room for room in self.rooms if room["id"] not in self.dormant]
        n = max(1, round(activity * len(rooms)))
        changed = {"new_rooms": 0, "new_sessions": 0, "ended_sessions": 0, "sessionless_errors": 0}
        live = [s for s in self.sessions if s["active"]]
        span = max(1, int(hours * 50))
        for session in rng.sample(live, k=len(live) // 2):
            self.end_session(session, start + timedelta(minutes=rng.randint(1, span)))
            changed["ended_sessions"] += 1
        for _ in range(max(1, n // 4)):
            self.add_room(start + timedelta(minutes=rng.randint(0, 30)))
            changed["new_rooms"] += 1
        rooms = [room for room in self.rooms if room["id"] not in self.dormant]
        busy = self.live_sessions()
        idle = [r for r in rooms if r["id"] not in busy]
        for room in rng.sample(idle, k=min(n, len(idle))):
            when = max(start, parse_iso(room["created_at"])) + timedelta(minutes=rng.randint(1, 5))
            self.add_session(room, when, live=rng.random() < 0.3)
            changed["new_sessions"] += 1
        if self.sessionless_errors:
            for room in rng.sample(rooms, k=max(1, n // 4)):
                when = max(start, parse_iso(room["created_at"])) + timedelta(
                    minutes=rng.randint(1, 55)
                )
                self.add_sessionless_error(room, min(when, self.clock))
                changed["sessionless_errors"] += 1
        for room in rng.sample(rooms, k=min(renamed, len(rooms))):
            room["name"] = f"{room['name']}-renamed"
        for room in rng.sample([r for r in rooms if r["enabled"]], k=disabled):
            room["enabled"] = False
        changed.update(renamed=renamed, disabled=disabled)
        self._release(self.clock)
        _sort(self)
        return changed

    def tick(self, minutes: float = 2.0, *, starts: int = 1, ends: int = 1) -> dict[str, int]:
        """A busy workspace a few minutes on: the clock moves `minutes` (to the millisecond),
        `ends` live sessions end within them (peers leave, tracks close, recordings stop),
        `starts` live sessions start in idle enabled rooms, and whatever became due is listed.
        Cheap (no re-sorting of the events), so that a server can call it between pages of a
        run (`ApiSimulator(move_every=N)`). Returns what changed."""
        rng = self.rng
        start = self.clock
        self.clock = start + timedelta(milliseconds=round(minutes * 60_000))
        self.version += 1
        listed = len(self.events)
        live = [s for s in self.sessions if s["active"] and s["room_id"] not in self.dormant]
        ending = rng.sample(live, k=min(ends, len(live)))
        for session in ending:
            joins = [parse_iso(p["joined_at"]) for p in session["peers"].values()]
            floor = max([start, parse_iso(session["created_at"]), *joins])
            self.end_session(session, self._between(min(floor, self.clock), self.clock))
        busy = self.live_sessions()
        idle = [
            r
            for r in self.rooms
            if r["enabled"] and r["id"] not in busy and r["id"] not in self.dormant
        ]
        starting = rng.sample(idle, k=min(starts, len(idle)))
        for room in starting:
            opened = max(start, parse_iso(room["created_at"]))
            self.start_session(room, self._between(min(opened, self.clock), self.clock))
        self._release(self.clock)
        return {
            "started": len(starting),
            "ended": len(ending),
            "released": len(self.events) - listed,
        }

    def _between(self, low: datetime, high: datetime) -> datetime:
        """A time from `low` to `high`, to the millisecond."""
        span = max(0, int((high - low).total_seconds() * 1000))
        return low + timedelta(milliseconds=self.rng.randint(0, span))

    def _release(self, until: datetime) -> None:
        """List what has happened by `until`: pending events and finished uploads. (Times are
        compared as the API's strings: same format, millisecond precision.)"""
        cut = iso(until)
        due = [e for e in self.pending if e["timestamp"] <= cut]
        if due:
            self.pending = [e for e in self.pending if e["timestamp"] > cut]
            for event in sorted(due, key=_event_key):
                self._list_event(event)
        for upload in [u for u in self.uploads if u.at <= until]:
            self.uploads.remove(upload)
            recording = upload.recording
            if recording is None or recording["id"] != upload.recording_id:
                recording = next(r for r in self.recordings if r["id"] == upload.recording_id)
            recording.update(status="completed", updated_at=iso(upload.at))
            self._list_event(upload.event)

    def end_session(self, session: dict[str, Any], at: datetime) -> None:
        """The session ends at `at`: it turns inactive, its peers leave (their tracks are
        removed, and under `new_event_types` each leaves with `peer.leave.success`), its
        recordings stop (their upload, and `beam.recording.success`, follow)."""
        session["active"] = False
        session["updated_at"] = iso(at)
        self.version += 1
        for peer in session["peers"].values():
            if "left_at" not in peer:
                peer["left_at"] = iso(at)
                for track in self.tracks.pop(peer["id"], []):
                    data = {**track, "mute": False, "stopped_at": iso(at)}
                    self._event("track.remove.success", at, data)
                base = self.peer_data.pop(peer["id"], None)
                if self.new_event_types and base is not None:
                    self._leave_event(base, base["template_id"], at)
        for recording in self.recordings:
            if recording["session_id"] == session["id"] and "stopped_at" not in recording:
                self._stop_recording(recording, at)

    #: The former name, which tests still call.
    _end_session = end_session

    def snapshot(self) -> World:
        """A deep copy, for tests that compare before and after the world moves (without the
        events index: the copy builds its own when first asked)."""
        index, self._index = self._index, None
        try:
            return copy.deepcopy(self)
        finally:
            self._index = index


def _event_key(event: dict[str, Any]) -> tuple[str, str]:
    return (event["timestamp"], event["id"])


#: The fewest live sessions a generated workspace has, however small.
MIN_LIVE_SESSIONS = 4


def generate_world(
    scale: int = 50,
    seed: int = 7,
    clock: datetime = DEFAULT_CLOCK,
    *,
    reading: Reading = LENIENT,
    history: int = 1,
    busy_rooms: int = 0,
    busy_room_events: int = 1300,
) -> World:
    """A workspace with `scale` rooms, their sessions, recordings and events.

    About one room in sixteen has a live session (the only rooms with active peers); rooms were
    created over the 60 days before `clock`, so part of the event history is already past the
    API's 30-day retention.

    `history` > 1 gives the same workspace a longer past: (history - 1) x `scale` older rooms,
    created over the (history - 1) x 60 days before those, with sessions, recordings and events
    of their own, all long over. They stay quiet (`advance()` leaves them be), and everything
    recent is identical to the world of history 1: the same activity, more history.

    `busy_rooms` of the recent rooms (chosen by the seed) get ended sessions enough that each
    holds about `busy_room_events` retained events (every kind), for a speed benchmark; the
    rest of the world is the same as without them.
    """
    world = World(
        seed=seed,
        clock=clock,
        rng=random.Random(seed),
        extras=random.Random(f"extras-{seed}"),
        sessionless_errors=reading.sessionless_errors,
        late_events=reading.late_events,
        new_event_types=reading.new_event_types,
        unset_times=reading.unset_times,
    )
    rng = world.rng
    window = timedelta(days=DEFAULT_HISTORY_DAYS)
    start = clock - window - timedelta(days=30)
    for i in range(max(2, scale // 40)):
        world.add_template(start + timedelta(hours=i))
    _add_rooms(world, scale, clock - window, clock)
    # Even a small workspace has a few live sessions, so that time has sessions to end.
    live = world.live_sessions()
    idle = [room for room in world.rooms if room["id"] not in live]
    for room in rng.sample(idle, k=max(0, MIN_LIVE_SESSIONS - (len(world.rooms) - len(idle)))):
        world.add_session(room, clock - timedelta(minutes=rng.randint(1, 50)), live=True)
    if history > 1:
        recent_rng = rng.getstate()
        rng.seed(seed + 1_000_003)
        older = clock - window * history
        _add_rooms(world, scale * (history - 1), older, clock - window, past_only=True)
        world.dormant = {room["id"] for room in world.rooms[scale:]}
        rng.setstate(recent_rng)
    if busy_rooms:
        _add_busy_rooms(world, world.rooms[:scale], busy_rooms, busy_room_events)
    _sort(world)
    return world


def _add_rooms(
    world: World, count: int, since: datetime, until: datetime, *, past_only: bool = False
) -> None:
    """`count` rooms created between `since` and `until`, each with up to three sessions (and,
    now and then, a live one), and errors without a session under that reading. `past_only`:
    sessions all end before `until`, none live."""
    rng = world.rng
    clock = world.clock
    span = int((until - since).total_seconds()) - 86400
    room_times = sorted(since + timedelta(seconds=rng.randint(0, span)) for _ in range(count))
    horizon = until if past_only else clock - timedelta(hours=2)
    for created in room_times:
        room = world.add_room(created)
        when = created + timedelta(minutes=rng.randint(5, 600))
        for _ in range(rng.randint(0, 3)):
            if when >= horizon - timedelta(hours=2 if past_only else 0):
                break
            session = world.add_session(room, when, live=False)
            when = parse_iso(session["updated_at"]) + timedelta(hours=rng.randint(1, 200))
        if not past_only and rng.random() < 0.06:
            world.add_session(room, clock - timedelta(minutes=rng.randint(1, 50)), live=True)
        if world.sessionless_errors and rng.random() < 0.1:
            seconds = int((horizon - created).total_seconds())
            world.add_sessionless_error(room, created + timedelta(seconds=rng.randint(0, seconds)))


#: A busy room's sessions start at least this far apart (the longest session is 90 minutes,
#: its peers join within 2), so that a room never has two sessions at once.
BUSY_SESSION_SPACING = timedelta(minutes=100)


def _add_busy_rooms(world: World, rooms: list[dict[str, Any]], count: int, events: int) -> None:
    """Give `count` of `rooms` ended sessions within the 30-day retention until each holds
    about `events` retained events. Rooms older than the retention are chosen first (their
    whole window is free); the sessions are spread over the window, clear of the room's own."""
    clock = world.clock
    horizon = clock - EVENT_RETENTION
    chooser = random.Random(f"busy-{world.seed}")
    old = [r for r in rooms if parse_iso(r["created_at"]) < horizon]
    young = sorted((r for r in rooms if r not in old), key=lambda r: r["created_at"])
    chosen = chooser.sample(old, k=min(count, len(old))) + young[: max(0, count - len(old))]
    chosen_ids = {room["id"] for room in chosen}
    cut = iso(horizon)
    held = dict.fromkeys(chosen_ids, 0)
    for event in (*world.events, *world.pending):
        room_id = event["data"].get("room_id")
        if room_id in held and event["timestamp"] >= cut:
            held[room_id] += 1
    taken: dict[str, list[tuple[datetime, datetime]]] = {room_id: [] for room_id in chosen_ids}
    for session in world.sessions:
        if session["room_id"] in taken:
            span = (parse_iso(session["created_at"]), parse_iso(session["updated_at"]))
            taken[session["room_id"]].append(span)
    for room in sorted(chosen, key=lambda r: r["id"]):
        _fill_busy_room(world, room, events - held[room["id"]], taken[room["id"]])


def _fill_busy_room(
    world: World, room: dict[str, Any], wanted: int, taken: list[tuple[datetime, datetime]]
) -> None:
    """Ended sessions for one busy room until it has `wanted` more events (or its window is
    full), spaced evenly over its window with some jitter, skipping its existing sessions."""
    rng = world.rng
    first = max(parse_iso(room["created_at"]), world.clock - EVENT_RETENTION) + timedelta(hours=1)
    last = world.clock - timedelta(hours=3)
    per_session = 21 if world.new_event_types else 16  # events a session brings, about
    needed = max(1, -(-wanted // per_session))
    spacing = max(BUSY_SESSION_SPACING, (last - first) / (needed * 1.2))
    when, added = first, 0
    while added < wanted and when < last:
        clash = next((b for a, b in taken if a - BUSY_SESSION_SPACING < when <= b), None)
        if clash is not None:
            when = clash + timedelta(minutes=30)
            continue
        before = len(world.events) + len(world.pending) + len(world.uploads)
        world.add_session(room, when, live=False)
        if world.sessionless_errors and rng.random() < 0.1:
            world.add_sessionless_error(room, when - timedelta(minutes=rng.randint(1, 5)))
        added += len(world.events) + len(world.pending) + len(world.uploads) - before
        jitter = timedelta(minutes=rng.randint(0, 10))
        when = when + max(BUSY_SESSION_SPACING, spacing - timedelta(minutes=5)) + jitter


def _sort(world: World) -> None:
    # ObjectIds start with the creation time, so id order is creation order, as in the API.
    for items in (world.templates, world.rooms, world.sessions, world.recordings):
        items.sort(key=lambda item: item["id"])
    world.events.sort(key=_event_key)
