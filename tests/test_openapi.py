"""The OpenAPI document (gateway/openapi.py): every route of the app is in it, it is a valid OpenAPI 3.1
document whose schemas are valid JSON Schema, and real answers of a running gateway (successes and
errors, in each dialect, streams included) validate against the schemas it gives for them."""

from __future__ import annotations

import json
import shutil

import httpx
import pytest
from jsonschema import Draft202012Validator

from gateway import validation
from gateway.auth import hash_key
from gateway.tabular.example_model import build_app as model_app
from tests.helpers import REPO, ServerThread, run_cli, running_gateway, write_policies
from tests.tabular.test_service import FEATURES

KEY = "openapi-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    model = ServerThread(model_app()).start()
    root = tmp_path_factory.mktemp("openapi")
    features = ", ".join(line.strip() for line in FEATURES.strip().splitlines())
    policies = write_policies(root / "policies", f"""
        upstreams: {{mock: {{type: mock}}}}
        models:
          echo: {{targets: [{{upstream: mock, model: echo}}]}}
        keys:
          - {{name: ops, sha256: "{hash_key(KEY)}", admin: true}}
        server: {{watch_interval_s: 0}}
        tabular:
          churn:
            url: {model.url}/predict
            features: {{{features}}}
            reference: churn.profile
            drift: {{min_rows: 10}}
        """)
    shutil.copy(REPO / "policies" / "experiments.yaml", policies / "experiments.yaml")
    shutil.copy(REPO / "policies" / "tabular" / "churn.profile", policies / "churn.profile")
    prompts = root / "prompts"
    shutil.copytree(REPO / "prompts", prompts, ignore=shutil.ignore_patterns(".edit.lock"))
    try:
        with running_gateway(policies, ledger=root / "state" / "ledger.db", prompts=prompts) as server:
            server.doc = httpx.get(server.url + "/openapi.json", timeout=30).json()
            yield server
    finally:
        model.stop()


def check(doc: dict, method: str, path: str, r: httpx.Response, media: str = "application/json") -> None:
    """`r` is one of the answers the document gives for this operation, and its body fits the schema."""
    op = doc["paths"][path][method]
    assert str(r.status_code) in op["responses"], (method, path, r.status_code, r.text[:300])
    content = op["responses"][str(r.status_code)]["content"]
    assert media in content, (path, r.status_code, list(content))
    if media == "application/json":
        body = r.json()
    else:
        body = r.text
    validate(doc, content[media]["schema"], body)


def validate(doc: dict, schema: dict, instance) -> None:
    # `#/components/...` references resolve against a root that carries the document's components.
    root = {**schema, "components": doc["components"]}
    errors = sorted(Draft202012Validator(root).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message[:200]}" for e in errors[:5]]


def test_every_route_is_documented(gw):
    documented = {(m.upper(), p) for p, ops in gw.doc["paths"].items() for m in ops}
    routes = set()
    for route in gw.app.router.routes():
        path = route.resource.canonical
        if route.method == "HEAD" or (path.startswith("/ui/") and not path.startswith("/ui/api/")):
            continue  # HEAD comes with every GET; the console's pages are HTML (its JSON calls are listed)
        routes.add((route.method, path))
    assert routes and routes <= documented, sorted(routes - documented)
    assert documented <= routes, sorted(documented - routes)  # and nothing documented that does not exist


