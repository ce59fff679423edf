"""The Gemini API as an upstream (`type: gemini`): generateContent and streamGenerateContent
(server-sent events, `alt=sse`), translated from and to the chat form by gemini_wire.py.
The key travels as `x-goog-api-key`; the target's `model` is the Gemini model id."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field, field_validator

from gateway.exchange import Exchange
from gateway.upstreams.base import UpstreamError
from gateway.upstreams.gemini_wire import StreamTranslator, to_completion, to_gemini
from gateway.upstreams.http import HttpPool, HttpUpstream, HttpUpstreamSettings, TranslatedStream
from gateway.upstreams.openai import http_url


class GeminiUpstreamConfig(HttpUpstreamSettings):
    type: Literal["gemini"]
    base_url: str = "https://generativelanguage.googleapis.com"
    api_version: str = Field(default="v1beta", pattern=r"^v[0-9a-z]+$", description="the API version in the path")
    api_key_env: str | None = Field(default="GEMINI_API_KEY", description="env var holding the API key")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        return http_url(v)


class GeminiUpstream(HttpUpstream):
    stream_usage = False  # usageMetadata comes with the last chunk without asking

    def __init__(self, name: str, cfg: GeminiUpstreamConfig, pool: HttpPool, api_key: str | None) -> None:
        headers = {**cfg.headers, **({"x-goog-api-key": api_key} if api_key else {})}
        super().__init__(name, pool, api_key, headers, cfg.timeouts, cfg.max_connections)
        self.cfg = cfg

    def _url(self, model: str, method: str) -> str:
        return f"{self.cfg.base_url}/{self.cfg.api_version}/models/{quote(model, safe='')}:{method}"

    async def chat(self, ex: Exchange, model: str, body: dict[str, Any]) -> dict[str, Any]:
        data = await self._post_json(ex, self._url(model, "generateContent"), to_gemini(body))
        return to_completion(data, ex.id, model)

    async def open_stream(self, ex: Exchange, model: str, body: dict[str, Any]) -> TranslatedStream:
        inner = await self._open_sse(ex, self._url(model, "streamGenerateContent") + "?alt=sse", to_gemini(body))
        return TranslatedStream(inner, StreamTranslator(ex.id, model))

    async def embeddings(self, ex: Exchange, model: str, body: dict[str, Any]) -> dict[str, Any]:
        raise UpstreamError("http_404", f"upstream {self.name!r} (Gemini) is not set up for embeddings here", status=404)
