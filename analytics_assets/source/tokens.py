"""Management tokens: a static one, or minted from the workspace's access key and secret.

Dashboard tokens expire after 7 days (14 at most), so a scheduled pipeline holding one stops
within two weeks. With `app_access_key` and `app_secret` configured, a management token is
minted (HS256 JWT, the reference's claims) for each run and renewed before it expires during a
long one. When both forms are configured the key and secret win: they cannot go stale.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

import jwt
from dlt.common.configuration.specs.base_configuration import configspec
from dlt.common.typing import TSecretStrValue
from dlt.sources.helpers.rest_client.auth import AuthConfigBase
from requests import PreparedRequest

from analytics_assets.source.settings import TOKEN_ENV_VARS

#: The reference's sample code gives minted tokens 24 hours.
TOKEN_LIFETIME_SECONDS = 24 * 3600.0
#: A token this close to its expiry is replaced before the next request.
RENEW_MARGIN_SECONDS = 600.0


class MissingApiTokenError(RuntimeError):
    """No credentials are configured; raised before any request leaves the machine."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            (detail or "No credentials are configured for the analytics API")
            + f": set {TOKEN_ENV_VARS[0]} (or {TOKEN_ENV_VARS[1]}) to a management token, or "
            "SOURCES__ANALYTICS_API__APP_ACCESS_KEY and SOURCES__ANALYTICS_API__APP_SECRET to "
            "mint one per run (or the same keys under [sources.analytics_api] in "
            ".dlt/secrets.toml)."
        )


@dataclass(frozen=True)
class MintedToken:
    token: str
    expires_at: float


def mint_management_token(
    access_key: str,
    secret: str,
    *,
    lifetime: float = TOKEN_LIFETIME_SECONDS,
    now: float | None = None,
) -> MintedToken:
    """An HS256 JWT with the claims the reference lists for a management token."""
    issued = int(now if now is not None else time.time())
    expires = issued + int(lifetime)
    claims = {
        "access_key": access_key,
        "type": "management",
        "version": 2,
        "jti": str(uuid.uuid4()),
        "iat": issued,
        "nbf": issued,
        "exp": expires,
    }
    return MintedToken(jwt.encode(claims, secret, algorithm="HS256"), float(expires))


@configspec
class ManagementTokenAuth(AuthConfigBase):
    """Bearer auth with a management token, static or minted.

    Set through `auth` rather than client headers so dlt never logs it, and resolved at request
    time so that Dagster can load the asset graph on a machine with no credentials.
    """

    token: TSecretStrValue | None = None
    access_key: TSecretStrValue | None = None
    secret: TSecretStrValue | None = None
    lifetime_seconds: float = TOKEN_LIFETIME_SECONDS
    renew_margin_seconds: float = RENEW_MARGIN_SECONDS

    @property
    def mints(self) -> bool:
        return bool(self.access_key or self.secret)

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.current_token()}"
        return request

    def current_token(self) -> str:
        if self.mints:
            if not (self.access_key and self.secret):
                missing = "app_secret" if self.access_key else "app_access_key"
                raise MissingApiTokenError(
                    f"app_access_key and app_secret go together; {missing} is not set"
                )
            return self._minted()
        if not self.token:
            raise MissingApiTokenError()
        return self.token

    def _minted(self) -> str:
        # Shared by the worker threads of a run: one token until it nears its expiry.
        cache = self.__dict__.setdefault("_mint_cache", {"lock": threading.Lock(), "token": None})
        with cache["lock"]:
            current: MintedToken | None = cache["token"]
            if current is None or time.time() >= current.expires_at - self.renew_margin_seconds:
                assert self.access_key and self.secret
                current = mint_management_token(
                    self.access_key, self.secret, lifetime=self.lifetime_seconds
                )
                cache["token"] = current
            return current.token

    def __repr__(self) -> str:
        return f"{type(self).__name__}(credentials=***)"
