"""Tabular models served behind the gateway (`tabular:` in gateway.yaml) and row validation."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator


class FeatureSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["number", "integer", "category", "boolean"] = "number"
    required: bool = True
    min: float | None = None
    max: float | None = None
    values: list[str] | None = Field(default=None, description="category: the allowed values (others are a 400)")


class DriftMonitor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    window_s: float = Field(default=3600, gt=0, description="default window for GET .../drift and the scheduled check")
    min_rows: int = Field(default=200, ge=10, description="fewer predictions in the window: no verdict")
    check_every_s: float = Field(default=0, ge=0, description="scheduled check interval; 0 = only on request")
    webhook: HttpUrl | None = Field(default=None, description="POSTed a JSON alert when drift is detected")
    realert_after_s: float = Field(default=3600, ge=0, description="repeat an alert for ongoing drift after this")
    dataset_threshold: float = Field(default=0.5, gt=0, le=1)


class TabularModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: HttpUrl = Field(description="the model server's predict endpoint: POST {rows: [...]} -> {predictions: [...]}")
    timeout_s: float = Field(default=10, gt=0, le=600)
    features: dict[str, FeatureSpec] = Field(min_length=1)
    task: Literal["classification", "regression"] = "classification"
    reference: str | None = Field(default=None, description="fitted profile (`gateway drift fit`), relative to policies/")
    drift: DriftMonitor = Field(default_factory=DriftMonitor)
    max_rows: int = Field(default=1000, ge=1, le=100_000, description="rows per predict request")
    keep_days: float | None = Field(default=None, gt=0, description="delete predictions (and their drift summaries) "
                                    "older than this many days; unset: keep them all")

    @model_validator(mode="after")
    def _no_reserved(self) -> TabularModelConfig:
        if "prediction" in self.features or "label" in self.features:
            raise ValueError("`prediction` and `label` are reserved column names; rename the feature")
        return self


def validate_rows(cfg: TabularModelConfig, rows: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows checked against the schema: (clean rows, problems). Each problem names the row and field."""
    if not isinstance(rows, list) or not rows:
        return [], ["`rows` must be a non-empty array of objects (feature name -> value)"]
    if len(rows) > cfg.max_rows:
        return [], [f"{len(rows)} rows; at most {cfg.max_rows} per request (max_rows)"]
    problems: list[str] = []
    clean: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            problems.append(f"rows[{i}]: must be an object of feature values")
            continue
        unknown = sorted(set(row) - set(cfg.features))
        if unknown:
            problems.append(f"rows[{i}]: unknown feature(s) {', '.join(unknown)}; "
                            f"the schema has {', '.join(cfg.features)}")
        out: dict[str, Any] = {}
        for name, spec in cfg.features.items():
            value = row.get(name)
            if value is None:
                if spec.required:
                    problems.append(f"rows[{i}].{name}: required")
                out[name] = None
                continue
            problem, value = _check_value(spec, value)
            if problem:
                problems.append(f"rows[{i}].{name}: {problem}")
            out[name] = value
        clean.append(out)
        if len(problems) > 20:
            problems.append("... (first 20 problems shown)")
            break
    return clean, problems


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float (JSON allows any number of digits)
        return False


def _check_value(spec: FeatureSpec, value: Any) -> tuple[str | None, Any]:
    if spec.type in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            return f"expected a finite {spec.type}, got {type(value).__name__} {str(value)[:40]!r}", value
        if spec.type == "integer" and float(value) != int(value):
            return f"expected an integer, got {value}", value
        if spec.min is not None and value < spec.min:
            return f"{value} is below the minimum {spec.min}", value
        if spec.max is not None and value > spec.max:
            return f"{value} is above the maximum {spec.max}", value
        return None, float(value)
    if spec.type == "boolean":
        if not isinstance(value, bool):
            return f"expected true or false, got {str(value)[:40]!r}", value
        return None, value
    if not isinstance(value, str):
        return f"expected a category (string), got {type(value).__name__}", value
    if spec.values is not None and value not in spec.values:
        return f"{value[:40]!r} is not one of {', '.join(spec.values)}", value
    return None, value
