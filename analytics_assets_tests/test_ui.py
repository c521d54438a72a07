"""What a user sees in `dagster dev`, in a real browser: the Dagster webserver on loopback with
the project loaded and materialized, driven by Playwright in Debian's headless Chromium.

A screenshot of the asset graph is saved to `test-artifacts/asset_graph.png` (or
$TEST_ARTIFACTS_DIR). Without Chromium or Playwright the test is skipped, saying which is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from analytics_assets.simulator import ApiSimulator
from analytics_assets_tests.conftest import REQUIRE_ALL

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", REPO / "test-artifacts"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Flags this machine's closed network needs (no background calls home).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RAW = [
    "rooms",
    "sessions",
    "active_room_peers",
    "templates",
    "template_settings",
    "templates_destinations",
    "analytics_events",
    "recordings",
]
FAN_OUT = {
    "active_room_peers": ["rooms"],
    "analytics_events": ["rooms", "sessions"],
    "template_settings": ["templates"],
    "templates_destinations": ["templates"],
}

if CHROMIUM is None:
    if REQUIRE_ALL:
        raise RuntimeError("no Chromium on this machine, and CI must run the UI test")
    pytest.skip(
        "UI test skipped: no Chromium on this machine (install Debian's `chromium`; .ci/run does)",
        allow_module_level=True,
    )
playwright = pytest.importorskip(
    "playwright.sync_api", reason="UI test skipped: the `playwright` package is not installed"
)


@pytest.fixture
def webserver(api: ApiSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The project in a fresh Dagster instance (nothing run yet), served by dagster-webserver
    on loopback."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster_webserver",
            "-m",
            "analytics_assets.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/server_info", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("dagster-webserver did not start") from None
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def _open(page: Any, url: str) -> str:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    skip = page.get_by_role("button", name="Skip")  # the first-visit newsletter dialog
    if skip.count():
        skip.first.click()
    return str(page.inner_text("body"))


def _between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


@pytest.mark.slow
def test_a_user_sees_the_graph_assets_schedules_sensors_and_checks(webserver: str) -> None:
    from analytics_assets.definitions import defs

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.get()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1800, "height": 1500})
        try:
            # The first screen, before anything has run: the freshness sensor's first tick
            # (as the daemon would run it) requests nothing, no check shows failed, and no
            # asset page carries a row it cannot show.
            sensor = next(s for s in defs.sensors or [] if s.name == "freshness_every_5_minutes")
            tick = sensor(dg.build_sensor_context(instance=instance, definitions=defs))
            assert isinstance(tick, dg.SkipReason)
            _open(
                page,
                f"{webserver}/locations/analytics_assets.definitions/asset-groups/analytics_api/lineage",
            )
            page.get_by_text("active_room_peers", exact=True).first.wait_for(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "first_screen.png"))
            # The tables with checks of every kind: keys, references, completeness, freshness.
            for name in ("rooms", "active_room_peers", "analytics_events"):
                _open(page, f"{webserver}/assets/analytics/{name}?view=checks")
                page.get_by_text("primary_key_unique_and_not_null").first.wait_for(timeout=30_000)
                text = str(page.inner_text("body"))
                assert "Failed" not in text and "(unserializable)" not in text, name
                _open(page, f"{webserver}/assets/analytics/{name}")  # overview: definition
                page.get_by_text("Description").first.wait_for(timeout=30_000)
                assert "(unserializable)" not in str(page.inner_text("body")), name
            sensor_page = "locations/analytics_assets.definitions/sensors/freshness_every_5_minutes"
            _open(page, f"{webserver}/{sensor_page}")
            page.get_by_text("Target").first.wait_for(timeout=30_000)
            target = _between(str(page.inner_text("body")), "Target", "Running")
            assert target.strip() == "check_freshness"  # a name, not a selection's repr

            job = defs.resolve_implicit_global_asset_job_def()
            assert job.execute_in_process(instance=instance).success

            # The asset graph of the raw group: the eight assets, then the marts they feed.
            _open(
                page,
                f"{webserver}/locations/analytics_assets.definitions/asset-groups/analytics_api/lineage",
            )
            for name in RAW:
                node = page.get_by_text(name, exact=True).first
                node.wait_for(state="visible", timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "asset_graph.png"))

            # Each child's page lists the parents the graph draws edges from.
            for child, parents in FAN_OUT.items():
                text = _open(page, f"{webserver}/assets/analytics/{child}")
                page.get_by_text("Upstream assets").first.wait_for(timeout=30_000)
                text = str(page.inner_text("body"))
                upstream = _between(text, "Upstream assets", "Downstream assets")
                for parent in parents:
                    assert f"analytics / {parent}" in upstream, (child, upstream)

            # An asset's page: its last materialization's metadata.
            _open(page, f"{webserver}/assets/analytics/rooms")
            page.get_by_text("rows_loaded").first.wait_for(timeout=30_000)
            text = str(page.inner_text("body"))
            assert "Row count" in text and "dagster/row_count" not in text  # shown as a badge
            assert "destination_name" in text and "Columns" in text

            # A chart in the analytics' metadata.
            _open(page, f"{webserver}/assets/analytics/peer_minutes_daily")
            page.get_by_text("Peer minutes per day").first.wait_for(timeout=30_000)
            assert "█" in str(page.inner_text("body"))
            page.screenshot(path=str(ARTIFACTS / "peer_minutes_chart.png"))

            # Checks on an asset.
            _open(page, f"{webserver}/assets/analytics/analytics_events?view=checks")
            page.get_by_text("primary_key_unique_and_not_null").first.wait_for(timeout=30_000)
            text = str(page.inner_text("body"))
            assert "rooms_exist" in text and "freshness_check" in text

            # Schedules and sensors.
            _open(page, f"{webserver}/automation")
            page.get_by_text("activity_hourly").first.wait_for(timeout=30_000)
            text = str(page.inner_text("body"))
            for name in (
                "live_peers_every_5_minutes",
                "daily_sweep_at_0317",
                "report_failed_runs",
                "freshness_every_5_minutes",
            ):
                assert name in text
        finally:
            browser.close()
    assert (ARTIFACTS / "asset_graph.png").stat().st_size > 10_000
