"""Upstream model servers: the OpenAI-compatible HTTP client and the built-in mock."""
