"""OpenTelemetry traces, received as real OTLP/HTTP protobuf by an in-test collector: the span tree
of a guarded request with a retry and a fallback, GenAI attributes, traceparent in and out, no text
in any attribute, sampling, a dead collector that never slows a request, bad settings."""

from __future__ import annotations

import os
import threading
import time

import httpx
import pytest
from aiohttp import web

from gateway.errors import PolicyError
from gateway.runtime import load_runtime
from gateway.upstreams.openai import HttpPool
from tests.helpers import ServerThread, free_port, running_gateway, write_policies

SECRET = "the Zorblax launch is on the ninth"

POLICY = """
request:
  - {type: denylist, words: [forbidden], action: flag}
  - {type: pii, mode: regex}
response: []
"""


class Collector:
    """An OTLP/HTTP traces endpoint: decodes ExportTraceServiceRequest and keeps the spans."""

    def __init__(self) -> None:
        self.spans: list[dict] = []
        self.lock = threading.Lock()
        app = web.Application()
        app.router.add_post("/v1/traces", self.receive)
        self.server = ServerThread(app).start()
        self.url = self.server.url + "/v1/traces"

    async def receive(self, request: web.Request) -> web.Response:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        assert request.content_type == "application/x-protobuf"
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(await request.read())
        with self.lock:
            for rs in msg.resource_spans:
                resource = {a.key: _value(a.value) for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        self.spans.append({
                            "name": s.name, "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                            "parent": s.parent_span_id.hex(), "kind": s.kind, "status": s.status.code,
                            "attrs": {a.key: _value(a.value) for a in s.attributes},
                            "ms": (s.end_time_unix_nano - s.start_time_unix_nano) / 1e6, "resource": resource})
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    def wait_for(self, trace_id: str, count: int, timeout: float = 15) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                got = [s for s in self.spans if s["trace_id"] == trace_id]
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{len(got)} spans of trace {trace_id}, wanted {count}: {[s['name'] for s in got]}")

    def stop(self) -> None:
        self.server.stop()


def _value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.stop()


class Upstream:
    """An OpenAI-compatible upstream that records the traceparent it was sent."""

    def __init__(self) -> None:
        self.traceparents: list[str | None] = []
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        self.server = ServerThread(app).start()

    async def chat(self, request: web.Request) -> web.Response:
        self.traceparents.append(request.headers.get("traceparent"))
        body = await request.json()
        return web.json_response({
            "id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "It is noted."},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}})


@pytest.fixture
def upstream():
    u = Upstream()
    yield u
    u.server.stop()


def gateway_yaml(endpoint: str, upstream_url: str, extra: str = "") -> str:
    return f"""
upstreams:
  mock: {{type: mock}}
  spare: {{type: openai, base_url: "{upstream_url}/v1"}}
models:
  echo: {{targets: [{{upstream: mock, model: echo}}]}}
  guarded: {{targets: [{{upstream: mock, model: "echo?fail_status=503&fail_times=2"}}, {{upstream: spare, model: spare-1}}],
            retries: 1, backoff: {{base_s: 0.01}}}}
open_mode: {{policy: guarded}}
server: {{watch_interval_s: 0}}
telemetry: {{enabled: true, endpoint: "{endpoint}", export_interval_s: 0.1, service_name: gw-test{extra}}}
"""


def _chat(gw, model: str, **headers) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", headers=headers, timeout=30,
                      json={"model": model, "messages": [{"role": "user", "content": SECRET}]})


def test_a_guarded_retried_request_is_one_tree_with_genai_attributes(tmp_path, collector, upstream):
    root = write_policies(tmp_path / "p", gateway_yaml(collector.url, upstream.server.url), guarded=POLICY)
    client_trace, client_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with running_gateway(root, ledger=tmp_path / "ledger.db") as gw:
        r = _chat(gw, "guarded", traceparent=f"00-{client_trace}-{client_span}-01")
        assert r.status_code == 200
        assert r.headers["x-gateway-trace-id"] == client_trace  # the caller's trace, continued
        spans = collector.wait_for(client_trace, 7)
    by_name: dict[str, list[dict]] = {}
    for s in spans:
        by_name.setdefault(s["name"], []).append(s)
    (server,) = by_name["chat guarded"]
    assert server["parent"] == client_span and server["kind"] == 2  # SPAN_KIND_SERVER
    a = server["attrs"]
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "guarded"
    assert a["gen_ai.response.model"] == "spare-1" and a["gen_ai.usage.input_tokens"] == 12
    assert a["gen_ai.usage.output_tokens"] == 3 and a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["http.response.status_code"] == 200 and a["gateway.policy"] == "guarded"
    assert server["resource"]["service.name"] == "gw-test"
    checks = [s for s in spans if s["name"].startswith("check ")]
    assert sorted(s["attrs"]["gateway.check.type"] for s in checks) == ["denylist", "pii"]
    assert all(s["parent"] == server["span_id"] for s in checks)
    attempts = sorted((s for s in spans if s["kind"] == 3), key=lambda s: s["attrs"]["gateway.attempt"])  # CLIENT
    assert [(s["attrs"]["gateway.upstream"], s["attrs"]["gateway.retry"], s["attrs"]["gateway.fallback"],
             s["attrs"]["gateway.outcome"]) for s in attempts] == [
        ("mock", 0, False, "http_503"), ("mock", 1, False, "http_503"), ("spare", 0, True, "ok")]
    assert [s["status"] for s in attempts] == [2, 2, 0]  # ERROR, ERROR, UNSET
    assert all(s["parent"] == server["span_id"] for s in attempts)
    assert attempts[2]["attrs"]["gen_ai.provider.name"] == "openai"
    assert by_name["ledger enqueue"][0]["parent"] == server["span_id"]
    # the upstream was called inside the fallback attempt's span
    assert upstream.traceparents == [f"00-{client_trace}-{attempts[2]['span_id']}-01"]
    # no request text in any attribute of any span
    values = [str(v) for s in spans for v in s["attrs"].values()]
    assert not any("Zorblax" in v or "ninth" in v for v in values)


def test_sampling_zero_sends_nothing_and_a_bad_traceparent_starts_a_new_trace(tmp_path, collector, upstream):
    root = write_policies(tmp_path / "p", gateway_yaml(collector.url, upstream.server.url).replace(
        "export_interval_s: 0.1", "export_interval_s: 0.1, sampling_ratio: 0"), guarded=POLICY)
    with running_gateway(root, ledger=tmp_path / "ledger.db") as gw:
        r = _chat(gw, "echo")
        assert r.status_code == 200 and "x-gateway-trace-id" not in r.headers
        # a sampled parent still wins over the ratio (parent-based sampling)
        r = _chat(gw, "echo", traceparent="00-11111111111111111111111111111111-2222222222222222-01")
        assert r.headers["x-gateway-trace-id"] == "1" * 32
        collector.wait_for("1" * 32, 2)
        r = _chat(gw, "echo", traceparent="not-a-traceparent")
        assert r.status_code == 200 and "x-gateway-trace-id" not in r.headers  # unsampled new trace
        metrics = httpx.get(gw.url + "/metrics").text
    assert "gateway_trace_bad_traceparent_total 1.0" in metrics
    assert {s["trace_id"] for s in collector.spans} == {"1" * 32}


def test_a_dead_collector_never_slows_or_fails_requests(tmp_path, upstream):
    dead = f"http://127.0.0.1:{free_port()}/v1/traces"
    yaml = gateway_yaml(dead, upstream.server.url).replace("export_interval_s: 0.1",
                                                           "export_interval_s: 0.1, export_timeout_s: 1")
    root = write_policies(tmp_path / "p", yaml, guarded=POLICY)
    with running_gateway(root, ledger=tmp_path / "ledger.db") as gw:
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            assert _chat(gw, "echo").status_code == 200
            times.append(time.perf_counter() - t0)
        assert sorted(times)[10] < 0.5
        deadline, metrics = time.monotonic() + 20, ""
        while time.monotonic() < deadline:
            metrics = httpx.get(gw.url + "/metrics").text
            if 'gateway_trace_spans_dropped_total{reason="export_failed"}' in metrics:
                break
            time.sleep(0.2)
    assert 'gateway_trace_spans_dropped_total{reason="export_failed"}' in metrics


@pytest.mark.parametrize("telemetry, message", [
    ("{enabled: true, sampling_ratio: 2}", "telemetry.sampling_ratio"),
    ("{enabled: true, endpoint: 'collector:4318'}", "http:// or https:// URL"),
    ("{enabled: true, headers_env: {x-api-key: GW_TEST_NO_SUCH_VAR}}", "env var GW_TEST_NO_SUCH_VAR is not set"),
    ("{enabled: true, sample: 1}", "telemetry.sample"),
])
def test_bad_telemetry_settings_name_the_field(tmp_path, telemetry, message):
    root = write_policies(tmp_path / "p", f"""
upstreams: {{mock: {{type: mock}}}}
models: {{echo: {{targets: [{{upstream: mock, model: echo}}]}}}}
telemetry: {telemetry}
""")
    os.environ.pop("GW_TEST_NO_SUCH_VAR", None)
    with pytest.raises(PolicyError) as e:
        load_runtime(root, HttpPool())
    assert message in "\n".join(e.value.problems)


def test_a_judge_call_is_a_child_of_the_check_that_asked(tmp_path, collector):
    verdict = '{"supported": [0], "unsupported": [], "confidence": 0.9}'
    root = write_policies(tmp_path / "p", f"""
upstreams:
  mock: {{type: mock}}
  judge: {{type: mock, behaviour: {{mode: fixed, text: '{verdict}'}}}}
models:
  rag: {{targets: [{{upstream: mock, model: context}}]}}
  judge-model: {{targets: [{{upstream: judge, model: fixed}}]}}
open_mode: {{policy: judged}}
server: {{watch_interval_s: 0}}
telemetry: {{enabled: true, endpoint: "{collector.url}", export_interval_s: 0.1}}
""", judged="response:\n  - {type: faithfulness, action: flag, judge: {model: judge-model, mode: only}}\n")
    body = {"model": "rag", "messages": [{"role": "user", "content": "When does the shop open?"}],
            "gateway": {"context": [{"id": "d1", "text": "The shop opens at nine every weekday."}]}}
    with running_gateway(root, ledger=tmp_path / "ledger.db") as gw:
        r = httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=30)
        assert r.status_code == 200
        spans = collector.wait_for(r.headers["x-gateway-trace-id"], 5)
    (check,) = [s for s in spans if s["name"] == "check faithfulness"]
    judge = [s for s in spans if s["kind"] == 3 and s["attrs"]["gateway.upstream"] == "judge"]
    assert len(judge) == 1 and judge[0]["parent"] == check["span_id"]
    assert check["attrs"]["gateway.check.phase"] == "response"


def test_a_policy_can_opt_in_to_redacted_content_on_its_traces(tmp_path, collector, upstream):
    yaml = gateway_yaml(collector.url, upstream.server.url).replace("open_mode: {policy: guarded}",
                                                                    "open_mode: {policy: traced}")
    root = write_policies(tmp_path / "p", yaml, guarded=POLICY, traced="trace_content: true\nrequest: []\n")
    with running_gateway(root, ledger=tmp_path / "ledger.db") as gw:
        for stream in (False, True):
            r = httpx.post(gw.url + "/v1/chat/completions", timeout=30, json={
                "model": "echo", "stream": stream,
                "messages": [{"role": "user", "content": "Mail jane.doe@example.com about order 7, call 415-555-0132"}]})
            assert r.status_code == 200
            (server,) = [s for s in collector.wait_for(r.headers["x-gateway-trace-id"], 2) if s["kind"] == 2]
            import json

            inp = json.loads(server["attrs"]["gen_ai.input.messages"])
            out = json.loads(server["attrs"]["gen_ai.output.messages"])
            assert inp[0]["role"] == "user" and "<EMAIL_ADDRESS>" in inp[0]["content"]
            assert "<EMAIL_ADDRESS>" in out[0]["content"]  # the echo model repeats it: redacted there too
            flat = server["attrs"]["gen_ai.input.messages"] + server["attrs"]["gen_ai.output.messages"]
            assert "jane.doe" not in flat and "555-0132" not in flat


def test_json_log_lines_of_a_traced_request_carry_its_trace_and_span_ids():
    import json
    import logging

    from gateway.telemetry.logs import JsonFormatter
    from gateway.telemetry.tracing import CURRENT_PARENT, CURRENT_TRACE

    trace = _trace()
    check = trace.child("check pii")
    record = logging.LogRecord("gateway.pipeline", logging.ERROR, __file__, 1, "check %r raised %s", ("pii", "X"), None)
    fmt = JsonFormatter()
    assert "trace_id" not in json.loads(fmt.format(record))  # outside a request: no ids
    t1, t2 = CURRENT_TRACE.set(trace), CURRENT_PARENT.set(check)
    try:
        line = json.loads(fmt.format(record))
    finally:
        CURRENT_PARENT.reset(t2)
        CURRENT_TRACE.reset(t1)
    assert line["trace_id"] == f"{0xABC:032x}" and line["span_id"] == f"{check.span_id:016x}"
    assert line["msg"] == "check 'pii' raised X"


def test_stream_check_spans_say_hold_or_monitor_and_whether_the_stream_was_cut(tmp_path, collector, upstream):
    yaml = gateway_yaml(collector.url, upstream.server.url).replace("open_mode: {policy: guarded}",
                                                                    "open_mode: {policy: streamed}")
    root = write_policies(tmp_path / "p", yaml, guarded=POLICY, streamed="""
response:
  - {name: held, type: denylist, words: [forbidden], action: block, stream: hold}
  - {name: watched, type: denylist, words: [Zorblax], action: block, stream: monitor}
""")
    outcomes = {}
    with running_gateway(root, ledger=tmp_path / "ledger.db") as gw:
        for label, text in [("clean", "All is well. Nothing to see."), ("held", "This is forbidden. Stop."),
                            ("watched", "Hello there. The Zorblax comes. Then more.")]:
            r = httpx.post(gw.url + "/v1/chat/completions", timeout=30, json={
                "model": "echo", "stream": True, "messages": [{"role": "user", "content": text}]})
            assert r.status_code == 200
            spans = collector.wait_for(r.headers["x-gateway-trace-id"], 2)
            time.sleep(0.3)  # the stream's last check spans may come in a later export batch
            spans = [s for s in collector.spans if s["trace_id"] == r.headers["x-gateway-trace-id"]]
            outcomes[label] = {(s["attrs"]["gateway.stream.mode"], s["attrs"]["gateway.stream.outcome"])
                               for s in spans if s["name"].startswith("check ")}
            assert ("content_filter" in r.text) == (label != "clean")
    assert outcomes["clean"] == {("hold", "released"), ("monitor", "passed")}
    assert ("hold", "cut") in outcomes["held"]
    assert ("monitor", "cut") in outcomes["watched"] and ("hold", "released") in outcomes["watched"]


def test_lines_logged_in_the_model_pool_carry_the_request_ids_and_shared_passes_none():
    import asyncio
    import logging

    from gateway.models.batcher import MicroBatcher
    from gateway.models.workers import run_model
    from gateway.telemetry.tracing import CURRENT_TRACE, current_ids

    seen = []

    def work(*_):
        seen.append(current_ids())
        logging.getLogger("gateway.test").debug("in the pool")
        return [0] * (len(_[0]) if _ else 0)

    async def main():
        token = CURRENT_TRACE.set(_trace())
        try:
            await run_model(work)  # one request's work: its ids
            await MicroBatcher(work).submit([1, 2])  # a shared pass: nobody's
        finally:
            CURRENT_TRACE.reset(token)

    asyncio.run(main())
    assert seen[0] is not None and seen[0][0] == f"{0xABC:032x}"
    assert seen[1] is None


def _trace():
    """A trace whose spans go nowhere, for the log-id tests."""
    from gateway.telemetry.tracing import RequestTrace

    class Queue:
        put = staticmethod(lambda span: None)

    class FakeTracing:
        queue = Queue

    return RequestTrace(FakeTracing, 0xABC, 0, "POST", "/v1/chat/completions")
