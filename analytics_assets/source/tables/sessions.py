"""sessions (+ sessions__peers): `GET /v2/sessions`, merged on `id`.

A session changes after it starts (it ends, its peers leave), and the API filters sessions by
start time only. The table keeps a cursor over the session listing (`cursors.py`): a refresh
reads the sessions started since the last run and those that were live then. Peers, an object
keyed by peer id in the API, become rows of `sessions__peers`.
"""

from collections.abc import Iterator
from typing import Any

import dlt
from dlt.extract import DltResource

from analytics_assets.source.cursors import CursorTracker
from analytics_assets.source.run import Run
from analytics_assets.source.shapes import session_row


def sessions_resource(run: Run) -> DltResource:
    @dlt.resource(
        name="sessions",
        primary_key="id",
        write_disposition="merge",
        # Unset (absent, or the zero time) while a peer is in the room: typed, so the column
        # exists even when no peer has left yet.
        nested_hints={
            "peers": {"columns": {"left_at": {"name": "left_at", "data_type": "timestamp"}}}
        },
        parallelized=True,
    )
    def sessions() -> Iterator[Any]:
        """Each session once: live sessions are held back to the end, and one that ended
        while the run listed (so listed live, then ended: `Run.sessions`) loads as ended,
        whatever its times say (an unset `updated_at` is no order)."""
        track = CursorTracker(run.state("sessions"))
        live: dict[str, dict[str, Any]] = {}
        for page in run.sessions():
            ended = []
            for session in page:
                track.observe(session)
                if session.get("active"):
                    live[session["id"]] = session
                else:
                    ended.append(session)
                    live.pop(session["id"], None)
            if ended:
                yield [session_row(session) for session in ended]
        if live:
            yield [session_row(session) for session in live.values()]
        track.commit(run.sessions_started_at())

    return sessions
