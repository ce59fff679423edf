"""Anthropic's Messages API as an upstream (`type: anthropic`): Claude behind any ingress dialect.

Requests are translated from the chat form (anthropic_wire.py), sent with `x-api-key` and
`anthropic-version`, and answers and streams come back as chat completions and chunks, usage with
prompt-cache reads and writes included. 529 (overloaded) is retried and failed over like any 5xx.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from gateway.exchange import Exchange
from gateway.upstreams.anthropic_wire import StreamTranslator, to_anthropic, to_completion
from gateway.upstreams.base import UpstreamError
from gateway.upstreams.http import HttpPool, HttpUpstream, HttpUpstreamSettings, TranslatedStream
from gateway.upstreams.openai import http_url


class AnthropicUpstreamConfig(HttpUpstreamSettings):
    type: Literal["anthropic"]
    base_url: str = "https://api.anthropic.com"
    api_key_env: str | None = Field(default="ANTHROPIC_API_KEY", description="env var holding the API key")
    anthropic_version: str = Field(default="2023-06-01", min_length=1, description="the anthropic-version header")
    beta: list[str] = Field(default_factory=list, description="anthropic-beta features to turn on")
    prompt_caching: Literal["off", "auto"] = Field(default="off", description=(
        "auto: mark the system prompt, the tools and the conversation so far as prompt-cache breakpoints, so "
        "a repeated prefix is read from Anthropic's cache (0.1x input price) after being written once (1.25x)"))
    default_max_tokens: int = Field(default=4096, ge=1, le=1_000_000, description=(
        "max_tokens for requests that set none (the Messages API requires it; chat clients often omit it)"))

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        return http_url(v)


class AnthropicUpstream(HttpUpstream):
    stream_usage = False  # usage always comes with message_start / message_delta: nothing to ask for

    def __init__(self, name: str, cfg: AnthropicUpstreamConfig, pool: HttpPool, api_key: str | None) -> None:
        headers = {"anthropic-version": cfg.anthropic_version, **cfg.headers}
        if api_key:
            headers["x-api-key"] = api_key
        if cfg.beta:
            headers["anthropic-beta"] = ",".join(cfg.beta)
        super().__init__(name, pool, api_key, headers, cfg.timeouts, cfg.max_connections)
        self.cfg = cfg
        self._url = cfg.base_url + "/v1/messages"

    async def chat(self, ex: Exchange, model: str, body: dict[str, Any]) -> dict[str, Any]:
        payload = to_anthropic(body, model, self.cfg.default_max_tokens, self.cfg.prompt_caching == "auto")
        return to_completion(await self._post_json(ex, self._url, payload), ex.id)

    async def open_stream(self, ex: Exchange, model: str, body: dict[str, Any]) -> TranslatedStream:
        payload = to_anthropic({**body, "stream": True}, model, self.cfg.default_max_tokens,
                               self.cfg.prompt_caching == "auto")
        return TranslatedStream(await self._open_sse(ex, self._url, payload), StreamTranslator())

    async def embeddings(self, ex: Exchange, model: str, body: dict[str, Any]) -> dict[str, Any]:
        raise UpstreamError("http_404", f"upstream {self.name!r} (Anthropic) has no embeddings API", status=404)
