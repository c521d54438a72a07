"""recordings: `GET /v2/recordings`, merged on `id`.

The API filters recordings by `room_id`, `session_id` and `status`, not by time, and a
recording changes after it is created (`starting`, `running`, `stopping`, `post_processing`,
then `completed` or `failed`, and other statuses may come). Reading the whole listing every
hour would grow with every recording ever made.

- First load, full refresh and the daily sweep: the whole listing.
- Refresh: the recordings of the sessions with activity since the last run (new, live, or live
  last time: a recording is made inside a session), and of every recording not yet in a final
  state (`completed`, `failed`) that changed within `late_event_lookback_hours` of the API's
  clock (`unfinished` in the state: id -> [session id, when it last changed]). A recording
  whose status has not moved for longer than that (a status the project does not know, a stuck
  upload) is no longer polled hourly: the daily sweep reads it with the rest. The cost follows
  activity, not history.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt
from dlt.extract import DltResource

from analytics_assets.source.cursors import CursorTracker, parse_time
from analytics_assets.source.run import Run
from analytics_assets.source.settings import FINAL_RECORDING_STATUSES
from analytics_assets.source.shapes import clean, is_set

#: id -> [session id, when it last changed (ISO)]
Unfinished = dict[str, list[str]]


def note_statuses(page: list[dict[str, Any]], unfinished: Unfinished) -> None:
    """Remember the recordings not in a final state, forget those that reached one."""
    for recording in page:
        if recording.get("status") in FINAL_RECORDING_STATUSES:
            unfinished.pop(recording["id"], None)
            continue
        changed = recording.get("updated_at")
        if not is_set(changed):
            changed = recording.get("created_at")
        unfinished[recording["id"]] = [recording.get("session_id") or "", str(changed or "")]


def still_polled(unfinished: Unfinished, now: datetime, lookback: timedelta) -> Unfinished:
    """The unfinished recordings that changed within the lookback. An entry that says no time
    (as an earlier version wrote the state: a bare session id) counts from `now`."""
    horizon = now - lookback
    kept: Unfinished = {}
    for recording_id, entry in unfinished.items():
        session_id, changed = ([entry, ""] if isinstance(entry, str) else entry)[:2]
        if not changed:
            changed = now.isoformat()
        if parse_time(changed) >= horizon:
            kept[recording_id] = [session_id, changed]
    return kept


def sessions_to_poll(run: Run, track: CursorTracker, unfinished: Unfinished) -> list[str]:
    """The sessions with activity since the last run, then those of the unfinished recordings
    still polled (`unfinished` is trimmed to them, on the API's clock once it has answered)."""
    previous = track.previous
    assert previous is not None
    wanted: list[str] = []
    for page in run.sessions():
        for session in page:
            track.observe(session)
            if previous.has_activity(session, run.settings.margin):
                wanted.append(session["id"])
    kept = still_polled(unfinished, api_now(run), run.settings.lookback)
    unfinished.clear()
    unfinished.update(kept)
    polled = dict.fromkeys(entry[0] for entry in unfinished.values() if entry[0])
    return wanted + [sid for sid in polled if sid not in wanted]


def api_now(run: Run) -> datetime:
    """The API's clock; this machine's only if the API has not answered yet."""
    return run.now() or datetime.now(UTC)


def recordings_resource(run: Run) -> DltResource:
    settings = run.settings

    def of_session(session_id: str) -> list[dict[str, Any]]:
        pages = run.client.list_pages("/v2/recordings", {"session_id": session_id})
        return [recording for page in pages for recording in page.items]

    @dlt.resource(
        name="recordings",
        primary_key="id",
        write_disposition="merge",
        # Unset until the recording stops: typed, so the column exists before one has.
        columns={"stopped_at": {"data_type": "timestamp"}},
        parallelized=True,
    )
    def recordings() -> Iterator[Any]:
        state = run.state("recordings")
        unfinished: Unfinished = dict(state.get("unfinished") or {})
        track = CursorTracker(state)
        whole = settings.sweep or settings.full_refresh or track.previous is None
        if whole:
            pages: Iterator[list[dict[str, Any]]] = iter(run.listing("/v2/recordings"))
        else:
            pages = run.fan_out(of_session, sessions_to_poll(run, track, unfinished))
        for page in pages:
            if page:
                note_statuses(page, unfinished)
                yield clean(page)
        if not settings.sweep:
            if whole:
                for page in run.sessions():  # only to start the cursor
                    for session in page:
                        track.observe(session)
            track.commit(run.sessions_started_at())
        state["unfinished"] = still_polled(unfinished, api_now(run), settings.lookback)

    return recordings
