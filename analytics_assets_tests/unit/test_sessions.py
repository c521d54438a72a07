"""The sessions table over an in-memory listing: each session once, as the API last showed it."""

from __future__ import annotations

from analytics_assets.source.tables.sessions import sessions_resource
from analytics_assets_tests.unit.test_analytics_events import SERVED_AT
from analytics_assets_tests.unit.test_event_modes import HOUR, ListingClient, StatefulRun, session


def test_a_session_that_ends_while_the_run_lists_loads_once_as_ended() -> None:
    """Sessions are listed `active=true`, then `active=false`: one that ends between the two
    comes twice. The ended copy is kept even with no `updated_at` to order them by (the zero
    time loads as NULL, and Postgres sorts NULLs first)."""
    live = session("moving", "r0", active=True, started=SERVED_AT - HOUR, ended=SERVED_AT)
    ended = {**live, "active": False}
    del live["updated_at"], ended["updated_at"]
    still_live = session("live", "r1", active=True, started=SERVED_AT - HOUR, ended=SERVED_AT)
    client = ListingClient({}, [], [live, still_live, ended])
    run = StatefulRun(client, {}, tables=frozenset({"sessions"}))
    rows = list(sessions_resource(run))
    assert sorted((row["id"], row["active"]) for row in rows) == [
        ("live", True),
        ("moving", False),
    ]
