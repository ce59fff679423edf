"""Token counts before (or without) the upstream's own figures, following OpenAI's published rules.

Chat: 3 tokens of framing per message, +1 when it has a `name`, +3 to prime the reply; tool
definitions add the cookbook's per-function constants. The upstream's `usage` is the truth when it
is present; these counts are for pre-call limits and for answers that arrive without usage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gateway.metering.tokenizer import encoding

# Model families by encoding (tiktoken's own table, plus newer OpenAI families).
_O200K = re.compile(r"^(?:openai/)?(?:gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|o1|o3|o4|chatgpt-4o|gpt-oss|codex)")
_CL100K = re.compile(r"^(?:openai/)?(?:gpt-4|gpt-3\.5|text-embedding-(?:ada-002|3-))")
# The cookbook's tool-definition constants differ between the cl100k-era and the 4o-era chat format.
_TOOLS_CL100K = (10, 3, 3, -3, 3, 12)  # func_init, prop_init, prop_key, enum_init, enum_item, func_end
_TOOLS_O200K = (7, 3, 3, -3, 3, 12)


@dataclass(frozen=True, slots=True)
class Encoding:
    name: str
    known: bool  # False: the model's family is unknown, counts are an estimate with the default encoding


def encoding_for_model(model: str, default: str = "o200k_base") -> Encoding:
    if _O200K.match(model):
        return Encoding("o200k_base", True)
    if _CL100K.match(model):
        return Encoding("cl100k_base", True)
    return Encoding(default, False)


def count_text(text: str, enc: str) -> int:
    return len(encoding(enc).encode(text, disallowed_special=()))


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # content parts: only text parts are tokens we can count
        return "".join(p.get("text", "") for p in value if isinstance(p, dict) and p.get("type") == "text")
    return ""


def count_messages(messages: list[dict[str, Any]], enc: str) -> int:
    total = 3  # every reply is primed with <|start|>assistant<|message|>
    for msg in messages:
        total += 3
        for key, value in msg.items():
            if key == "tool_calls" and isinstance(value, list):
                for call in value:
                    fn = call.get("function") or {}
                    total += count_text(str(fn.get("name", "")), enc) + count_text(str(fn.get("arguments", "")), enc)
                continue
            text = _text(value)
            if text:
                total += count_text(text, enc)
            if key == "name":
                total += 1
    return total


def count_tools(tools: list[dict[str, Any]], enc: str) -> int:
    if not tools:
        return 0
    func_init, prop_init, prop_key, enum_init, enum_item, func_end = (
        _TOOLS_O200K if enc == "o200k_base" else _TOOLS_CL100K)
    total = 0
    for tool in tools:
        fn = tool.get("function") or {}
        total += func_init
        total += count_text(f"{fn.get('name', '')}:{str(fn.get('description', '')).removesuffix('.')}", enc)
        props = ((fn.get("parameters") or {}).get("properties")) or {}
        if props:
            total += prop_init
            for name, schema in props.items():
                total += prop_key
                schema = schema if isinstance(schema, dict) else {}
                if "enum" in schema:
                    total += enum_init
                    for item in schema["enum"]:
                        total += enum_item + count_text(str(item), enc)
                desc = str(schema.get("description", "")).removesuffix(".")
                total += count_text(f"{name}:{schema.get('type', '')}:{desc}", enc)
    return total + func_end


def count_chat_request(body: dict[str, Any], enc: str) -> int:
    return count_messages(body.get("messages") or [], enc) + count_tools(body.get("tools") or [], enc)


def count_embedding_input(body: dict[str, Any], enc: str) -> int:
    inp = body.get("input")
    items = [inp] if isinstance(inp, str) else list(inp or [])
    total = 0
    for item in items:
        if isinstance(item, str):
            total += count_text(item, enc)
        elif isinstance(item, list):
            total += len(item)  # already token ids
        elif isinstance(item, int):
            total += 1
    return total
