"""Shape adapters: secrets dropped at any depth, the zero time as None, timestamps parsed, maps
keyed by ids turned into rows that keep the key."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from analytics_assets.source.shapes import (
    clean,
    clean_in_place,
    destination_rows,
    is_set,
    peer_rows,
    session_row,
    settings_row,
    template_row,
)

ZERO = "0001-01-01T00:00:00Z"
SECRETS = ("AKIA-ROOM-KEY-0001", "room-secret-value", "tpl-key-0002", "tpl-secretKey-val", "tok-9")


def room() -> dict[str, Any]:
    return {
        "id": "6470a1e2f1c2a3b4c5d6e7f8",
        "name": "Weekly sync 2024-07-17T11:05:59Z",
        "enabled": True,
        "created_at": "2024-07-17T11:05:59.736Z",
        "updated_at": ZERO,
        "recording_info": {
            "enabled": True,
            "upload_info": {
                "type": "s3",
                "location": "customer-bucket/recordings",
                "prefix": "rooms/",
                "options": {"region": "eu-west-1"},
                "credentials": {"key": "AKIA-ROOM-KEY-0001", "secret": "room-secret-value"},
            },
        },
        "webhook": {
            "url": "https://hooks.example.com/in",
            "headers": {"Authorization": "Bearer tok-9", "X-Team": "video"},
        },
    }


def template_settings() -> dict[str, Any]:
    return {
        "region": "in",
        "recording": {
            "upload": {
                "type": "gs",
                "location": "tpl-bucket",
                "options": {"region": "asia-south1"},
                "credentials": {"key": "tpl-key-0002", "secretKey": "tpl-secretKey-val"},
            },
            "thumbnails": {"enabled": False},
        },
        "roomState": {"enabled": True},
    }


def holds_any_secret(value: Any) -> bool:
    return any(secret in repr(value) for secret in SECRETS)


def test_clean_drops_customers_upload_credentials_of_rooms_and_keeps_the_rest() -> None:
    cleaned = clean(room())
    upload = cleaned["recording_info"]["upload_info"]
    assert "credentials" not in upload
    assert upload == {
        "type": "s3",
        "location": "customer-bucket/recordings",
        "prefix": "rooms/",
        "options": {"region": "eu-west-1"},
    }
    assert cleaned["webhook"] == {
        "url": "https://hooks.example.com/in",
        "headers": {"X-Team": "video"},
    }
    assert not holds_any_secret(cleaned)


def test_settings_row_drops_template_upload_credentials_and_keeps_the_rest() -> None:
    row = settings_row("tpl-1", template_settings())
    assert row == {
        "region": "in",
        "recording": {
            "upload": {
                "type": "gs",
                "location": "tpl-bucket",
                "options": {"region": "asia-south1"},
            },
            "thumbnails": {"enabled": False},
        },
        "roomState": {"enabled": True},
        "template_id": "tpl-1",
    }
    assert not holds_any_secret(row)


def test_clean_in_place_drops_secrets_at_any_depth_in_lists_too() -> None:
    rows: list[dict[str, Any]] = [{"rooms": [room()], "settings": template_settings()}]
    clean_in_place(rows)
    assert not holds_any_secret(rows)
    assert rows[0]["rooms"][0]["recording_info"]["upload_info"]["location"] == (
        "customer-bucket/recordings"
    )
    assert rows[0]["settings"]["recording"]["upload"]["type"] == "gs"


@pytest.mark.parametrize(
    "field", ["api_key", "apiKey", "private_key", "password", "access_token", "client_secret"]
)
def test_fields_named_like_a_secret_are_dropped(field: str) -> None:
    assert clean({"outer": [{field: "s3cr3t-value", "keep": 1}]}) == {"outer": [{"keep": 1}]}


def test_quirk_zero_time_becomes_none_anywhere() -> None:
    value = {"updated_at": ZERO, "nested": [{"stopped_at": ZERO}], "when": [ZERO]}
    assert clean(value) == {"updated_at": None, "nested": [{"stopped_at": None}], "when": [None]}


def test_quirk_zero_time_as_a_peers_left_at_becomes_none() -> None:
    session = {
        "id": "s1",
        "created_at": "2024-07-17T11:00:00Z",
        "peers": {"p1": {"name": "Ann", "joined_at": "2024-07-17T11:00:01Z", "left_at": ZERO}},
    }
    row = session_row(session)
    assert row["peers"] == [
        {
            "id": "p1",
            "name": "Ann",
            "joined_at": datetime(2024, 7, 17, 11, 0, 1, tzinfo=UTC),
            "left_at": None,
        }
    ]


@pytest.mark.parametrize(
    ("fraction", "microsecond"),
    [
        ("", 0),
        (".7", 700000),
        (".73", 730000),
        (".736", 736000),
        (".7365", 736500),
        (".73651", 736510),
        (".736511", 736511),
        (".7365113", 736511),
        (".73651134", 736511),
        (".736511349", 736511),
    ],
)
def test_quirk_timestamps_with_0_to_9_fraction_digits_become_aware_datetimes(
    fraction: str, microsecond: int
) -> None:
    parsed = clean({"t": f"2024-07-17T11:05:59{fraction}Z"})["t"]
    assert parsed == datetime(2024, 7, 17, 11, 5, 59, microsecond, tzinfo=UTC)
    assert parsed.utcoffset() == timedelta(0)
    assert clean_in_place([{"t": f"2024-07-17T11:05:59{fraction}Z"}])[0]["t"] == parsed


def test_a_timestamp_with_an_offset_keeps_its_offset() -> None:
    parsed = clean("2024-07-17T16:35:59.5+05:30")
    assert parsed == datetime(
        2024, 7, 17, 16, 35, 59, 500000, tzinfo=timezone(timedelta(hours=5.5))
    )
    assert parsed == datetime(2024, 7, 17, 11, 5, 59, 500000, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "6470a1e2f1c2a3b4c5d6e7f8a9b0c1d2",  # a long id
        "Standup 2024-07-17T11:05:59Z",  # a name holding a time
        "2024-07-17T11:05:59Z-recording",  # a key starting with one
        "abcdefghijTklmnopqrstuvwxyz",  # 'T' where a time has it
        "2024-07-17 11:05:59.123456Z",  # a space, not the API's format
    ],
)
def test_ids_and_names_that_merely_look_long_stay_strings(text: str) -> None:
    assert clean({"v": text}) == {"v": text}
    assert clean_in_place([{"v": text}]) == [{"v": text}]


def test_clean_copies_and_leaves_its_input_unchanged() -> None:
    original = room()
    before = copy.deepcopy(original)
    cleaned = clean(original)
    assert original == before
    assert cleaned is not original
    assert cleaned["recording_info"] is not original["recording_info"]
    assert cleaned["created_at"] == datetime(2024, 7, 17, 11, 5, 59, 736000, tzinfo=UTC)


def test_clean_in_place_changes_the_rows_and_returns_the_same_list() -> None:
    rows = [room()]
    inner = rows[0]["recording_info"]
    returned = clean_in_place(rows)
    assert returned is rows
    assert rows[0]["recording_info"] is inner
    assert "credentials" not in inner["upload_info"]
    assert rows[0]["created_at"] == datetime(2024, 7, 17, 11, 5, 59, 736000, tzinfo=UTC)
    assert rows[0]["updated_at"] is None
    assert rows == [clean(room())]


def test_session_row_turns_peers_keyed_by_id_into_rows_keeping_the_id() -> None:
    session = {
        "id": "s1",
        "active": False,
        "peers": {
            "p1": {"name": "Ann", "role": "host"},
            "p2": {"name": "Bo", "role": "guest"},
        },
    }
    assert session_row(session)["peers"] == [
        {"name": "Ann", "role": "host", "id": "p1"},
        {"name": "Bo", "role": "guest", "id": "p2"},
    ]
    assert session_row({"id": "s2", "peers": None})["peers"] == []


def test_template_row_turns_roles_into_rows_and_drops_embedded_settings_and_destinations() -> None:
    template = {
        "id": "tpl-1",
        "name": "default",
        "createdAt": "2024-07-01T00:00:00.5Z",
        "roles": {"host": {"priority": 1}, "guest": {"priority": 2}},
        "settings": template_settings(),
        "destinations": {"rtmpDestinations": {"d1": {"name": "yt"}}},
    }
    assert template_row(template) == {
        "id": "tpl-1",
        "name": "default",
        "createdAt": datetime(2024, 7, 1, 0, 0, 0, 500000, tzinfo=UTC),
        "roles": [{"priority": 1, "name": "host"}, {"priority": 2, "name": "guest"}],
    }


def test_peer_rows_keep_the_peer_id_and_name_their_room() -> None:
    body = {
        "peers": {
            "p1": {"name": "Ann", "user_id": "u1", "joined_at": "2024-07-17T11:00:00Z"},
            "p2": {"name": "Bo", "user_id": "u2", "joined_at": ZERO},
        }
    }
    assert peer_rows("room-1", body) == [
        {
            "name": "Ann",
            "user_id": "u1",
            "joined_at": datetime(2024, 7, 17, 11, 0, tzinfo=UTC),
            "id": "p1",
            "room_id": "room-1",
        },
        {"name": "Bo", "user_id": "u2", "joined_at": None, "id": "p2", "room_id": "room-1"},
    ]
    assert peer_rows("room-1", {"peers": {}}) == []
    assert peer_rows("room-1", {}) == []


def test_destination_rows_keep_each_map_key_and_kind() -> None:
    destinations = {
        "browserRecordings": {},
        "rtmpDestinations": {
            "k1": {"name": "stream", "recording": True},
            "k2": {"name": "stream", "password": "rtmp-pass-1"},  # names can repeat
        },
        "hlsDestinations": {"h1": {"name": "hls", "layers": []}},
        "transcriptions": None,
    }
    assert list(destination_rows("tpl-1", destinations)) == [
        {
            "name": "stream",
            "recording": True,
            "template_id": "tpl-1",
            "kind": "rtmpDestinations",
            "key": "k1",
        },
        {"name": "stream", "template_id": "tpl-1", "kind": "rtmpDestinations", "key": "k2"},
        {
            "name": "hls",
            "layers": [],
            "template_id": "tpl-1",
            "kind": "hlsDestinations",
            "key": "h1",
        },
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        ("", False),
        (ZERO, False),
        ("0001-01-01T00:00:00.000Z", False),
        ("2024-07-17T11:05:59Z", True),
    ],
)
def test_is_set_tells_a_set_time_from_none_empty_and_the_zero_time(
    value: str | None, expected: bool
) -> None:
    assert is_set(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl", "rtmp://a.rtmp.youtube.com/***"),
        (
            "rtmps://live-api-s.facebook.com:443/rtmp/FB-123-0-Ab",
            "rtmps://live-api-s.facebook.com:443/***",
        ),
        ("rtmp://example.com:443/", "rtmp://example.com:443/"),
        ("https://loader:s3cr3t@db.example.com:5432/x", "https://loader:***@db.example.com:5432/x"),
        ("https://hooks.example.invalid/path?x=1", "https://hooks.example.invalid/path?x=1"),
        # a user and password in an RTMP URL go with its path
        ("rtmp://user:pw-1@live.example.com/app/sk-1", "rtmp://live.example.com/***"),
        ("rtmps://user:pw-1@live.example.com", "rtmps://live.example.com/***"),
        ("RTMP://live.example.com/app?key=sk-1", "RTMP://live.example.com/***"),
        # presigned and token URLs keep their path, not their signature
        (
            "https://b.s3.amazonaws.com/r.mp4?X-Amz-Credential=AKIA1%2F2024&X-Amz-Date=20240717"
            "&X-Amz-Signature=abc123",
            "https://b.s3.amazonaws.com/r.mp4?X-Amz-Credential=***&X-Amz-Date=20240717"
            "&X-Amz-Signature=***",
        ),
        (
            "https://cdn.example.com/v.m3u8?token=t-1&sig=s-1",
            "https://cdn.example.com/v.m3u8?token=***&sig=***",
        ),
        (
            "https://app.example.com/cb#access_token=t-1&state=x",
            "https://app.example.com/cb#access_token=***&state=x",
        ),
        # inside text, every URL is masked and the text kept
        (
            "upload to rtmp://live.example.com/app/sk-1 failed, see https://u:pw@h.example.com/",
            "upload to rtmp://live.example.com/*** failed, see https://u:***@h.example.com/",
        ),
        ("https://h.example.com:port/x", "https://***"),
    ],
)
def test_quirk_secrets_inside_urls_are_masked_and_the_rest_kept(value: str, expected: str) -> None:
    """Streaming services put the stream key in an RTMP URL's path (`rtmpUrls` of a template's
    RTMP destinations); a URL may carry a password."""
    row = {"rtmpUrls": [value], "nested": {"url": value}, "streamKey": "sk-live-123"}
    assert clean(row) == {"rtmpUrls": [expected], "nested": {"url": expected}}
    rows = [copy.deepcopy(row)]
    assert clean_in_place(rows) == [{"rtmpUrls": [expected], "nested": {"url": expected}}]
