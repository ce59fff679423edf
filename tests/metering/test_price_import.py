"""`gateway prices import`: LiteLLM's price table (per token) merged into pricing.yaml (per 1M tokens) as
text: comments and the user's entries stay, a re-import is idempotent, `--force` replaces the user's
entry, the result loads in the gateway and prices a request with the imported figures."""

from __future__ import annotations

import json
import shutil

import yaml

from gateway.metering.pricing import PriceTable, PricingFile, cost_usd
from gateway.metering.usage import Usage
from tests.helpers import REPO, run_cli

# Entries in LiteLLM's format (model_prices_and_context_window.json): a chat model with cache and
# long-context prices, a Bedrock id with a colon, an embedding model, a reasoning model, and entries
# the import must leave out.
TABLE = {
    "sample_spec": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "mode": "one of: chat, embedding"},
    "acme-chat-1": {"litellm_provider": "acme", "mode": "chat", "input_cost_per_token": 2e-06,
                    "output_cost_per_token": 8e-06, "cache_read_input_token_cost": 5e-07,
                    "cache_creation_input_token_cost": 2.5e-06, "input_cost_per_token_above_200k_tokens": 4e-06,
                    "output_cost_per_token_above_200k_tokens": 1.2e-05, "source": "https://acme.example/pricing"},
    "bedrock/us.acme.chat-2-v1:0": {"litellm_provider": "bedrock", "mode": "chat", "input_cost_per_token": 1e-06,
                                    "output_cost_per_token": 5e-06},
    "acme-embed": {"litellm_provider": "acme", "mode": "embedding", "input_cost_per_token": 2e-08},
    "acme-think": {"litellm_provider": "acme", "mode": "responses", "input_cost_per_token": 1.1e-06,
                   "output_cost_per_token": 4.4e-06, "output_cost_per_reasoning_token": 4.4e-06},
    "gpt-4o-mini": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 9e-07,
                    "output_cost_per_token": 9e-06},
    "acme-image": {"litellm_provider": "acme", "mode": "image_generation", "output_cost_per_image": 0.04},
    "acme-typo": {"litellm_provider": "acme", "mode": "chat", "input_cost_per_token": 3.0, "output_cost_per_token": 3.0},
    "acme-no-price": {"litellm_provider": "acme", "mode": "chat"},
}


def imported(text: str) -> dict:
    return PricingFile.model_validate(yaml.safe_load(text)).models


def test_import_merges_keeps_yours_and_is_idempotent(tmp_path):
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    pricing = policies / "pricing.yaml"
    before = pricing.read_text()
    (tmp_path / "prices.json").write_text(json.dumps(TABLE))
    r = run_cli("prices", "import", str(tmp_path / "prices.json"), "--policies", str(policies), "--as-of", "2026-12-01")
    assert r.returncode == 0, r.stderr
    assert "imported 4 token prices (4 new, 0 updated)" in r.stdout
    assert "with a cached-read price: 1; cache-write: 1; reasoning: 1; long-context tier: 1" in r.stdout
    assert "kept your own entry (not overwritten; --force replaces it): 1: gpt-4o-mini" in r.stdout
    assert "skipped 1: mode 'image_generation'" in r.stdout and "skipped 1: no per-token input and output price" in r.stdout
    assert "skipped 1: a price above 1000 USD per 1M tokens" in r.stdout
    after = pricing.read_text()
    # the user's file is untouched outside the imported block: every line of it is still there, in order
    rest = iter(after.splitlines())
    assert all(line in rest for line in before.splitlines())  # before's lines, in order, within after
    models = imported(after)
    acme = models["acme-chat-1"]
    assert (acme.input, acme.output, acme.cached_input, acme.cache_write_input) == (2.0, 8.0, 0.5, 2.5)
    assert (acme.long_context.above_input_tokens, acme.long_context.input, acme.long_context.output) == (200000, 4.0, 12.0)
    assert acme.source == "LiteLLM model_prices_and_context_window.json (https://acme.example/pricing)"
    assert str(acme.as_of) == "2026-12-01"
    assert models["acme-embed"].output == 0 and models["acme-think"].reasoning == 4.4
    assert models["bedrock/us.acme.chat-2-v1:0"].input == 1.0
    assert models["gpt-4o-mini"].input == 0.15  # yours, not LiteLLM's 0.90
    # a second import rebuilds the same block
    again = run_cli("prices", "import", str(tmp_path / "prices.json"), "--policies", str(policies), "--as-of", "2026-12-01")
    assert "(0 new, 4 updated)" in again.stdout and pricing.read_text() == after
    # the gateway loads it, and prices a served model with the imported figures
    check = run_cli("check-policies", "--policies", str(policies), "--prompts", str(REPO / "prompts"))
    assert check.returncode == 0, check.stderr
    table = PriceTable(PricingFile.model_validate(yaml.safe_load(after)))
    price = table._lookup("openai", "acme-chat-1")
    assert cost_usd(price, Usage(input=100_000, output=100_000)) == 1.0  # 0.1M x $2 + 0.1M x $8
    assert cost_usd(price, Usage(input=1_000_000, output=100_000)) == 5.2  # above 200k: the long-context tier


def test_force_replaces_your_entry_and_dry_run_changes_nothing(tmp_path):
    pricing = tmp_path / "pricing.yaml"
    pricing.write_text("# my prices\nmodels:\n  gpt-4o-mini:\n    input: 0.15\n    output: 0.6\n    source: me\n"
                       "    as_of: 2025-01-01\n\n  mine: {input: 1, output: 2, source: me, as_of: 2025-01-01}\n")
    (tmp_path / "prices.json").write_text(json.dumps(TABLE))
    dry = run_cli("prices", "import", str(tmp_path / "prices.json"), "--pricing", str(pricing), "--force", "--dry-run")
    assert dry.returncode == 0 and "dry run" in dry.stdout and "gpt-4o-mini" in dry.stdout
    assert pricing.read_text().startswith("# my prices\n") and "source: me\n    as_of" in pricing.read_text()
    r = run_cli("prices", "import", str(tmp_path / "prices.json"), "--pricing", str(pricing), "--force")
    assert r.returncode == 0 and "replaced your own entry (--force): gpt-4o-mini" in r.stdout
    models = imported(pricing.read_text())
    assert models["gpt-4o-mini"].input == 0.9 and models["mine"].input == 1
    assert pricing.read_text().startswith("# my prices\n")


def test_bad_input_is_a_clear_error(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    r = run_cli("prices", "import", str(tmp_path / "x.json"), "--pricing", str(tmp_path / "p.yaml"))
    assert r.returncode == 2 and "not JSON" in r.stderr
    (tmp_path / "y.json").write_text(json.dumps({"a": 1}))
    r = run_cli("prices", "import", str(tmp_path / "y.json"), "--pricing", str(tmp_path / "p.yaml"))
    assert r.returncode == 2 and "not LiteLLM's price table" in r.stderr
    (tmp_path / "prices.json").write_text(json.dumps(TABLE))
    (tmp_path / "flow.yaml").write_text("models: {a: {input: 1, output: 1, source: s, as_of: 2025-01-01}}\n")
    r = run_cli("prices", "import", str(tmp_path / "prices.json"), "--pricing", str(tmp_path / "flow.yaml"))
    assert r.returncode == 2 and "block-style `models:`" in r.stderr
    r = run_cli("prices", "import", str(tmp_path / "prices.json"), "--pricing", str(tmp_path / "p.yaml"), "--as-of", "soon")
    assert r.returncode == 2 and "--as-of" in r.stderr
