"""Several gateways on one Redis behave like one: two in-process replicas and `gateway serve
--workers 2` share a key's limit exactly; start-up refuses per-process limits and bad backends."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import textwrap
import time

import httpx
import pytest

from tests.helpers import REPO, free_port, gateway_cmd, running_gateway, wait_http, \
    write_policies

KEY = "sk-replica-test-key"


def gateway_yaml(prefix: str, rpm: int = 20) -> str:
    return textwrap.dedent(f"""
        upstreams: {{mock: {{type: mock}}}}
        models: {{echo: {{targets: [{{upstream: mock, model: echo}}]}}}}
        keys:
          - {{name: app, sha256: {hashlib.sha256(KEY.encode()).hexdigest()}, policy: default,
             limits: {{requests_per_minute: {rpm}}}}}
        state: {{counters: redis, key_prefix: "{prefix}"}}
        server: {{watch_interval_s: 0}}
        """)


def chat(url: str) -> int:
    return httpx.post(url + "/v1/chat/completions", timeout=30, headers={"Authorization": f"Bearer {KEY}"},
                      json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]}).status_code


def test_two_replicas_share_one_limit_exactly(tmp_path, prefix):
    a = write_policies(tmp_path / "a", gateway_yaml(prefix))
    b = write_policies(tmp_path / "b", gateway_yaml(prefix))
    with running_gateway(a, ledger=tmp_path / "a.db") as ga, running_gateway(b, ledger=tmp_path / "b.db") as gb:
        codes = [chat((ga if i % 2 else gb).url) for i in range(60)]
    assert codes.count(200) == 20 and codes.count(429) == 40


def test_workers_refuse_embedded_counters(tmp_path):
    root = write_policies(tmp_path / "p", "upstreams: {mock: {type: mock}}\nmodels: {echo: {targets: [{upstream: mock, model: echo}]}}\n")
    r = subprocess.run(gateway_cmd("serve", "--policies", str(root), "--port", str(free_port()), "--workers", "2",
                                   "--state-dir", str(tmp_path / "s")), cwd=REPO, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "state: {counters: redis}" in r.stderr and "Traceback" not in r.stderr


def test_workers_refuse_the_embedded_response_cache(tmp_path):
    root = write_policies(tmp_path / "p", gateway_yaml("gwtest-cache") + "cache: {enabled: true, store: embedded}\n")
    r = subprocess.run(gateway_cmd("serve", "--policies", str(root), "--port", str(free_port()), "--workers", "2",
                                   "--state-dir", str(tmp_path / "s")), cwd=REPO, capture_output=True, text=True,
                       timeout=60, env={**os.environ, "GATEWAY_REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert r.returncode == 2 and "cache: {store: redis}" in r.stderr and "Traceback" not in r.stderr


def test_workers_refuse_an_embedded_response_store(tmp_path):
    root = write_policies(tmp_path / "p", gateway_yaml("gwtest-resp") + "responses: {store: embedded}\n")
    r = subprocess.run(gateway_cmd("serve", "--policies", str(root), "--port", str(free_port()), "--workers", "2",
                                   "--state-dir", str(tmp_path / "s")), cwd=REPO, capture_output=True, text=True,
                       timeout=60, env={**os.environ, "GATEWAY_REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert r.returncode == 2 and "responses: {store: redis}" in r.stderr and "Traceback" not in r.stderr


def test_a_responses_conversation_continues_on_another_replica(tmp_path, prefix):
    import openai

    a = write_policies(tmp_path / "a", gateway_yaml(prefix, rpm=100))
    b = write_policies(tmp_path / "b", gateway_yaml(prefix, rpm=100))
    with running_gateway(a) as ga, running_gateway(b) as gb:
        ca, cb = (openai.OpenAI(base_url=g.url + "/v1", api_key=KEY, max_retries=0) for g in (ga, gb))
        first = ca.responses.create(model="echo", input="My name is Ada.")
        second = cb.responses.create(model="echo", previous_response_id=first.id, input="Who am I?")
        assert second.output_text == "Who am I?" and second.usage.input_tokens > first.usage.input_tokens + 3
        assert ca.responses.retrieve(second.id).output_text == "Who am I?"
        cb.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError):
            ca.responses.retrieve(first.id)


def test_bad_backends_are_start_up_errors(tmp_path, monkeypatch):
    root = write_policies(tmp_path / "p", gateway_yaml("gwtest-bad"))
    monkeypatch.delenv("GATEWAY_REDIS_URL", raising=False)
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_REDIS_URL"}
    args = gateway_cmd("serve", "--policies", str(root), "--port", str(free_port()), "--state-dir", str(tmp_path / "s"))
    r = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2 and "state.redis_url_env" in r.stderr and "GATEWAY_REDIS_URL is not set" in r.stderr
    r = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60,
                       env={**env, "GATEWAY_REDIS_URL": "redis://:hunter2@127.0.0.1:9/0"})
    assert r.returncode == 2 and "cannot reach Redis at redis://:***@127.0.0.1:9/0" in r.stderr, r.stderr
    assert "hunter2" not in r.stderr + r.stdout and "Traceback" not in r.stderr


def serve_workers(root, state, n: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(gateway_cmd("serve", "--policies", str(root), "--port", str(port), "--workers", str(n),
                                        "--state-dir", str(state)),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, f"http://127.0.0.1:{port}"


def test_two_workers_share_the_limit_and_a_killed_worker_is_replaced(tmp_path, prefix):
    root = write_policies(tmp_path / "p", gateway_yaml(prefix, rpm=30))
    proc, url = serve_workers(root, tmp_path / "s", 2)
    try:
        wait_http(url + "/healthz", timeout=60)
        time.sleep(1.0)  # both workers up
        codes = []
        for _ in range(90):  # a new connection each time: the kernel spreads them over both workers
            codes.append(chat(url))
        assert codes.count(200) == 30 and codes.count(429) == 60
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 2
        os.kill(int(children[0]), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
            if len(now) == 2 and children[0] not in now:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the killed worker was not replaced")
        wait_http(url + "/healthz", timeout=30)
        assert chat(url) == 429  # still the same shared window
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert re.search(r"worker \d \(pid \d+\) exited with -9; restarting it", out), out


def test_the_compose_example_policies_are_valid(tmp_path):
    from tests.helpers import run_cli

    r = run_cli("check-policies", "--policies", str(REPO / "deploy/policies"),
                env={"GATEWAY_REDIS_URL": "redis://127.0.0.1:6379/0", "GATEWAY_ADMIN_KEY": "x",
                     "GATEWAY_POSTGRES_URL": "postgresql://gateway@127.0.0.1:5432/gateway"})
    assert r.returncode == 0, r.stderr


def test_scheduled_drift_alerts_go_out_once_across_replicas(tmp_path, prefix):
    from gateway.tabular.example_model import build_app as model_app
    from tests.helpers import ServerThread, recording_webhook
    from tests.tabular.test_service import FEATURES, rows_of, send

    hook, model = recording_webhook(), ServerThread(model_app()).start()
    got = hook.got
    yaml = f"""
