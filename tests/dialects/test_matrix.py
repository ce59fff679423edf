"""Every ingress dialect against every upstream type, streamed and not, with the official SDKs:
chat completions (`openai`), Responses (`openai`), Messages (`anthropic`) x the in-process mock, and
the mock server speaking OpenAI (chat completions and the Responses API), Azure OpenAI, Anthropic, Gemini and Bedrock Converse. Each cell sends a text turn and a
tool round trip, and checks the ledger's usage is the upstream's own figures."""

from __future__ import annotations

import json

import anthropic
import pytest

from gateway.upstreams.mock_bedrock import MOCK_ACCESS_KEY_ID, MOCK_SECRET_ACCESS_KEY
from tests.helpers import ledger_row, openai_client, running_gateway, running_mock_server, write_policies

EGRESS = ["mock", "openai", "openai-responses", "openai-auto", "azure", "anthropic", "gemini", "bedrock"]
INGRESS = ["chat", "responses", "messages"]
PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    for env in ("M_OPENAI", "M_AZURE", "M_ANTHROPIC", "M_GEMINI"):
        mp.setenv(env, "k-" + env.lower())
    mp.setenv("M_AWS_ID", MOCK_ACCESS_KEY_ID)  # the mock verifies the SigV4 signature made with these
    mp.setenv("M_AWS_SECRET", MOCK_SECRET_ACCESS_KEY)
    with running_mock_server() as mock:
        models = "\n".join(f"  {kind}-{up}: {{targets: [{{upstream: {up}, model: {kind}}}]}}"
                           for up in EGRESS for kind in ("echo", "tool"))
        root = write_policies(tmp_path_factory.mktemp("m"), f"""
upstreams:
  mock: {{type: mock}}
  openai: {{type: openai, base_url: "{mock.url}/v1", api_key_env: M_OPENAI}}
  openai-responses: {{type: openai, base_url: "{mock.url}/v1", api_key_env: M_OPENAI, api: responses}}
  openai-auto: {{type: openai, base_url: "{mock.url}/v1", api_key_env: M_OPENAI, api: auto}}
  azure: {{type: azure-openai, endpoint: "{mock.url}", api_key_env: M_AZURE}}
  anthropic: {{type: anthropic, base_url: "{mock.url}", api_key_env: M_ANTHROPIC}}
  gemini: {{type: gemini, base_url: "{mock.url}", api_key_env: M_GEMINI}}
  bedrock: {{type: bedrock, region: us-east-1, endpoint_url: "{mock.url}", access_key_id_env: M_AWS_ID,
            secret_access_key_env: M_AWS_SECRET}}
models:
{models}
server: {{watch_interval_s: 0}}
""")
        with running_gateway(root, ledger=root / "ledger.db") as server:
            server.ledger = root / "ledger.db"
            yield server
    mp.undo()


def ask(gw, ingress: str, model: str, text: str, stream: bool) -> tuple[str, str]:
    """(answer text, gateway request id) for one user turn in the ingress dialect."""
    if ingress == "chat":
        c = openai_client(gw)
        if not stream:
            r = c.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
            return r.choices[0].message.content, r.model_extra["gateway"]["request_id"]
        chunks = list(c.chat.completions.create(model=model, stream=True, messages=[{"role": "user", "content": text}]))
        return ("".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices),
                chunks[-1].model_extra["gateway"]["request_id"])
    if ingress == "responses":
        c = openai_client(gw)
        if not stream:
            r = c.responses.create(model=model, input=text)
        else:
            with c.responses.stream(model=model, input=text) as s:
                r = s.get_final_response()
        return r.output_text, r.model_extra["gateway"]["request_id"]
    c = anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)
    if not stream:
        m = c.messages.create(model=model, max_tokens=100, messages=[{"role": "user", "content": text}])
        return m.content[0].text, m.model_extra["gateway"]["request_id"]
    with c.messages.stream(model=model, max_tokens=100, messages=[{"role": "user", "content": text}]) as s:
        m = s.get_final_message()
    return m.content[0].text, s.response.headers["x-gateway-request-id"]


def tool_round_trip(gw, ingress: str, model: str, stream: bool) -> str:
    """Ask with a tool, get the call, send its result back; the final answer's text."""
    if ingress == "chat":
        c = openai_client(gw)
        tools = [{"type": "function", "function": {"name": "get_weather", "parameters": PARAMS}}]
        msgs = [{"role": "user", "content": "Lima"}]
        if stream:
            chunks = list(c.chat.completions.create(model=model, tools=tools, messages=msgs, stream=True))
            deltas = [d for ch in chunks if ch.choices for d in ch.choices[0].delta.tool_calls or ()]
            call_id, args = deltas[0].id, "".join(d.function.arguments or "" for d in deltas)
        else:
            call = c.chat.completions.create(model=model, tools=tools, messages=msgs).choices[0].message.tool_calls[0]
            call_id, args = call.id, call.function.arguments
        assert json.loads(args) == {"city": "Lima"}
        msgs += [{"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": args}}]},
            {"role": "tool", "tool_call_id": call_id, "content": "warm"}]
        return c.chat.completions.create(model=model, tools=tools, messages=msgs).choices[0].message.content
    if ingress == "responses":
        c = openai_client(gw)
        tools = [{"type": "function", "name": "get_weather", "parameters": PARAMS}]
        if stream:
            with c.responses.stream(model=model, input="Lima", tools=tools) as s:
                first = s.get_final_response()
        else:
            first = c.responses.create(model=model, input="Lima", tools=tools)
        (call,) = first.output
        assert json.loads(call.arguments) == {"city": "Lima"}
        return c.responses.create(model=model, previous_response_id=first.id, tools=tools, input=[
            {"type": "function_call_output", "call_id": call.call_id, "output": "warm"}]).output_text
    c = anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)
    tools = [{"name": "get_weather", "input_schema": PARAMS}]
    msgs = [{"role": "user", "content": "Lima"}]
    if stream:
        with c.messages.stream(model=model, max_tokens=100, tools=tools, messages=msgs) as s:
            first = s.get_final_message()
    else:
        first = c.messages.create(model=model, max_tokens=100, tools=tools, messages=msgs)
    (use,) = first.content
    assert use.type == "tool_use" and use.input == {"city": "Lima"}
    msgs += [{"role": "assistant", "content": [use.model_dump(include={"type", "id", "name", "input"})]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "warm"}]}]
    return c.messages.create(model=model, max_tokens=100, tools=tools, messages=msgs).content[0].text


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("egress", EGRESS)
@pytest.mark.parametrize("ingress", INGRESS)
def test_text_turn(gw, ingress, egress, stream):
    text, rid = ask(gw, ingress, f"echo-{egress}", "the quick brown fox", stream)
    assert text == "the quick brown fox"
    row = ledger_row(gw.ledger, rid)
    assert row["endpoint"] == {"chat": "chat.completions"}.get(ingress, ingress)
    assert row["upstream"] == egress and row["usage_source"] == "upstream"
    assert row["output_tokens"] == 4 and row["input_tokens"] > 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("egress", EGRESS)
@pytest.mark.parametrize("ingress", INGRESS)
def test_tool_round_trip(gw, ingress, egress, stream):
    assert tool_round_trip(gw, ingress, f"tool-{egress}", stream) == "The tool said: warm"
