"""What translating the Anthropic Messages and OpenAI Responses dialects costs per request, in process
(issue #14): request -> chat form, completion -> the dialect's answer, re-rendering a 61-chunk stream.

    .venv/bin/python benchmarks/dialect_bench.py
"""

from __future__ import annotations

import timeit

from gateway.dialects import anthropic_messages as am
from gateway.dialects import responses as rs
from gateway.dialects.anthropic_stream import AnthropicStream
from gateway.dialects.responses_stream import ResponsesStream
from gateway.exchange import Exchange
from gateway.metering.usage import Usage


def main() -> None:
    body = {"model": "m", "max_tokens": 256, "system": "You are a helpful assistant.",
            "messages": [{"role": "user", "content": "word " * 100}]}
    ex = Exchange("chat.completions", {})
    ex.model, ex.usage = "m", Usage(150, 60)
    completion = {"model": "m", "choices": [{"index": 0, "finish_reason": "stop",
                                             "message": {"role": "assistant", "content": "word " * 60}}]}
    chunks = [{"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "word "}}]}] * 60
    chunks.append({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})

    def stream() -> None:
        render = AnthropicStream(ex, 150)
        b"".join(render.feed(c) for c in chunks)
        render.finish({})

    n = 20_000
    to_chat = timeit.timeit(lambda: am.to_chat(dict(body)), number=n) / n * 1e6
    from_chat = timeit.timeit(lambda: am.from_chat(completion, ex), number=n) / n * 1e6
    rendered = timeit.timeit(stream, number=2000) / 2000 * 1e6
    print(f"to_chat (100-word prompt): {to_chat:.1f} us")
    print(f"from_chat (60-word answer): {from_chat:.1f} us")
    print(f"stream of 61 chunks re-rendered: {rendered:.1f} us ({rendered / len(chunks):.2f} us per chunk)")

    rbody = {"model": "m", "instructions": "You are a helpful assistant.", "input": "word " * 100}
    ex.client_body = rbody

    def rstream() -> None:
        render = ResponsesStream(ex, 150)
        b"".join(render.feed(c) for c in chunks)
        render.finish({})

    r_to = timeit.timeit(lambda: rs.to_chat(dict(rbody), []), number=n) / n * 1e6
    r_from = timeit.timeit(lambda: rs.from_chat(completion, ex), number=n) / n * 1e6
    r_stream = timeit.timeit(rstream, number=2000) / 2000 * 1e6
    print(f"responses to_chat: {r_to:.1f} us, from_chat: {r_from:.1f} us, stream of 61 chunks: {r_stream:.1f} us "
          f"({r_stream / len(chunks):.2f} us per chunk)")


if __name__ == "__main__":
    main()
