"""Shared test fixtures: a real gateway / mock server on a loopback port, policy directories."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from gateway.app import build_app
from gateway.keys import HOLDER
from gateway.mock_server import build_mock_app
from gateway.runtime import load_runtime
from gateway.server import GatewayRunner, connection_limits
from gateway.upstreams.openai import HttpPool

REPO = Path(__file__).resolve().parent.parent


class ServerThread:
    """Runs an aiohttp app on 127.0.0.1:<free port> in a thread with its own event loop."""

    def __init__(self, app: web.Application, *, handler_cancellation: bool = True) -> None:
        self.app = app
        self.port = 0
        self._handler_cancellation = handler_cancellation
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        if HOLDER in self.app:  # a gateway: the same guarded listener as `gateway serve`
            runner = GatewayRunner(self.app, connection_limits(self.app), handler_cancellation=self._handler_cancellation,
                                   access_log=None, shutdown_timeout=5)
        else:
            runner = web.AppRunner(self.app, handler_cancellation=self._handler_cancellation, access_log=None,
                                   shutdown_timeout=5)
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        except BaseException as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    def start(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error:
            raise self._error
        return self

    def call(self, coro_fn, *args) -> Any:
        """Run a coroutine function on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro_fn(*args), self._loop).result(30)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)


@contextlib.contextmanager
def running_gateway(
    policies: Path, *, wait_ready: bool = True, ledger: Path | None = None, prompts: Path | None = None
) -> Iterator[ServerThread]:
    pool = HttpPool()
    app = build_app(policies, load_runtime(policies, pool, prompts), pool, ledger_path=ledger, prompts_dir=prompts)
    server = ServerThread(app).start()
    try:
        if wait_ready:
            deadline = time.monotonic() + 90  # a cold first import of presidio/spaCy/torch can take a while
            while not app[HOLDER].ready and time.monotonic() < deadline:
                time.sleep(0.02)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def running_mock_server() -> Iterator[ServerThread]:
    server = ServerThread(build_mock_app(), handler_cancellation=False).start()
    try:
        yield server
    finally:
        server.stop()


def write_policies(root: Path, gateway_yaml: str, **policies: str) -> Path:
    """A policies directory with gateway.yaml and `name=yaml` policy files (default: empty policy)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "gateway.yaml").write_text(textwrap.dedent(gateway_yaml))
    policies.setdefault("default", "request: []\nresponse: []\n")
    for name, text in policies.items():
        (root / f"{name}.yaml").write_text(textwrap.dedent(text))
    return root


def openai_client(server: ServerThread, api_key: str = "unused", **kw):
    import openai

    return openai.OpenAI(base_url=server.url + "/v1", api_key=api_key, max_retries=0, timeout=30, **kw)


def post(server: ServerThread, path: str, **kw) -> httpx.Response:
    return httpx.post(server.url + path, timeout=30, **kw)


def ledger_row(ledger: Path, rid: str) -> dict:
    """The SQLite ledger's row for a request id, waiting for the writer to commit it."""
    import sqlite3

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:  # the file exists a moment before its first migration commits
            with sqlite3.connect(ledger) as conn:
                conn.row_factory = sqlite3.Row
                row = conn.execute("SELECT * FROM requests WHERE request_id = ?", (rid,)).fetchone()
        except sqlite3.OperationalError:
            row = None
        if row is not None:
            return dict(row)
        time.sleep(0.05)
    raise AssertionError(f"no ledger row for {rid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gateway_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "gateway", *args]


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60):
    result = subprocess.run(gateway_cmd(*args), cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    session_log(result.stderr)  # what a command logs is searched for canaries with the rest (conftest)
    return result


def session_log(text: str) -> None:
    """Append a subprocess's log output to the test session's log (see tests/conftest.py)."""
    path = os.environ.get("GATEWAY_TEST_LOG")
    if path and text:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")


def wait_http(url: str, timeout: float = 20) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return httpx.get(url, timeout=2)
        except httpx.HTTPError as e:
            last = e
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer: {last}")


def require_service(name: str, host: str, port: int) -> None:
    """Skip (with the reason) when a service the test needs is not running here; `.ci/run` sets
    GATEWAY_TEST_REQUIRE_SERVICES=1, which turns that skip into a failure."""
    import pytest

    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError as e:
        reason = f"{name} is not running on {host}:{port} ({e.strerror or e})"
        if os.environ.get("GATEWAY_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(reason + "; GATEWAY_TEST_REQUIRE_SERVICES=1 requires it")
        pytest.skip(reason)


REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


POSTGRES_URL = os.environ.get("GATEWAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _skip_or_fail(reason: str) -> None:
    import pytest

    if os.environ.get("GATEWAY_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(reason + "; GATEWAY_TEST_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


@contextlib.contextmanager
def private_postgres() -> Iterator[tuple[str, Any]]:
    """A PostgreSQL server of the test's own (initdb in a fresh temporary directory, a free port), so a
    test can stop and start it without touching the machine's service. Yields (url, restart(down_s)).
    Skips where the server binaries are not installed."""
    import glob
    import shutil
    import tempfile

    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    initdb = shutil.which("initdb") or (bindirs and os.path.join(bindirs[-1], "initdb"))
    if not initdb or not os.path.exists(initdb):
        _skip_or_fail("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    bindir = os.path.dirname(os.path.realpath(initdb))
    # Not under pytest's tmp_path: that is private to the user running the tests, and the server may
    # have to run as another.
    tmp = Path(tempfile.mkdtemp(prefix="gateway-test-pg-"))
    data = tmp / "pgdata"
    as_owner: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the `postgres` user
        as_owner = ["runuser", "-u", "postgres", "--"]
        shutil.chown(tmp, "postgres")
    port = free_port()
    subprocess.run([*as_owner, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, capture_output=True, timeout=120)
    log = tmp / "pg.log"
    opts = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off"

    def ctl(*args: str) -> None:
        subprocess.run([*as_owner, os.path.join(bindir, "pg_ctl"), "-D", str(data), "-l", str(log), "-w",
                        "-t", "60", *args], check=True, capture_output=True, timeout=90)

    def restart(down_s: float) -> None:
        ctl("stop", "-m", "fast")
        time.sleep(down_s)
        ctl("start", "-o", opts)

    ctl("start", "-o", opts)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", restart
    finally:
        with contextlib.suppress(Exception):
            ctl("stop", "-m", "immediate")
        shutil.rmtree(tmp, ignore_errors=True)


def recording_webhook(fail_first: bool = False) -> ServerThread:
    """A started webhook server on POST /hook that keeps each JSON body in `.got` (answering 200, or
    500 to the very first delivery with `fail_first`, so a sender must retry)."""
    got: list = []

    async def receive(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response(status=500 if fail_first and len(got) == 1 else 200)

    app = web.Application()
    app.router.add_post("/hook", receive)
    server = ServerThread(app).start()
    server.got = got
    return server
