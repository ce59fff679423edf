"""Experiments through the gateway: assignment, overrides, feedback, reports."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.helpers import openai_client, run_cli, running_gateway, write_policies
from tests.prompts.helpers import make_prompts, prompts_cli

GW = """
upstreams: {mock: {type: mock}}
models:
  assistant: {targets: [{upstream: mock, model: echo}]}
  assistant-b: {targets: [{upstream: mock, model: "fixed?text=B"}]}
  mock-model: {targets: [{upstream: mock, model: echo}]}
server: {watch_interval_s: 0.1}
"""
EXPERIMENTS = """
experiments:
  - name: model-test
    models: [assistant]
    unit: header:x-user-id
    variants:
      - {name: control, weight: 0.5}
      - {name: bigger, weight: 0.5, model: assistant-b}
    metrics:
      conversion: {type: proportion}
      rating: {type: mean}
  - name: prompt-test
    prompts: [support]
    unit: gateway.user_id
    variants:
      - {name: control, weight: 0.5}
      - {name: v2, weight: 0.5, prompt: {version: 2}}
    metrics: {conversion: {type: proportion}}
"""


@pytest.fixture()
def env(tmp_path):
    prompts = make_prompts(tmp_path / "prompts")
    (prompts / "support" / "v2.yaml").write_text((prompts / "support" / "v1.yaml").read_text().replace("Q:", "Q2:"))
    assert prompts_cli(prompts, "promote", "support", "1").returncode == 0
    assert prompts_cli(prompts, "promote", "support", "2", "--label", "staging").returncode == 0
    policies = write_policies(tmp_path / "policies", GW, experiments=EXPERIMENTS)
    ledger = tmp_path / "ledger.db"
    with running_gateway(policies, prompts=prompts, ledger=ledger) as gw:
        yield gw, policies, ledger


def chat(gw, user, **kw):
    return openai_client(gw).chat.completions.with_raw_response.create(
        model="assistant", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-user-id": user}, **kw)


def test_assignment_is_sticky_and_variant_overrides_apply(env):
    gw, _, _ = env
    seen = {}
    for i in range(40):
        raw = chat(gw, f"user-{i}")
        variant = raw.headers["x-gateway-experiment"].split("=")[1]
        out = raw.parse()
        assert out.model_extra["gateway"]["experiment"] == {"name": "model-test", "variant": variant}
        assert out.choices[0].message.content == ("B" if variant == "bigger" else "hi")
        seen[f"user-{i}"] = variant
    assert set(seen.values()) == {"control", "bigger"}
    for user, variant in list(seen.items())[:10]:
        assert chat(gw, user).headers["x-gateway-experiment"] == f"model-test={variant}"
    no_unit = openai_client(gw).chat.completions.with_raw_response.create(
        model="assistant", messages=[{"role": "user", "content": "hi"}])
    assert "x-gateway-experiment" not in no_unit.headers  # no unit id: not in the experiment


def test_prompt_version_experiment(env):
    gw, _, _ = env
    answers = set()
    for i in range(30):
        out = openai_client(gw).chat.completions.create(model="prompt", messages=[], extra_body={"gateway": {
            "user_id": f"u{i}", "prompt": {"name": "support", "variables": {"question": "x"}}}})
        info = out.model_extra["gateway"]
        answers.add((info["experiment"]["variant"], info["prompt"]["version"], out.choices[0].message.content))
    assert answers == {("control", 1, "Q: x"), ("v2", 2, "Q2: x")}


def test_feedback_validation_idempotency_and_report(env):
    gw, policies, ledger = env
    ids = {}
    for i in range(60):
        raw = chat(gw, f"user-{i}")
        ids[f"user-{i}"] = (raw.headers["x-gateway-request-id"], raw.headers["x-gateway-experiment"].split("=")[1])
    post = lambda body: httpx.post(gw.url + "/v1/feedback", json=body)  # noqa: E731
    converted = 0
    for user, (rid, variant) in ids.items():
        if variant == "bigger" or user.endswith(("0", "5")):
            assert post({"request_id": rid, "metric": "conversion", "value": 1}).status_code == 202
            converted += 1
    rid, _ = ids["user-0"]
    assert post({"request_id": rid, "metric": "conversion", "value": 1}).status_code == 202  # repeat: ignored
    assert post({"experiment": "model-test", "unit_id": "user-1", "metric": "rating", "value": 4}).status_code == 202
    bad = [
        ({"request_id": "gw-nope", "metric": "conversion", "value": 1}, 404, "Unknown request id"),
        ({"request_id": rid, "metric": "revenue", "value": 1}, 400, "declared: conversion, rating"),
        ({"request_id": rid, "metric": "conversion", "value": 2}, 400, "0 or 1"),
        ({"request_id": rid, "metric": "conversion", "value": True}, 400, "finite number"),
        ({"experiment": "nope", "unit_id": "u", "metric": "rating", "value": 1}, 404, "Unknown experiment"),
        ({"experiment": "model-test", "unit_id": "stranger", "metric": "rating", "value": 1}, 404, "never took part"),
        ({"metric": "rating", "value": 1}, 400, "request_id"),
    ]
    for body, status, fragment in bad:
        r = post(body)
        assert r.status_code == status and fragment in r.json()["error"]["message"], (body, r.text)

    time.sleep(0.6)  # one ledger flush
    report = httpx.get(gw.url + "/v1/experiments/model-test").json()
    conv = next(r for r in report["comparisons"] if r["metric"] == "conversion")
    assert conv["control"]["n"] + conv["treatment"]["n"] == 60
    successes = round(conv["control"]["mean"] * conv["control"]["n"] + conv["treatment"]["mean"] * conv["treatment"]["n"])
    assert successes == converted  # the repeat did not count twice
    assert conv["treatment"]["mean"] == 1.0 and conv["lift"] > 0
    assert {"p_value_holm", "always_valid_p_holm", "confidence_sequence", "chance_to_beat_control"} <= set(conv)
    assert {r["metric"] for r in report["comparisons"]} >= {"conversion", "rating", "error_rate", "latency_ms", "cost_usd"}
    assert report["srm"]["mismatch"] is False and report["decision"]

    cli = run_cli("ab", "--policies", str(policies), "--ledger", str(ledger), "report", "model-test")
    assert cli.returncode == 0, cli.stderr
    assert "Sample ratio" in cli.stdout and "Decision:" in cli.stdout and "conversion" in cli.stdout
    as_json = json.loads(run_cli("ab", "--policies", str(policies), "--ledger", str(ledger), "report", "model-test",
                                 "--format", "json").stdout)
    assert as_json["experiment"] == "model-test"
    html = run_cli("ab", "--policies", str(policies), "--ledger", str(ledger), "report", "model-test",
                   "--format", "html").stdout
    assert html.startswith("<!doctype html>")


def test_removed_variant_and_zero_traffic(env):
    gw, policies, ledger = env
    for i in range(20):
        chat(gw, f"user-{i}")
    time.sleep(0.6)
    (policies / "experiments.yaml").write_text(EXPERIMENTS.replace(
        "      - {name: bigger, weight: 0.5, model: assistant-b}",
        "      - {name: newcomer, weight: 0.5, model: assistant-b}"))
    r = httpx.post(gw.url + "/admin/reload")
    assert r.status_code == 200, r.text
    report = httpx.get(gw.url + "/v1/experiments/model-test").json()
    variants = {v["name"]: v for v in report["variants"]}
    assert variants["bigger"]["removed"] is True and variants["bigger"]["units"] > 0
    assert variants["newcomer"]["units"] == 0
    assert any("newcomer" in line and "no traffic" in line for line in report["decision"])


def test_experiment_config_errors(tmp_path):
    prompts = make_prompts(tmp_path / "prompts")
    weights = EXPERIMENTS.replace("{name: control, weight: 0.5}\n      - {name: bigger",
                                  "{name: control, weight: 0.6}\n      - {name: bigger")
    policies = write_policies(tmp_path / "p1", GW, experiments=weights)
    r = run_cli("check-policies", "--policies", str(policies), "--prompts", str(prompts))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "experiments.yaml:3: experiments[0]: Value error, variant weights must sum to 1 (they sum to 1.1)" in r.stderr
    refs = EXPERIMENTS.replace("model: assistant-b", "model: gpt-9").replace("prompt: {version: 2}", "prompt: {version: 7}")
    policies = write_policies(tmp_path / "p2", GW, experiments=refs)
    r = run_cli("check-policies", "--policies", str(policies), "--prompts", str(prompts))
    assert r.returncode == 2
    assert "experiments[0].variants[1].model: unknown model 'gpt-9'" in r.stderr
    assert "experiments[1].variants[1].prompt: Prompt 'support' has no version 7" in r.stderr
