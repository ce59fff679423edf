"""Prices (`policies/pricing.yaml`) and the cost of a request. Pure computation, no I/O.

Lookup order for a served model: the upstream's own override for that model, the upstream's
default (self-hosted, mock), the global table by exact name, then by name without a provider prefix
or a date suffix (`gpt-4o-2024-08-06` -> `gpt-4o`). No match means cost unknown (null), never $0.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.metering.usage import Usage

_MAX_PER_MILLION = 1000.0  # USD per 1M tokens; above this a price is a typo (per-token vs per-million)
_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4}|\d{8}|latest|preview)$")
# Bedrock model ids: an optional cross-region inference profile (`us.`, `eu.`, `apac.`, `global.`), the
# vendor (`anthropic.`), and a version (`-v1:0`, `-v2`): `us.anthropic.claude-3-5-haiku-20241022-v1:0`
# is priced as claude-3-5-haiku, as Bedrock's on-demand prices for it are Anthropic's.
_BEDROCK = re.compile(r"^(?:(?:us|eu|apac|us-gov|global)\.)?(?:anthropic|amazon|meta|mistral|cohere|ai21|deepseek|"
                      r"writer|qwen|openai)\.(.+?)(?:-v\d+(?::\d+)?)?$")


class LongContext(BaseModel):
    model_config = ConfigDict(extra="forbid")
    above_input_tokens: int = Field(gt=0)
    input: float = Field(ge=0, le=_MAX_PER_MILLION)
    output: float = Field(ge=0, le=_MAX_PER_MILLION)
    cached_input: float | None = Field(default=None, ge=0, le=_MAX_PER_MILLION)
    cache_write_input: float | None = Field(default=None, ge=0, le=_MAX_PER_MILLION)


class TokenPrice(BaseModel):
    """USD per 1M tokens."""

    model_config = ConfigDict(extra="forbid")
    input: float = Field(ge=0, le=_MAX_PER_MILLION)
    output: float = Field(ge=0, le=_MAX_PER_MILLION)
    cached_input: float | None = Field(default=None, ge=0, le=_MAX_PER_MILLION)
    cache_write_input: float | None = Field(default=None, ge=0, le=_MAX_PER_MILLION, description=(
        "prompt-cache writes (Anthropic, Bedrock: 1.25x input for the 5-minute cache); default: input price"))
    reasoning: float | None = Field(default=None, ge=0, le=_MAX_PER_MILLION, description="default: output price")
    long_context: LongContext | None = None
    source: str = Field(min_length=1)
    as_of: dt.date

    @model_validator(mode="after")
    def _cached_not_dearer(self) -> TokenPrice:
        if self.cached_input is not None and self.cached_input > self.input:
            raise ValueError("cached_input is higher than input; check the figures")
        return self


class HourlyPrice(BaseModel):
    """A self-hosted model billed by the hour: turned into a per-token price at the stated throughput."""

    model_config = ConfigDict(extra="forbid")
    hourly_usd: float = Field(ge=0, le=10_000)
    tokens_per_hour: float = Field(gt=0)
    source: str = Field(min_length=1)
    as_of: dt.date


PriceEntry = TokenPrice | HourlyPrice


class UpstreamPricing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default: PriceEntry | None = None
    models: dict[str, PriceEntry] = Field(default_factory=dict)


class PricingFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # For models whose tokenizer family is unknown (their counts are labelled estimates).
    default_encoding: Literal["o200k_base", "cl100k_base"] = "o200k_base"
    models: dict[str, PriceEntry] = Field(default_factory=dict)
    upstreams: dict[str, UpstreamPricing] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Price:
    """A resolved price, USD per 1M tokens."""

    key: str  # which entry matched, for reports
    input: float
    output: float
    cached_input: float
    reasoning: float
    long_context: LongContext | None = None
    cache_write_input: float | None = None  # None: the input price


def _resolve(key: str, entry: PriceEntry) -> Price:
    if isinstance(entry, HourlyPrice):
        per_million = entry.hourly_usd / entry.tokens_per_hour * 1_000_000
        return Price(key, per_million, per_million, per_million, per_million)
    cached = entry.cached_input if entry.cached_input is not None else entry.input
    reasoning = entry.reasoning if entry.reasoning is not None else entry.output
    return Price(key, entry.input, entry.output, cached, reasoning, entry.long_context, entry.cache_write_input)


class PriceTable:
    def __init__(self, pricing: PricingFile) -> None:
        self.file = pricing
        self.lookup = lru_cache(maxsize=4096)(self._lookup)

    def _lookup(self, upstream: str, model: str) -> Price | None:
        up = self.file.upstreams.get(upstream)
        if up is not None:
            if model in up.models:
                return _resolve(f"{upstream}/{model}", up.models[model])
            if up.default is not None:
                return _resolve(f"{upstream}/*", up.default)
        for candidate in _candidates(model):
            if candidate in self.file.models:
                return _resolve(candidate, self.file.models[candidate])
        return None


def _candidates(model: str) -> list[str]:
    names = [model]
    if "/" in model:
        names.append(model.split("/", 1)[1])
    if (m := _BEDROCK.match(model)) is not None:
        names.append(m.group(1))
    for name in list(names):
        stripped = name
        while (shorter := _SUFFIX.sub("", stripped)) != stripped:
            stripped = shorter
            names.append(stripped)
    return names


def cost_usd(price: Price, usage: Usage) -> float:
    input_price, output_price, cached_price = price.input, price.output, price.cached_input
    write_price = price.cache_write_input
    lc = price.long_context
    if lc is not None and usage.input > lc.above_input_tokens:
        input_price, output_price = lc.input, lc.output
        cached_price = lc.cached_input if lc.cached_input is not None else lc.input
        write_price = lc.cache_write_input
    if write_price is None:
        write_price = input_price
    fresh_input = usage.input - usage.cached - usage.cache_write
    plain_output = usage.output - usage.reasoning
    total = (fresh_input * input_price + usage.cached * cached_price + usage.cache_write * write_price
             + plain_output * output_price + usage.reasoning * price.reasoning)
    return round(total / 1_000_000, 10)
