"""Shape adapters: the API's objects keyed by ids become rows that keep the key, so no table
grows a column per id (TRAPS: an unbounded schema that made normalizing 100x slower)."""

from __future__ import annotations

from collections.abc import Iterator
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
