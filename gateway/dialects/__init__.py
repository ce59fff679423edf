"""Ingress dialects: each parses its API's requests into the internal chat form (gateway/conversation.py)
and renders answers, streams and errors back in its own shape. Chat Completions is the internal form
itself, so it needs none of this (its bytes are relayed as they come)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from gateway.dialects import anthropic_messages, responses
from gateway.dialects.anthropic_stream import AnthropicStream
from gateway.dialects.responses_stream import ResponsesStream
from gateway.errors import GatewayError
from gateway.keys import RESPONSES
from gateway.validation import string


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str  # the ledger's `endpoint` value and the metrics' endpoint label
    path: str  # the route prefix whose errors are rendered in this dialect
    # (app, exchange, the client's body) -> the chat body; may read stored state (previous turns)
    to_chat: Callable[[web.Application, Any, dict[str, Any]], Awaitable[dict[str, Any]]]
    from_chat: Callable[[dict[str, Any], Any], dict[str, Any]]
    stream: Callable[[Any, int], Any]  # (exchange, input-token estimate) -> a stream renderer
    error_body: Callable[[Any], dict[str, Any]]
    # (app, exchange, the answer as the client got it): after a finished answer, e.g. to store it
    keep: Callable[[web.Application, Any, dict[str, Any]], Awaitable[None]] | None = None


async def _messages_to_chat(app: web.Application, ex, body: dict[str, Any]) -> dict[str, Any]:
    return anthropic_messages.to_chat(body)


_CONVERSATION = "responses.conversation"  # ex.state: the conversation to store with the answer


async def _responses_to_chat(app: web.Application, ex, body: dict[str, Any]) -> dict[str, Any]:
    history: list[dict[str, Any]] = []
    if body.get("previous_response_id") is not None:
        string("previous_response_id", body["previous_response_id"], empty=False)
        history = await app[RESPONSES].history(body["previous_response_id"], ex.key_name or "")
    chat, conversation = responses.to_chat(body, history)
    if body.get("store", True):
        # a copy as the client sent it: request checks rewrite the chat body in place (redaction,
        # pseudonyms), and the next turn is checked afresh like any chat conversation
        ex.state[_CONVERSATION] = orjson.loads(orjson.dumps(conversation))
    return chat


async def _keep_response(app: web.Application, ex, response: dict[str, Any]) -> None:
    conversation = ex.state.get(_CONVERSATION)
    if conversation is not None and response.get("status") in ("completed", "incomplete"):
        await app[RESPONSES].keep(ex.key_name or "", response, conversation + responses.history_turn(response),
                                  responses.input_items(ex.client_body or {}, ex.id))


ANTHROPIC_MESSAGES = Dialect(anthropic_messages.NAME, "/v1/messages", _messages_to_chat,
                             anthropic_messages.from_chat, AnthropicStream, anthropic_messages.error_body)
OPENAI_RESPONSES = Dialect(responses.NAME, "/v1/responses", _responses_to_chat, responses.from_chat,
                           ResponsesStream, GatewayError.body, _keep_response)  # OpenAI's error shape is ours

_BY_PATH = (ANTHROPIC_MESSAGES, OPENAI_RESPONSES)


def for_path(path: str) -> Dialect | None:
    """The dialect of a request path, for errors raised before a handler knows it (auth, CORS, 404)."""
    for d in _BY_PATH:
        if path == d.path or path.startswith(d.path + "/"):
            return d
    return None
