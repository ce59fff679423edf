"""One `Exchange` per request: the parsed request, where it went, what the checks said, timings.

Per-request state lives here (never on check instances, which are shared by concurrent requests).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.cache.settings import CacheRequest
from gateway.checks.base import TextPath, Verdict
from gateway.metering.usage import Usage


class ContextDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    text: str


class PromptRequest(BaseModel):
    """`gateway.prompt`: which prompt to render (label defaults to production) and its variables."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    version: int | None = Field(default=None, ge=1)
    label: str | None = None
    variables: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _version_or_label(self) -> PromptRequest:
        if self.version is not None and self.label is not None:
            raise ValueError("give `version` or `label`, not both")
        return self


class GatewayOptions(BaseModel):
    """The `"gateway"` object a client may add to a request body (the SDK sends it via `extra_body`).

    It is removed before the request is forwarded upstream.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    context: list[ContextDoc] | None = None
    metadata: dict[str, str | int | float | bool] | None = None
    user_id: str | None = None
    prompt: PromptRequest | None = None
    cache: CacheRequest | None = None  # per-request cache control (gateway/cache/settings.py)
    # Behaviour overrides for the built-in mock upstream (ignored by real upstreams).
    mock: dict[str, Any] | None = None


NO_OPTIONS = GatewayOptions()  # shared by the many requests that send no `gateway` object (it is frozen)


@dataclass(slots=True)
class CheckResult:
    """What the pipeline recorded for one check run: the verdict plus how the run went."""

    check: str
    type: str
    phase: Literal["request", "response"]
    verdict: Verdict
    status: Literal["ok", "error", "timeout"] = "ok"
    latency_ms: float = 0.0
    error: str | None = None  # exception class name, never its message (it may quote user text)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "check": self.check,
            "type": self.type,
            "phase": self.phase,
            "action": self.verdict.action.value,
            "status": self.status,
            "latency_ms": round(self.latency_ms, 3),
        }
        if self.verdict.score is not None:
            out["score"] = self.verdict.score
        if self.verdict.reason:
            out["reason"] = self.verdict.reason
        if self.verdict.details:
            out["details"] = self.verdict.details
        if self.error:
            out["error"] = self.error
        return out


@dataclass(slots=True)
class Attempt:
    upstream: str
    model: str
    outcome: str  # "ok" or a short error kind ("http_429", "connect", "timeout", ...)
    ms: float


@dataclass(slots=True, eq=False)
class Exchange:
    endpoint: Literal["chat.completions", "embeddings"]
    body: dict[str, Any]
    options: GatewayOptions = NO_OPTIONS
    id: str = field(default_factory=lambda: "gw-" + os.urandom(12).hex())
    started: float = field(default_factory=time.perf_counter)
    wall_start: float = field(default_factory=time.time)
    key_name: str | None = None
    group: str | None = None
    policy: str = ""
    model: str = ""
    stream: bool = False
    results: list[CheckResult] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    served_by: Attempt | None = None
    upstream_ms: float = 0.0  # time spent waiting on the upstream (all attempts)
    stream_error: str | None = None  # why a stream ended early, after its headers were sent
    first_token_ms: float | None = None  # streams: when the first content went to the client
    routed: bool = False  # the model names a configured route (what metrics may use as a label)
    trace: Any = None  # gateway.telemetry.tracing.RequestTrace when this request is traced
    error: str | None = None  # short kind of error the client got (for the ledger), never a message
    usage: Usage | None = None
    cost_usd: float | None = None  # None with usage set: no price known for the served model
    price_key: str | None = None
    reservation: Any = None  # what the rate limiter counted for this request, settled at the end
    metered: bool = False  # metering on for the policy set this request started with
    prompt: Any = None  # the RenderedPrompt used, when the request named one
    experiment: Any = None  # the experiments.assign.Assignment, when the request took part in one
    user_ref: str | None = None  # the end user as the ledger keeps it (hashed by default: metering.users)
    cache: Any = None  # gateway.cache.service.CacheOutcome when the response cache applied to this request
    dialect: Any = None  # gateway.dialects.Dialect the client spoke, when not Chat Completions itself
    client_body: Any = None  # that dialect's request as sent (`body` is its chat translation)
    state: dict[str, Any] = field(default_factory=dict)  # per-request scratch space for checks

    # ---- user-controlled text, for checks -------------------------------------------------------
    def request_texts(self) -> list[tuple[TextPath, str, str]]:
        """Every piece of user-controlled text as (path, role, text): message contents (plain or
        content-part arrays), message names, tool results; or embedding inputs."""
        out: list[tuple[TextPath, str, str]] = []
        if self.endpoint == "embeddings":
            inp = self.body.get("input")
            if isinstance(inp, str):
                out.append((("input",), "user", inp))
            elif isinstance(inp, list):
                out.extend((("input", i), "user", s) for i, s in enumerate(inp) if isinstance(s, str))
            return out
        for i, msg in enumerate(self.body.get("messages", ())):
            role = msg.get("role", "")
            content = msg.get("content")
            if isinstance(content, str):
                out.append((("messages", i, "content"), role, content))
            elif isinstance(content, list):
                for j, part in enumerate(content):
                    if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                        out.append((("messages", i, "content", j, "text"), role, part["text"]))
            if isinstance(msg.get("name"), str):
                out.append((("messages", i, "name"), role, msg["name"]))
        return out

    def set_text(self, path: TextPath, text: str) -> None:
        node: Any = self.body
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = text

    # ---- reporting ------------------------------------------------------------------------------
    @property
    def api(self) -> str:
        """The API the client called, for the ledger and metrics: `endpoint` is the internal form."""
        return self.dialect.name if self.dialect is not None else self.endpoint

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def overhead_ms(self) -> float:
        return max(0.0, self.elapsed_ms() - self.upstream_ms)

    def response_headers(self) -> dict[str, str]:
        headers = {"x-gateway-request-id": self.id, "x-gateway-overhead-ms": f"{self.overhead_ms():.3f}"}
        if self.trace is not None:
            headers["x-gateway-trace-id"] = self.trace.trace_id
        if self.experiment is not None:
            headers["x-gateway-experiment"] = f"{self.experiment.experiment}={self.experiment.variant.name}"
        if self.cache is not None:
            headers.update(self.cache.headers())
        if self.usage is not None:
            headers["x-gateway-cost-usd"] = "unknown" if self.cost_usd is None else f"{self.cost_usd:.8f}"
        return headers

    def gateway_info(self) -> dict[str, Any]:
        """The `"gateway"` object returned to the client: ids, route, verdicts. No raw text."""
        info: dict[str, Any] = {"request_id": self.id, "policy": self.policy}
        if self.served_by is not None:
            info["route"] = {
                "model": self.model,
                "upstream": self.served_by.upstream,
                "target": self.served_by.model,
                "attempts": len(self.attempts),
            }
        elif self.attempts:
            info["route"] = {"model": self.model, "attempts": len(self.attempts)}
        if len(self.attempts) > 1 or (self.attempts and self.served_by is None):
            info["attempts"] = [
                {"upstream": a.upstream, "target": a.model, "outcome": a.outcome, "ms": round(a.ms, 1)}
                for a in self.attempts
            ]
        if self.prompt is not None:
            info["prompt"] = self.prompt.record()
        if self.experiment is not None:
            info["experiment"] = self.experiment.record()
        if self.stream_error:
            info["stream_error"] = self.stream_error
        if self.usage is not None:
            info["usage"] = self.usage.to_json()
            info["cost_usd"] = self.cost_usd
        if self.cache is not None:
            info["cache"] = self.cache.record()
        info["verdicts"] = summarize(self.results)
        if self.options.user_id is not None:
            info["user_id"] = self.options.user_id
        if self.options.metadata:
            info["metadata"] = self.options.metadata
        info["overhead_ms"] = round(self.overhead_ms(), 3)
        return info


def summarize(results: list[CheckResult]) -> list[dict[str, Any]]:
    """Verdicts for the client: request checks one by one; response checks, which run once per
    sentence window on streams, folded per check into the most severe action and highest score."""
    out: list[dict[str, Any]] = []
    folded: dict[str, dict[str, Any]] = {}
    for r in results:
        item = r.to_json()
        if r.phase == "request":
            out.append(item)
            continue
        prev = folded.get(r.check)
        if prev is None:
            item["segments"] = 1
            folded[r.check] = item
            out.append(item)
            continue
        prev["segments"] += 1
        prev["latency_ms"] = round(prev["latency_ms"] + item["latency_ms"], 3)
        if _SEVERITY[item["action"]] > _SEVERITY[prev["action"]]:
            for k in ("action", "reason", "details"):
                if k in item:
                    prev[k] = item[k]
        if item.get("score") is not None and item["score"] > prev.get("score", float("-inf")):
            prev["score"] = item["score"]
        if item["status"] != "ok":
            prev["status"], prev["error"] = item["status"], item.get("error")
    return out


_SEVERITY = {"allow": 0, "flag": 1, "redact": 2, "block": 3}
