"""The one internal form of a conversation: an OpenAI Chat Completions body and completion.

Every ingress dialect (gateway/dialects/) parses into this shape and every answer is rendered from
it, so checks, metering, prompts, experiments and the cache are written once. The helpers here read
it; they sit below `proxy.py` and `model_calls.py`, which both need them.
"""

from __future__ import annotations

from typing import Any


def completion_text(data: dict[str, Any]) -> str:
    """All generated text of a completion (contents and tool-call arguments), for token estimates."""
    parts = []
    for choice in data.get("choices") or ():
        message = choice.get("message") or {}
        if isinstance(message.get("content"), str):
            parts.append(message["content"])
        for call in message.get("tool_calls") or ():
            parts.append(str((call.get("function") or {}).get("arguments", "")))
    return "".join(parts)


def content_text(content: Any) -> str:
    """The text of a message's `content`: a string, or the text parts of a content-part array."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def first_image(messages: Any) -> str | None:
    """The path of the first image part in chat `messages` (`messages[2].content[1]`), or None."""
    for i, msg in enumerate(messages or ()):
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") == "image_url":
                    return f"messages[{i}].content[{j}]"
    return None
