"""Versioned prompt templates: `prompts/<name>/v<N>.yaml`, labels, a lock file of published hashes.

Offline use (the eval runner):  `load_registry(Path("prompts")).render("support-answer:production", {...})`.
"""

from gateway.prompts.registry import PromptError, Registry, RenderedPrompt, load_registry

__all__ = ["PromptError", "Registry", "RenderedPrompt", "load_registry"]
