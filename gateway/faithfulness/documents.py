"""The documents a request supplies for its answer to be checked against, with their ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Literal

Source = Literal["gateway", "tools"]


@dataclass(frozen=True, slots=True)
class Doc:
    id: str
    text: str


def collect(ex, sources: Iterable[Source], field: str | None) -> list[Doc]:
    """From `gateway.context` ([{id, text}]), `tool` messages (id: their tool_call_id), and a dotted
    request field holding strings or {id, text} objects. Empty documents are dropped."""
    docs: list[Doc] = []
    sources = set(sources)
    if "gateway" in sources and ex.options.context:
        docs += [Doc(d.id, d.text) for d in ex.options.context]
    if "tools" in sources:
        n = 0
        for m in ex.body.get("messages") or ():
            if not isinstance(m, dict) or m.get("role") != "tool":
                continue
            n += 1
            doc_id = str(m.get("tool_call_id") or f"tool-{n}")
            c = m.get("content")
            if isinstance(c, str):
                docs.append(Doc(doc_id, c))
            elif isinstance(c, list):
                text = "\n".join(p["text"] for p in c if isinstance(p, dict) and isinstance(p.get("text"), str))
                docs.append(Doc(doc_id, text))
    if field:
        docs += _field_docs(ex.body, field)
    return [d for d in docs if d.text.strip()]


def _field_docs(body: dict, path: str) -> list[Doc]:
    node: Any = body
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return []
        node = node[part]
    items = node if isinstance(node, list) else [node]
    out = []
    for i, item in enumerate(items, 1):
        if isinstance(item, str):
            out.append(Doc(str(i), item))
        elif isinstance(item, dict) and isinstance(item.get("text"), str):
            out.append(Doc(str(item.get("id", i)), item["text"]))
    return out