def test_the_document_is_valid_openapi_31(gw):
    doc = gw.doc
    assert doc["openapi"] == "3.1.0" and doc["info"]["version"]
    for name, schema in doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
    refs = set()

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                refs.add(node["$ref"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    for ref in refs:  # every reference resolves
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in doc["components"]["schemas"], ref
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"] and op["summary"], (method, path)
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert names == {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}, (method, path)
    # `gateway openapi` prints the same document
    out = run_cli("openapi")
    assert out.returncode == 0 and json.loads(out.stdout) == doc


def test_request_schemas_come_from_the_validation_tables(gw):
    req = gw.doc["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    for name, checker in validation.CHAT_PARAMS.items():
        assert req[name] == {"anyOf": [checker.schema, {"type": "null"}]}, name
    assert req["temperature"]["anyOf"][0] == {"type": "number", "minimum": 0, "maximum": 2}
    assert "context" in gw.doc["components"]["schemas"]["GatewayOptions"]["properties"]
    # what the schema refuses, the gateway refuses (and the reverse for a valid body)
    schemas = gw.doc["components"]["schemas"]
    for body, ok in (({"model": "echo", "messages": [{"role": "user", "content": "hi"}], "temperature": 1}, True),
                     ({"model": "echo", "messages": [{"role": "user", "content": "hi"}], "temperature": 3}, False),
                     ({"model": "echo", "messages": [{"role": "robot", "content": "hi"}]}, False),
                     ({"model": "echo", "messages": [{"role": "user", "content": "hi"}], "stop": ["a"] * 5}, False),
                     ({"model": "echo", "messages": [{"role": "user", "content": "hi"}], "n": None}, True)):
        valid = not list(Draft202012Validator({**schemas["ChatCompletionRequest"], "components": gw.doc["components"]})
                         .iter_errors(body))
        r = httpx.post(gw.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=30)
        assert valid is ok and (r.status_code == 200) is ok, (body, r.status_code, r.text[:200])


def test_real_answers_validate(gw):
    doc, url = gw.doc, gw.url
    chat = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    post = lambda p, body, **kw: httpx.post(url + p, json=body, timeout=30, **({"headers": AUTH} | kw))  # noqa: E731
    get = lambda p, **kw: httpx.get(url + p, timeout=30, **({"headers": AUTH} | kw))  # noqa: E731

    check(doc, "post", "/v1/chat/completions", post("/v1/chat/completions", chat))
    check(doc, "post", "/v1/chat/completions", post("/v1/chat/completions", {**chat, "messages": []}))
    check(doc, "post", "/v1/chat/completions", post("/v1/chat/completions", chat, headers={}))  # 401
    stream = post("/v1/chat/completions", {**chat, "stream": True, "stream_options": {"include_usage": True}})
    check(doc, "post", "/v1/chat/completions", stream, media="text/event-stream")
    events = [line[6:] for line in stream.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    for e in events[:-1]:
        validate(doc, {"$ref": "#/components/schemas/ChatCompletionChunk"}, json.loads(e))
    check(doc, "post", "/v1/embeddings", post("/v1/embeddings", {"model": "echo", "input": ["a", "b"]}))
    check(doc, "post", "/v1/embeddings", post("/v1/embeddings", {"model": "echo", "input": []}))
    check(doc, "get", "/v1/models", get("/v1/models"))

    messages = {"model": "echo", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    check(doc, "post", "/v1/messages", post("/v1/messages", messages, headers={"x-api-key": KEY}))
    check(doc, "post", "/v1/messages", post("/v1/messages", {**messages, "max_tokens": None}))
    check(doc, "post", "/v1/messages", post("/v1/messages", {**messages, "container": "x"}))  # refused by name
    check(doc, "post", "/v1/messages/count_tokens", post("/v1/messages/count_tokens", {
        "model": "echo", "messages": messages["messages"]}))

    created = post("/v1/responses", {"model": "echo", "input": "hi"})
    check(doc, "post", "/v1/responses", created)
    rid = created.json()["id"]
    check(doc, "get", "/v1/responses/{id}", get(f"/v1/responses/{rid}"))
    check(doc, "get", "/v1/responses/{id}/input_items", get(f"/v1/responses/{rid}/input_items"))
    check(doc, "delete", "/v1/responses/{id}", httpx.delete(f"{url}/v1/responses/{rid}", headers=AUTH, timeout=30))
    check(doc, "get", "/v1/responses/{id}", get(f"/v1/responses/{rid}"))  # 404 now
    check(doc, "post", "/v1/responses", post("/v1/responses", {"model": "echo", "input": "hi", "conversation": "c"}))

    check(doc, "get", "/v1/prompts", get("/v1/prompts"))
    check(doc, "get", "/v1/prompts/{name}", get("/v1/prompts/support-answer"))
    check(doc, "get", "/v1/prompts/{name}", get("/v1/prompts/nope"))
    check(doc, "post", "/v1/feedback", post("/v1/feedback", {"request_id": "nope", "metric": "resolved", "value": 1}))
    check(doc, "get", "/v1/experiments", get("/v1/experiments"))
    check(doc, "get", "/v1/experiments/{name}", get("/v1/experiments/support-answer-v2"))
    check(doc, "get", "/v1/experiments/{name}", get("/v1/experiments/nope"))

    row = {"tenure_months": 12, "monthly_spend": 80.5, "support_calls": 3, "plan": "basic"}
    predicted = post("/v1/tabular/churn/predict", {"rows": [row] * 12})
    check(doc, "post", "/v1/tabular/{model}/predict", predicted)
    check(doc, "post", "/v1/tabular/{model}/predict", post("/v1/tabular/churn/predict", {"rows": [{**row, "plan": 1}]}))
    pid = predicted.json()["predictions"][0]["id"]
    check(doc, "post", "/v1/tabular/{model}/feedback", post("/v1/tabular/churn/feedback", {"id": pid, "label": 1}))
    check(doc, "get", "/v1/tabular/{model}/drift", get("/v1/tabular/churn/drift?window=1h"))
    check(doc, "get", "/v1/tabular/{model}/drift", get("/v1/tabular/churn/drift?window=soon"))

    check(doc, "get", "/healthz", httpx.get(url + "/healthz", timeout=30))
    check(doc, "get", "/readyz", httpx.get(url + "/readyz", timeout=30))
    check(doc, "get", "/openapi.json", httpx.get(url + "/openapi.json", timeout=30))
    check(doc, "get", "/admin/status", get("/admin/status"))
    check(doc, "get", "/admin/status", get("/admin/status", headers={}))
    check(doc, "post", "/admin/reload", post("/admin/reload", None))
    check(doc, "post", "/admin/cache/clear", post("/admin/cache/clear", {}))  # 409: the cache is off
    check(doc, "get", "/metrics", get("/metrics"), media="text/plain")


def test_console_json_calls_validate(gw):
    doc = gw.doc
    for path, query in (("/ui/api/overview", "?since=7d"), ("/ui/api/requests", "?size=5"),
                        ("/ui/api/guardrails", ""), ("/ui/api/experiments/support-answer-v2", "")):
        check(doc, "get", path.replace("support-answer-v2", "{name}"),
              httpx.get(gw.url + path + query, headers=AUTH, timeout=30))
    check(doc, "get", "/ui/api/requests", httpx.get(gw.url + "/ui/api/requests?page=x", headers=AUTH, timeout=30))
    check(doc, "get", "/ui/api/overview", httpx.get(gw.url + "/ui/api/overview", timeout=30))  # no key: 401
