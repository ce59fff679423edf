"""The JSON Schemas for editors (gateway/config/schemas.py): the shipped copies are current, every shipped
YAML file names its schema on its first line and is valid against it, and a schema refuses the mistakes
the gateway refuses (so the editor flags them before the gateway does)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from gateway.config import schemas
from tests.helpers import REPO, run_cli

SHIPPED_DIRS = ("policies", "prompts", "evals", "deploy/policies")


class EditorLoader(yaml.SafeLoader):
    """YAML as an editor's language server reads it: YAML 1.2 has no implicit timestamps, so
    `as_of: 2026-12-01` is a string (PyYAML's 1.1 rules would make it a date)."""


EditorLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def shipped_yaml() -> list[tuple[Path, str]]:
    out = []
    for d in SHIPPED_DIRS:
        for path in sorted((REPO / d).rglob("*.yaml")):
            stem = schemas.which_schema(path)
            if stem:
                out.append((path, stem))
    return out


def validator(stem: str) -> Draft202012Validator:
    return Draft202012Validator(schemas.schema(stem))


def test_shipped_schemas_are_current(tmp_path):
    r = run_cli("schemas", "--out", str(tmp_path / "fresh"))
    assert r.returncode == 0, r.stderr
    fresh = sorted(p.name for p in (tmp_path / "fresh").iterdir())
    assert fresh == sorted(p.name for p in schemas.SCHEMA_DIR.glob("*.schema.json")) and len(fresh) == 6
    for name in fresh:
        assert (tmp_path / "fresh" / name).read_text() == (schemas.SCHEMA_DIR / name).read_text(), (
            f"gateway/schemas/{name} is stale: run `gateway schemas --out gateway/schemas`")
        Draft202012Validator.check_schema(yaml.safe_load((schemas.SCHEMA_DIR / name).read_text()))


def test_every_shipped_file_names_its_schema_and_is_valid():
    files = shipped_yaml()
    assert {stem for _, stem in files} == set(schemas.models())  # every schema describes a shipped file
    for path, stem in files:
        first = path.read_text().splitlines()[0]
        want = os.path.relpath(schemas.SCHEMA_DIR / f"{stem}.schema.json", path.parent)
        assert first == f"# yaml-language-server: $schema={want}", path
        assert (path.parent / want).resolve().is_file()
        errors = [f"{list(e.path)}: {e.message[:200]}"
                  for e in validator(stem).iter_errors(yaml.load(path.read_text(), EditorLoader))]
        assert errors == [], f"{path.relative_to(REPO)}: {errors}"


@pytest.mark.parametrize("stem, doc, where", [
    # a misspelt check parameter, a value outside an enum, a timeout over the limit
    ("policy", {"request": [{"type": "pii", "mdoe": "regex"}]}, "mdoe"),
    ("policy", {"request": [{"type": "pii", "mode": "fast"}]}, "fast"),
    ("policy", {"request": [{"type": "topics", "timeout_ms": 10_000_000, "allowed": []}]}, "10000000"),
    # a check type that has no request phase, and one that does not exist
    ("policy", {"request": [{"type": "faithfulness"}]}, "faithfulness"),
    ("policy", {"response": [{"type": "nope"}]}, "nope"),
    # `stream` belongs to response checks only
    ("policy", {"request": [{"type": "injection", "stream": "hold"}]}, "stream"),
    ("gateway", {"upstreams": {"u": {"type": "openia"}}, "models": {"m": {"targets": [{"upstream": "u", "model": "x"}]}}},
     "openia"),
    ("gateway", {"upstreams": {"u": {"type": "mock"}}, "models": {"m": {"targets": [{"upstream": "u", "model": "x"}]}},
                 "server": {"max_body_mb": 0}}, "0"),
    ("pricing", {"models": {"gpt-x": {"input": -1, "output": 1}}}, "-1"),
    ("prompt", {"messages": [{"role": "robot", "content": "hi"}]}, "robot"),
    ("eval-suite", {"name": "s", "dataset": {"cases": []}, "targets": [], "assertions": []}, "targets"),
])
def test_a_schema_flags_what_the_gateway_refuses(stem, doc, where, tmp_path):
    errors = list(validator(stem).iter_errors(doc))
    assert errors, f"{stem} schema accepted {doc}"
    assert any(where in (e.message + " " + " ".join(map(str, e.path))) for err in errors
               for e in [err, *(err.context or [])]), [e.message for e in errors]
    # and the gateway's own validation refuses the same document
    model, _ = schemas.models()[stem]
    if stem == "policy":
        from gateway.config.yamlfile import load_yaml
        from gateway.pipeline import build_pipeline

        (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
        with pytest.raises(ValueError):
            build_pipeline("p", load_yaml(tmp_path / "p.yaml"))
    else:
        from pydantic import ValidationError

        with pytest.raises(ValidationError):
            model.model_validate(doc)


def test_the_policy_schema_knows_every_check_type_and_its_parameters():
    from gateway.checks import check_types
    from gateway.checks.base import RequestCheck, ResponseCheck

    s = schemas.schema("policy")
    for phase, protocol in (("request", RequestCheck), ("response", ResponseCheck)):
        refs = [r["$ref"].rsplit("/", 1)[1] for r in s["properties"][phase]["items"]["oneOf"]]
        want = sorted(t for t, cls in check_types().items() if issubclass(cls, protocol))
        assert sorted(s["$defs"][r]["properties"]["type"]["const"] for r in refs) == want
        for r in refs:
            entry = s["$defs"][r]
            cls = check_types()[entry["properties"]["type"]["const"]]
            assert set(cls.Params.model_fields) <= set(entry["properties"])
            assert entry["additionalProperties"] is False


def test_schemas_cli_refuses_a_file_as_out(tmp_path):
    (tmp_path / "f").write_text("x")
    r = run_cli("schemas", "--out", str(tmp_path / "f"))
    assert r.returncode == 2 and "not a directory" in r.stderr
