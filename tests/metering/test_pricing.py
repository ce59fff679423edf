import datetime as dt

import pytest
import yaml
from pydantic import ValidationError

from gateway.metering.pricing import PriceTable, PricingFile, cost_usd
from gateway.metering.usage import Usage
from tests.helpers import REPO

SRC = {"source": "test", "as_of": dt.date(2026, 1, 1)}


def table(**models):
    return PriceTable(PricingFile(models=models, upstreams={
        "local": {"default": {"hourly_usd": 2.0, "tokens_per_hour": 1_000_000, **SRC}},
        "mock": {"models": {"echo": {"input": 1.0, "output": 2.0, **SRC}}},
    }))


def test_shipped_table_is_valid_and_covers_the_main_providers():
    pricing = PricingFile.model_validate(yaml.safe_load((REPO / "policies" / "pricing.yaml").read_text()))
    names = " ".join(pricing.models)
    for family in ("gpt-4o", "claude", "gemini", "mistral", "Llama"):
        assert family in names
    t = PriceTable(pricing)
    assert t.lookup("openai", "gpt-4o-2024-08-06").key == "gpt-4o"
    assert t.lookup("openai", "mistral-large-latest").key == "mistral-large"
    assert t.lookup("anthropic", "claude-3-5-haiku-20241022").key == "claude-3-5-haiku"
    assert t.lookup("mock", "echo").key == "mock/*"


def test_lookup_order_and_unknown_models():
    t = table(**{"gpt-4o": {"input": 2.5, "output": 10, **SRC}})
    assert t.lookup("mock", "echo").key == "mock/echo"
    assert t.lookup("local", "anything").key == "local/*"
    assert t.lookup("openai", "openai/gpt-4o").key == "gpt-4o"
    assert t.lookup("openai", "gpt-4o-mini") is None  # no prefix guessing: unknown stays unknown


def test_costs_with_cache_reasoning_long_context_and_hourly():
    t = table(
        a={"input": 2.0, "cached_input": 0.5, "output": 8.0, "reasoning": 4.0, **SRC},
        b={"input": 1.0, "output": 2.0, "long_context": {"above_input_tokens": 1000, "input": 3.0, "output": 6.0}, **SRC},
    )
    # 800 fresh input * 2 + 200 cached * 0.5 + 300 plain output * 8 + 200 reasoning * 4, per million
    assert cost_usd(t.lookup("x", "a"), Usage(1000, 500, cached=200, reasoning=200)) == pytest.approx(0.0049)
    assert cost_usd(t.lookup("x", "b"), Usage(1000, 10)) == pytest.approx((1000 * 1 + 10 * 2) / 1e6)
    assert cost_usd(t.lookup("x", "b"), Usage(1001, 10)) == pytest.approx((1001 * 3 + 10 * 6) / 1e6)
    assert cost_usd(t.lookup("local", "m"), Usage(500_000, 500_000)) == pytest.approx(2.0)

    # prompt-cache writes at their own price, or at the input price where the table names none
    c = table(c={"input": 3.0, "cached_input": 0.3, "cache_write_input": 3.75, "output": 15.0, **SRC})
    usage = Usage(1000, 100, cached=400, cache_write=200)
    assert cost_usd(c.lookup("x", "c"), usage) == pytest.approx((400 * 3 + 400 * 0.3 + 200 * 3.75 + 100 * 15) / 1e6)
    assert cost_usd(t.lookup("x", "a"), usage) == pytest.approx((400 * 2 + 400 * 0.5 + 200 * 2 + 100 * 8) / 1e6)
    shipped = PriceTable(PricingFile.model_validate(yaml.safe_load((REPO / "policies" / "pricing.yaml").read_text())))
    assert shipped.lookup("anthropic", "claude-sonnet-4-5-20250929").cache_write_input == 3.75
    assert shipped.lookup("aws", "us.anthropic.claude-sonnet-4-5-20250929-v1:0").key == "claude-sonnet-4-5"
    assert shipped.lookup("aws", "anthropic.claude-3-5-haiku-20241022-v1:0").key == "claude-3-5-haiku"
    assert shipped.lookup("aws", "amazon.nova-lite-v1:0").key == "nova-lite"


@pytest.mark.parametrize("bad", [
    {"input": -1, "output": 1},
    {"input": 5000, "output": 1},  # per-token price typed as per-million
    {"input": 1, "output": 1, "cached_input": 2},
    {"input": 1, "output": 1, "source": ""},
    {"input": 1, "output": 1, "colour": "red"},
])
def test_bad_prices_are_rejected(bad):
    with pytest.raises(ValidationError):
        PricingFile.model_validate({"models": {"m": {**SRC, **bad}}})
