"""What a user sees after `make dev`, in a real browser: `python -m analytics_assets.dev` alone
(it starts the simulator and `dg dev`), driven by Playwright in Debian's headless Chromium.

Screenshots are saved to `test-artifacts/` (or $TEST_ARTIFACTS_DIR): the first screen, the asset
graph, a chart. Without Chromium or Playwright the test is skipped, saying which is missing;
under `.ci/run` it fails instead.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from analytics_assets.simulator import LENIENT, generate_world
from analytics_assets.simulator.expected import compare
from analytics_assets_tests.conftest import (
    alive,
    descendants,
    free_port,
    project_defs,
    skip_or_fail,
)

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


@pytest.fixture(scope="module")
def playwright() -> Any:
    """Playwright, driving Debian's Chromium; skipped where either is missing, saying which,
    except under `.ci/run` (`ANALYTICS_TESTS_REQUIRE_ALL=1`), where that fails the test."""
    if CHROMIUM is None:
        skip_or_fail("no Chromium on this machine (install Debian's `chromium`; .ci/run does)")
    try:
        import playwright.sync_api
    except ImportError:
        skip_or_fail("the `playwright` package is not installed (make installs the dev extras)")
    return playwright.sync_api


@dataclass
class DevServer:
    """`make dev` running: the UI at `url`, the simulator it started, its Dagster home."""

    url: str
    home: Path
    process: subprocess.Popen[bytes]
    log: Path
    simulator_url: str = ""


@pytest.fixture
def dev(tmp_path: Path, playwright: Any) -> Iterator[DevServer]:
    """`make dev PORT=<free port>` as a user runs it (`python -m analytics_assets.dev`), with no
    base URL configured: it starts the simulator itself; its Dagster home and DuckDB file are
    the test's own. Stopped as Ctrl-C stops it; nothing of it may outlive that."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    log = tmp_path / "make_dev.log"
    command = [sys.executable, "-m", "analytics_assets.dev", "--port", str(port), "--scale", "40"]
    command += ["--dagster-home", str(home), "--duckdb", str(tmp_path / "simulated.duckdb")]
    # Started as a shell starts a background command, with SIGINT ignored: Ctrl-C (SIGINT to
    # the process) must stop it all the same.
    ignoring_sigint = ["/bin/sh", "-c", 'trap "" INT; exec "$@"', "sh", *command]
    process = subprocess.Popen(
        ignoring_sigint,
        cwd=REPO,
        env=dict(os.environ),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = DevServer(f"http://127.0.0.1:{port}", home, process, log)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(server.url + "/server_info", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(
                        "make dev did not serve the UI:\n" + log.read_text()
                    ) from None
                time.sleep(0.5)
        found = re.search(r"the local simulator at (http://\S+)", log.read_text())
        assert found, log.read_text()
        server.simulator_url = found.group(1)
        yield server
    finally:
        started = descendants(process.pid)  # dg dev, the webserver, the daemon, code servers
        process.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            process.wait(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    assert started and not [pid for pid in started if alive(pid)], "make dev left processes"
    with pytest.raises(OSError):  # the simulator stopped with it
        urllib.request.urlopen(server.simulator_url + "/v2/rooms", timeout=2)


def _open(page: Any, url: str) -> str:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    skip = page.get_by_role("button", name="Skip")  # the first-visit newsletter dialog
    if skip.count():
        skip.first.click()
    return str(page.inner_text("body"))


def _skip_the_welcome_dialog(page: Any) -> None:
    """A new browser profile gets Dagster's newsletter dialog once, a moment after the first
    page loads; skipped, it does not come back."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with contextlib.suppress(PlaywrightTimeout):
        page.get_by_role("button", name="Skip").click(timeout=10_000)


def _between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


#: The code location `make dev` serves (`dg dev`, `[tool.dg.project]` in pyproject.toml).
LOCATION = "locations/analytics_assets"


@pytest.mark.slow
def test_make_dev_alone_serves_a_clean_first_screen_and_runs_a_refresh_job(
    dev: DevServer, tmp_path: Path, playwright: Any
) -> None:
    """`make dev` with nothing else running: a first screen with no failed check and no
    row the UI cannot show; a refresh job launched from the UI succeeds against the simulator
    `make dev` started; then the graph, metadata, charts, checks, schedules and sensors."""

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.from_config(str(dev.home))
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1800, "height": 1500})
        try:
            # The first screen, before anything has run: the freshness sensor requests
            # nothing, no check shows failed, and no asset page carries a row it cannot show.
            defs = project_defs()
            sensor = next(s for s in defs.sensors or [] if s.name == "freshness_every_5_minutes")
            tick = sensor(dg.build_sensor_context(instance=instance, definitions=defs))
            assert isinstance(tick, dg.SkipReason)
            _open(page, f"{dev.url}/{LOCATION}/asset-groups/analytics_api/lineage")
            page.get_by_text("active_room_peers", exact=True).first.wait_for(timeout=30_000)
            page.get_by_text("Never materialized").first.wait_for(timeout=30_000)
            _skip_the_welcome_dialog(page)
            text = str(page.inner_text("body"))
            assert "Passed" in text and "Failed" not in text
            page.screenshot(path=str(ARTIFACTS / "first_screen.png"))
            # The tables with checks of every kind: keys, references, completeness, freshness.
            for name in ("rooms", "active_room_peers", "analytics_events"):
                _open(page, f"{dev.url}/assets/analytics/{name}?view=checks")
                page.get_by_text("primary_key_unique_and_not_null").first.wait_for(timeout=30_000)
                text = str(page.inner_text("body"))
                assert "Failed" not in text and "(unserializable)" not in text, name
                _open(page, f"{dev.url}/assets/analytics/{name}")  # overview: definition
                page.get_by_text("Description").first.wait_for(timeout=30_000)
                assert "(unserializable)" not in str(page.inner_text("body")), name
            _open(page, f"{dev.url}/{LOCATION}/sensors/freshness_every_5_minutes")
            page.get_by_text("Target").first.wait_for(timeout=30_000)
            target = _between(str(page.inner_text("body")), "Target", "Running")
            assert target.strip() == "check_freshness"  # a name, not a selection's repr

            # A refresh job, launched as a user launches it: "Materialize all" on its page.
            _open(page, f"{dev.url}/{LOCATION}/jobs/activity_refresh")
            page.get_by_role("button", name="Materialize all").first.click()
            run = _wait_for_run(instance, "activity_refresh")
            assert run.status == dg.DagsterRunStatus.SUCCESS, dev.log.read_text()[-3000:]
            _open(page, f"{dev.url}/runs/{run.run_id}")
            page.get_by_text("Success").first.wait_for(timeout=30_000)
            # Against the simulator `make dev` started: the tables it refreshes are exact.
            world = generate_world(scale=40, reading=LENIENT)
            diffs = compare(tmp_path / "simulated.duckdb", world)
            for table in ("rooms", "sessions", "analytics_events", "recordings"):
                assert diffs[table].exact and diffs[table].loaded, diffs[table]

            # The asset graph of the raw group: the eight assets, then the marts they feed.
            _open(page, f"{dev.url}/{LOCATION}/asset-groups/analytics_api/lineage")
            for name in RAW:
                node = page.get_by_text(name, exact=True).first
                node.wait_for(state="visible", timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "asset_graph.png"))

            # Each child's page lists the parents the graph draws edges from.
            for child, parents in FAN_OUT.items():
                _open(page, f"{dev.url}/assets/analytics/{child}")
                page.get_by_text("Upstream assets").first.wait_for(timeout=30_000)
                text = str(page.inner_text("body"))
                upstream = _between(text, "Upstream assets", "Downstream assets")
                for parent in parents:
                    assert f"analytics / {parent}" in upstream, (child, upstream)

            # An asset's page: its last materialization's metadata.
            _open(page, f"{dev.url}/assets/analytics/rooms")
            page.get_by_text("rows_loaded").first.wait_for(timeout=30_000)
            text = str(page.inner_text("body"))
            assert "Row count" in text and "dagster/row_count" not in text  # shown as a badge
            assert "destination_name" in text and "Columns" in text
            assert "(unserializable)" not in text

            # A chart in the analytics' metadata.
            _open(page, f"{dev.url}/assets/analytics/peer_minutes_daily")
            page.get_by_text("Peer minutes per day").first.wait_for(timeout=30_000)
            assert "█" in str(page.inner_text("body"))
            page.screenshot(path=str(ARTIFACTS / "peer_minutes_chart.png"))

            # Checks on an asset, run by the refresh.
            _open(page, f"{dev.url}/assets/analytics/analytics_events?view=checks")
            page.get_by_text("primary_key_unique_and_not_null").first.wait_for(timeout=30_000)
            text = str(page.inner_text("body"))
            assert "rooms_exist" in text and "freshness_check" in text and "Failed" not in text

            # Schedules and sensors.
            _open(page, f"{dev.url}/automation")
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


def _wait_for_run(instance: dg.DagsterInstance, job: str, timeout: float = 180) -> Any:
    """The job's run, once it has finished."""
    finished = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = instance.get_runs(dg.RunsFilter(job_name=job))
        if runs and runs[0].status in finished:
            return runs[0]
        time.sleep(0.5)
    raise AssertionError(f"no run of {job} finished within {timeout:.0f} s")
