"""Ingress dialects: each parses its API's requests into the internal chat form (gateway/conversation.py)
and renders answers, streams and errors back in its own shape. Chat Completions is the internal form
itself, so it needs none of this (its bytes are relayed as they come)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.dialects import anthropic_messages
from gateway.dialects.anthropic_stream import AnthropicStream


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str  # the ledger's `endpoint` value and the metrics' endpoint label
    path: str  # the route prefix whose errors are rendered in this dialect
    to_chat: Callable[[dict[str, Any]], dict[str, Any]]
    from_chat: Callable[[dict[str, Any], Any], dict[str, Any]]
    stream: Callable[[Any, int], Any]  # (exchange, input-token estimate) -> a stream renderer
    error_body: Callable[[Any], dict[str, Any]]


ANTHROPIC_MESSAGES = Dialect(anthropic_messages.NAME, "/v1/messages", anthropic_messages.to_chat,
                             anthropic_messages.from_chat, AnthropicStream, anthropic_messages.error_body)

_BY_PATH = (ANTHROPIC_MESSAGES,)


def for_path(path: str) -> Dialect | None:
    """The dialect of a request path, for errors raised before a handler knows it (auth, CORS, 404)."""
    for d in _BY_PATH:
        if path == d.path or path.startswith(d.path + "/"):
            return d
    return None
