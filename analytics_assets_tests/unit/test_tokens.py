"""Management tokens: the reference's claims, the SDK's clock-skew allowance, one token shared
and renewed before it expires, on an injected clock."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import jwt
import pytest
from requests import Request

from analytics_assets.source import tokens
from analytics_assets.source.tokens import (
    ManagementTokenAuth,
    MintedToken,
    MissingApiTokenError,
    mint_management_token,
)

ACCESS_KEY = "6470a1e2f1c2a3b4c5d6e7f8"
SECRET = "app-secret-Zq8Wv4Lr2Np6Tx0Ks-3fJ9cM1yQ7bH5dR"
NOW = 1_700_000_000


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(
        token,
        SECRET,
        algorithms=["HS256"],
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_minted_token_carries_the_claims_dated_10_seconds_back_for_clock_skew() -> None:
    minted = mint_management_token(ACCESS_KEY, SECRET, lifetime=3600, now=NOW)
    decoded = claims(minted.token)
    assert {k: v for k, v in decoded.items() if k != "jti"} == {
        "access_key": ACCESS_KEY,
        "type": "management",
        "version": 2,
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 3600,
    }
    assert uuid.UUID(decoded["jti"]).version == 4
    assert minted.expires_at == NOW + 3600.0
    assert jwt.get_unverified_header(minted.token)["alg"] == "HS256"


def test_every_minted_token_has_a_fresh_jti() -> None:
    first = claims(mint_management_token(ACCESS_KEY, SECRET, now=NOW).token)
    second = claims(mint_management_token(ACCESS_KEY, SECRET, now=NOW).token)
    assert first["jti"] != second["jti"]


def test_one_token_is_reused_until_the_renew_margin_before_its_expiry() -> None:
    clock = Clock(NOW)
    auth = ManagementTokenAuth(
        access_key=ACCESS_KEY,
        secret=SECRET,
        lifetime_seconds=3600,
        renew_margin_seconds=600,
        clock=clock,
    )
    first = auth.current_token()
    clock.now = NOW + 2999  # 601 s before expiry
    assert auth.current_token() == first
    clock.now = NOW + 3000  # 600 s before expiry: renewed
    renewed = auth.current_token()
    assert renewed != first
    assert claims(renewed)["iat"] == NOW + 3000 - 10
    assert claims(renewed)["exp"] == NOW + 3000 + 3600
    clock.now = NOW + 3001
    assert auth.current_token() == renewed


def test_threads_share_one_minted_token(monkeypatch: pytest.MonkeyPatch) -> None:
    minted: list[MintedToken] = []
    real_mint = tokens.mint_management_token

    def counting_mint(*args: Any, **kwargs: Any) -> MintedToken:
        minted.append(real_mint(*args, **kwargs))
        return minted[-1]

    monkeypatch.setattr(tokens, "mint_management_token", counting_mint)
    auth = ManagementTokenAuth(access_key=ACCESS_KEY, secret=SECRET, clock=Clock(NOW))
    start = threading.Barrier(8)
    seen: list[str] = []

    def worker() -> None:
        start.wait()
        seen.append(auth.current_token())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(minted) == 1
    assert seen == [minted[0].token] * 8


def test_the_token_goes_into_the_authorization_header() -> None:
    request = Request("GET", "http://api.test/v2/rooms").prepare()
    ManagementTokenAuth(token="static-token-1")(request)
    assert request.headers["Authorization"] == "Bearer static-token-1"


def test_a_static_token_is_used_as_it_is() -> None:
    auth = ManagementTokenAuth(token="static-token-1", clock=Clock(NOW))
    assert auth.current_token() == "static-token-1"
    assert not auth.mints


def test_key_and_secret_win_over_a_static_token() -> None:
    auth = ManagementTokenAuth(
        token="static-token-1", access_key=ACCESS_KEY, secret=SECRET, clock=Clock(NOW)
    )
    token = auth.current_token()
    assert token != "static-token-1"
    assert claims(token)["access_key"] == ACCESS_KEY


def test_no_credentials_raise_missing_token_naming_api_token() -> None:
    with pytest.raises(MissingApiTokenError) as raised:
        ManagementTokenAuth().current_token()
    assert "set API_TOKEN" in str(raised.value)


def test_a_key_without_its_secret_raises_naming_app_secret() -> None:
    with pytest.raises(MissingApiTokenError) as raised:
        ManagementTokenAuth(access_key=ACCESS_KEY).current_token()
    assert "app_secret is not set" in str(raised.value)


def test_a_secret_without_its_key_raises_naming_app_access_key() -> None:
    with pytest.raises(MissingApiTokenError) as raised:
        ManagementTokenAuth(secret=SECRET, token="static-token-1").current_token()
    assert "app_access_key is not set" in str(raised.value)
    assert SECRET not in str(raised.value)


def test_repr_hides_every_credential() -> None:
    auth = ManagementTokenAuth(
        token="static-token-1", access_key=ACCESS_KEY, secret=SECRET, clock=Clock(NOW)
    )
    token = auth.current_token()
    for shown in (repr(auth), str(auth), f"{auth!r}"):
        assert shown == "ManagementTokenAuth(credentials=***)"
        assert all(value not in shown for value in ("static-token-1", ACCESS_KEY, SECRET, token))
