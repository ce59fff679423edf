"""The explicit registry of check types. A policy's `type:` is looked up here at load time only."""

from __future__ import annotations

from gateway.checks.base import CheckClass

_REGISTRY: dict[str, type[CheckClass]] = {}


def register(cls: type[CheckClass]) -> type[CheckClass]:
    if cls.type in _REGISTRY and _REGISTRY[cls.type] is not cls:
        raise ValueError(f"check type {cls.type!r} registered twice")
    _REGISTRY[cls.type] = cls
    return cls


def check_types() -> dict[str, type[CheckClass]]:
    _load_builtin()
    return dict(_REGISTRY)


def _load_builtin() -> None:
    # Importing a check module registers it. Heavy checks keep their model imports lazy.
    from gateway.checks import citations, denylist, faithfulness, injection, pii, safety, topics  # noqa: F401
