"""Schema of `policies/gateway.yaml`: server settings, upstreams, model routes, keys, open mode."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.auth import KeyConfig, OpenModeConfig
from gateway.cache.settings import CacheSettings
from gateway.console.settings import ConsoleSettings
from gateway.dialects.stored_responses import ResponsesSettings
from gateway.metering.limits import Limits
from gateway.routing import RouteConfig
from gateway.state.config import StateSettings
from gateway.telemetry.tracing import TelemetrySettings
from gateway.upstreams.anthropic import AnthropicUpstreamConfig
from gateway.upstreams.azure_openai import AzureOpenAIUpstreamConfig
from gateway.upstreams.bedrock import BedrockUpstreamConfig
from gateway.upstreams.gemini import GeminiUpstreamConfig
from gateway.upstreams.mock import MockUpstreamConfig
from gateway.tabular.config import TabularModelConfig
from gateway.upstreams.openai import OpenAIUpstreamConfig

UpstreamConfig = Annotated[MockUpstreamConfig | OpenAIUpstreamConfig | AnthropicUpstreamConfig
                           | AzureOpenAIUpstreamConfig | GeminiUpstreamConfig | BedrockUpstreamConfig,
                           Field(discriminator="type")]


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_body_mb: float = Field(default=8, gt=0, le=1024, description="larger request bodies get HTTP 413")
    shutdown_grace_s: float = Field(default=30, ge=0, le=3600, description="how long in-flight requests may finish")
    watch_interval_s: float = Field(default=1.0, ge=0, le=3600, description="policy file polling; 0 turns it off")
    # Slow clients: a request's headers, and then its body, must arrive within these (else HTTP 408).
    header_timeout_s: float = Field(default=10, gt=0, le=3600, description="a request's headers must arrive within "
                                    "this (else HTTP 408)")
    body_timeout_s: float = Field(default=30, gt=0, le=3600, description="then its body within this (else HTTP 408)")
    max_connections_per_client: int = Field(default=256, ge=1, le=100_000,
                                            description="concurrent connections one address may hold (more: 429)")
    # Web pages on these origins may call the gateway from a browser (CORS). Empty: none may, and a
    # browser request carrying another Origin is refused.
    cors_origins: list[str] = Field(default_factory=list, description=(
        'web pages on these origins may call the gateway from a browser (CORS), e.g. ["https://app.example.com"]; '
        "empty: none may"))


class GroupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limits: Limits


class MeteringSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Off: no usage ledger, no /metrics figures, no cost accounting (rate limits then cannot be used).
    enabled: bool = Field(default=True, description="false: no usage ledger, no cost accounting (rate limits "
                          "then cannot be used)")
    # The end user a request names (the OpenAI `user` field, or gateway.user_id) as the ledger keeps
    # it: `hash` (default) a salted SHA-256 prefix, stable across restarts and replicas, so usage can
    # be grouped per user without the ledger holding the id; `raw` the id itself; `omit` nothing.
    # Each finished request's row is appended to a local journal before its response is written, so
    # a crash of the process loses no row (gateway/metering/journal.py). Read at start-up.
    journal: bool = Field(default=True, description="append each finished request's row to a local journal "
                          "before answering, so a crash loses no row")
    users: Literal["hash", "raw", "omit"] = Field(default="hash", description=(
        "the end user a request names, as the ledger keeps it: hash (a salted SHA-256 prefix), raw, or omit"))
    user_salt_env: str = Field(default="GATEWAY_USER_SALT", description=(
        "env var holding the salt for `users: hash` (set it: without a secret salt, a guessable id such "
        "as an e-mail address can be confirmed by hashing it)"))


class GatewayFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    server: ServerSettings = Field(default_factory=ServerSettings)
    upstreams: dict[str, UpstreamConfig] = Field(min_length=1, description="model servers, by name; `type` picks "
                                                 "the API (mock, openai, anthropic, azure-openai, gemini, bedrock)")
    models: dict[str, RouteConfig] = Field(min_length=1, description="the public model names clients call, each "
                                           "routed to ordered upstream targets")
    # No keys at all means open mode: anyone who can reach the port may call (logged loudly).
    keys: list[KeyConfig] = Field(default_factory=list, description="gateway keys (by SHA-256 or env var), each "
                                  "with its policy, models and limits; none at all: open mode")
    groups: dict[str, GroupConfig] = Field(default_factory=dict, description="teams: limits shared by their keys")
    open_mode: OpenModeConfig = Field(default_factory=OpenModeConfig, description="what a caller gets when no "
                                      "keys are declared")
    metering: MeteringSettings = Field(default_factory=MeteringSettings)
    # Where rate-limit and budget counters live: this process (default) or Redis (several workers/replicas).
    state: StateSettings = Field(default_factory=StateSettings, description="where counters and the ledger live: "
                                 "this process and SQLite (default), or Redis and PostgreSQL for several replicas")
    # The response cache (gateway/cache/): off unless enabled here.
    cache: CacheSettings = Field(default_factory=CacheSettings, description="the response cache (off unless enabled)")
    # Stored Responses-API responses (previous_response_id, GET /v1/responses/{id}); read at start-up.
    responses: ResponsesSettings = Field(default_factory=ResponsesSettings, description="stored Responses-API "
                                         "responses (previous_response_id); read at start-up")
    # OpenTelemetry traces over OTLP/HTTP (gateway/telemetry/tracing.py); read at start-up.
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings, description="OpenTelemetry traces "
                                         "over OTLP/HTTP; read at start-up")
    # The web console at /ui (gateway/console/); read at start-up.
    console: ConsoleSettings = Field(default_factory=ConsoleSettings, description="the web console at /ui; read "
                                     "at start-up")
    # Classical (tabular) models served behind the gateway: schema-checked, logged, drift-monitored.
    tabular: dict[str, TabularModelConfig] = Field(default_factory=dict, description="tabular models served "
                                                   "behind the gateway: schema-checked, logged, drift-monitored")