upstreams: {{mock: {{type: mock}}}}
models: {{echo: {{targets: [{{upstream: mock, model: echo}}]}}}}
state: {{counters: redis, key_prefix: "{prefix}"}}
server: {{watch_interval_s: 0}}
tabular:
  churn:
    url: {model.url}/predict
    features: {FEATURES}
    reference: churn.profile
    drift: {{min_rows: 100, check_every_s: 0.3, webhook: {hook.url}/hook, realert_after_s: 3600}}
"""
    roots = []
    for name in ("a", "b"):
        root = write_policies(tmp_path / name, yaml)
        (root / "churn.profile").write_bytes((REPO / "policies/tabular/churn.profile").read_bytes())
        roots.append(root)
    try:
        # both replicas on one state directory: one prediction log, as workers on one machine share it
        with running_gateway(roots[0], ledger=tmp_path / "state" / "a.db") as ga, \
                running_gateway(roots[1], ledger=tmp_path / "state" / "b.db") as gb:
            send(ga, "churn", rows_of(400, shift=1.0, seed=12))
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not got:
                time.sleep(0.1)
            time.sleep(2.0)  # both monitors ran several rounds meanwhile
            # whichever replica delivered it, both consoles list the one delivery
            pages = [httpx.get(g.url + "/ui/tabular/churn?window=1h", timeout=30).text for g in (ga, gb)]
    finally:
        hook.stop()
        model.stop()
    assert len(got) == 1 and got[0]["model"] == "churn" and got[0]["data_drift"] is True
    for html in pages:
        rows = html.split('id="deliveries"', 1)[1].split("</tbody>", 1)[0]
        assert rows.count("<tr>") == 2 and "delivered" in rows, rows  # the header row and the delivery


def test_metrics_of_two_workers_are_one_view(tmp_path, prefix):
    """Whichever worker answers the scrape, /metrics counts every worker's requests."""
    root = write_policies(tmp_path / "p", textwrap.dedent(f"""
        upstreams: {{mock: {{type: mock}}}}
        models: {{echo: {{targets: [{{upstream: mock, model: echo}}]}}}}
        state: {{counters: redis, key_prefix: "{prefix}"}}
        server: {{watch_interval_s: 0}}
        """))  # open mode on loopback: /metrics needs no key
    proc, url = serve_workers(root, tmp_path / "s", 2)
    try:
        wait_http(url + "/healthz", timeout=60)
        time.sleep(1.0)
        for _ in range(40):  # new connections: spread over both workers
            r = httpx.post(url + "/v1/chat/completions", timeout=30,
                           json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200
        totals = []
        for _ in range(10):
            text = httpx.get(url + "/metrics", timeout=30).text
            totals.append(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                              if line.startswith("gateway_requests_total{")))
        assert totals == [40.0] * 10, totals
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
