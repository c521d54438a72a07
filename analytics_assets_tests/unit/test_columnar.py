"""Events as Arrow tables (`columnar.py`): the rows dlt would make of the dicts, by the same
rules, and the dict path wherever Arrow cannot give the same rows."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from analytics_assets.source.columnar import BATCH_ROWS, EventColumns, batched

ZERO = "0001-01-01T00:00:00Z"


def event(n: int, **data: Any) -> dict[str, Any]:
    return {
        "version": "2.0",
        "id": f"e{n:03d}",
        "timestamp": f"2024-07-17T11:05:59.{n:03d}511342Z",
        "type": "track.add.success",
        "data": {"room_id": "r1", "peerId": f"p{n}", "mute": n % 2 == 0, "duration": n, **data},
    }


def only_table(items: list[Any]) -> pa.Table:
    (table,) = items
    assert isinstance(table, pa.Table)
    return table


def test_flat_events_become_one_table_flattened_and_snake_cased() -> None:
    table = only_table(EventColumns().items([event(1), event(2)]))
    assert table.column_names == [
        "version",
        "id",
        "timestamp",
        "type",
        "data__room_id",
        "data__peer_id",
        "data__mute",
        "data__duration",
    ]
    assert table.column("data__peer_id").to_pylist() == ["p1", "p2"]
    assert table.column("data__mute").to_pylist() == [False, True]
    assert table.column("data__duration").type == pa.int64()
    assert not table.schema.field("id").nullable  # the key, as dlt's schema says


def test_quirk_timestamps_keep_the_microsecond_and_the_zero_time_is_null() -> None:
    """The API sends 0 to 9 fraction digits: digits beyond the microsecond are dropped."""
    rows = [event(1, left_at=ZERO), event(2, left_at="2024-07-17T11:06:00Z")]
    table = only_table(EventColumns().items(rows))
    assert table.column("timestamp").to_pylist() == [
        datetime(2024, 7, 17, 11, 5, 59, 1511, tzinfo=UTC),
        datetime(2024, 7, 17, 11, 5, 59, 2511, tzinfo=UTC),
    ]
    assert table.column("data__left_at").to_pylist() == [
        None,
        datetime(2024, 7, 17, 11, 6, tzinfo=UTC),
    ]


def test_text_that_arrow_would_read_as_a_time_stays_text_as_on_the_dict_path() -> None:
    """Arrow's JSON reader takes `2024-01-01` or a zone-less `2024-01-01 10:00:00` for a time;
    only the API's ISO 8601 with a zone is one (a peer may well be named after a date)."""
    rows = [
        event(1, peerName="2024-01-01", note="2024-01-01 10:00:00", at="2024-07-17T11:06:00Z"),
        event(2, peerName="2024-01-02", note="2024-01-02 10:00:00", at="2024-07-17T11:07:00Z"),
    ]
    columns = EventColumns()
    table = only_table(columns.items(copy.deepcopy(rows)))
    assert table.column("data__peer_name").to_pylist() == ["2024-01-01", "2024-01-02"]
    assert table.column("data__note").to_pylist() == ["2024-01-01 10:00:00", "2024-01-02 10:00:00"]
    assert table.column("data__at").to_pylist() == [
        datetime(2024, 7, 17, 11, 6, tzinfo=UTC),
        datetime(2024, 7, 17, 11, 7, tzinfo=UTC),
    ]
    later = only_table(columns.items([event(3, peerName="2024-01-03")]))
    assert later.column("data__peer_name").to_pylist() == ["2024-01-03"]
    # The dict path keeps the same text (shapes.clean parses only times with a zone).
    (dicts,) = EventColumns().items([event(4, peerName="2024-01-04", code=1), event(5, code="x")])
    assert isinstance(dicts, list) and dicts[0]["data"]["peerName"] == "2024-01-04"


def test_quirk_secrets_never_reach_the_table() -> None:
    rows = [
        event(1, credentials={"key": "AKIA1", "secret": "s1"}, apiKey="k", stream="rtmp://h/a/sk1"),
        event(2, upload={"location": "bucket", "secretKey": "s2"}, stream="rtmp://h/a/sk2"),
    ]
    table = only_table(EventColumns().items(rows))
    assert not [c for c in table.column_names if "credential" in c or "key" in c.lower()]
    assert table.column("data__upload__location").to_pylist() == [None, "bucket"]
    assert table.column("data__stream").to_pylist() == ["rtmp://h/***", "rtmp://h/***"]


def test_events_with_a_list_keep_the_dict_path_for_their_child_tables() -> None:
    """An error's `devices` holds lists: those events become dict rows (child tables)."""
    with_list = event(2, devices={"videoInput": ["cam"], "audioInput": []})
    empty_lists = event(3, devices={"videoInput": [], "audioInput": []})
    table, rows = EventColumns().items([event(1), with_list, empty_lists])
    assert isinstance(table, pa.Table) and isinstance(rows, list)
    assert table.column("id").to_pylist() == ["e001", "e003"]  # empty lists: no child rows
    assert [r["id"] for r in rows] == ["e002"]
    assert rows[0]["data"]["devices"]["videoInput"] == ["cam"]
    assert rows[0]["timestamp"] == datetime(2024, 7, 17, 11, 5, 59, 2511, tzinfo=UTC)


def test_a_field_whose_type_changes_within_a_batch_keeps_the_dict_path() -> None:
    """dlt makes a variant column of it, as it would have from dicts."""
    rows = [event(1, code=4005), event(2, code="E4005")]
    (dicts,) = EventColumns().items(copy.deepcopy(rows))
    assert isinstance(dicts, list) and [r["data"]["code"] for r in dicts] == [4005, "E4005"]


def test_a_batch_whose_types_differ_from_the_tables_keeps_the_dict_path() -> None:
    columns = EventColumns({"data__duration": "text"})
    (dicts,) = columns.items([event(1)])
    assert isinstance(dicts, list)
    widened = only_table(EventColumns({"data__duration": "double"}).items([event(1)]))
    assert widened.column("data__duration").type == pa.float64()


def test_later_batches_must_agree_with_the_types_the_first_gave() -> None:
    columns = EventColumns()
    only_table(columns.items([event(1, size=10)]))
    (dicts,) = columns.items([event(2, size="large")])
    assert isinstance(dicts, list)


@pytest.mark.parametrize("count", [0, 1, BATCH_ROWS + 5])
def test_batched_hands_every_event_on_once(count: int) -> None:
    events = [event(n % 1000) | {"id": f"x{n}"} for n in range(count)]
    chunks = [events[i : i + 700] for i in range(0, count, 700)]
    items = [only_table([item]) for item in batched(iter(chunks), EventColumns())]
    ids = [i for item in items for i in item.column("id").to_pylist()]
    assert ids == [e["id"] for e in events]
    assert all(item.num_rows >= BATCH_ROWS for item in items[:-1])  # large tables, in order
