"""JSON Schemas of every file a user edits, generated from the pydantic models that validate them, so
an editor (VS Code or JetBrains with a YAML plug-in reading `# yaml-language-server: $schema=...`)
checks and completes a file as it is typed, with the same rules the gateway applies at load.

`gateway schemas --out DIR` writes them; the shipped copies live in gateway/schemas/ and a test fails
when they are stale. Rules that pydantic checks in code (a regex that must compile, a default that
must fit its variable's type, cross-references between fields) are not in the schemas: the gateway
still reports those at load, with file and line.

A guardrail policy's checks are not one model: each check type has its own parameters
(`Params` of the class in gateway/checks/). The policy schema is therefore built here: one entry
model per check type and phase (the shared entry settings of pipeline.CheckSpec plus that type's
parameters), chosen by `type`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
_DRAFT = "https://json-schema.org/draft/2020-12/schema"


def _entry_model(check_type: str, params: type[BaseModel], phase: str) -> type[BaseModel]:
    """One check entry of a policy: `type`, the settings every entry has, and the type's parameters."""
    from gateway.pipeline import CheckSpec

    shared = CheckSpec.model_fields
    fields: dict[str, Any] = {"type": (Literal[check_type], ...)}
    for name in ("name", "on_error", "timeout_ms", "enabled") + (("stream",) if phase == "response" else ()):
        info = shared[name]
        fields[name] = (info.annotation, Field(default=info.default, description=_ENTRY_DOCS[name],
                                               **_constraints(info)))
    title = "".join(part.capitalize() for part in check_type.replace("-", "_").split("_"))
    return create_model(f"{title}{phase.capitalize()}Check", __base__=params,
                        __config__=None, __doc__=params.__doc__, **fields)


_ENTRY_DOCS = {
    "name": "shown in verdicts, headers and the ledger (default: the type); unique in a policy",
    "on_error": "a check that crashes or times out: `closed` refuses the request, `open` lets it through",
    "timeout_ms": "how long the check may take before it counts as an error",
    "enabled": "false: the entry is kept in the file but not run",
    "stream": "streamed answers: `hold` releases each sentence after it passed; `monitor` releases at once "
              "and cuts the stream at a violation",
}


def _constraints(info: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in info.metadata:
        for attr in ("gt", "ge", "lt", "le"):
            if getattr(m, attr, None) is not None:
                out[attr] = getattr(m, attr)
    return out


def policy_model() -> type[BaseModel]:
    """PolicyFile with its `request` and `response` lists typed by check type."""
    from gateway.checks import check_types
    from gateway.checks.base import RequestCheck, ResponseCheck
    from gateway.pipeline import PolicyFile

    types = check_types()
    phases: dict[str, Any] = {}
    for phase, protocol in (("request", RequestCheck), ("response", ResponseCheck)):
        entries = [_entry_model(t, cls.Params, phase) for t, cls in sorted(types.items()) if issubclass(cls, protocol)]
        union = Annotated[Union[tuple(entries)], Field(discriminator="type")]  # noqa: UP007 (a runtime tuple)
        phases[phase] = (list[union], Field(default_factory=list, description=f"{phase} checks, run in order"))
    fields = {name: (info.annotation, info) for name, info in PolicyFile.model_fields.items()
              if name not in ("request", "response")}
    return create_model("Policy", __config__=ConfigDict(extra="forbid"), __doc__="A guardrail policy file in policies/.",
                        **fields, **phases)


def models() -> dict[str, tuple[type[BaseModel], str]]:
    """Schema file stem -> (model, which files it describes)."""
    from gateway.config.gateway_file import GatewayFile
    from gateway.evaluation.suite import Suite
    from gateway.experiments.config import ExperimentsFile
    from gateway.metering.pricing import PricingFile
    from gateway.prompts.schema import PromptVersion

    return {
        "gateway": (GatewayFile, "policies/gateway.yaml: server, upstreams, model routes, keys, state"),
        "policy": (policy_model(), "a guardrail policy: policies/<name>.yaml"),
        "pricing": (PricingFile, "policies/pricing.yaml: token and hourly prices"),
        "experiments": (ExperimentsFile, "policies/experiments.yaml: A/B experiments"),
        "prompt": (PromptVersion, "a prompt version: prompts/<name>/v<N>.yaml"),
        "eval-suite": (Suite, "an offline eval suite: evals/<suite>.yaml"),
    }


def schema(stem: str) -> dict[str, Any]:
    model, what = models()[stem]
    body = model.model_json_schema(mode="validation")
    return {"$schema": _DRAFT, "$id": f"https://llm-gateway.local/schemas/{stem}.schema.json",
            "title": body.pop("title", stem), "description": what, **body}


def render(stem: str) -> str:
    return json.dumps(schema(stem), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_all(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for stem in models():
        path = out / f"{stem}.schema.json"
        path.write_text(render(stem), encoding="utf-8")
        written.append(path)
    return written


def which_schema(path: Path, policies_dir_names: frozenset[str] = frozenset()) -> str | None:
    """The schema stem for a YAML file of this project's layout (None: not a file with a schema)."""
    from gateway.runtime import EXPERIMENTS_FILE, GATEWAY_FILE, PRICING_FILE

    name = path.name
    if name == GATEWAY_FILE:
        return "gateway"
    if name == PRICING_FILE:
        return "pricing"
    if name == EXPERIMENTS_FILE:
        return "experiments"
    if path.parent.parent.name == "prompts" and path.stem.startswith("v") and path.stem[1:].isdigit():
        return "prompt"
    if path.parent.name == "evals":
        return "eval-suite"
    if "policies" in path.parts and path.parent.name not in ("mock", "tabular"):
        return "policy"
    return None
