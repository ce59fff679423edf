"""Schema of `policies/experiments.yaml`: who takes part, how units are split, what each variant changes."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_UNIT = re.compile(r"^(header:[A-Za-z0-9-]+|user|gateway\.user_id|key)$")


class PromptOverride(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int | None = Field(default=None, ge=1)
    label: str | None = None

    @model_validator(mode="after")
    def _one(self) -> PromptOverride:
        if (self.version is None) == (self.label is None):
            raise ValueError("give exactly one of `version` or `label`")
        return self


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    weight: float = Field(ge=0, le=1)
    model: str | None = None  # serve this public model instead
    prompt: PromptOverride | None = None  # render this version/label of the request's prompt instead
    params: dict[str, Any] = Field(default_factory=dict)  # set these request parameters

    @field_validator("params")
    @classmethod
    def _no_structure(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = {"messages", "model", "stream", "gateway"} & set(v)
        if bad:
            raise ValueError(f"params may not set {sorted(bad)}")
        return v


class Metric(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # proportion: 0/1 outcomes (a unit counts as converted if any of its values is 1);
    # mean: any number (a unit's value is the mean of its values).
    type: Literal["proportion", "mean"] = "mean"
    # Which direction is better, for the decision text.
    higher_is_better: bool = True


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    description: str = ""
    # Requests take part if their public model is listed, or if they name one of these prompts.
    models: list[str] = Field(default_factory=list)
    prompts: list[str] = Field(default_factory=list)
    unit: str = "header:x-user-id"
    salt: str | None = None  # default: the experiment's name (so experiments split independently)
    start: dt.datetime | None = None
    stop: dt.datetime | None = None
    variants: list[Variant] = Field(min_length=2)
    metrics: dict[str, Metric] = Field(default_factory=dict)
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    power: float = Field(default=0.8, gt=0.5, lt=1)
    minimum_detectable_effect: float = Field(default=0.05, gt=0, description="relative, for planning")

    @field_validator("unit")
    @classmethod
    def _unit(cls, v: str) -> str:
        if not _UNIT.match(v):
            raise ValueError("unit is header:<name>, user (the request's `user` field), gateway.user_id, or key")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Experiment:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique: {names}")
        total = sum(v.weight for v in self.variants)
        if abs(total - 1) > 1e-9:
            raise ValueError(f"variant weights must sum to 1 (they sum to {total:g})")
        if not self.models and not self.prompts:
            raise ValueError("say which requests take part: `models:` and/or `prompts:`")
        for when in (self.start, self.stop):
            if when is not None and when.tzinfo is None:
                raise ValueError("start/stop need a time zone, e.g. 2026-12-01T00:00:00Z")
        if self.start and self.stop and self.stop <= self.start:
            raise ValueError("stop must be after start")
        return self

    @property
    def control(self) -> Variant:
        return self.variants[0]  # the first variant is the control


class ExperimentsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    experiments: list[Experiment] = Field(default_factory=list)
