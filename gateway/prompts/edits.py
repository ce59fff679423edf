"""Label moves on the prompts folder, shared by `gateway prompts promote|rollback` and the console:
each under the store's cross-process lock, recorded in the prompt's history with who did it."""

from __future__ import annotations

from gateway.config.yamlfile import parse_yaml
from gateway.prompts.registry import CompiledVersion, load_registry
from gateway.prompts.schema import LABEL, content_hash
from gateway.prompts.store import PromptStore, history_entry


class PromptEditError(ValueError):
    """A label move that cannot be made; the message says why (CLI and console show it as is)."""


def promote(store: PromptStore, name: str, version: int, label: str, by: str | None = None
            ) -> tuple[int | None, CompiledVersion]:
    """Publish `version` (lock its content hash) and point `label` at it. Returns (old version, new)."""
    if not LABEL.match(label):
        raise PromptEditError(f"labels use a-z, 0-9, '_' and '-' (got {label!r})")
    with store.editing():
        reg = load_registry(store.root)  # the version must load, compile and match its lock entry
        compiled, _ = reg.resolve(name, version)
        lock = store.read_lock()
        lock.setdefault(name, {})[version] = content_hash(parse_yaml(compiled.path))
        store.write_lock(lock)
        labels = store.read_labels(name)
        old = labels.get(label)
        labels[label] = version
        store.write_labels(name, labels)
        store.append_history(name, history_entry(label, old, version, "promote", by))
    return old, compiled


def rollback(store: PromptStore, name: str, label: str, by: str | None = None) -> tuple[int, int]:
    """Point `label` back at what it pointed to before its last promotion. Returns (from, to)."""
    with store.editing():
        labels = store.read_labels(name)
        if label not in labels:
            raise PromptEditError(f"{name} has no label {label!r}")
        # Replay the label's history as a stack of "what it pointed to before each promotion".
        stack: list[int | None] = []
        for entry in store.read_history(name):
            if entry.get("label") != label:
                continue
            if entry.get("action") == "promote":
                stack.append(entry.get("from"))
            elif entry.get("action") == "rollback" and stack:
                stack.pop()
        target = stack[-1] if stack else None
        if target is None:
            raise PromptEditError(f"{name}:{label} has no earlier version to roll back to "
                                  f"(see {store.root / name / 'history.jsonl'})")
        current = labels[label]
        labels[label] = target
        store.write_labels(name, labels)
        store.append_history(name, history_entry(label, current, target, "rollback", by))
        load_registry(store.root)  # refuse to leave an invalid state behind unnoticed
    return current, target
