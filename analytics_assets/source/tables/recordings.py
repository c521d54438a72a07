"""recordings: `GET /v2/recordings`, merged on `id`.

The API filters recordings by `room_id`, `session_id` and `status`, not by time, and a
recording changes after it is created (`running` until it is stopped and uploaded, then
`completed`). Reading the whole listing every hour would grow with every recording ever made.

- First load, full refresh and the daily sweep: the whole listing.
- Refresh: the recordings of the sessions with activity since the last run (new, live, or live
  last time: a recording is made inside a session), and of every recording not yet in a final
  state last time (`unfinished` in the state: id -> session id), until it is. The cost follows
  activity, not history.
"""

from collections.abc import Iterator
from typing import Any

import dlt
from dlt.extract import DltResource

from analytics_assets.source.cursors import CursorTracker
from analytics_assets.source.run import Run
from analytics_assets.source.settings import FINAL_RECORDING_STATUSES
from analytics_assets.source.shapes import with_timestamps


def recordings(run: Run) -> DltResource:
    settings = run.settings

    def of_session(session_id: str) -> list[dict[str, Any]]:
        pages = run.client.list_pages("/v2/recordings", {"session_id": session_id})
        return [recording for page in pages for recording in page]

    @dlt.resource(name="recordings", primary_key="id", write_disposition="merge", parallelized=True)
    def read() -> Iterator[Any]:
        state = run.state("recordings")
        unfinished: dict[str, str] = dict(state.get("unfinished") or {})

        def note(page: list[dict[str, Any]]) -> list[dict[str, Any]]:
            for recording in page:
                if recording.get("status") in FINAL_RECORDING_STATUSES:
                    unfinished.pop(recording["id"], None)
                else:
                    unfinished[recording["id"]] = recording.get("session_id", "")
            return with_timestamps(page)

        if settings.sweep:
            for page in run.listing("/v2/recordings"):
                yield note(page)
            state["unfinished"] = unfinished
            return
        track = CursorTracker(state)
        if settings.full_refresh or track.previous is None:
            for page in run.listing("/v2/recordings"):
                yield note(page)
            for page in run.sessions():  # only to start the cursor
                for session in page:
                    track.observe(session)
        else:
            previous = track.previous
            wanted: list[str] = []
            for page in run.sessions():
                for session in page:
                    track.observe(session)
                    if previous.has_activity(session, settings.margin):
                        wanted.append(session["id"])
            wanted += [sid for sid in dict.fromkeys(unfinished.values()) if sid not in wanted]
            for page in run.fan_out(of_session, [sid for sid in wanted if sid]):
                if page:
                    yield note(page)
        track.commit()
        state["unfinished"] = unfinished

    return read
