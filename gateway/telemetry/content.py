"""Prompt and answer text on a trace, for policies that opt in (`trace_content: true`): the messages
as sent upstream and the answer as the client got it, each passed through the regex PII detector
(emails, phones, cards, IBANs, SSNs, IPs, ... replaced by `<TYPE>`) before it becomes an attribute,
whatever the policy's own checks did. Names and places need the NER detector: a policy that must
keep those off its traces runs `pii` with `action: redact` in its request checks, so the messages
are redacted before they are sent, and traced as sent.

Attributes (GenAI semantic conventions, opt-in content): `gen_ai.input.messages` and
`gen_ai.output.messages`, JSON strings, each capped at MAX_CHARS.
"""

from __future__ import annotations

import functools

import orjson

from gateway.models.workers import run_model

MAX_CHARS = 16_000


@functools.cache
def _engine():
    from gateway.pii.engine import PiiEngine

    engine = PiiEngine(mode="regex", tier="recall", use_filter=False)  # every candidate stands: recall first
    engine.load()
    return engine


async def warm() -> None:
    await run_model(_engine)


def redacted(text: str) -> str:
    if not text:
        return text
    out = []
    last = 0
    for e in sorted(_engine().analyze(text), key=lambda e: e.start):
        if e.start < last:
            continue  # overlapping finds: the first one stands
        out += [text[last:e.start], f"<{e.type}>"]
        last = e.end
    out.append(text[last:])
    return "".join(out)


def _messages(messages) -> list[dict]:
    out = []
    for m in messages or ():
        if not isinstance(m, dict):
            continue
        content = m.get("content")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        out.append({"role": m.get("role", ""), "content": redacted(content) if isinstance(content, str) else ""})
    return out


def _cap(value: list) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS - 1] + "\u2026"


async def attach(trace, input_messages, output_texts: list[str]) -> None:
    """Redact off the event loop, then set the two attributes on the request's server span."""
    def work() -> tuple[str, str]:
        return (_cap(_messages(input_messages)),
                _cap([{"role": "assistant", "content": redacted(t)} for t in output_texts]))

    inp, out = await run_model(work)
    trace.root.attrs["gen_ai.input.messages"] = inp
    trace.root.attrs["gen_ai.output.messages"] = out
