"""What a prompt version file holds, validated (unknown keys are errors with file and line)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
LABEL = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,), "list": (list,),
}


class Variable(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["string", "integer", "number", "boolean", "list"] = "string"
    required: bool = True
    default: Any = None
    enum: list[Any] | None = None
    description: str = ""

    @model_validator(mode="after")
    def _default_fits(self) -> Variable:
        if self.default is not None:
            self.required = False
            if problem := self.problem_with(self.default):
                raise ValueError(f"default {self.default!r}: {problem}")
        return self

    def problem_with(self, value: Any) -> str | None:
        ok = isinstance(value, _TYPES[self.type]) and not (self.type in ("integer", "number") and isinstance(value, bool))
        if not ok:
            return f"expected {self.type}, got {type(value).__name__}"
        if self.enum is not None and value not in self.enum:
            return f"must be one of {self.enum}"
        return None


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: str


class PromptVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    model: str | None = Field(default=None, description="default model, used unless the request names one")
    params: dict[str, Any] = Field(default_factory=dict, description="default request parameters")
    variables: dict[str, Variable] = Field(default_factory=dict)
    messages: list[Message] | None = None
    template: str | None = Field(default=None, description="a text template, sent as one user message")

    @model_validator(mode="after")
    def _one_body(self) -> PromptVersion:
        if (self.messages is None) == (self.template is None):
            raise ValueError("give exactly one of `messages` (chat) or `template` (text)")
        if self.messages is not None and not self.messages:
            raise ValueError("`messages` is empty")
        forbidden = {"messages", "model", "stream", "gateway"} & set(self.params)
        if forbidden:
            raise ValueError(f"params may not set {sorted(forbidden)}")
        return self

    def chat_templates(self) -> list[tuple[str, str]]:
        if self.template is not None:
            return [("user", self.template)]
        return [(m.role, m.content) for m in self.messages or ()]


def content_hash(raw: dict[str, Any]) -> str:
    """sha256 of a canonical serialisation of the whole version file (key order and layout do not count)."""
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
