"""Per-file progress for a suite that runs on several workers (pytest-xdist), where pytest
itself prints only dots: a line as each test file finishes, with its outcome and its time."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import PurePath

import pytest


class FileProgress:
    """Counts each file's tests as their reports arrive (in the controller under xdist) and
    prints `test_x.py: 12 passed in 31 s (40 of 149 tests done, 95 s)` when the last one ends."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.total: Counter[str] = Counter()
        self.done: Counter[str] = Counter()
        self.outcomes: dict[str, Counter[str]] = {}
        self.seconds: dict[str, float] = {}
        self.started = time.monotonic()

    def _expect(self, nodeids: list[str]) -> None:
        self.total = Counter(nodeid.split("::", 1)[0] for nodeid in nodeids)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not self.total:  # without xdist the controller collects itself
            self._expect([item.nodeid for item in session.items])

    @pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: absent without it
    def pytest_xdist_node_collection_finished(self, node: object, ids: list[str]) -> None:
        if not self.total:
            self._expect(list(ids))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        path = report.nodeid.split("::", 1)[0]
        self.seconds[path] = self.seconds.get(path, 0.0) + report.duration
        outcomes = self.outcomes.setdefault(path, Counter())
        if report.when == "call" or (report.when == "setup" and not report.passed):
            outcomes["failed" if report.failed else report.outcome] += 1
        elif report.when == "teardown" and report.failed:
            outcomes["error"] += 1
        if report.when != "teardown":
            return
        self.done[path] += 1
        if self.done[path] != self.total.get(path):
            return
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
        finished = sum(self.done.values())
        reporter.write_line(
            f"{PurePath(path).name}: {summary} in {self.seconds[path]:.0f} s "
            f"({finished} of {sum(self.total.values())} tests done, "
            f"{time.monotonic() - self.started:.0f} s)"
        )


def register(config: pytest.Config) -> None:
    """In the process that reports (never in an xdist worker)."""
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(FileProgress(config), "analytics_file_progress")
