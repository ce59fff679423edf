"""LLM gateway: an OpenAI-compatible proxy with a policy pipeline (guardrails, metering, prompts)."""

__version__ = "0.1.0"
