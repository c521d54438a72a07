"""HTTP plumbing and shape adapters for the analytics API source.

The adapters turn the API's objects keyed by ids into rows that keep the key, so that no table
grows a column per id (TRAPS: an unbounded schema that made normalizing 100x slower).
"""

from __future__ import annotations

from typing import Any

from dlt.common.configuration.specs.base_configuration import configspec
from dlt.common.typing import TSecretStrValue
from dlt.sources.helpers.requests import Client
from dlt.sources.helpers.rest_client.auth import AuthConfigBase
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator
from requests import PreparedRequest, Request, Response, Session

from analytics_assets.source.settings import TOKEN_ENV_VARS


class MissingApiTokenError(RuntimeError):
    """No token is configured; raised before any request leaves the machine."""

    def __init__(self) -> None:
        super().__init__(
            "No API token is configured for the analytics API: set the environment variable "
            f"{TOKEN_ENV_VARS[0]} (or {TOKEN_ENV_VARS[1]}), or `api_token` under "
            "[sources.analytics_api] in .dlt/secrets.toml."
        )


class RepeatingCursorError(RuntimeError):
    """The API handed back a cursor it had already given: following it would never end."""


@configspec
class ManagementTokenAuth(AuthConfigBase):
    """Bearer auth with the management token.

    Set through `auth` rather than client headers so dlt never logs it, and checked at request
    time so that Dagster can load the asset graph on a machine with no token configured.
    """

    token: TSecretStrValue | None = None

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        if not self.token:
            raise MissingApiTokenError()
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request

    def __repr__(self) -> str:
        return f"{type(self).__name__}(token=***)"


def retrying_session(
    *,
    status_codes: tuple[int, ...],
    max_attempts: int,
    backoff_factor: float,
    max_retry_delay: float,
    timeout: float,
) -> Session:
    """A requests session with the retry policy built in, whatever dlt's global config says.

    `raise_for_status` stays off: dlt's REST client raises itself, after response actions
    (such as ignoring the 404 of a room that is not live) have had their say.
    """
    return Client(
        request_timeout=timeout,
        raise_for_status=False,
        status_codes=status_codes,
        request_max_attempts=max_attempts,
        request_backoff_factor=backoff_factor,
        request_max_retry_delay=max_retry_delay,
        respect_retry_after_header=True,
    ).session


class GuardedCursorPaginator(JSONResponseCursorPaginator):
    """`start`-cursor pagination that refuses to follow a cursor it has seen before.

    dlt has no such guard: an API bug or a stale token that repeats a cursor loops forever.
    `stop_after_empty_page` covers the reference's lists, whose final page still carries `last`
    and is followed by an empty page.
    """

    def __init__(self, cursor_path: str) -> None:
        super().__init__(cursor_path=cursor_path, cursor_param="start", stop_after_empty_page=True)
        self._seen: set[str] = set()

    def init_request(self, request: Request) -> None:
        self._seen = set()
        super().init_request(request)

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        super().update_state(response, data)
        cursor = self._next_reference
        if self.has_next_page and cursor is not None:
            if cursor in self._seen:
                raise RepeatingCursorError(
                    f"{response.request.method} {_endpoint(response)} returned the cursor "
                    f"{cursor!r} twice; stopping instead of looping"
                )
            self._seen.add(cursor)


def _endpoint(response: Response) -> str:
    return str(response.url).split("?", 1)[0]


# ---- shape adapters -------------------------------------------------------------------------


def session_peers_as_rows(session: dict[str, Any]) -> dict[str, Any]:
    """`peers` is an object keyed by peer id; make it a list (child table sessions__peers)."""
    peers = session.get("peers") or {}
    return {**session, "peers": [{**peer, "id": peer_id} for peer_id, peer in peers.items()]}


def template_without_embedded_children(template: dict[str, Any]) -> dict[str, Any]:
    """Roles (keyed by role name) become rows; embedded settings and destinations are dropped
    because their own endpoints load them into their own tables."""
    roles = template.get("roles") or {}
    template["roles"] = [{**role, "name": name} for name, role in roles.items()]
    template.pop("settings", None)
    template.pop("destinations", None)
    return template


def first_session_per_room() -> Any:
    """A filter that lets one live session per room through: one peers request per live room."""
    seen: set[str] = set()

    def keep(session: dict[str, Any]) -> bool:
        if session["room_id"] in seen:
            return False
        seen.add(session["room_id"])
        return True

    return keep


def rename_parent_key(parent_column: str, column: str) -> Any:
    """`include_from_parent` names the column `_<parent>_<field>`; give it a plain name."""

    def rename(row: dict[str, Any]) -> dict[str, Any]:
        row[column] = row.pop(parent_column)
        return row

    return rename


def destinations_as_rows(destinations: dict[str, Any]) -> Any:
    """One row per destination: the map key is its identity (names inside can repeat)."""
    template_id = destinations.pop("_templates_id")
    for kind, entries in destinations.items():
        for key, destination in (entries or {}).items():
            yield {**destination, "template_id": template_id, "kind": kind, "key": key}
