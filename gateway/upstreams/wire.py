"""What every translation of the chat form into another provider's format shares (anthropic_wire,
gemini_wire, bedrock_wire, responses_wire): refusing chat fields the provider has no counterpart
for, by name; merging consecutive turns of one role; text of a message; tool-call arguments as the
JSON object providers want; non-negative token counts from a usage object. Pure functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from gateway.errors import InvalidRequest


class Provider:
    """One provider's translation vocabulary: its name (for messages), the chat fields it refuses
    (field -> what it is, plus the harmless values of those), and the fields it translates or ignores."""

    def __init__(self, name: str, refused: dict[str, str], harmless: dict[str, Any], known: set[str]) -> None:
        self.name, self.refused, self.harmless, self.known = name, refused, harmless, known

    def refuse(self, field: str, what: str) -> InvalidRequest:
        return InvalidRequest(f"`{field}`: {what} cannot be sent to {self.name} upstream; remove it.", param=field)

    def check_fields(self, body: dict[str, Any]) -> None:
        """A 400 naming the first chat field this provider cannot take (never dropped silently)."""
        for key, value in body.items():
            if key in self.refused:
                if value is not None and value != self.harmless.get(key):
                    raise self.refuse(key, self.refused[key])
            elif key not in self.known:
                raise self.refuse(key, f"the chat field {key!r}")

    def parts(self, content: Any, where: str, text: Callable[[str], dict[str, Any]],
              image: Callable[[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
        """A chat message's content as this provider's parts: `text(t)` for each non-empty text,
        `image(url, where)` for each image part; any other part type is refused by name."""
        if isinstance(content, str):
            return [text(content)] if content else []
        out = []
        for j, part in enumerate(content or ()):
            kind = part.get("type")
            if kind == "text":
                if part.get("text"):
                    out.append(text(part["text"]))
            elif kind == "image_url":
                out.append(image((part.get("image_url") or {}).get("url") or "", f"{where}.content[{j}].image_url.url"))
            else:
                raise self.refuse(f"{where}.content[{j}].type", f"a {kind!r} content part")
        return out

    def arguments(self, raw: Any, where: str) -> dict[str, Any]:
        """A tool call's arguments as an object (providers take tool inputs as objects)."""
        try:
            value = orjson.loads(raw or "{}")
        except orjson.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            raise InvalidRequest(f"`{where}` must be a JSON object to be sent to {self.name} upstream (tool inputs "
                                 "are objects there).", param=where)
        return value


def data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a `data:` URL, None for any other URL."""
    if not url.startswith("data:"):
        return None
    head, _, data = url.partition(",")
    return head[5:].split(";")[0], data


def add_turn(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]], field: str = "content") -> None:
    """Append a turn, merged into the previous one of the same role (providers want roles to
    alternate); an empty turn is left out (providers refuse it, and it says nothing)."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1][field].extend(blocks)
    else:
        turns.append({"role": role, field: blocks})


def message_text(content: Any) -> str:
    """A chat message's text: the string, or its text parts run together."""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or () if isinstance(p, dict) and p.get("type") == "text")


def counter(usage: dict[str, Any]):
    """`n(key)`: the count under `key`, 0 when missing or not a non-negative integer."""
    def n(key: str) -> int:
        v = usage.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0
    return n


class ChunkTranslator:
    """What the stream translators share: the chat chunks one upstream stream becomes (one answer,
    choice 0), and `done` once the provider said the answer is complete."""

    def __init__(self, request_id: str = "", model: str = "") -> None:
        self.base: dict[str, Any] = {"id": request_id, "object": "chat.completion.chunk", "created": 0, "model": model}
        self.done = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**self.base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def _usage_chunk(self, usage: dict[str, Any]) -> dict[str, Any]:
        return {**self.base, "choices": [], "usage": usage}
