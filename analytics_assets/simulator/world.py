"""Deterministic data for the simulated analytics API.

The shapes follow the reference's own samples (`shared/api/examples/`): ObjectId-like ids that
sort by creation time, sessions with `peers` keyed by peer id, templates with camelCase
timestamps and embedded settings/destinations, events with a nested `data` object. The same
seed, scale and reading always give the same world.

Time is simulated: `clock` is the API's "now". Anything dated later (a track unmuted in a minute,
a recording uploaded in three hours) waits in `pending` and is listed once `advance()` moves the
clock past it, as the real API lists events when they happen.
"""

from __future__ import annotations

import copy
import random
import uuid
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

ROLES = ("host", "guest", "viewer", "teacher", "student")
REGIONS = ("in", "us", "eu")
TRACK_TYPES = ("audio", "video")
#: Errors of peers inside a session (they carry its `session_id`).
SESSION_ERRORS = ("client.publish.failed", "client.subscribe.failed", "client.disconnected")
#: Errors of peers that may never reach a session (`session_id` may be missing).
ENTRY_ERRORS = ("client.join.failed", "client.connect.failed")
#: Errors a peer may meet; under the lenient reading every error names its session.
ERROR_TYPES_ALL = (*SESSION_ERRORS, *ENTRY_ERRORS)


