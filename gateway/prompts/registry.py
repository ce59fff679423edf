"""Loaded, verified and compiled prompts: resolve a reference, render it with variables.

Templates use Jinja2's sandboxed environment with strict undefined variables, compiled once per
load. Variable values are data: a value containing `{{ ... }}` is rendered literally, never evaluated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

from gateway.config.yamlfile import load_model
from gateway.errors import GatewayError, PolicyError
from gateway.prompts.schema import LABEL, NAME, PromptVersion, content_hash
from gateway.prompts.store import PromptStore

_REF = re.compile(r"^(?P<name>[^@:]+)(?:@(?P<version>\d+)|:(?P<label>[^@:]+))?$")
DEFAULT_LABEL = "production"


class PromptError(GatewayError):
    """A request's prompt reference or variables are wrong (404 unknown, 400 variables)."""

    status = 400
    type = "invalid_request_error"


@dataclass(frozen=True, slots=True)
class CompiledVersion:
    name: str
    version: int
    hash: str
    spec: PromptVersion
    templates: tuple[tuple[str, Any], ...]  # (role, compiled template)
    published: bool
    path: Path


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    name: str
    version: int
    label: str | None
    hash: str
    messages: list[dict[str, str]]
    model: str | None
    params: dict[str, Any]

    def record(self) -> dict[str, Any]:
        """What requests, ledger rows and eval results carry to say exactly which prompt produced them."""
        return {"name": self.name, "version": self.version, "label": self.label, "hash": self.hash}


@dataclass
class Registry:
    root: Path
    versions: dict[str, dict[int, CompiledVersion]] = field(default_factory=dict)
    labels: dict[str, dict[str, int]] = field(default_factory=dict)

    # ---- lookup --------------------------------------------------------------------------------
    def versions_of(self, name: str) -> dict[int, CompiledVersion]:
        versions = self.versions.get(name)
        if versions is None:
            known = ", ".join(sorted(self.versions)) or "(none)"
            raise PromptError(f"Unknown prompt {name!r}. Prompts: {known}.", status=404, code="prompt_not_found")
        return versions

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> tuple[CompiledVersion, str | None]:
        versions = self.versions_of(name)
        if version is not None:
            if version not in versions:
                raise PromptError(f"Prompt {name!r} has no version {version}. Versions: "
                                  f"{', '.join(map(str, versions))}.", status=404, code="prompt_version_not_found")
            return versions[version], None
        label = label or DEFAULT_LABEL
        labels = self.labels.get(name, {})
        if label not in labels:
            known = ", ".join(f"{k} -> v{v}" for k, v in sorted(labels.items())) or "(none yet)"
            raise PromptError(f"Prompt {name!r} has no label {label!r}. Labels: {known}; versions: "
                              f"{', '.join(map(str, versions))}.", status=404, code="prompt_label_not_found")
        return versions[labels[label]], label

    def resolve_ref(self, ref: str) -> tuple[CompiledVersion, str | None]:
        name, version, label = parse_ref(ref)
        return self.resolve(name, version, label)

    # ---- rendering -------------------------------------------------------------------------------
    def render(self, ref: str | tuple[str, int | None, str | None], variables: dict[str, Any] | None = None) -> RenderedPrompt:
        compiled, label = self.resolve_ref(ref) if isinstance(ref, str) else self.resolve(*ref)
        return render_version(compiled, label, variables or {})

    def describe(self, name: str | None = None) -> Any:
        def one(n: str) -> dict[str, Any]:
            return {
                "name": n,
                "labels": dict(sorted(self.labels.get(n, {}).items())),
                "versions": [
                    {"version": v.version, "hash": v.hash, "published": v.published, "description": v.spec.description,
                     "tags": v.spec.tags, "model": v.spec.model, "params": v.spec.params,
                     "variables": {k: var.model_dump() for k, var in v.spec.variables.items()},
                     "messages": [{"role": r, "content": c} for r, c in v.spec.chat_templates()]}
                    for v in self.versions[n].values()
                ],
            }

        if name is not None:
            self.versions_of(name)
            return one(name)
        return [{"name": n, "labels": dict(sorted(self.labels.get(n, {}).items())),
                 "versions": list(self.versions[n]), "description": list(self.versions[n].values())[-1].spec.description}
                for n in sorted(self.versions)]


def parse_ref(ref: str) -> tuple[str, int | None, str | None]:
    """`name`, `name@3` or `name:staging`."""
    m = _REF.match(ref.strip())
    if not m:
        raise PromptError(f"Cannot read prompt reference {ref!r}: use name, name@VERSION or name:LABEL.",
                          code="bad_prompt_reference")
    version = int(m.group("version")) if m.group("version") else None
    return m.group("name"), version, m.group("label")


