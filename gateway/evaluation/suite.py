"""The eval suite file: a dataset, targets to compare, assertions per answer, and gates for CI.

    name: support-answer
    dataset: {file: support_cases.jsonl}        # or `cases: [...]` inline; JSONL or CSV beside the suite
    targets:
      - {name: production, prompt: "support-answer:production", model: mock-context}
      - {name: candidate, prompt: "support-answer@2", params: {temperature: 0}}
    assertions:
      - {type: contains, value: "["}
      - {type: similar, threshold: 0.5}
    gates:
      - {metric: pass_rate, target: candidate, min: 0.8}
      - {metric: pass_rate, target: candidate, baseline: production, max_drop: 0.02}
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.config.yamlfile import load_model
from gateway.errors import PolicyError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Case(Strict):
    id: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict, description="prompt variables")
    input: str | None = Field(default=None, description="a user message, sent after the prompt's messages")
    context: list[dict[str, str]] | str | None = Field(default=None, description="documents for faithfulness")
    reference: str | None = None
    label: Literal["pass", "fail"] | None = Field(default=None, description="a human's verdict, for calibration")
    features: dict[str, Any] | None = Field(default=None, description="tabular targets: the row (default: vars)")
    truth: float | None = Field(default=None, description="tabular targets: the ground truth (class 0/1 or value)")
    attributes: dict[str, str] = Field(default_factory=dict, description="slices: language, segment, ...")

    def documents(self) -> list[str]:
        if self.context is None:
            return []
        if isinstance(self.context, str):
            return [self.context]
        return [d.get("text", "") for d in self.context]


class Dataset(Strict):
    file: str | None = None
    cases: list[Case] | None = None

    @model_validator(mode="after")
    def _one(self) -> Dataset:
        if (self.file is None) == (self.cases is None):
            raise ValueError("give exactly one of `file` (JSONL or CSV beside the suite) or `cases`")
        return self


class Target(Strict):
    name: str = Field(min_length=1)
    prompt: str | None = Field(default=None, description="name@version or name:label (default label production)")
    model: str | None = Field(default=None, description="a model of the gateway; default: the prompt's model")
    params: dict[str, Any] = Field(default_factory=dict)
    tabular: str | None = Field(default=None, description="a tabular model of the gateway (`tabular:` in gateway.yaml)")
    task: Literal["classification", "regression"] = "classification"
    threshold: float = Field(default=0.5, description="classification: predicted class = prediction >= threshold")

    @model_validator(mode="after")
    def _something(self) -> Target:
        if self.tabular is not None:
            if self.prompt is not None or self.model is not None:
                raise ValueError("a tabular target takes `tabular` only (no `prompt` or `model`)")
        elif self.prompt is None and self.model is None:
            raise ValueError("a target needs a `prompt`, a `model`, or both (or `tabular`)")
        return self


AssertionType = Literal["equals", "contains", "not-contains", "regex", "is-json", "max-tokens", "latency-ms",
                        "cost-usd", "similar", "faithfulness", "pii-free", "llm-rubric", "pairwise",
                        "correct", "abs-error"]


class AssertionSpec(Strict):
    type: AssertionType
    name: str | None = None
    value: Any = None  # equals/contains/not-contains/regex: the text; max-tokens/latency-ms/cost-usd: the bound
    ignore_case: bool = False
    schema_: dict[str, Any] | None = Field(default=None, alias="schema", description="is-json: a JSON Schema")
    threshold: float | None = Field(default=None, description="similar / faithfulness / llm-rubric: minimum score")
    rubric: str | None = None
    judge: str | None = Field(default=None, description="llm-rubric: the judge model (any model of the gateway)")
    repeat: int = Field(default=1, ge=1, le=9, description="llm-rubric: ask the judge N times")
    aggregate: Literal["majority", "mean"] = "majority"
    entities: list[str] | None = Field(default=None, description="pii-free: entity types (default: common PII)")
    baseline: str | None = Field(default=None, description="pairwise: the target every other target is judged against")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _needs(self) -> AssertionSpec:
        need = {"equals": "value", "contains": "value", "not-contains": "value", "regex": "value",
                "max-tokens": "value", "latency-ms": "value", "cost-usd": "value", "llm-rubric": "rubric",
                "abs-error": "value"}
        field = need.get(self.type)
        if field and getattr(self, field) is None:
            raise ValueError(f"assertion {self.type!r} needs `{field}`")
        if self.type in ("llm-rubric", "pairwise") and not self.judge:
            raise ValueError(f"assertion {self.type!r} needs `judge` (a model of the gateway)")
        if self.type == "pairwise" and not self.baseline:
            raise ValueError("assertion 'pairwise' needs `baseline` (the target to compare against)")
        if self.schema_ is not None:
            import jsonschema

            try:
                jsonschema.validators.validator_for(self.schema_).check_schema(self.schema_)
            except jsonschema.SchemaError as e:
                raise ValueError(f"schema is not a valid JSON Schema: {e.message}") from None
        return self

    @property
    def label(self) -> str:
        return self.name or self.type


class Gate(Strict):
    metric: Literal["pass_rate", "assertion_pass_rate", "mean_score", "latency_p95_ms", "cost_usd", "errors",
                    "slice_gap", "accuracy", "auc", "log_loss", "mae", "rmse"]
    target: str
    assertion: str | None = Field(default=None, description="assertion_pass_rate / mean_score: which assertion")
    min: float | None = None
    max: float | None = None
    baseline: str | None = Field(default=None, description="another target: gate on the drop against it")
    baseline_run: str | None = Field(default=None, description="`last` (the last recorded run of this suite) or a "
                                     "run id: gate on the drop of this target's pass rate since then")
    max_drop: float | None = Field(default=None, ge=0, description="with baseline: largest allowed drop")
    alpha: float = Field(default=0.05, gt=0, lt=1, description="significance for baseline comparisons")
    attribute: str | None = Field(default=None, description="slice_gap: the case attribute to slice by")

    @model_validator(mode="after")
    def _shape(self) -> Gate:
        if (self.baseline is not None or self.baseline_run is not None) and self.max_drop is None:
            raise ValueError("a gate with `baseline` or `baseline_run` needs `max_drop`")
        if self.baseline_run is not None and (self.baseline is not None or self.metric != "pass_rate"):
            raise ValueError("`baseline_run` compares metric pass_rate of the same target (no `baseline`)")
        if self.baseline is None and self.baseline_run is None and self.min is None and self.max is None:
            raise ValueError("a gate needs `min`, `max`, or `baseline` + `max_drop`")
        if self.metric == "slice_gap" and not self.attribute:
            raise ValueError("metric slice_gap needs `attribute`")
        if self.metric in ("assertion_pass_rate", "mean_score") and not self.assertion:
            raise ValueError(f"metric {self.metric} needs `assertion` (its name or type)")
        return self


class Suite(Strict):
    name: str = Field(min_length=1)
    description: str = ""
    dataset: Dataset
    targets: list[Target] = Field(min_length=1)
    assertions: list[AssertionSpec] = Field(min_length=1)
    gates: list[Gate] = Field(default_factory=list)
    concurrency: int = Field(default=8, ge=1, le=256)

    @field_validator("targets")
    @classmethod
    def _unique(cls, targets: list[Target]) -> list[Target]:
        names = [t.name for t in targets]
        if len(set(names)) != len(names):
            raise ValueError("target names must be unique")
        return targets


class LoadedSuite:
    def __init__(self, path: Path, suite: Suite, cases: list[Case], content_hash: str, dataset_hash: str) -> None:
        self.path, self.suite, self.cases = path, suite, cases
        self.content_hash, self.dataset_hash = content_hash, dataset_hash


def load_suite(path: Path) -> LoadedSuite:
    """Parse and validate a suite and its dataset. Raises PolicyError naming file, line and field."""
    _doc, suite = load_model(path, Suite)
    problems: list[str] = []
    if suite.dataset.cases is not None:
        cases = suite.dataset.cases
        dataset_hash = hashlib.sha256(json.dumps([c.model_dump() for c in cases], sort_keys=True).encode()).hexdigest()
    else:
        data_path = path.parent / suite.dataset.file
        if not data_path.is_file():
            raise PolicyError([f"{path}: dataset.file: {data_path} does not exist"])
        raw = data_path.read_bytes()
        dataset_hash = hashlib.sha256(raw).hexdigest()
        cases = _read_cases(data_path, raw.decode("utf-8"), problems)
    if not cases and not problems:
        problems.append(f"{path}: dataset: no cases (an empty dataset evaluates nothing)")
    for i, c in enumerate(cases):
        if c.id is None:
            c.id = f"case-{i + 1}"
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):
        problems.append(f"{path}: dataset: case ids must be unique")
    names = {t.name for t in suite.targets}
    labels = {a.label for a in suite.assertions} | {a.type for a in suite.assertions}
    for i, g in enumerate(suite.gates):
        for field_name in ("target", "baseline"):
            value = getattr(g, field_name)
            if value is not None and value not in names:
                problems.append(f"{path}: gates[{i}].{field_name}: unknown target {value!r}; targets: {', '.join(sorted(names))}")
        if g.assertion is not None and g.assertion not in labels:
            problems.append(f"{path}: gates[{i}].assertion: no assertion named {g.assertion!r}")
    for i, a in enumerate(suite.assertions):
        if a.baseline is not None and a.baseline not in names:
            problems.append(f"{path}: assertions[{i}].baseline: unknown target {a.baseline!r}")
    if problems:
        raise PolicyError(problems)
    return LoadedSuite(path, suite, cases, hashlib.sha256(path.read_bytes()).hexdigest(), dataset_hash)


def _read_cases(path: Path, text: str, problems: list[str]) -> list[Case]:
    rows: list[dict[str, Any]] = []
    if path.suffix == ".csv":
        for row in csv.DictReader(text.splitlines()):
            case: dict[str, Any] = {"vars": {}, "attributes": {}}
            for k, v in row.items():
                if k in ("id", "input", "reference", "label", "context"):
                    case[k] = v or None
                elif k.startswith("attr."):
                    case["attributes"][k[5:]] = v
                else:
                    case["vars"][k] = v
            rows.append(case)
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    problems.append(f"{path}:{n}: not valid JSON ({e.msg})")
    cases = []
    for n, row in enumerate(rows, 1):
        try:
            cases.append(Case.model_validate(row))
        except Exception as e:  # pydantic ValidationError: name the row and the fields
            errs = getattr(e, "errors", lambda: [])()
            detail = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in errs) or str(e)
            problems.append(f"{path}: case {n}: {detail}")
    return cases
