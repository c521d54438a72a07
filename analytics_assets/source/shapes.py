"""Shape adapters: the API's objects keyed by ids become rows that keep the key, so no table
grows a column per id (TRAPS: an unbounded schema that made normalizing 100x slower)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any


def session_row(session: dict[str, Any]) -> dict[str, Any]:
    """`peers` is an object keyed by peer id; a list of them becomes sessions__peers."""
    peers = session.get("peers") or {}
    return {**session, "peers": [{**peer, "id": peer_id} for peer_id, peer in peers.items()]}


def template_row(template: dict[str, Any]) -> dict[str, Any]:
    """Roles (keyed by role name) become rows of templates__roles; the embedded settings and
    destinations are dropped because their own endpoints load them into their own tables."""
    roles = template.get("roles") or {}
    row = {k: v for k, v in template.items() if k not in ("settings", "destinations")}
    row["roles"] = [{**role, "name": name} for name, role in roles.items()]
    return row


def peer_rows(room_id: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Active peers come as an object keyed by peer id and do not name their room."""
    peers = body.get("peers") or {}
    return [{**peer, "id": peer_id, "room_id": room_id} for peer_id, peer in peers.items()]


def settings_row(template_id: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Settings are a bare object with no id: keyed by the template they belong to."""
    return {**settings, "template_id": template_id}


def destination_rows(template_id: str, destinations: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One row per destination: the map key is its identity (names inside can repeat)."""
    for kind, entries in destinations.items():
        for key, destination in (entries or {}).items():
            yield {**destination, "template_id": template_id, "kind": kind, "key": key}


#: An ISO 8601 date-time as the API writes them: `2024-07-17T11:05:59.736511342Z`.
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)", re.ASCII)


def with_timestamps(value: Any) -> Any:
    """The value with every ISO date-time string made a `datetime` (to the microsecond), in
    nested objects and lists too; the value itself is left as it is (listings' pages are read
    by several tables).

    dlt would detect these strings as timestamps and parse each one again when it normalizes,
    after every request has ended and more slowly; parsed here, as each page arrives, they
    cost a fraction of that. The columns come out the same.
    """
    kind = type(value)
    if kind is str:
        return parse_timestamp(value) if _is_timestamp(value) else value
    if kind is dict:
        return {key: with_timestamps(inner) for key, inner in value.items()}
    if kind is list:
        return [with_timestamps(inner) for inner in value]
    # Subclasses (the exact types above are the fast path):
    if isinstance(value, str):
        return with_timestamps(str(value))
    if isinstance(value, dict):
        return {key: with_timestamps(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [with_timestamps(inner) for inner in value]
    return value


def timestamps_in_place(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`with_timestamps` for rows that no other table reads (the events: most of the API's
    strings), changed where they are: in about half the time of copying them."""
    _in_place(rows)
    return rows


def _in_place(container: dict[str, Any] | list[Any]) -> None:
    items = container.items() if isinstance(container, dict) else enumerate(container)
    for key, inner in items:
        if isinstance(inner, str):
            if _is_timestamp(inner):
                container[key] = parse_timestamp(inner)  # type: ignore[index]
        elif isinstance(inner, (dict, list)):
            _in_place(inner)


def _is_timestamp(value: str) -> bool:
    # The cheap test first: most strings are ids and names.
    return len(value) >= 20 and value[10] == "T" and _TIMESTAMP.fullmatch(value) is not None


def parse_timestamp(value: str) -> datetime:
    """Python keeps microseconds: digits beyond them are dropped."""
    try:
        return datetime.fromisoformat(value)  # Python 3.11 drops them itself
    except ValueError:
        pass
    text = value.replace("Z", "+00:00")
    if "." in text:
        head, rest = text.split(".", 1)
        zone = rest.lstrip("0123456789")
        digits = rest[: len(rest) - len(zone)]
        text = f"{head}.{(digits + '000000')[:6]}{zone}"
    return datetime.fromisoformat(text)