def render_version(compiled: CompiledVersion, label: str | None, variables: dict[str, Any]) -> RenderedPrompt:
    spec = compiled.spec
    declared = spec.variables
    missing = sorted(k for k, v in declared.items() if v.required and k not in variables)
    extra = sorted(set(variables) - set(declared))
    wrong = sorted(f"{k} ({problem})" for k, v in variables.items()
                   if k in declared and (problem := declared[k].problem_with(v)))
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"missing: {', '.join(missing)}")
        if extra:
            parts.append(f"not declared: {', '.join(extra)}")
        if wrong:
            parts.append(f"wrong type: {', '.join(wrong)}")
        raise PromptError(f"Variables for prompt {compiled.name}@{compiled.version} - {'; '.join(parts)}. "
                          f"Declared: {', '.join(sorted(declared)) or '(none)'}.", code="prompt_variables",
                          param="gateway.prompt.variables")
    values = {k: v.default for k, v in declared.items() if v.default is not None}
    values.update(variables)
    try:
        messages = [{"role": role, "content": template.render(values)} for role, template in compiled.templates]
    except TemplateError as e:
        raise PromptError(f"Prompt {compiled.name}@{compiled.version} failed to render: {e}",
                          code="prompt_render_error") from None
    return RenderedPrompt(compiled.name, compiled.version, label, compiled.hash, messages, spec.model, dict(spec.params))


# ---- loading ------------------------------------------------------------------------------------
def _environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def load_registry(root: Path) -> Registry:
    """Read, verify against the lock, and compile every prompt. Raises PolicyError listing problems."""
    store = PromptStore(root)
    registry = Registry(Path(root))
    if not store.root.is_dir():
        return registry
    problems: list[str] = []
    env = _environment()
    try:
        lock = store.read_lock()
    except (ValueError, yaml.YAMLError) as e:
        raise PolicyError([f"{store.root / 'prompts.lock'}: {e}"]) from None
    for name in store.names():
        if not NAME.match(name):
            problems.append(f"{store.root / name}: prompt names use a-z, 0-9, '.', '_' and '-' (got {name!r})")
            continue
        compiled: dict[int, CompiledVersion] = {}
        locked = lock.get(name, {})
        for version, path in store.version_files(name).items():
            result = _load_version(env, name, version, path, locked.get(version), problems)
            if result is not None:
                compiled[version] = result
        for version in sorted(set(locked) - set(store.version_files(name))):
            problems.append(f"{store.root / 'prompts.lock'}: {name} v{version} is published but "
                            f"{store.root / name}/v{version}.yaml is missing; restore it (git checkout)")
        registry.versions[name] = compiled
        registry.labels[name] = _load_labels(store, name, compiled, problems)
    for name in sorted(set(lock) - set(registry.versions)):
        problems.append(f"{store.root / 'prompts.lock'}: prompt {name!r} is published but its folder is missing")
    if problems:
        raise PolicyError(problems)
    return registry


def _load_version(env, name: str, version: int, path: Path, locked_hash: str | None,
                  problems: list[str]) -> CompiledVersion | None:
    try:
        doc, spec = load_model(path, PromptVersion)
    except PolicyError as e:
        problems.extend(e.problems)
        return None
    raw = doc.data if isinstance(doc.data, dict) else {}
    digest = content_hash(raw)
    if locked_hash is not None and locked_hash != digest:
        problems.append(
            f"{path}: {name} v{version} was published with hash {locked_hash} but its content now hashes to "
            f"{digest}. Published versions are immutable: restore the file (e.g. `git checkout {path}`) and make "
            f"the change in a new version: `gateway prompts new {name} --from {version}`.")
        return None
    templates = []
    declared = set(spec.variables)
    ok = True
    for i, (role, source) in enumerate(spec.chat_templates()):
        loc = ("template",) if spec.template is not None else ("messages", i, "content")
        try:
            ast = env.parse(source)
        except TemplateSyntaxError as e:
            line = int(doc.where(loc).rsplit(":", 1)[1]) + (e.lineno or 1) - 1
            problems.append(f"{path}:{line}: {'.'.join(map(str, loc))}: template syntax error: {e.message}")
            ok = False
            continue
        undeclared = sorted(meta.find_undeclared_variables(ast) - declared)
        if undeclared:
            problems.append(f"{doc.where(loc)}: {'.'.join(map(str, loc))}: uses undeclared variable(s) "
                            f"{', '.join(undeclared)}; declare them under `variables:`")
            ok = False
            continue
        templates.append((role, env.from_string(source)))
    if not ok:
        return None
    return CompiledVersion(name, version, digest, spec, tuple(templates), locked_hash is not None, path)


def _load_labels(store: PromptStore, name: str, compiled: dict[int, CompiledVersion], problems: list[str]) -> dict[str, int]:
    path = store.root / name / "labels.yaml"
    try:
        labels = store.read_labels(name)
    except Exception as e:  # YAML syntax or shape: reported like any other file problem
        problems.append(f"{path}: {e}")
        return {}
    out = {}
    for label, version in labels.items():
        if not isinstance(label, str) or not LABEL.match(label):
            problems.append(f"{path}: label {label!r}: labels use a-z, 0-9, '_' and '-'")
        elif not isinstance(version, int) or isinstance(version, bool):
            problems.append(f"{path}: {label}: expected a version number, got {version!r}")
        elif version not in store.version_files(name):
            problems.append(f"{path}: {label} points to v{version}, which does not exist "
                            f"(versions: {', '.join(map(str, store.version_files(name)))})")
        elif version in compiled and not compiled[version].published:
            problems.append(f"{path}: {label} points to v{version}, a draft; publish it with "
                            f"`gateway prompts promote {name} {version} --label {label}`")
        else:
            out[label] = version
    return out
