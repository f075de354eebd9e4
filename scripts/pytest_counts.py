"""Pytest plugin for scripts/test.sh: count the MariaDB and browser tests that ran.

A MariaDB test is one that uses the `mariadb_url` fixture or the "mariadb" case of a
fixture parametrized over the backends (`database_url`, the service's `archive`); a browser test carries the `browser` marker. With REQUIRE_KINDS (e.g.
"mariadb,browser") the run fails when no test of a named kind passed, so a suite that
silently lost those tests cannot pass. Loaded with `-p pytest_counts`.
"""
from __future__ import annotations

import os
from collections import Counter

import pytest

KINDS = ("mariadb", "browser")
_kinds_of: dict[str, tuple[str, ...]] = {}
_result: dict[str, str] = {}  # nodeid -> passed | skipped | failed
_RANK = {"passed": 0, "skipped": 1, "failed": 2}


def _kinds(item: pytest.Item) -> tuple[str, ...]:
    kinds = []
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec is not None else {}
    # Directly, or through a fixture parametrized over the backends (value "mariadb").
    if "mariadb_url" in getattr(item, "fixturenames", ()) or any(
            isinstance(value, str) and value == "mariadb" for value in params.values()):
        kinds.append("mariadb")
    if item.get_closest_marker("browser") is not None:
        kinds.append("browser")
    return tuple(kinds)


def pytest_collection_modifyitems(items):
    for item in items:
        _kinds_of[item.nodeid] = _kinds(item)


def pytest_runtest_logreport(report):
    # A test's outcome is the worst over its phases (setup, call, teardown).
    if report.failed:
        outcome = "failed"
    elif report.skipped:
        outcome = "skipped"
    elif report.when == "call":
        outcome = "passed"
    else:
        return
    previous = _result.get(report.nodeid)
    if previous is None or _RANK[outcome] > _RANK[previous]:
        _result[report.nodeid] = outcome


def _outcomes(kind: str) -> Counter:
    return Counter(outcome for nodeid, outcome in _result.items()
                   if kind in _kinds_of.get(nodeid, ()))


def _required() -> list[str]:
    return [k.strip() for k in os.environ.get("REQUIRE_KINDS", "").split(",") if k.strip()]


def pytest_sessionfinish(session, exitstatus):
    missing = [kind for kind in _required() if _outcomes(kind)["passed"] == 0]
    if missing and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    write = terminalreporter.write_line
    terminalreporter.section("tests by kind")
    for kind in KINDS:
        counts = _outcomes(kind)
        write(f"{kind} tests: {counts['passed']} passed, {counts['failed']} failed, "
              f"{counts['skipped']} skipped")
    for kind in _required():
        if _outcomes(kind)["passed"] == 0:
            write(f"FAILED: no {kind} test passed, but REQUIRE_KINDS names {kind}", red=True)
