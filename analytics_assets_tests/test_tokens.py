"""Management tokens minted from the access key and secret: real JWTs, verified by the
simulator, renewed during long runs, never shown."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from analytics_assets.simulator import STRICT, ApiSimulator, Reading, World
from analytics_assets.simulator.expected import compare
from analytics_assets.source.tokens import mint_management_token
from analytics_assets_tests.conftest import ids, materialize, project_defs, run_source

ACCESS_KEY = "6470a1e2f1c2a3b4c5d6e7f8"
SECRET = "app-secret-Zq8Wv4Lr2Np6Tx0Ks-3fJ9cM1yQ7bH5dR"


@pytest.fixture
def keyed_api(
    world: World, reading: Reading, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ApiSimulator]:
    """The simulator verifying minted tokens; only the key and secret are configured."""
    with ApiSimulator(
        world,
        reading=reading,
        token="static-token-not-given-out",
        app_access_key=ACCESS_KEY,
        app_secret=SECRET,
    ) as sim:
        monkeypatch.setenv("SOURCES__ANALYTICS_API__BASE_URL", sim.base_url)
        monkeypatch.setenv("SOURCES__ANALYTICS_API__APP_ACCESS_KEY", ACCESS_KEY)
        monkeypatch.setenv("SOURCES__ANALYTICS_API__APP_SECRET", SECRET)
        yield sim


def test_simulator_rejects_bad_signature_wrong_key_and_expired_tokens(
    keyed_api: ApiSimulator,
) -> None:
    import requests

    def status(token: str) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        return requests.get(
            keyed_api.base_url + "/v2/rooms", headers=headers, timeout=5
        ).status_code

    assert status(mint_management_token(ACCESS_KEY, SECRET).token) == 200
    assert (
        status(mint_management_token(ACCESS_KEY, "another-secret-of-the-same-length-0123456").token)
        == 401
    )
    assert status(mint_management_token("another-key", SECRET).token) == 401
    expired = mint_management_token(ACCESS_KEY, SECRET, lifetime=60, now=time.time() - 3600)
    assert status(expired.token) == 401


@pytest.mark.parametrize("reading", [STRICT], ids=["strict"], indirect=True)
def test_quirk_minted_tokens_absorb_an_api_clock_a_few_seconds_behind(
    keyed_api: ApiSimulator, world: World, warehouse: Path
) -> None:
    """The API's clock runs 5 s behind this machine's (the strict reading): a token dated
    now would not be valid yet there; minted tokens are dated 10 s back, as the vendor's SDK
    does, and every request gets in."""
    assert keyed_api.reading.clock_behind_seconds >= 5
    run_source(warehouse, resources=("templates",))
    assert keyed_api.tokens_seen and all(r.status == 200 for r in keyed_api.requests)
    assert ids(warehouse, "templates") == sorted(t["id"] for t in world.templates)


def test_scheduled_refresh_works_with_only_key_and_secret_and_shows_neither(
    keyed_api: ApiSimulator, world: World, warehouse: object
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    for job in ("daily_sweep", "activity_refresh", "live_peers_refresh"):
        result = project_defs().resolve_job_def(job).execute_in_process(instance=instance)
        assert result.success, job
    assert all(r.status == 200 for r in keyed_api.requests)
    assert keyed_api.tokens_seen  # it was the minted tokens that got in
    assert [d for d in compare(warehouse, world).values() if not d.exact] == []
    logged = "\n".join(str(record) for record in instance.all_logs(result.run_id))
    for run in instance.get_runs():
        logged += "\n".join(str(r) for r in instance.all_logs(run.run_id))
    assert SECRET not in logged and ACCESS_KEY not in logged


def test_token_is_renewed_before_it_expires_during_a_long_run(
    keyed_api: ApiSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tokens of 3 s, renewed a second before they expire: a run of a few seconds needs several.
    monkeypatch.setenv("SOURCES__ANALYTICS_API__TOKEN_LIFETIME_SECONDS", "3")
    monkeypatch.setenv("SOURCES__ANALYTICS_API__WORKERS", "2")
    keyed_api.latency = 0.05
    started = time.monotonic()
    assert materialize(["sessions", "analytics_events"]).success
    assert time.monotonic() - started > 2
    assert len(keyed_api.tokens_seen) >= 2
    assert all(r.status == 200 for r in keyed_api.requests)


def test_key_and_secret_win_over_a_static_token(
    keyed_api: ApiSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_TOKEN", "stale-dashboard-token")  # would be refused
    assert materialize(["templates"]).success
    assert keyed_api.tokens_seen


def test_half_configured_key_and_secret_fail_naming_what_is_missing(
    keyed_api: ApiSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCES__ANALYTICS_API__APP_SECRET")
    result = materialize(["templates"], raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.to_string()  # type: ignore[union-attr]
    assert "app_secret is not set" in message and ACCESS_KEY not in message
    assert keyed_api.requests == []