def iso(ts: datetime) -> str:
    """Format a time the way the API does: `YYYY-MM-DDTHH:mm:ss.sssZ`."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class Upload:
    """A recording whose upload ends at `at`: it turns `completed` and its event is listed."""

    at: datetime
    recording_id: str
    event: dict[str, Any]


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
    customer_id: str = "627cdddff2e4e30487862ad1"
    #: World behaviours of the reading (see `Reading`): errors without a session, late uploads.
    sessionless_errors: bool = False
    late_events: bool = False
    #: peer id -> the track data of its add event, to close the tracks when the peer leaves.
    tracks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: Rooms of a longer past (`generate_world(history=...)`) that `advance()` leaves quiet.
    dormant: set[str] = field(default_factory=set)

    # ---- ids -------------------------------------------------------------------------------
    def object_id(self, at: datetime) -> str:
        """A Mongo ObjectId-like id: 4 bytes of creation time, then 8 random bytes."""
        return f"{int(at.timestamp()):08x}{self.rng.getrandbits(64):016x}"

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    # ---- views the server needs ---------------------------------------------------------------
    def live_session(self, room_id: str) -> dict[str, Any] | None:
        for session in reversed(self.sessions):
            if session["room_id"] == room_id and session["active"]:
                return session
        return None

    def active_peers(self, room_id: str) -> dict[str, dict[str, Any]] | None:
        """Peers now in the room, keyed by peer id; None when the room has no live session."""
        session = self.live_session(room_id)
        if session is None:
            return None
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

    def template(self, template_id: str) -> dict[str, Any] | None:
        return next((t for t in self.templates if t["id"] == template_id), None)

    def retained_events(self) -> list[dict[str, Any]]:
        """The events the API still serves: the last 30 days."""
        horizon = self.clock - EVENT_RETENTION
        return [e for e in self.events if parse_iso(e["timestamp"]) >= horizon]

    # ---- generation ----------------------------------------------------------------------------
    def add_template(self, created: datetime) -> dict[str, Any]:
        rng = self.rng
        tid = self.object_id(created)
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
        settings: dict[str, Any] = {
            "region": rng.choice(REGIONS),
            "recording": None if rng.random() < 0.5 else {"upload": {"type": "s3"}},
            "roomState": {
                "messageInterval": rng.choice([1, 5]),
                "sendPeerList": rng.random() < 0.5,
                "stopRoomStateOnJoin": True,
                "enabled": rng.random() < 0.5,
            },
            "retry": {} if rng.random() < 0.7 else {"maxAttempts": 3},
        }
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
        template = {
            "id": tid,
            "name": f"template-{len(self.templates) + 1:04d}",
            "customerId": self.customer_id,
            "roles": roles,
            "settings": settings,
            "destinations": destinations,
            "createdAt": iso(created),
            "updatedAt": iso(created),
            "_id": tid,
            "customer": self.customer_id,
        }
        self.templates.append(template)
        return template

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
            "updated_at": "0001-01-01T00:00:00Z",
            "large_room": rng.random() < 0.1,
            "max_duration_seconds": rng.choice([2000, 10000]),
        }
        if rng.random() < 0.3:
            room["recording"] = {"enabled": rng.random() < 0.5}
        self.rooms.append(room)
        return room

    def add_session(self, room: dict[str, Any], started: datetime, *, live: bool) -> dict:
        rng = self.rng
        sid = self.object_id(started)
        peers: dict[str, dict[str, Any]] = {}
        duration = timedelta(minutes=rng.randint(5, 90))
        live = live or started + duration > self.clock  # cannot have ended in the future
        for _ in range(rng.randint(1, 4)):
            pid = self.uuid()
            joined = started + timedelta(seconds=rng.randint(0, 120))
            peer: dict[str, Any] = {
                "id": pid,
                "session_id": sid,
                "name": rng.choice(["John", "Nick", "Asha", "Mei", "Olu", "Sara"]),
                "role": rng.choice(ROLES),
                "user_id": f"user-{rng.randint(1, 5000)}",
                "joined_at": iso(joined),
            }
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
        self._add_events(room, session)
        if rng.random() < 0.3:
            self._add_recording(session, started)
        return session

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
            },
        }
        self.uploads.append(Upload(uploaded, recording["id"], event))
        self._release(self.clock)

    def _event(self, kind: str, at: datetime, data: dict[str, Any]) -> None:
        event: dict[str, Any] = {"version": "2.0", "id": self.uuid(), "timestamp": iso(at)}
        event.update(type=kind, data=data)
        (self.pending if at > self.clock else self.events).append(event)

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
                    },
                )
            for track_type in TRACK_TYPES:
                track = {
                    **base,
                    "track_id": self.uuid(),
                    "stream_id": self.uuid(),
                    "type": track_type,
                    "source": "regular",
                    "started_at": iso(joined + timedelta(seconds=2)),
                }
                self.tracks.setdefault(peer["id"], []).append(track)
                self._event(
                    "track.add.success", joined + timedelta(seconds=2), {**track, "mute": True}
                )
                self._event(
                    "track.update.success",
                    joined + timedelta(seconds=rng.randint(10, 200)),
                    {**track, "mute": False},
                )
                if "left_at" in peer:
                    left = parse_iso(peer["left_at"])
                    self._event(
                        "track.remove.success",
                        left,
                        {**track, "mute": False, "stopped_at": iso(left)},
                    )

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
        rooms = [room for room in self.rooms if room["id"] not in self.dormant]
        n = max(1, round(activity * len(rooms)))
        changed = {"new_rooms": 0, "new_sessions": 0, "ended_sessions": 0, "sessionless_errors": 0}
        live = [s for s in self.sessions if s["active"]]
        span = max(1, int(hours * 50))
        for session in rng.sample(live, k=len(live) // 2):
            self._end_session(session, start + timedelta(minutes=rng.randint(1, span)))
            changed["ended_sessions"] += 1
        for _ in range(max(1, n // 4)):
            self.add_room(start + timedelta(minutes=rng.randint(0, 30)))
            changed["new_rooms"] += 1
        rooms = [room for room in self.rooms if room["id"] not in self.dormant]
        idle = [r for r in rooms if self.live_session(r["id"]) is None]
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

    def _release(self, until: datetime) -> None:
        """List what has happened by `until`: pending events and finished uploads."""
        due = [e for e in self.pending if parse_iso(e["timestamp"]) <= until]
        if due:
            self.pending = [e for e in self.pending if parse_iso(e["timestamp"]) > until]
            self.events.extend(due)
        for upload in [u for u in self.uploads if u.at <= until]:
            self.uploads.remove(upload)
            recording = next(r for r in self.recordings if r["id"] == upload.recording_id)
            recording.update(status="completed", updated_at=iso(upload.at))
            self.events.append(upload.event)

    def _end_session(self, session: dict[str, Any], ended: datetime) -> None:
        session["active"] = False
        session["updated_at"] = iso(ended)
        for peer in session["peers"].values():
            if "left_at" not in peer:
                peer["left_at"] = iso(ended)
                for track in self.tracks.get(peer["id"], []):
                    data = {**track, "mute": False, "stopped_at": iso(ended)}
                    self._event("track.remove.success", ended, data)
        for recording in self.recordings:
            if recording["session_id"] == session["id"] and "stopped_at" not in recording:
                self._stop_recording(recording, ended)

    def snapshot(self) -> World:
        """A deep copy, for tests that compare before and after the world moves."""
        return copy.deepcopy(self)


#: The fewest live sessions a generated workspace has, however small.
MIN_LIVE_SESSIONS = 4


def generate_world(
    scale: int = 50,
    seed: int = 7,
    clock: datetime = DEFAULT_CLOCK,
    *,
    reading: Reading = LENIENT,
    history: int = 1,
) -> World:
    """A workspace with `scale` rooms, their sessions, recordings and events.

    About one room in sixteen has a live session (the only rooms with active peers); rooms were
    created over the 60 days before `clock`, so part of the event history is already past the
    API's 30-day retention.

    `history` > 1 gives the same workspace a longer past: (history - 1) x `scale` older rooms,
    created over the (history - 1) x 60 days before those, with sessions, recordings and events
    of their own, all long over. They stay quiet (`advance()` leaves them be), and everything
    recent is identical to the world of history 1: the same activity, more history.
    """
    world = World(
        seed=seed,
        clock=clock,
        rng=random.Random(seed),
        sessionless_errors=reading.sessionless_errors,
        late_events=reading.late_events,
    )
    rng = world.rng
    window = timedelta(days=DEFAULT_HISTORY_DAYS)
    start = clock - window - timedelta(days=30)
    for i in range(max(2, scale // 40)):
        world.add_template(start + timedelta(hours=i))
    _add_rooms(world, scale, clock - window, clock)
    # Even a small workspace has a few live sessions, so that time has sessions to end.
    idle = [room for room in world.rooms if world.live_session(room["id"]) is None]
    for room in rng.sample(idle, k=max(0, MIN_LIVE_SESSIONS - (len(world.rooms) - len(idle)))):
        world.add_session(room, clock - timedelta(minutes=rng.randint(1, 50)), live=True)
    if history > 1:
        recent_rng = rng.getstate()
        rng.seed(seed + 1_000_003)
        older = clock - window * history
        _add_rooms(world, scale * (history - 1), older, clock - window, past_only=True)
        world.dormant = {room["id"] for room in world.rooms[scale:]}
        rng.setstate(recent_rng)
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


def _sort(world: World) -> None:
    # ObjectIds start with the creation time, so id order is creation order, as in the API.
    for items in (world.templates, world.rooms, world.sessions, world.recordings):
        items.sort(key=lambda item: item["id"])
    world.events.sort(key=lambda e: (e["timestamp"], e["id"]))
