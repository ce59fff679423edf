"""The response cache through a real gateway and a counting upstream: hits and misses, tenants
kept apart, what is never cached, streams both ways, guardrails on hits, coalescing, controls,
persistence, clearing, and the ledger rows and usage report."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time

import httpx
import orjson
import pytest
from aiohttp import web

from tests.helpers import ServerThread, running_gateway, write_policies

ANSWER = "Paris is the capital of France. It lies on the Seine."


class Upstream:
    """An OpenAI-compatible upstream that counts calls; `delay_s` slows every answer; the answer
    echoes the last user message after ANSWER so that different questions get different answers."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls = 0
        self.delay_s = delay_s
        self.lock = threading.Lock()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        self.server = ServerThread(app).start()

    async def chat(self, request: web.Request) -> web.StreamResponse:
        with self.lock:
            self.calls += 1
        body = await request.json()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        text = ANSWER + " " + body["messages"][-1]["content"]
        usage = {"prompt_tokens": 20, "completion_tokens": 15, "total_tokens": 35}
        if not body.get("stream"):
            return web.json_response({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": usage})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        head = {"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
        words = text.split(" ")
        for i, w in enumerate(words):
            delta = {"content": w + (" " if i < len(words) - 1 else "")}
            await resp.write(b"data: " + orjson.dumps({**head, "choices": [
                {"index": 0, "delta": delta, "finish_reason": None}]}) + b"\n\n")
        await resp.write(b"data: " + orjson.dumps({**head, "choices": [
            {"index": 0, "delta": {}, "finish_reason": "stop"}]}) + b"\n\n")
        if (body.get("stream_options") or {}).get("include_usage"):
            await resp.write(b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp


@pytest.fixture
def upstream():
    u = Upstream()
    yield u
    u.server.stop()


PRICING = """
models:
  up-1: {input: 100, output: 200, source: test, as_of: 2026-12-01}
"""


def policies(tmp_path, upstream: Upstream, cache: str = "{enabled: true}", keys: str = "", route_cache: str = "",
             **policy_files):
    keys = keys or """
keys:
  - {name: alice, sha256: "%s", policy: default}
  - {name: bob, sha256: "%s", policy: default}
  - {name: carol, sha256: "%s", policy: default, group: team}
  - {name: dave, sha256: "%s", policy: default, group: team}
  - {name: admin, sha256: "%s", policy: default, admin: true}
""" % tuple(_sha(k) for k in ("sk-alice", "sk-bob", "sk-carol", "sk-dave", "sk-admin"))
    root = write_policies(tmp_path / "p", f"""
upstreams:
  up: {{type: openai, base_url: "{upstream.server.url}/v1"}}
models:
  m: {{targets: [{{upstream: up, model: up-1}}]{route_cache}}}
  other: {{targets: [{{upstream: up, model: up-1}}]}}
groups:
  team: {{limits: {{requests_per_minute: 1000}}}}
{keys}
server: {{watch_interval_s: 0}}
cache: {cache}
""", **policy_files)
    (root / "pricing.yaml").write_text(PRICING)
    return root


def _sha(key: str) -> str:
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()


def ask(gw, question="What is the capital of France?", key="sk-alice", model="m", headers=None, **extra):
    body = {"model": model, "messages": [{"role": "user", "content": question}], "temperature": 0, **extra}
    return httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {key}", **(headers or {})})


def stream(gw, question="What is the capital of France?", key="sk-alice", **extra):
    body = {"model": "m", "messages": [{"role": "user", "content": question}], "temperature": 0, "stream": True,
            **extra}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {key}"}) as r:
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
        return r, events


def _text(events: list[str]) -> str:
    out = []
    for e in events:
        if e == "[DONE]":
            continue
        for c in json.loads(e).get("choices") or ():
            out.append((c.get("delta") or {}).get("content") or "")
    return "".join(out)


def ledger_rows(path) -> list[tuple]:
    deadline = time.monotonic() + 10
    while True:
        try:
            conn = sqlite3.connect(path)
            rows = conn.execute("SELECT key, cache, saved_usd, input_tokens, output_tokens, cost_usd, upstream, "
                                "served_model FROM requests ORDER BY ts").fetchall()
            conn.close()
        except sqlite3.OperationalError:
            rows = []
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_a_repeated_deterministic_request_is_served_from_the_cache_and_metered(tmp_path, upstream):
    ledger = tmp_path / "ledger.db"
    with running_gateway(policies(tmp_path, upstream), ledger=ledger) as gw:
        first, second = ask(gw), ask(gw)
    assert first.status_code == second.status_code == 200
    assert first.headers["x-gateway-cache"] == "miss" and second.headers["x-gateway-cache"] == "hit"
    assert "age" in second.headers and upstream.calls == 1
    a, b = first.json(), second.json()
    assert a["choices"] == b["choices"] and a["usage"] == b["usage"]  # the answer and its token counts
    assert b["gateway"]["cache"]["status"] == "hit"
    saved = 20 * 100 / 1e6 + 15 * 200 / 1e6
    assert b["gateway"]["cache"]["saved_usd"] == pytest.approx(saved)
    assert b["gateway"]["usage"]["input_tokens"] == 0 and b["gateway"]["cost_usd"] == 0
    assert b["gateway"]["request_id"] != a["gateway"]["request_id"]
    rows = ledger_rows(ledger)
    assert [(r[0], r[1]) for r in rows] == [("alice", "miss"), ("alice", "hit")]
    hit = rows[1]
    assert hit[2] == pytest.approx(saved) and hit[3:6] == (0, 0, 0.0) and hit[6:] == ("up", "up-1")
    assert rows[0][2] is None and rows[0][5] == pytest.approx(saved)

    from gateway.metering.ledger import SqliteReader
    from gateway.metering.report import render, usage_rows

    report = usage_rows(SqliteReader(ledger), 0, time.time() + 60, "key")
    (alice,) = report
    assert alice["cache_hits"] == 1 and alice["hit_rate"] == 0.5 and alice["saved_usd"] == pytest.approx(saved)
    assert "saved USD" in render(report, "key", "table")


def test_tenants_never_share_entries_unless_the_scope_is_their_group(tmp_path, upstream):
    with running_gateway(policies(tmp_path, upstream)) as gw:
        assert ask(gw, key="sk-alice").headers["x-gateway-cache"] == "miss"
        assert ask(gw, key="sk-bob").headers["x-gateway-cache"] == "miss"  # another key: never alice's answer
        assert ask(gw, key="sk-carol").headers["x-gateway-cache"] == "miss"
        assert ask(gw, key="sk-dave").headers["x-gateway-cache"] == "miss"  # same group, but scope is per key
    assert upstream.calls == 4
    upstream.calls = 0
    with running_gateway(policies(tmp_path / "g", upstream, cache="{enabled: true, scope: group}")) as gw:
        assert ask(gw, key="sk-carol").headers["x-gateway-cache"] == "miss"
        assert ask(gw, key="sk-dave").headers["x-gateway-cache"] == "hit"  # the group shares
        assert ask(gw, key="sk-alice").headers["x-gateway-cache"] == "miss"  # no group: her own
    assert upstream.calls == 2


def test_what_is_not_cached_says_why(tmp_path, upstream):
    root = policies(tmp_path, upstream, route_cache=", cache: {enabled: false}")
    with running_gateway(root) as gw:
        r = ask(gw, temperature=0.7, model="other")
        assert r.headers["x-gateway-cache"] == "bypass" and r.json()["gateway"]["cache"]["reason"] == "nondeterministic"
        assert ask(gw, model="m").json()["gateway"]["cache"]["reason"] == "route"
        # a seed makes a sampled request repeatable
        assert ask(gw, model="other", temperature=0.7, seed=7).headers["x-gateway-cache"] == "miss"
        assert ask(gw, model="other", temperature=0.7, seed=7).headers["x-gateway-cache"] == "hit"
        assert ask(gw, model="other", temperature=0.7, seed=8).headers["x-gateway-cache"] == "miss"
        # another sampling parameter, another answer
        assert ask(gw, model="other", max_tokens=5).headers["x-gateway-cache"] == "miss"
        assert ask(gw, model="other", max_tokens=5).headers["x-gateway-cache"] == "hit"
        assert ask(gw, model="other", max_tokens=6).headers["x-gateway-cache"] == "miss"


def test_a_policy_can_widen_to_sampled_requests_or_turn_the_cache_off(tmp_path, upstream):
    root = policies(tmp_path, upstream, keys="""
keys:
  - {name: wide, sha256: "%s", policy: wide}
  - {name: nocache, sha256: "%s", policy: nocache}
""" % (_sha("sk-wide"), _sha("sk-nocache")), wide="cache: {nondeterministic: true}\nrequest: []\n",
                    nocache="cache: {enabled: false}\nrequest: []\n")
    with running_gateway(root) as gw:
        assert ask(gw, key="sk-wide", temperature=1).headers["x-gateway-cache"] == "miss"
        assert ask(gw, key="sk-wide", temperature=1).headers["x-gateway-cache"] == "hit"
        r = ask(gw, key="sk-nocache")
        assert r.headers["x-gateway-cache"] == "bypass" and r.json()["gateway"]["cache"]["reason"] == "policy"


def test_cache_control_and_the_gateway_cache_option(tmp_path, upstream):
    with running_gateway(policies(tmp_path, upstream)) as gw:
        assert ask(gw, headers={"Cache-Control": "no-store"}).headers["x-gateway-cache"] == "bypass"
        assert ask(gw).headers["x-gateway-cache"] == "miss"  # no-store stored nothing
        assert ask(gw).headers["x-gateway-cache"] == "hit"
        assert ask(gw, headers={"Cache-Control": "no-cache"}).headers["x-gateway-cache"] == "miss"  # refreshed
        calls = upstream.calls
        time.sleep(1.1)
        assert ask(gw, headers={"Cache-Control": "max-age=1"}).headers["x-gateway-cache"] == "miss"  # too old
        assert ask(gw, gateway={"cache": {"mode": "bypass"}}).headers["x-gateway-cache"] == "bypass"
        assert ask(gw, gateway={"cache": {"max_age_s": 60}}).headers["x-gateway-cache"] == "hit"
        assert upstream.calls == calls + 2
        bad = ask(gw, gateway={"cache": {"mode": "sometimes"}})
        assert bad.status_code == 400 and "cache" in bad.json()["error"]["message"]


def test_entries_expire_after_their_ttl(tmp_path, upstream):
    with running_gateway(policies(tmp_path, upstream, route_cache=", cache: {ttl_s: 0.5}")) as gw:
        assert ask(gw).headers["x-gateway-cache"] == "miss"
        assert ask(gw).headers["x-gateway-cache"] == "hit"
        time.sleep(0.7)
        assert ask(gw).headers["x-gateway-cache"] == "miss"


def test_streams_are_stored_when_complete_and_served_as_streams(tmp_path, upstream):
    with running_gateway(policies(tmp_path, upstream)) as gw:
        r, events = stream(gw)
        assert r.headers["x-gateway-cache"] == "miss" and events[-1] == "[DONE]"
        fresh = _text(events)
        assert fresh.startswith(ANSWER)
        # the streamed answer serves a non-streamed request...
        hit = ask(gw)
        assert hit.headers["x-gateway-cache"] == "hit" and hit.json()["choices"][0]["message"]["content"] == fresh
        # ...and a streamed one, as a proper stream of several chunks, usage when asked
        r, events = stream(gw, stream_options={"include_usage": True})
        assert r.headers["x-gateway-cache"] == "hit" and r.headers["content-type"].startswith("text/event-stream")
        assert _text(events) == fresh and len(events) > 4 and events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert any(c.get("usage") for c in chunks)
        assert [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")][-1] == "stop"
        assert chunks[-1]["gateway"]["cache"]["status"] == "hit"
    assert upstream.calls == 1


def test_an_answer_a_response_check_blocked_or_redacted_is_never_stored(tmp_path, upstream):
    root = policies(tmp_path, upstream, default="""
request: []
response:
  - {type: denylist, words: [Seine], action: block}
""")
    with running_gateway(root) as gw:
        first = ask(gw)
        assert first.json()["choices"][0]["finish_reason"] == "content_filter"
        assert ask(gw).headers["x-gateway-cache"] == "miss"
        r, events = stream(gw, question="Streamed, then?")
        assert "content_filter" in "".join(events)
        assert stream(gw, question="Streamed, then?")[0].headers["x-gateway-cache"] == "miss"
    assert upstream.calls == 4


def test_response_checks_and_pseudonyms_apply_to_hits_for_the_request_at_hand(tmp_path, upstream):
    """The cached answer is the upstream's raw one: each hit is restored with its own request's
    pseudonyms, and response checks run on it again."""
    root = policies(tmp_path, upstream, default="""
request:
  - {type: pii, mode: regex, entities: {EMAIL_ADDRESS: pseudonymize}}
response: []
""")
    with running_gateway(root) as gw:
        a = ask(gw, question="Write to ann@example.com please")
        b = ask(gw, question="Write to bob@example.org please")
    assert a.headers["x-gateway-cache"] == "miss" and b.headers["x-gateway-cache"] == "hit"
    assert "ann@example.com" in a.json()["choices"][0]["message"]["content"]
    assert "bob@example.org" in b.json()["choices"][0]["message"]["content"]  # not ann's
    assert upstream.calls == 1


def test_identical_requests_in_flight_share_one_upstream_call(tmp_path):
    slow = Upstream(delay_s=0.5)
    try:
        with running_gateway(policies(tmp_path, slow)) as gw:
            async def burst():
                async with httpx.AsyncClient(timeout=30) as client:
                    body = {"model": "m", "temperature": 0, "messages": [{"role": "user", "content": "Same?"}]}
                    return await asyncio.gather(*(client.post(gw.url + "/v1/chat/completions", json=body,
                                                              headers={"Authorization": "Bearer sk-alice"})
                                                  for _ in range(5)))
            results = asyncio.run(burst())
    finally:
        slow.server.stop()
    assert slow.calls == 1
    statuses = sorted(r.headers["x-gateway-cache"] for r in results)
    assert statuses == ["hit"] * 4 + ["miss"]
    assert sum(bool(r.json()["gateway"]["cache"].get("coalesced")) for r in results) == 4


PROMPT = """\
model: m
params: {temperature: 0}
messages:
  - role: system
    content: "%s"
"""


def _publish(prompts, version: int, text: str) -> None:
    import yaml

    from gateway.prompts.schema import content_hash
    from gateway.prompts.store import PromptStore

    folder = prompts / "greet"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"v{version}.yaml").write_text(PROMPT % text)
    store = PromptStore(prompts)
    lock = store.read_lock()
    lock.setdefault("greet", {})[version] = content_hash(yaml.safe_load((folder / f"v{version}.yaml").read_text()))
    store.write_lock(lock)
    store.write_labels("greet", {**store.read_labels("greet"), "production": version})


def test_a_new_prompt_version_is_a_new_request(tmp_path, upstream):
    prompts = tmp_path / "prompts"
    _publish(prompts, 1, "Be brief.")
    body = {"model": "prompt", "messages": [{"role": "user", "content": "Hi"}],
            "gateway": {"prompt": {"name": "greet", "label": "production"}}}
    with running_gateway(policies(tmp_path, upstream), prompts=prompts) as gw:
        def go():
            r = httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=30,
                           headers={"Authorization": "Bearer sk-alice"})
            assert r.status_code == 200, r.text
            return r.headers["x-gateway-cache"]
        assert go() == "miss" and go() == "hit"
        _publish(prompts, 2, "Be very brief.")
        r = httpx.post(gw.url + "/admin/reload", headers={"Authorization": "Bearer sk-admin"}, timeout=30)
        assert r.status_code == 200, r.text
        assert go() == "miss"


def test_oversized_answers_are_not_stored(tmp_path, upstream):
    with running_gateway(policies(tmp_path, upstream, cache="{enabled: true, max_entry_kb: 0.1}")) as gw:
        assert ask(gw).headers["x-gateway-cache"] == "miss"
        assert ask(gw).headers["x-gateway-cache"] == "miss"
        metrics = httpx.get(gw.url + "/metrics", headers={"Authorization": "Bearer sk-admin"}).text
    assert 'gateway_cache_stored_total{result="too_large"} 2.0' in metrics


def test_cache_clear_by_key_and_model_through_the_admin_api_and_the_cli(tmp_path, upstream, monkeypatch, capsys):
    from gateway.cache.cli import add_parser

    import argparse

    with running_gateway(policies(tmp_path, upstream)) as gw:
        for key in ("sk-alice", "sk-bob"):
            for model in ("m", "other"):
                assert ask(gw, key=key, model=model).headers["x-gateway-cache"] == "miss"
        parser = argparse.ArgumentParser()
        add_parser(parser.add_subparsers())
        monkeypatch.setenv("GATEWAY_ADMIN_KEY", "sk-alice")  # not an admin key
        args = parser.parse_args(["cache", "clear", "--url", gw.url, "--key", "alice"])
        assert args.func(args) == 1 and "403" in capsys.readouterr().err
        monkeypatch.setenv("GATEWAY_ADMIN_KEY", "sk-admin")
        args = parser.parse_args(["cache", "clear", "--url", gw.url, "--key", "alice", "--model", "m"])
        assert args.func(args) == 0 and "removed 1 cache entries" in capsys.readouterr().out
        assert ask(gw, key="sk-alice", model="m").headers["x-gateway-cache"] == "miss"
        assert ask(gw, key="sk-alice", model="other").headers["x-gateway-cache"] == "hit"
        assert ask(gw, key="sk-bob", model="m").headers["x-gateway-cache"] == "hit"
        args = parser.parse_args(["cache", "clear", "--url", gw.url])
        assert args.func(args) == 0 and "removed 4 cache entries" in capsys.readouterr().out
        assert ask(gw, key="sk-bob", model="m").headers["x-gateway-cache"] == "miss"
        r = httpx.post(gw.url + "/admin/cache/clear", json={"keys": "x"}, headers={"Authorization": "Bearer sk-admin"})
        assert r.status_code == 400 and "keys" in r.json()["error"]["message"]


def test_entries_persist_across_a_restart_and_a_corrupt_one_is_removed(tmp_path, upstream):
    root = policies(tmp_path, upstream, cache="{enabled: true, persist: true}")
    ledger = tmp_path / "state" / "ledger.db"
    with running_gateway(root, ledger=ledger) as gw:
        assert ask(gw).headers["x-gateway-cache"] == "miss"
        assert ask(gw, question="Second?").headers["x-gateway-cache"] == "miss"
    db = sqlite3.connect(ledger.with_name("cache.db"))
    assert db.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 2
    db.execute("UPDATE entries SET body = X'00FF' WHERE rowid = (SELECT MIN(rowid) FROM entries)")  # not JSON
    db.commit()
    db.close()
    with running_gateway(root, ledger=ledger) as gw:
        results = {ask(gw).headers["x-gateway-cache"], ask(gw, question="Second?").headers["x-gateway-cache"]}
        metrics = httpx.get(gw.url + "/metrics", headers={"Authorization": "Bearer sk-admin"}).text
    assert results == {"hit", "miss"}  # the corrupt one was not served: asked again upstream
    assert 'gateway_cache_errors_total{op="corrupt"} 1.0' in metrics
    assert upstream.calls == 3


def test_replicas_share_a_redis_cache_and_a_dead_one_leaves_requests_uncached(tmp_path, upstream, monkeypatch,
                                                                             prefix):
    import redis

    from tests.helpers import REDIS_URL

    shared = f"{{enabled: true, store: redis}}\nstate: {{key_prefix: {prefix}}}"
    with running_gateway(policies(tmp_path / "a", upstream, cache=shared)) as one, \
            running_gateway(policies(tmp_path / "b", upstream, cache=shared)) as two:
        assert ask(one).headers["x-gateway-cache"] == "miss"
        assert ask(two).headers["x-gateway-cache"] == "hit"  # the other replica's answer
        assert ask(two, key="sk-bob").headers["x-gateway-cache"] == "miss"  # still per tenant
    r = redis.Redis.from_url(REDIS_URL)
    assert len([n for n in r.scan_iter(f"{prefix}:cache:*")]) == 2
    r.close()
    assert upstream.calls == 2

    monkeypatch.setenv("GATEWAY_REDIS_URL", "redis://127.0.0.1:9/0")  # nothing listens there
    with running_gateway(policies(tmp_path / "dead", upstream, cache="{enabled: true, store: redis}")) as gw:
        results = [ask(gw) for _ in range(2)]
        metrics = httpx.get(gw.url + "/metrics", headers={"Authorization": "Bearer sk-admin"}).text
    assert [r.status_code for r in results] == [200, 200] and upstream.calls == 4
    # the first lookup fails; then the store is left alone for a while (no connect timeout per request)
    assert 'gateway_cache_errors_total{op="get"} 1.0' in metrics
    assert 'gateway_cache_errors_total{op="skipped"} 3.0' in metrics


def test_different_supplied_documents_are_different_requests(tmp_path, upstream):
    with running_gateway(policies(tmp_path, upstream)) as gw:
        def go(text):
            return ask(gw, gateway={"context": [{"id": "d1", "text": text}]}).headers["x-gateway-cache"]
        assert go("The shop opens at nine.") == "miss"
        assert go("The shop opens at nine.") == "hit"
        assert go("The shop opens at ten.") == "miss"
        assert ask(gw).headers["x-gateway-cache"] == "miss"  # no documents at all


def test_a_check_added_after_an_answer_was_stored_applies_to_its_hits(tmp_path, upstream):
    root = policies(tmp_path, upstream)
    with running_gateway(root) as gw:
        assert stream(gw)[0].headers["x-gateway-cache"] == "miss"
        (root / "default.yaml").write_text("request: []\nresponse:\n  - {type: denylist, words: [Seine], "
                                           "action: block, stream: hold}\n")
        r = httpx.post(gw.url + "/admin/reload", headers={"Authorization": "Bearer sk-admin"}, timeout=30)
        assert r.status_code == 200, r.text
        r, events = stream(gw)
        assert r.headers["x-gateway-cache"] == "hit"
        text = _text(events)
        assert "Seine" not in text and text.startswith("Paris is the capital of France.")  # held, then cut
        assert '"finish_reason":"content_filter"' in "".join(events).replace(" ", "")
        blocked = ask(gw)
        assert blocked.headers["x-gateway-cache"] == "hit"
        assert blocked.json()["choices"][0]["finish_reason"] == "content_filter"
    assert upstream.calls == 1


def test_semantic_hits_on_a_reworded_question_but_not_on_a_changed_number_name_or_negation(tmp_path, upstream):
    root = policies(tmp_path, upstream, route_cache=", cache: {semantic: true, similarity: 0.9}")
    with running_gateway(root) as gw:
        assert ask(gw, question="How do I activate my new credit card?").headers["x-gateway-cache"] == "miss"
        hit = ask(gw, question="Hi, how can I activate my new credit card?")
        assert hit.headers["x-gateway-cache"] == "hit", hit.json()["gateway"]["cache"]
        sim = float(hit.headers["x-gateway-cache-similarity"])
        info = hit.json()["gateway"]["cache"]
        assert 0.9 <= sim < 1 and info["semantic"] is True and info["similarity"] == pytest.approx(sim, abs=1e-4)
        # the same words around a different number, name or a negation: never the cached answer
        assert ask(gw, question="Refund order 1234 to my card").headers["x-gateway-cache"] == "miss"
        assert ask(gw, question="Refund order 1243 to my card").headers["x-gateway-cache"] == "miss"
        assert ask(gw, question="Transfer money to Maria today").headers["x-gateway-cache"] == "miss"
        assert ask(gw, question="Transfer money to Oliver today").headers["x-gateway-cache"] == "miss"
        assert ask(gw, question="Can I use my card abroad?").headers["x-gateway-cache"] == "miss"
        assert ask(gw, question="Can I not use my card abroad?").headers["x-gateway-cache"] == "miss"
        # another tenant, another system prompt: another bucket, never searched
        assert ask(gw, key="sk-bob", question="Hi, how can I activate my new credit card?").headers[
            "x-gateway-cache"] == "miss"
        system = [{"role": "system", "content": "Answer in French."}]
        body = {"model": "m", "temperature": 0,
                "messages": system + [{"role": "user", "content": "How can I activate my new credit card?"}]}
        r = httpx.post(gw.url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer sk-alice"})
        assert r.headers["x-gateway-cache"] == "miss"
        # clearing drops the vectors too
        assert httpx.post(gw.url + "/admin/cache/clear", json={"key": "alice"},
                          headers={"Authorization": "Bearer sk-admin"}).json()["removed"] >= 1
        assert ask(gw, question="Hello, how can I activate my new credit card?").headers["x-gateway-cache"] == "miss"
    assert upstream.calls == 10  # every request but the one semantic hit


def test_the_guard_signature_sees_numbers_dates_names_and_negation():
    from gateway.cache.semantic import signature

    assert signature("How do I reset my PIN?") == signature("Hi! How do I reset my PIN, please?")
    for a, b in [("Pay 50 dollars", "Pay 60 dollars"), ("Pay twenty dollars", "Pay thirty dollars"),
                 ("Book it for Monday", "Book it for Friday"), ("Send it to Maria now", "Send it to John now"),
                 ("I can pay", "I can't pay"), ("Is it open?", "Is it not open?"),
                 ('Find "blue shoes" for me', 'Find "red shoes" for me')]:
        assert signature(a) != signature(b), (a, b)
    assert signature("It isn't not open") == signature("It is open")  # a double negation cancels


def test_a_failing_embedding_leaves_the_exact_cache_working(tmp_path, upstream, monkeypatch):
    from gateway.models import embedder

    calls = []

    async def broken(texts, cache=None):
        calls.append(texts)
        raise RuntimeError("model gone")

    monkeypatch.setattr(embedder, "encode_async", broken)
    root = policies(tmp_path, upstream, route_cache=", cache: {semantic: true}")
    with running_gateway(root) as gw:
        assert ask(gw).headers["x-gateway-cache"] == "miss"
        assert ask(gw).headers["x-gateway-cache"] == "hit"  # stored and found exactly, store not skipped
        assert ask(gw, question="Hi, what is the capital of France?").headers["x-gateway-cache"] == "miss"
        metrics = httpx.get(gw.url + "/metrics", headers={"Authorization": "Bearer sk-admin"}).text
    assert 'gateway_cache_errors_total{op="embed"}' in metrics and 'op="skipped"' not in metrics
    assert len(calls) == 2  # one try per miss: storing the answer does not try the failed model again
