"""Shape adapters: every object the API sends becomes the rows it loads as.

- Objects keyed by ids become rows that keep the key, so no table grows a column per id (TRAPS:
  an unbounded schema that made normalizing 100x slower).
- Secrets are dropped before a row leaves the source: customers' cloud keys travel inside API
  objects (rooms' `recording_info.upload_info.credentials`, template settings'
  `recording.upload.credentials`). Every field whose name says it holds a secret (`SECRET_FIELD`:
  credentials, secret, password, private, API or stream key, access token, authorization) is
  removed with its whole value, at any depth; the rest of the object loads. Values that carry a
  secret inside keep only what is not secret (`mask_secret_in_url`, every URL in the value): an
  RTMP URL loses its path, where streaming services put the stream key, and any user; other
  URLs lose their password and the values of query parameters named like a secret (presigned
  `X-Amz-Signature`, `token`). Nothing downstream (dlt's files, staging tables, state, logs,
  Dagster metadata) ever holds one.
- Timestamps become `datetime`s as pages arrive (dlt would detect and parse each again when it
  normalizes, after every request has ended and more slowly); the Go zero time
  `0001-01-01T00:00:00Z`, which the API sends where nothing is set, becomes None (NULL).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

#: Field names that hold a secret, removed with their value wherever they appear.
SECRET_FIELD = re.compile(
    r"(?i)(credential|secret|password|passwd|private.?key|api.?key|stream.?key|access.?token"
    r"|authorization)"
)
#: A URL, alone or inside text.
_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s\"'<>]+")
#: Query parameters (and fragment keys) whose value is a secret: tokens, signatures (presigned
#: `X-Amz-Signature`, `X-Amz-Credential`, `sig`), keys.
_SECRET_PARAM = re.compile(
    r"(?i)(token|signature|^sig$|credential|secret|password|passwd|key|auth)"
)
#: The Go zero time: "not set".
ZERO_TIME_PREFIX = "0001-01-01T00:00:00"
#: An ISO 8601 date-time as the API writes them: `2024-07-17T11:05:59.736511342Z`.
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)", re.ASCII)


def session_row(session: dict[str, Any]) -> dict[str, Any]:
    """`peers` is an object keyed by peer id; a list of them becomes sessions__peers."""
    peers = session.get("peers") or {}
    row = {**session, "peers": [{**peer, "id": peer_id} for peer_id, peer in peers.items()]}
    return clean(row)


def template_row(template: dict[str, Any]) -> dict[str, Any]:
    """Roles (keyed by role name) become rows of templates__roles; the embedded settings and
    destinations are dropped because their own endpoints load them into their own tables."""
    roles = template.get("roles") or {}
    row = {k: v for k, v in template.items() if k not in ("settings", "destinations")}
    row["roles"] = [{**role, "name": name} for name, role in roles.items()]
    return clean(row)


def peer_rows(room_id: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Active peers come as an object keyed by peer id and do not name their room."""
    peers = body.get("peers") or {}
    rows = [{**peer, "id": peer_id, "room_id": room_id} for peer_id, peer in peers.items()]
    return clean(rows)


def settings_row(template_id: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Settings are a bare object with no id: keyed by the template they belong to."""
    return clean({**settings, "template_id": template_id})


def destination_rows(template_id: str, destinations: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One row per destination: the map key is its identity (names inside can repeat)."""
    for kind, entries in destinations.items():
        for key, destination in (entries or {}).items():
            row = {**destination, "template_id": template_id, "kind": kind, "key": key}
            yield clean(row)


def clean(value: Any) -> Any:
    """A copy of the value with secrets dropped and timestamps parsed, in nested objects and
    lists too; the value itself is left as it is (listings' pages are read by several tables)."""
    kind = type(value)
    if kind is str:
        return _clean_str(value)
    if kind is dict:
        return {key: clean(inner) for key, inner in value.items() if not SECRET_FIELD.search(key)}
    if kind is list:
        return [clean(inner) for inner in value]
    # Subclasses (the exact types above are the fast path):
    if isinstance(value, str):
        return clean(str(value))
    if isinstance(value, dict):
        return clean(dict(value))
    if isinstance(value, list):
        return clean(list(value))
    return value


def clean_in_place(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`clean` for rows that no other table reads (the events: most of the API's strings),
    changed where they are: in about half the time of copying them."""
    _in_place(rows)
    return rows


def _in_place(container: Any) -> None:
    if isinstance(container, dict):
        for key in [k for k in container if is_secret_field(k)]:
            del container[key]
        items: Any = container.items()
    else:
        items = enumerate(container)
    for key, inner in items:
        if isinstance(inner, str):
            cleaned = _clean_str(inner)
            if cleaned is not inner:
                container[key] = cleaned
        elif isinstance(inner, dict | list):
            _in_place(inner)


#: Field name -> whether it holds a secret: objects repeat a few names half a million times.
_SECRET_NAMES: dict[str, bool] = {}


def is_secret_field(name: str) -> bool:
    known = _SECRET_NAMES.get(name)
    if known is None:
        known = _SECRET_NAMES[name] = SECRET_FIELD.search(name) is not None
    return known


def _clean_str(value: str) -> Any:
    if _is_timestamp(value):
        return parse_timestamp(value)
    if "://" in value:
        return mask_secret_in_url(value)
    return value


def mask_secret_in_url(value: str) -> str:
    """Every URL in the value without its secrets: an RTMP URL keeps only its scheme and host
    (the stream key is its path); any other loses its user and password, and the values of
    query parameters named like a secret (`?token=`, `X-Amz-Signature=`)."""
    return _URL.sub(_masked_url, value)


def _masked_url(match: re.Match[str]) -> str:
    url = match.group(0)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a port that is not a number raises here)
    except ValueError:
        return url.split("://", 1)[0] + "://***"
    userinfo, _, host = parts.netloc.rpartition("@")
    if parts.scheme.lower() in ("rtmp", "rtmps"):
        rest = parts.path not in ("", "/") or parts.query or parts.fragment or userinfo
        return f"{url[: url.index('://')]}://{host}/***" if rest else url
    if userinfo:
        user, has_password, _ = userinfo.partition(":")
        host = f"{user}:***@{host}" if has_password else f"{userinfo}@{host}"
    query = _masked_params(parts.query)
    fragment = _masked_params(parts.fragment) if "=" in parts.fragment else parts.fragment
    if (host, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url  # nothing secret: the value as it came
    return urlunsplit((parts.scheme, host, parts.path, query, fragment))


def _masked_params(query: str) -> str:
    if not query:
        return query
    pairs = query.split("&")
    for i, pair in enumerate(pairs):
        name, has_value, inner = pair.partition("=")
        if has_value and inner and _SECRET_PARAM.search(unquote(name)):
            pairs[i] = f"{name}=***"
    return "&".join(pairs)


def _is_timestamp(value: str) -> bool:
    # The cheap test first: most strings are ids and names.
    return len(value) >= 20 and value[10] == "T" and _TIMESTAMP.fullmatch(value) is not None


def parse_timestamp(value: str) -> datetime | None:
    """Python keeps microseconds: digits beyond them are dropped. The zero time is None."""
    if value.startswith(ZERO_TIME_PREFIX):
        return None
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


def is_set(value: str | None) -> bool:
    """Whether a time the API sent is set: present, and not the zero time."""
    return bool(value) and not str(value).startswith(ZERO_TIME_PREFIX)
