"""Session-wide checks.

Every log record of the whole test run (in-process gateways, at the gateway's default level INFO)
and the output of every `gateway` command the tests run (tests.helpers.run_cli) is written to one
file; at the end of the session it is searched for the canary key and the canary prompt that
tests send on purpose (tests/canaries.py). Finding either fails the run: no secret and no prompt
text may ever reach a log by default (issue #19).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import pytest

from gateway.telemetry.logs import FORMAT, SafeFormatter
from tests import canaries

SESSION_LOG = Path(os.environ.get("GATEWAY_TEST_LOG") or Path(tempfile.gettempdir()) / f"gateway-tests-{os.getpid()}.log")


def pytest_configure(config: pytest.Config) -> None:
    os.environ["GATEWAY_TEST_LOG"] = str(SESSION_LOG)  # run_cli appends subprocess output here
    SESSION_LOG.write_text("")
    handler = logging.FileHandler(SESSION_LOG, encoding="utf-8")
    handler.setFormatter(SafeFormatter(FORMAT))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    config._gateway_log_handler = handler  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    handler = getattr(session.config, "_gateway_log_handler", None)
    if handler is None:
        return
    handler.flush()
    text = SESSION_LOG.read_text(encoding="utf-8", errors="replace")
    found = [c for c in canaries.ALL if c in text]
    size = len(text)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if found:
        lines = [line for line in text.splitlines() if any(c in line for c in found)][:5]
        msg = (f"canary check: {found} found in the test run's logs ({SESSION_LOG}):\n  " + "\n  ".join(lines))
        if reporter:
            reporter.write_line(msg, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        if reporter and session.testscollected > 50:
            reporter.write_line(f"canary check: {size:,} characters of logs searched, neither canary found")
        SESSION_LOG.unlink(missing_ok=True)
