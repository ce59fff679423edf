"""What makes two requests the same request: the cache key, and whether a request may be cached.

The key is a hash of the request as it goes upstream - after the request checks (a redaction or a
pseudonym is part of it) and the prompt render - together with the tenant scope, the public model
and the prompt version's hash. Everything in the body counts except fields that cannot change the
answer; an unknown new parameter therefore splits entries rather than merging answers that differ.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

# Fields that change how the answer is delivered or recorded, never what it says.
_NOT_IN_KEY = frozenset({"stream", "stream_options", "user", "metadata", "store", "service_tier"})


def scope_of(kind: str, key_name: str | None, group: str | None) -> str:
    """`key:<name>`, or `group:<name>` when entries are shared per group (a key without a group keeps
    its own). Open mode (no keys configured) is one tenant: `open`."""
    if kind == "group" and group:
        return f"group:{group}"
    return f"key:{key_name}" if key_name else "open"


def request_key(scope: str, endpoint: str, model: str, prompt_hash: str | None, body: dict[str, Any],
                context: Any = None) -> str:
    """`context`: what else decides the answer but is not in the body - the documents supplied in
    `gateway.context` (response checks judge the answer against them; the mock model answers from
    them) and the mock model's overrides."""
    normal = {k: v for k, v in body.items() if k not in _NOT_IN_KEY}
    blob = orjson.dumps([scope, endpoint, model, prompt_hash or "", normal, context], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()


def deterministic(body: dict[str, Any]) -> bool:
    """Temperature 0 or a fixed seed: the client asked for the same answer to the same question.
    (OpenAI's default temperature is 1, so an absent temperature is not deterministic.)"""
    t = body.get("temperature")
    if isinstance(t, (int, float)) and not isinstance(t, bool) and t == 0:
        return True
    return isinstance(body.get("seed"), int) and not isinstance(body.get("seed"), bool)


def cache_control(header: str | None) -> tuple[str | None, float | None]:
    """(mode override, max-age) from a Cache-Control request header: no-store -> bypass,
    no-cache -> refresh, max-age=N -> only entries younger than N seconds."""
    if not header:
        return None, None
    mode, max_age = None, None
    for part in header.lower().split(","):
        part = part.strip()
        if part == "no-store":
            mode = "bypass"
        elif part == "no-cache" and mode is None:
            mode = "refresh"
        elif part.startswith("max-age="):
            try:
                max_age = max(0.0, float(part[8:]))
            except ValueError:
                pass  # a malformed directive is ignored, as HTTP caches do
    return mode, max_age
