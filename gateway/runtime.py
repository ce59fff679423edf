"""Everything loaded from `policies/`, validated as a whole and built into one immutable `Runtime`.

A reload builds a new Runtime next to the running one and swaps it in only if it is entirely valid;
requests in flight keep the Runtime they started with.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass, field
from pathlib import Path


from gateway.auth import KeyRing, Principal, hash_key
from gateway.checks.extras import MissingExtra
from gateway.config.gateway_file import GatewayFile, MeteringSettings, ServerSettings
from gateway.config.yamlfile import dotted, load_model, load_yaml
from gateway.errors import GatewayError, PolicyError
from gateway.experiments.assign import Splitter
from gateway.experiments.config import ExperimentsFile
from gateway.metering.limits import Limits, Scope
from gateway.metering.pricing import PriceTable, PricingFile
from gateway.prompts.registry import Registry, load_registry
from gateway.prompts.store import PromptStore
from gateway.pipeline import Pipeline, build_pipeline
from gateway.routing import Route, Router
from gateway.cache.settings import CacheSettings
from gateway.console.settings import ConsoleSettings
from gateway.dialects.stored_responses import ResponsesSettings
from gateway.state.config import StateSettings
from gateway.telemetry.tracing import TelemetrySettings
from gateway.upstreams.base import Upstream
from gateway.upstreams.mock import MockUpstream
from gateway.upstreams.anthropic import AnthropicUpstream
from gateway.upstreams.azure_openai import AzureOpenAIUpstream
from gateway.upstreams.bedrock import BedrockUpstream
from gateway.upstreams.gemini import GeminiUpstream
from gateway.upstreams.openai import HttpPool, OpenAIUpstream

# upstream `type` -> the class that speaks that API over HTTP (mock upstreams are in-process)
HTTP_UPSTREAMS = {"openai": OpenAIUpstream, "anthropic": AnthropicUpstream, "azure-openai": AzureOpenAIUpstream,
                  "gemini": GeminiUpstream, "bedrock": BedrockUpstream}

log = logging.getLogger("gateway.runtime")

GATEWAY_FILE = "gateway.yaml"
PRICING_FILE = "pricing.yaml"
EXPERIMENTS_FILE = "experiments.yaml"
# Files in policies/ that are not guardrail policies (later issues add pricing.yaml and friends).
NOT_POLICIES = frozenset({GATEWAY_FILE, PRICING_FILE, EXPERIMENTS_FILE})


@dataclass(slots=True)
class Runtime:
    settings: ServerSettings
    keys: KeyRing
    router: Router
    pipelines: dict[str, Pipeline]
    upstreams: dict[str, Upstream]
    fingerprint: dict[str, float]  # file -> mtime, to notice edits
    prices: PriceTable
    prompts: Registry
    experiments: dict[str, Splitter] = field(default_factory=dict)
    metering: bool = True
    user_ref: Callable[[str], str | None] = field(default=lambda user: None)  # how the ledger keeps a user id
    warnings: list[str] = field(default_factory=list)
    tabular: dict[str, Any] = field(default_factory=dict)  # name -> tabular.service.TabularModel
    ledger_journal: bool = True  # metering.journal (read when the ledger starts)
    state: StateSettings = field(default_factory=StateSettings)  # read at start-up (a change needs a restart)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)  # likewise
    cache: CacheSettings = field(default_factory=CacheSettings)  # likewise (routes' and policies' cache: are live)
    responses: ResponsesSettings = field(default_factory=ResponsesSettings)  # read at start-up
    console: ConsoleSettings = field(default_factory=ConsoleSettings)  # read at start-up
    embedded_state: bool = False  # `state:` ignored (load_runtime's flag), kept for reloads
    loaded_at: float = field(default_factory=time.time)

    async def warm(self) -> None:
        for upstream in self.upstreams.values():
            warm = getattr(upstream, "warm", None)
            if warm is not None:
                await warm()
        # Only policies a key can reach: a policy file nobody uses must not load its models (a
        # guardrail model costs seconds and hundreds of MB). Checks still load lazily if need be.
        used = self.keys.policies_in_use()
        for name, pipeline in self.pipelines.items():
            if name in used:
                await pipeline.warm()

    def experiments_for(self, model: object, prompt: str | None) -> list[Splitter]:
        """Experiments a request takes part in candidacy for, in file order (the first active one wins)."""
        return [s for s in self.experiments.values()
                if (isinstance(model, str) and model in s.exp.models) or (prompt is not None and prompt in s.exp.prompts)]

    def models_for(self, principal: Principal) -> list[str]:
        return [m for m in self.router.routes if principal.may_use(m)]


def policy_files(policies_dir: Path) -> list[Path]:
    return sorted(p for p in policies_dir.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def fingerprint(policies_dir: Path, prompts_dir: Path | None = None) -> dict[str, float]:
    out = {}
    files = policy_files(policies_dir) + (PromptStore(prompts_dir).files() if prompts_dir else [])
    for p in files:
        try:
            out[str(p)] = p.stat().st_mtime_ns
        except FileNotFoundError:
            pass
    return out


def load_runtime(policies_dir: Path, pool: HttpPool | None = None, prompts_dir: Path | None = None, *,
                 embedded_state: bool = False) -> Runtime:
    """Read and validate every file; raise PolicyError listing every problem with file and line.
    `embedded_state`: ignore the `state:` section (in-process counters, SQLite ledger), for a private
    gateway such as an eval run's, which must not spend production's limits or write its ledger."""
    policies_dir = Path(policies_dir)
    if not policies_dir.is_dir():
        raise PolicyError([f"{policies_dir}: policies directory does not exist"])
    stamp = fingerprint(policies_dir, prompts_dir)
    problems: list[str] = []
    warnings: list[str] = []

    gw_path = policies_dir / GATEWAY_FILE
    if not gw_path.is_file():
        raise PolicyError([f"{gw_path}: missing; it declares upstreams, models and keys (see README)"])
    gw_doc, gw = load_model(gw_path, GatewayFile)
    if embedded_state:
        gw = gw.model_copy(update={"state": StateSettings()})

    pipelines: dict[str, Pipeline] = {}
    # Policies whose only problem is a check needing an extra that is not installed (a core install):
    # an error if a key or open mode uses one (below), else a warning and the policy is not loaded.
    unavailable: dict[str, list[str]] = {}
    for path in policy_files(policies_dir):
        if path.name in NOT_POLICIES:
            continue
        try:
            pipelines[path.stem] = build_pipeline(path.stem, load_yaml(path))
        except MissingExtra as e:
            unavailable[path.stem] = str(e).splitlines()
        except ValueError as e:
            problems.extend(str(e).splitlines())

    prices = _load_prices(policies_dir / PRICING_FILE, set(gw.upstreams), problems, warnings)
    prompts = Registry(Path(prompts_dir or "prompts"))
    if prompts_dir is not None:
        try:
            prompts = load_registry(Path(prompts_dir))
        except PolicyError as e:
            problems.extend(e.problems)

    pool = pool or HttpPool()
    upstreams: dict[str, Upstream] = {}
    for name, cfg in gw.upstreams.items():
        if cfg.type == "mock":
            upstreams[name] = MockUpstream(name, cfg, policies_dir)
            continue
        api_key = None
        if cfg.api_key_env:
            api_key = os.environ.get(cfg.api_key_env) or None
            if api_key is None:
                msg = f"upstream {name!r}: env var {cfg.api_key_env} is not set"
                if cfg.required:
                    problems.append(f"{gw_doc.where(('upstreams', name, 'api_key_env'))}: {msg} "
                                    "(set it, or mark the upstream `required: false` to skip it)")
                else:
                    warnings.append(f"{msg}; upstream skipped")
                continue
        missing = cfg.problems()  # what else the type needs (bedrock: a region, the access key id)
        if missing:
            for field_name, msg in missing:
                if cfg.required:
                    problems.append(f"{gw_doc.where(('upstreams', name, field_name))}: upstream {name!r}: {msg}")
                else:
                    warnings.append(f"upstream {name!r}: {msg}; upstream skipped")
            continue
        upstreams[name] = HTTP_UPSTREAMS[cfg.type](name, cfg, pool, api_key)

    routes: dict[str, Route] = {}
    for model, rcfg in gw.models.items():
        for i, t in enumerate(rcfg.targets):
            if t.upstream not in gw.upstreams:
                problems.append(f"{gw_doc.where(('models', model, 'targets', i, 'upstream'))}: "
                                f"models.{model}.targets[{i}].upstream: unknown upstream {t.upstream!r}; "
                                f"declared: {', '.join(sorted(gw.upstreams))}")
            elif isinstance(up := upstreams.get(t.upstream), MockUpstream):
                problems.extend(f"{gw_doc.where(('models', model, 'targets', i, 'model'))}: "
                                f"models.{model}.targets[{i}].model: {p}" for p in up.problems_with(t.model))
        live = [t for t in rcfg.targets if t.upstream in upstreams]
        primary = [t for t in live if not t.stand_in]
        chosen = primary or live
        if not chosen:
            warnings.append(f"model {model!r}: every target's upstream is skipped; the model is not served")
            continue
        if not primary:
            warnings.append(f"model {model!r}: no real upstream configured; served by stand-in "
                            f"{', '.join(t.upstream + '/' + t.model for t in chosen)}")
        routes[model] = Route(model, tuple((upstreams[t.upstream], t.model) for t in chosen), rcfg)

    used_unavailable: set[str] = set()

    def need_policy(policy: str, loc: tuple) -> None:
        if policy in unavailable:
            used_unavailable.add(policy)
            problems.append(f"{gw_doc.where(loc)}: {'.'.join(map(str, loc))}: policy {policy!r} cannot run on this "
                            "install:")
            problems.extend(f"  {line}" for line in unavailable[policy])
            return
        if policy != "none" and policy not in pipelines:
            problems.append(f"{gw_doc.where(loc)}: {'.'.join(map(str, loc))}: unknown policy {policy!r}; "
                            f"files in {policies_dir}: {', '.join(sorted(pipelines)) or '(none)'} (or `none`)")

    def scopes(kind: str, name: str, limits: Limits | None, group: str | None, loc: tuple) -> tuple[Scope, ...]:
        out = []
        if limits is not None:
            out.append(Scope(f"{kind}:{name}", limits))
        if group is not None:
            if group not in gw.groups:
                problems.append(f"{gw_doc.where(loc + ('group',))}: {'.'.join(map(str, loc))}.group: unknown group "
                                f"{group!r}; declared under `groups:`: {', '.join(sorted(gw.groups)) or '(none)'}")
            else:
                out.append(Scope(f"group:{group}", gw.groups[group].limits))
        if out and not gw.metering.enabled:
            problems.append(f"{gw_doc.where(loc)}: {'.'.join(map(str, loc))}: limits need metering "
                            "(metering.enabled is false)")
        return tuple(out)

    by_hash: dict[str, Principal] = {}
    for i, k in enumerate(gw.keys):
        need_policy(k.policy, ("keys", i, "policy"))
        digest = k.sha256
        if k.env:
            value = os.environ.get(k.env)
            if not value:
                problems.append(f"{gw_doc.where(('keys', i, 'env'))}: keys[{i}].env: env var {k.env} is not set")
                continue
            digest = hash_key(value)
        if digest in by_hash:
            problems.append(f"{gw_doc.where(('keys', i))}: keys[{i}]: same key as {by_hash[digest].name!r}")
        by_hash[digest] = Principal(k.name, k.policy, tuple(k.models), k.admin, k.group,
                                    scopes("key", k.name, k.limits, k.group, ("keys", i)))

    open_principal = None
    if not gw.keys:
        need_policy(gw.open_mode.policy, ("open_mode", "policy"))
        open_principal = Principal("open-mode", gw.open_mode.policy, tuple(gw.open_mode.models), admin=True,
                                   scopes=scopes("key", "open-mode", gw.open_mode.limits, None, ("open_mode",)))

    for policy in sorted(set(unavailable) - used_unavailable):
        first = unavailable[policy][0].split(": ", 1)[-1]
        warnings.append(f"policy {policy!r} is not loaded (no key uses it): {first}")

    if gw.state.counters == "redis" and not gw.state.redis_url():
        problems.append(f"{gw_doc.where(('state', 'redis_url_env'))}: state.redis_url_env: env var "
                        f"{gw.state.redis_url_env} is not set (the Redis URL for state.counters: redis, e.g. "
                        "redis://127.0.0.1:6379/0)")
    if gw.state.ledger == "postgres" and not gw.state.postgres_url():
        problems.append(f"{gw_doc.where(('state', 'postgres_url_env'))}: state.postgres_url_env: env var "
                        f"{gw.state.postgres_url_env} is not set (the PostgreSQL URL for state.ledger: postgres, e.g. "
                        "postgresql://gateway@127.0.0.1:5432/gateway)")
    for section, store, used in (("cache", gw.cache.store, gw.cache.enabled), ("responses", gw.responses.store, True)):
        if used and store == "redis" and gw.state.counters != "redis" and not gw.state.redis_url():
            problems.append(f"{gw_doc.where((section, 'store'))}: {section}.store: redis needs the Redis URL in env var "
                            f"{gw.state.redis_url_env} (state.redis_url_env), which is not set")
    experiments = _load_experiments(policies_dir / EXPERIMENTS_FILE, set(gw.models), prompts,
                                    gw.metering.enabled, problems)
    tabular = _load_tabular(gw, gw_doc, policies_dir, problems)
    if gw.telemetry.enabled:
        for header, env in gw.telemetry.headers_env.items():
            if env not in os.environ:
                problems.append(f"{gw_doc.where(('telemetry', 'headers_env', header))}: telemetry.headers_env.{header}: "
                                f"env var {env} is not set")
        try:
            gw.telemetry.resolved_ratio()
        except ValueError as e:
            problems.append(f"{gw_doc.where(('telemetry',))}: telemetry.sampling_ratio: {e}")
    if problems:
        raise PolicyError(problems)
    pipelines.setdefault("none", Pipeline.empty())
    return Runtime(gw.server, KeyRing(by_hash, open_principal), Router(routes), pipelines, upstreams, stamp,
                   prices, prompts, experiments, gw.metering.enabled, user_reference(gw.metering), warnings,
                   tabular=tabular, ledger_journal=gw.metering.journal, state=gw.state,
                   embedded_state=embedded_state, telemetry=gw.telemetry, cache=gw.cache,
                   responses=gw.responses, console=gw.console)


def _load_tabular(gw: GatewayFile, gw_doc, policies_dir: Path, problems: list[str]) -> dict:
    """Tabular models with their fitted reference profiles (read once per load, not per request)."""
    from gateway.stats.profile import Profile
    from gateway.tabular.service import TabularModel

    out = {}
    for name, cfg in gw.tabular.items():
        profile = None
        if cfg.reference:
            path = policies_dir / cfg.reference
            loc = ("tabular", name, "reference")
            try:
                profile = Profile.load(path)
            except (OSError, ValueError, KeyError, TypeError) as e:
                problems.append(f"{gw_doc.where(loc)}: tabular.{name}.reference: cannot load profile {path} "
                                f"({type(e).__name__}: {e}); make one with `gateway drift fit`")
            else:
                missing = sorted(set(cfg.features) - set(profile.columns))
                if missing:
                    problems.append(f"{gw_doc.where(loc)}: tabular.{name}.reference: profile {path} lacks "
                                    f"feature(s) {', '.join(missing)}")
        out[name] = TabularModel(name, cfg, profile)
    return out


def _load_experiments(path: Path, models: set[str], prompts: Registry, metering: bool,
                      problems: list[str]) -> dict[str, Splitter]:
    if not path.is_file():
        return {}
    try:
        doc, parsed = load_model(path, ExperimentsFile)
    except PolicyError as e:
        problems.extend(e.problems)
        return {}
    out: dict[str, Splitter] = {}
    for i, exp in enumerate(parsed.experiments):
        def bad(loc: tuple, message: str) -> None:
            full = ("experiments", i, *loc)
            problems.append(f"{doc.where(full)}: {dotted(full)}: {message}")

        if exp.name in out:
            bad(("name",), f"duplicate experiment {exp.name!r}")
        if not metering:
            bad((), "experiments are recorded in the ledger: they need metering (metering.enabled is false)")
        for j, model in enumerate(exp.models):
            if model not in models:
                bad(("models", j), f"unknown model {model!r}; models: {', '.join(sorted(models))}")
        for j, name in enumerate(exp.prompts):
            if name not in prompts.versions:
                bad(("prompts", j), f"unknown prompt {name!r}; prompts: {', '.join(sorted(prompts.versions)) or '(none)'}")
        for j, v in enumerate(exp.variants):
            if v.model is not None and v.model not in models:
                bad(("variants", j, "model"), f"unknown model {v.model!r}; models: {', '.join(sorted(models))}")
            if v.prompt is not None:
                if not exp.prompts:
                    bad(("variants", j, "prompt"), "a prompt override needs the experiment's `prompts:` list")
                for name in exp.prompts:
                    if name in prompts.versions:
                        try:
                            prompts.resolve(name, v.prompt.version, v.prompt.label)
                        except GatewayError as e:
                            bad(("variants", j, "prompt"), e.message)
        out[exp.name] = Splitter(exp)
    return out


def _load_prices(path: Path, upstream_names: set[str], problems: list[str], warnings: list[str]) -> PriceTable:
    if not path.is_file():
        warnings.append(f"{path}: missing; every request's cost will be recorded as null")
        return PriceTable(PricingFile())
    try:
        doc, pricing = load_model(path, PricingFile)
    except PolicyError as e:
        problems.extend(e.problems)
        return PriceTable(PricingFile())
    for name in pricing.upstreams:
        if name not in upstream_names:
            problems.append(f"{doc.where(('upstreams', name))}: upstreams.{name}: no upstream {name!r} in "
                            f"gateway.yaml (declared: {', '.join(sorted(upstream_names))})")
    return PriceTable(pricing)


def user_reference(settings: MeteringSettings) -> Callable[[str], str | None]:
    """The function that turns a request's end-user id into what the ledger stores."""
    if settings.users == "raw":
        return lambda user: user
    if settings.users == "omit":
        return lambda user: None
    salt = os.environ.get(settings.user_salt_env, "")

    def hashed(user: str) -> str:
        return "u:" + hashlib.sha256(f"user:{salt}:{user}".encode()).hexdigest()[:24]

    return hashed
