"""Management tokens: a static one, or minted from the workspace's access key and secret.

Dashboard tokens expire after 7 days (14 at most), so a scheduled pipeline holding one stops
within two weeks. With `app_access_key` and `app_secret` configured, a management token is
minted (HS256 JWT, the reference's claims) for each run and renewed before it expires during a
long one. When both forms are configured the key and secret win: they cannot go stale.

Minted tokens are dated 10 seconds in the past (`iat`, `nbf`), as the vendor's own server SDK
does "to absorb clock skew": a host whose clock runs a few seconds ahead of the API's would
otherwise send tokens that are not valid yet, and every request would answer 401.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import jwt
from requests import PreparedRequest
from requests.auth import AuthBase

from analytics_assets.source.settings import TOKEN_ENV_VARS

#: The reference's sample code gives minted tokens 24 hours.
TOKEN_LIFETIME_SECONDS = 24 * 3600.0
#: A token this close to its expiry is replaced before the next request (a third of its
#: lifetime for tokens shorter than half an hour).
RENEW_MARGIN_SECONDS = 600.0
#: How far back a minted token's `iat` and `nbf` are set (the vendor's SDK: 10 s).
CLOCK_SKEW_SECONDS = 10


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
    """An HS256 JWT with the claims the reference lists for a management token, valid from
    `CLOCK_SKEW_SECONDS` before `now` until `lifetime` after it."""
    issued = int(now if now is not None else time.time())
    expires = issued + int(lifetime)
    claims = {
        "access_key": access_key,
        "type": "management",
        "version": 2,
        "jti": str(uuid.uuid4()),
        "iat": issued - CLOCK_SKEW_SECONDS,
        "nbf": issued - CLOCK_SKEW_SECONDS,
        "exp": expires,
    }
    return MintedToken(jwt.encode(claims, secret, algorithm="HS256"), float(expires))


class ManagementTokenAuth(AuthBase):
    """Bearer auth with a management token, static or minted: requests' auth hook, which dlt
    never logs (a token in the client's headers would be logged at DEBUG). Credentials are
    checked at request time, so that Dagster can load the asset graph on a machine with none.
    Shared by a run's worker threads: one minted token until it nears its expiry."""

    def __init__(
        self,
        *,
        token: str | None = None,
        access_key: str | None = None,
        secret: str | None = None,
        lifetime_seconds: float = TOKEN_LIFETIME_SECONDS,
        renew_margin_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._token = token
        self._access_key = access_key
        self._secret = secret
        self.lifetime_seconds = lifetime_seconds
        self.renew_margin_seconds = (
            renew_margin_seconds
            if renew_margin_seconds is not None
            else min(RENEW_MARGIN_SECONDS, lifetime_seconds / 3)
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._minted: MintedToken | None = None

    @property
    def mints(self) -> bool:
        return bool(self._access_key or self._secret)

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.current_token()}"
        return request

    def renew(self) -> bool:
        """Forget the minted token, so the next request mints a fresh one (after a 401); False
        for a static token, which cannot be renewed."""
        if not self.mints:
            return False
        with self._lock:
            self._minted = None
        return True

    def current_token(self) -> str:
        if self.mints:
            if not (self._access_key and self._secret):
                missing = "app_secret" if self._access_key else "app_access_key"
                raise MissingApiTokenError(
                    f"app_access_key and app_secret go together; {missing} is not set"
                )
            return self._current_minted(self._access_key, self._secret)
        if not self._token:
            raise MissingApiTokenError()
        return self._token

    def _current_minted(self, access_key: str, secret: str) -> str:
        with self._lock:
            now = self._clock()
            minted = self._minted
            if minted is None or now >= minted.expires_at - self.renew_margin_seconds:
                minted = mint_management_token(
                    access_key, secret, lifetime=self.lifetime_seconds, now=now
                )
                self._minted = minted
            return minted.token

    def __repr__(self) -> str:
        return f"{type(self).__name__}(credentials=***)"
