"""A gateway with keys (admin, non-admin, and one whose name is markup), USD budgets, a copy of the
shipped prompts, and a ledger seeded with example traffic plus a few real requests."""

from __future__ import annotations

import shutil
import time

import httpx
import pytest

from gateway.auth import hash_key
from gateway.console.example_data import write_example_ledger
from tests.helpers import REPO, ledger_row, run_cli, running_gateway, write_policies

ADMIN_KEY = "console-admin-secret"
USER_KEY = "console-user-secret"
MARKUP_KEY = "console-markup-secret"
MARKUP_NAME = "<script>alert('x')</script>"
SEEDED = 4000


@pytest.fixture(scope="package")
def console_gw(tmp_path_factory):
    root = tmp_path_factory.mktemp("console")
    yaml = f"""
    upstreams: {{mock: {{type: mock}}}}
    models:
      echo: {{targets: [{{upstream: mock, model: echo}}]}}
    keys:
      - name: ops
        sha256: "{hash_key(ADMIN_KEY)}"
        admin: true
      - name: app
        sha256: "{hash_key(USER_KEY)}"
        group: team-a
        limits: {{usd_per_day: 5, usd_per_month: 100}}
      - name: "{MARKUP_NAME}"
        sha256: "{hash_key(MARKUP_KEY)}"
    groups:
      team-a: {{limits: {{usd_per_month: 500}}}}
    server: {{watch_interval_s: 0}}
    console: {{session_hours: 1}}
    """
    policies = write_policies(root / "policies", yaml, default="request: [{type: pii, name: no-pii, mode: regex}]\nresponse: []\n")
    (policies / "pricing.yaml").write_text("models:\n  echo: {input: 1.0, output: 2.0, source: test, as_of: 2026-12-01}\n")
    shutil.copy(REPO / "policies" / "experiments.yaml", policies / "experiments.yaml")
    prompts = root / "prompts"
    shutil.copytree(REPO / "prompts", prompts, ignore=shutil.ignore_patterns(".edit.lock"))
    ledger = root / "state" / "ledger.db"
    write_example_ledger(ledger, SEEDED, days=3, now=time.time() - 120, seed=11)
    # Two tracked eval runs in the same state directory, as `gateway eval run` records them.
    for _ in range(2):
        out = run_cli("eval", "--state-dir", str(ledger.parent), "run", "evals/json-extraction.yaml", timeout=180)
        assert "recorded in" in out.stdout, out.stdout + out.stderr
    with running_gateway(policies, ledger=ledger, prompts=prompts) as server:
        server.ledger = ledger
        server.prompts = prompts
        rid = None
        for key in (USER_KEY, MARKUP_KEY):
            for text in ("hello there", "mail me at ann@example.com"):
                r = httpx.post(server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                               json={"model": "echo", "messages": [{"role": "user", "content": text}]}, timeout=30)
                assert r.status_code == 200, r.text
                rid = r.headers["x-gateway-request-id"]
        ledger_row(ledger, rid)  # the last real request is committed (and so are those before it)
        yield server
