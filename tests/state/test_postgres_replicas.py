"""Gateways sharing one PostgreSQL ledger: rows from every replica in one report, feedback accepted by
any replica for a request another served, `gateway db`, and start-up errors that name the field."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import textwrap
import time

import httpx
import psycopg

from tests.helpers import POSTGRES_URL, REPO, free_port, gateway_cmd, run_cli, running_gateway, write_policies

KEY = "sk-pg-replica-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}


def gateway_yaml(schema: str) -> str:
    return textwrap.dedent(f"""
        upstreams: {{mock: {{type: mock}}}}
        models: {{echo: {{targets: [{{upstream: mock, model: echo}}]}}}}
        keys:
          - {{name: app, sha256: {hashlib.sha256(KEY.encode()).hexdigest()}, policy: default}}
        state: {{ledger: postgres, postgres_schema: {schema}}}
        server: {{watch_interval_s: 0}}
        """)


EXPERIMENTS = """
experiments:
  - name: greet
    models: [echo]
    unit: gateway.user_id
    variants: [{name: control, weight: 0.5}, {name: other, weight: 0.5}]
    metrics: {resolved: {type: proportion}}
"""


def chat(url: str, user: str) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", timeout=30, headers=HEADERS,
                      json={"model": "echo", "messages": [{"role": "user", "content": "hi"}],
                            "gateway": {"user_id": user}})


def test_replicas_write_one_ledger_and_any_replica_takes_feedback(tmp_path, pg_schema):
    roots = [write_policies(tmp_path / name, gateway_yaml(pg_schema)) for name in ("a", "b")]
    for root in roots:
        (root / "experiments.yaml").write_text(EXPERIMENTS)
    with running_gateway(roots[0], ledger=tmp_path / "sa" / "ledger.db") as a, \
            running_gateway(roots[1], ledger=tmp_path / "sb" / "ledger.db") as b:
        ids = [chat((a, b)[i % 2].url, f"user-{i}").headers["x-gateway-request-id"] for i in range(20)]
        # b never saw a's requests: it finds them in the shared ledger, right away (a's writer may not
        # have flushed yet: b asks again after one flush interval before it says 404)
        accepted = [httpx.post(b.url + "/v1/feedback", headers=HEADERS, timeout=30,
                               json={"request_id": rid, "metric": "resolved", "value": 1}).status_code
                    for rid in ids[0::2]]
        assert accepted == [202] * 10
        time.sleep(0.6)
        report = httpx.get(a.url + "/v1/experiments/greet", headers=HEADERS, timeout=30).json()
    assert sum(v["units"] for v in report["variants"]) == 20
    env = {"GATEWAY_POSTGRES_URL": POSTGRES_URL}
    r = run_cli("usage", "--policies", str(roots[0]), "--by", "key", "--format", "json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) and json.loads(r.stdout)[0]["requests"] == 20
    r = run_cli("ab", "--policies", str(roots[0]), "report", "greet", "--format", "json", env=env)
    assert r.returncode == 0, r.stderr
    resolved = next(c for c in json.loads(r.stdout)["comparisons"] if c["metric"] == "resolved")
    side = (resolved["control"], resolved["treatment"])
    assert sum(s["n"] for s in side) == 20  # every unit, from both replicas
    assert round(sum(s["n"] * s["mean"] for s in side)) == 10  # the 10 resolved, wherever the feedback arrived
    with psycopg.connect(POSTGRES_URL) as conn:
        assert conn.execute(f"SELECT COUNT(*), COUNT(DISTINCT request_id) FROM {pg_schema}.requests").fetchone() \
            == (20, 20)
        assert conn.execute(f"SELECT COUNT(*) FROM {pg_schema}.feedback").fetchone() == (10,)


def test_db_command_migrates_and_reports_status(tmp_path, pg_schema):
    root = write_policies(tmp_path / "p", gateway_yaml(pg_schema))
    env = {"GATEWAY_POSTGRES_URL": POSTGRES_URL}
    r = run_cli("db", "status", "--policies", str(root), env=env)
    assert r.returncode == 1 and "needs `gateway db migrate`" in r.stdout, r.stdout + r.stderr
    r = run_cli("db", "migrate", "--policies", str(root), env=env)
    assert r.returncode == 0 and "migrated from version 0 to" in r.stdout, r.stderr
    r = run_cli("db", "status", "--policies", str(root), env=env)
    assert r.returncode == 0 and "(current)" in r.stdout
    lite = write_policies(tmp_path / "lite", "upstreams: {mock: {type: mock}}\nmodels: {echo: {targets: [{upstream: mock, model: echo}]}}\n")
    r = run_cli("db", "migrate", "--policies", str(lite))
    assert r.returncode == 2 and "state.ledger: sqlite" in r.stderr


def test_bad_postgres_settings_are_start_up_errors(tmp_path, pg_schema):
    root = write_policies(tmp_path / "p", gateway_yaml(pg_schema))
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_POSTGRES_URL"}

    def serve(url: str | None) -> subprocess.CompletedProcess:
        e = env if url is None else {**env, "GATEWAY_POSTGRES_URL": url}
        return subprocess.run(gateway_cmd("serve", "--policies", str(root), "--port", str(free_port()),
                                          "--state-dir", str(tmp_path / "s")), cwd=REPO, capture_output=True,
                              text=True, timeout=90, env=e)

    r = serve(None)
    assert r.returncode == 2 and "state.postgres_url_env" in r.stderr and "GATEWAY_POSTGRES_URL is not set" in r.stderr
    r = serve("postgresql://gw:hunter2@127.0.0.1:9/test")
    assert r.returncode == 2 and "cannot reach PostgreSQL at postgresql://gw:***@127.0.0.1:9/test" in r.stderr, r.stderr
    r = serve("postgresql://postgres@127.0.0.1:5432/no_such_database_here")
    assert r.returncode == 2 and "no_such_database_here" in r.stderr and "state.postgres_url_env" in r.stderr, r.stderr
    r = serve("mysql://nope")
    assert r.returncode == 2 and "state.postgres_url_env" in r.stderr, r.stderr
    for res in (r,):
        assert "hunter2" not in res.stderr + res.stdout and "Traceback" not in res.stderr


def test_budget_spend_comes_back_from_the_shared_ledger_after_redis_forgets_it(tmp_path, pg_schema, prefix,
                                                                                monkeypatch):
    import redis

    from gateway import app as app_module
    from tests.helpers import REDIS_URL

    monkeypatch.setattr(app_module, "RESEED_CHECK_S", 0.2)
    yaml = gateway_yaml(pg_schema).replace("policy: default}", "policy: default, limits: {usd_per_day: 100}}")
    yaml = yaml.replace(f"state: {{ledger: postgres, postgres_schema: {pg_schema}}}",
                        f"state: {{ledger: postgres, postgres_schema: {pg_schema}, counters: redis, "
                        f"key_prefix: {prefix}}}")
    root = write_policies(tmp_path / "p", yaml)
    (root / "pricing.yaml").write_text("models:\n  echo: {input: 1000, output: 1000, source: test, as_of: 2026-12-01}\n")
    r = redis.Redis.from_url(REDIS_URL)

    def spent() -> float:
        keys = [k for k in r.scan_iter(f"{prefix}:usd:day:*:key:app")]
        return float(r.get(keys[0])) if keys else 0.0

    with running_gateway(root, ledger=tmp_path / "s" / "ledger.db") as gw:
        for i in range(5):
            assert chat(gw.url, f"u{i}").status_code == 200
        time.sleep(0.6)  # settled in Redis, flushed to PostgreSQL
        before = spent()
        assert before > 0
        r.delete(*r.scan_iter(f"{prefix}:*"))  # Redis restarted empty
        assert spent() == 0.0
        deadline = time.time() + 10
        while spent() == 0.0 and time.time() < deadline:
            time.sleep(0.1)
        assert abs(spent() - before) < 1e-9
    r.close()
