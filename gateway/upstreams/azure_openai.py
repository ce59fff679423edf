"""Azure OpenAI deployments as an upstream (`type: azure-openai`).

The wire format is OpenAI's; what differs is where and how: a route target's `model` is the
deployment name, requests go to `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...`
(or to `{endpoint}/openai/v1/chat/completions` with the model in the body when `api_version: v1`,
Azure's version-less API), and the key travels as `api-key` (or an Entra ID token as a bearer).
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field, field_validator

from gateway.exchange import Exchange
from gateway.upstreams.http import HttpPool, HttpUpstream, HttpUpstreamSettings, _HttpStream
from gateway.upstreams.openai import check_answer, http_url


class AzureOpenAIUpstreamConfig(HttpUpstreamSettings):
    type: Literal["azure-openai"]
    endpoint: str = Field(description="https://<resource>.openai.azure.com (or your API Management gateway)")
    api_version: str = Field(default="2024-10-21", min_length=1, description=(
        "the api-version query parameter; `v1` selects Azure's version-less /openai/v1 API"))
    api_key_env: str | None = Field(default="AZURE_OPENAI_API_KEY", description="env var holding the key")
    auth: Literal["api-key", "bearer"] = Field(default="api-key", description=(
        "api-key: the resource key in the api-key header; bearer: an Entra ID access token as Authorization"))
    stream_usage: bool = Field(default=True, description="ask for usage on streams (api-version 2024-09-01 and later)")

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, v: str) -> str:
        return http_url(v)


class AzureOpenAIUpstream(HttpUpstream):
    def __init__(self, name: str, cfg: AzureOpenAIUpstreamConfig, pool: HttpPool, api_key: str | None) -> None:
        headers = dict(cfg.headers)
        if api_key:
            headers.update({"api-key": api_key} if cfg.auth == "api-key" else {"Authorization": f"Bearer {api_key}"})
        super().__init__(name, pool, api_key, headers, cfg.timeouts, cfg.max_connections)
        self.cfg = cfg
        self.stream_usage = cfg.stream_usage

    def _target(self, deployment: str, operation: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The URL and body for `operation` (chat/completions, embeddings) on a deployment."""
        if self.cfg.api_version == "v1":
            return f"{self.cfg.endpoint}/openai/v1/{operation}", {**body, "model": deployment}
        body = {k: v for k, v in body.items() if k != "model"}  # the deployment in the URL names it
        return (f"{self.cfg.endpoint}/openai/deployments/{quote(deployment, safe='')}/{operation}"
                f"?api-version={quote(self.cfg.api_version, safe='')}"), body

    async def chat(self, ex: Exchange, model: str, body: dict[str, Any]) -> dict[str, Any]:
        return check_answer(await self._post_json(ex, *self._target(model, "chat/completions", body)), "choices")

    async def open_stream(self, ex: Exchange, model: str, body: dict[str, Any]) -> _HttpStream:
        return await self._open_sse(ex, *self._target(model, "chat/completions", body))

    async def embeddings(self, ex: Exchange, model: str, body: dict[str, Any]) -> dict[str, Any]:
        return check_answer(await self._post_json(ex, *self._target(model, "embeddings", body)), "data")
