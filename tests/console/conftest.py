"""A gateway with keys (admin, non-admin, and one whose name is markup), USD budgets, a copy of the
shipped prompts, a ledger seeded with example traffic plus a few real requests, and a tabular model
(the example churn server) whose shifted traffic sets off a drift alert to a local webhook."""

from __future__ import annotations

import shutil
import time

import httpx
import pytest

from gateway.auth import hash_key
from gateway.console.example_data import write_example_ledger
from gateway.tabular.example_model import build_app as model_app
from tests.helpers import REPO, ServerThread, ledger_row, recording_webhook, run_cli, running_gateway, write_policies
from tests.tabular.test_service import FEATURES, rows_of  # the churn model's schema and traffic

ADMIN_KEY = "console-admin-secret"
USER_KEY = "console-user-secret"
MARKUP_KEY = "console-markup-secret"
MARKUP_NAME = "<script>alert('x')</script>"
SEEDED = 4000


@pytest.fixture(scope="package")
def tabular_servers():
    """The example churn model server, and a webhook that records the drift alerts it is sent."""
    model, hook = ServerThread(model_app()).start(), recording_webhook()
    yield model, hook
    model.stop()
    hook.stop()


def _send_churn_traffic(server, n: int) -> None:
    """Shifted traffic with labels, as an app would send it (predict, then feedback)."""
    auth = {"Authorization": f"Bearer {USER_KEY}"}
    rows = rows_of(n, shift=1.0, seed=21)
    clean = [{k: v for k, v in r.items() if k != "_label"} for r in rows]
    r = httpx.post(server.url + "/v1/tabular/churn/predict", json={"rows": clean}, headers=auth, timeout=30)
    assert r.status_code == 200, r.text
    labels = [{"id": p["id"], "label": row["_label"]} for p, row in zip(r.json()["predictions"], rows)]
    r = httpx.post(server.url + "/v1/tabular/churn/feedback", json={"labels": labels}, headers=auth, timeout=30)
    assert r.status_code == 200, r.text


@pytest.fixture(scope="package")
def console_gw(tmp_path_factory, tabular_servers):
    model, hook = tabular_servers
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
    tabular:
      churn:
        url: {model.url}/predict
        features: {{{", ".join(line.strip() for line in FEATURES.strip().splitlines())}}}
        reference: churn.profile
        drift: {{min_rows: 100, check_every_s: 0.3, webhook: {hook.url}/hook, realert_after_s: 3600}}
    """
    policies = write_policies(root / "policies", yaml, default="request: [{type: pii, name: no-pii, mode: regex}]\nresponse: []\n")
    (policies / "pricing.yaml").write_text("models:\n  echo: {input: 1.0, output: 2.0, source: test, as_of: 2026-12-01}\n")
    shutil.copy(REPO / "policies" / "experiments.yaml", policies / "experiments.yaml")
    shutil.copy(REPO / "policies" / "tabular" / "churn.profile", policies / "churn.profile")
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
        _send_churn_traffic(server, 300)
        deadline = time.monotonic() + 20
        while not hook.got and time.monotonic() < deadline:  # the monitor checks every 0.3 s
            time.sleep(0.1)
        assert hook.got, "no drift alert reached the webhook"
        time.sleep(0.5)  # the delivery is written to the prediction log in the next batch
        yield server
