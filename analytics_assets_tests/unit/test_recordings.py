"""Which unfinished recordings a refresh keeps polling (`note_statuses`, `still_polled`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from analytics_assets.source.tables.recordings import Unfinished, note_statuses, still_polled

NOW = datetime(2024, 7, 17, 12, 0, 0, tzinfo=UTC)
LOOKBACK = timedelta(hours=24)
ZERO = "0001-01-01T00:00:00Z"


def ago(delta: timedelta) -> str:
    return (NOW - delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def recording(rid: str, status: str, **more: Any) -> dict[str, Any]:
    return {
        "id": rid,
        "session_id": f"s-{rid}",
        "status": status,
        "created_at": ago(timedelta(hours=3)),
        "updated_at": ago(timedelta(hours=1)),
        **more,
    }


def test_a_recording_unchanged_for_longer_than_the_lookback_is_no_longer_polled() -> None:
    unfinished: Unfinished = {
        "stuck": ["s1", ago(LOOKBACK + timedelta(hours=1))],
        "recent": ["s2", ago(timedelta(hours=2))],
        "edge": ["s3", ago(LOOKBACK)],
    }
    assert still_polled(unfinished, NOW, LOOKBACK) == {
        "recent": ["s2", ago(timedelta(hours=2))],
        "edge": ["s3", ago(LOOKBACK)],
    }
    assert "stuck" in unfinished  # a new dict: the input is not trimmed


def test_an_old_format_entry_a_bare_session_id_counts_from_now() -> None:
    old_format: Any = {"rec-1": "s-old"}
    assert still_polled(old_format, NOW, LOOKBACK) == {"rec-1": ["s-old", NOW.isoformat()]}


def test_an_old_format_entry_then_seen_again_is_timed_by_its_recording() -> None:
    old_format: Any = {"rec-1": "s-old"}
    unfinished = still_polled(old_format, NOW, LOOKBACK)
    note_statuses([recording("rec-1", "running", session_id="s-old")], unfinished)
    assert unfinished == {"rec-1": ["s-old", ago(timedelta(hours=1))]}


def test_an_old_format_entry_never_seen_again_stops_being_polled_after_the_lookback() -> None:
    unfinished: Any = {"rec-1": "s-old"}
    for day in range(3):  # one run a day, the recording never listed again
        unfinished = still_polled(unfinished, NOW + timedelta(days=day), LOOKBACK)
    assert unfinished == {}


def test_note_statuses_forgets_final_ones_and_remembers_the_others_with_their_change() -> None:
    unfinished: Unfinished = {
        "done": ["s-done", ago(timedelta(hours=5))],
        "broken": ["s-broken", ago(timedelta(hours=5))],
        "untouched": ["s-untouched", ago(timedelta(hours=2))],
    }
    page = [
        recording("done", "completed"),
        recording("broken", "failed"),
        recording("starting", "starting"),
        recording("stopping", "stopping"),
        recording("odd", "uploading_to_mars"),  # an open enumeration
    ]
    note_statuses(page, unfinished)
    changed = ago(timedelta(hours=1))
    assert unfinished == {
        "untouched": ["s-untouched", ago(timedelta(hours=2))],
        "starting": ["s-starting", changed],
        "stopping": ["s-stopping", changed],
        "odd": ["s-odd", changed],
    }


def test_quirk_zero_time_updated_at_falls_back_to_created_at() -> None:
    unfinished: Unfinished = {}
    note_statuses(
        [
            recording("zero", "running", updated_at=ZERO),
            recording("absent", "running", updated_at=None, session_id=None),
        ],
        unfinished,
    )
    assert unfinished == {
        "zero": ["s-zero", ago(timedelta(hours=3))],
        "absent": ["", ago(timedelta(hours=3))],
    }
    assert still_polled(unfinished, NOW, LOOKBACK) == unfinished


def test_a_recording_that_reaches_a_final_state_is_no_longer_polled() -> None:
    unfinished: Unfinished = {}
    note_statuses([recording("r", "running")], unfinished)
    assert list(unfinished) == ["r"]
    note_statuses([recording("r", "completed")], unfinished)
    assert unfinished == {}
