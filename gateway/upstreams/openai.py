"""OpenAI-compatible HTTP upstream (OpenAI, vLLM, Ollama, LM Studio, TGI, ...).

One pooled aiohttp ClientSession serves every upstream; each upstream bounds its own concurrency.
Streams are relayed event by event, never buffered whole.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from gateway.exchange import Exchange
from gateway.upstreams.base import UpstreamError
from gateway.upstreams import responses_wire
from gateway.upstreams.http import HttpPool, HttpUpstream, HttpUpstreamSettings, Timeouts, TranslatedStream, _HttpStream

__all__ = ["HttpPool", "OpenAIUpstream", "OpenAIUpstreamConfig", "Timeouts", "http_url", "check_answer"]


def http_url(v: str) -> str:
    if not v.startswith(("http://", "https://")):
        raise ValueError("base_url must start with http:// or https://")
    return v.rstrip("/")


class OpenAIUpstreamConfig(HttpUpstreamSettings):
    type: Literal["openai"]
    base_url: str
    api_key_env: str | None = Field(default=None, description="name of the env var holding the API key")
    # Ask for usage on streams (stream_options.include_usage); off for servers that reject it.
    stream_usage: bool = True
    api: Literal["chat", "responses", "auto"] = Field(default="chat", description=(
        "chat: /chat/completions; responses: OpenAI's /responses (for models served only there, e.g. "
        "o3-pro and the codex models), every client dialect translated to it, with store: false; auto: "
        "Responses clients to /responses, every other client to /chat/completions"))

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        return http_url(v)


def check_answer(data: dict[str, Any], key: str) -> dict[str, Any]:
    if not isinstance(data.get(key), list):
        raise UpstreamError("bad_response", f"upstream answer has no `{key}` list")
    return data


class OpenAIUpstream(HttpUpstream):
    def __init__(self, name: str, cfg: OpenAIUpstreamConfig, pool: HttpPool, api_key: str | None) -> None:
        headers = {**cfg.headers, **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
        super().__init__(name, pool, api_key, headers, cfg.timeouts, cfg.max_connections)
        self.cfg = cfg
        self.stream_usage = cfg.stream_usage
        if cfg.api == "responses":
            self.stream_usage = False  # response.completed always carries usage (and chat's option is not sent)

    def _responses_api(self, ex: Exchange) -> bool:
        return self.cfg.api == "responses" or (self.cfg.api == "auto" and ex.api == "responses")

    async def chat(self, ex: Exchange, model: str, body: dict[str, Any]) -> dict[str, Any]:
        if self._responses_api(ex):
            data = await self._post_json(ex, self.cfg.base_url + "/responses", responses_wire.to_responses(body, model))
            return responses_wire.to_completion(data, ex.id, model)
        return check_answer(await self._post_json(ex, self.cfg.base_url + "/chat/completions",
                                                  {**body, "model": model}), "choices")

    async def embeddings(self, ex: Exchange, model: str, body: dict[str, Any]) -> dict[str, Any]:
        return check_answer(await self._post_json(ex, self.cfg.base_url + "/embeddings", {**body, "model": model}),
                            "data")

    async def open_stream(self, ex: Exchange, model: str, body: dict[str, Any]) -> _HttpStream | TranslatedStream:
        if self._responses_api(ex):
            payload = responses_wire.to_responses({**body, "stream": True}, model)
            return TranslatedStream(await self._open_sse(ex, self.cfg.base_url + "/responses", payload),
                                    responses_wire.StreamTranslator(ex.id, model))
        return await self._open_sse(ex, self.cfg.base_url + "/chat/completions", {**body, "model": model})
