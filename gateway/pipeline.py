"""The policy pipeline: a policy file's checks, built once per load, run per request and phase.

A check's verdict decides; a check that crashes or times out is contained and its `on_error`
(`open`: let the request through, `closed`: refuse it) applies - recorded as such, never as a pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.cache.settings import PolicyCache
from gateway.checks import check_types
from gateway.checks.base import Action, OutputSegment, RequestCheck, ResponseCheck, Verdict
from gateway.checks.extras import MissingExtra
from gateway.config.yamlfile import YamlDoc, dotted
from gateway.errors import GuardrailUnavailable, GuardrailViolation
from gateway.exchange import CheckResult, Exchange
from gateway.telemetry.tracing import CURRENT_PARENT, check_span, end_check_span

log = logging.getLogger("gateway.pipeline")

Phase = Literal["request", "response"]


class CheckSpec(BaseModel):
    """The settings every check entry has; all other keys are the check type's own parameters."""

    model_config = ConfigDict(extra="allow")
    type: str
    name: str | None = None
    on_error: Literal["open", "closed"] = "closed"
    timeout_ms: float = Field(default=2000, gt=0, le=600_000)
    # Response checks only: how a streamed answer is checked.
    #   hold:    buffer each sentence, release it only after it passed (adds one sentence's check time)
    #   monitor: release at once, check completed sentences alongside, cut the stream at a violation
    stream: Literal["hold", "monitor"] | None = None
    enabled: bool = True


class StreamSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Bound on what `hold` mode buffers when no sentence end arrives (keeps added latency bounded).
    hold_max_chars: int = Field(default=800, ge=50, le=100_000)


class PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = ""
    # When every request check only judges (blocks or flags, never rewrites) and does not guard data
    # from leaving, the upstream call starts alongside the checks and is cancelled if one blocks.
    start_upstream_early: bool = Field(default=True, description=(
        "when every request check only judges, start the upstream call alongside the checks (cancelled if one blocks)"))
    # With `telemetry:` on, put the messages (as sent upstream, after this policy's request checks) and
    # the answer (as the client got it) on the request's trace, PII-redacted first (regex detector).
    trace_content: bool = Field(default=False, description=(
        "with telemetry on, put the messages and the answer on the trace, PII-redacted first"))
    # The response cache for this policy's keys (gateway.yaml `cache:` turns it on): off, or widened
    # to non-deterministic requests.
    cache: PolicyCache = Field(default_factory=PolicyCache, description="the response cache for this policy's keys")
    request: list[dict[str, Any]] = Field(default_factory=list)
    response: list[dict[str, Any]] = Field(default_factory=list)
    stream: StreamSettings = Field(default_factory=StreamSettings)


@dataclass(slots=True, frozen=True)
class BoundCheck:
    name: str
    type: str
    on_error: Literal["open", "closed"]
    timeout_s: float
    stream: Literal["hold", "monitor"]
    check: Any


@dataclass(slots=True)
class SegmentDecision:
    action: Action
    text: str  # the segment's text after any redactions
    blocked_by: CheckResult | None = None


class Pipeline:
    def __init__(
        self, name: str, request: list[BoundCheck], response: list[BoundCheck], stream: StreamSettings,
        start_upstream_early: bool = True, trace_content: bool = False, cache: PolicyCache | None = None,
    ) -> None:
        self.name = name
        self.cache = cache or PolicyCache()
        # A check opts in with `overlap_safe = True` (a property where it depends on its params): it
        # never rewrites the request, and what it blocks may reach the model (topics, injection) -
        # unlike a `pii` or deny-list block, whose point is that the text never leaves.
        self.overlap_upstream = start_upstream_early and bool(request) and all(
            getattr(b.check, "overlap_safe", False) for b in request)
        self.request_checks = request
        self.response_checks = response
        self.trace_content = trace_content
        self.hold_checks = [c for c in response if c.stream == "hold"]
        self.monitor_checks = [c for c in response if c.stream == "monitor"]
        self.stream_settings = stream

    @classmethod
    def empty(cls, name: str = "none") -> Pipeline:
        return cls(name, [], [], StreamSettings())

    async def warm(self) -> None:
        if self.trace_content:
            from gateway.telemetry.content import warm as warm_redactor

            await warm_redactor()
        for bound in (*self.request_checks, *self.response_checks):
            warm = getattr(bound.check, "warm", None)
            if warm is not None:
                await warm()

    # ---- request phase --------------------------------------------------------------------------
    async def run_request(self, ex: Exchange) -> None:
        """Run request checks in policy order; apply redactions; raise if one blocks."""
        for bound in self.request_checks:
            result = await _run(bound, "request", bound.check.request, ex)
            ex.results.append(result)
            verdict = result.verdict
            if verdict.action is Action.BLOCK:
                raise _blocked_error(result)
            if verdict.action is Action.REDACT and verdict.rewrites:
                for path, text in verdict.rewrites.items():
                    ex.set_text(path, text)
        self.prepare_response(ex)

    def prepare_response(self, ex: Exchange) -> None:
        """Let response checks get ready while the model works (e.g. embed the request's documents),
        so the answer is checked sooner. A check with `prepare(ex)` stores what it starts on `ex`;
        if preparing fails, its response method finds nothing and does the work itself."""
        for bound in self.response_checks:
            prepare = getattr(bound.check, "prepare", None)
            if prepare is not None:
                prepare(ex)

    # ---- response phase -------------------------------------------------------------------------
    async def check_segment(
        self, ex: Exchange, seg: OutputSegment, checks: list[BoundCheck], stream_mode: str | None = None
    ) -> SegmentDecision:
        """Run `checks` over one output segment in order; redactions feed the next check.
        `stream_mode` (hold/monitor) is set for a streamed answer's sentences: it goes on the trace."""
        decision = SegmentDecision(Action.ALLOW, seg.text)
        for bound in checks:
            result = await _run(bound, "response", bound.check.response, ex, seg, stream_mode=stream_mode)
            ex.results.append(result)
            verdict = result.verdict
            if verdict.action is Action.BLOCK:
                return SegmentDecision(Action.BLOCK, "", result)
            if verdict.action is Action.REDACT and verdict.rewrite is not None:
                seg = OutputSegment(seg.choice, verdict.rewrite, seg.prior, seg.final)
                decision = SegmentDecision(Action.REDACT, verdict.rewrite)
            elif verdict.action is Action.FLAG and decision.action is Action.ALLOW:
                decision.action = Action.FLAG
        return decision


def _blocked_error(result: CheckResult) -> Exception:
    if result.status != "ok":
        return GuardrailUnavailable(
            f"Check '{result.check}' ({result.type}) {'timed out' if result.status == 'timeout' else 'failed'} "
            "and its policy fails closed; the request was not sent.",
            extra={"check": result.check},
        )
    return GuardrailViolation(
        f"Request blocked by check '{result.check}' ({result.type}): {result.verdict.reason}",
        code=result.type,
        extra={"check": result.check},
    )


async def _run(bound: BoundCheck, phase: Phase, method, *args, stream_mode: str | None = None) -> CheckResult:
    trace = args[0].trace  # the Exchange's
    if trace is None:
        return await _run_check(bound, phase, method, *args)
    span = check_span(trace, bound, phase, stream_mode)
    token = CURRENT_PARENT.set(span)  # a model call the check makes (an LLM judge) hangs under it
    try:
        result = await _run_check(bound, phase, method, *args)
    finally:
        CURRENT_PARENT.reset(token)
    end_check_span(span, result, stream_mode)
    return result


async def _run_check(bound: BoundCheck, phase: Phase, method, *args) -> CheckResult:
    t0 = time.perf_counter()
    status: Literal["ok", "error", "timeout"] = "ok"
    error = None
    try:
        async with asyncio.timeout(bound.timeout_s):
            verdict = await method(*args)
        if not isinstance(verdict, Verdict):
            raise TypeError(f"check returned {type(verdict).__name__}, not a Verdict")
    except TimeoutError:
        status, error = "timeout", "TimeoutError"
    except Exception as exc:  # contained: one check must never take the proxy down
        status, error = "error", type(exc).__name__
        # The message may quote user text, so only the exception class and where it was raised are
        # logged by default; the full traceback is at DEBUG.
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" at {frame.filename}:{frame.lineno}" if frame else ""
        log.error("check %r (%s) raised %s%s; on_error=%s", bound.name, bound.type, error, where, bound.on_error)
        log.debug("check %r traceback", bound.name, exc_info=True)
    latency = (time.perf_counter() - t0) * 1000
    if status != "ok":
        action = Action.ALLOW if bound.on_error == "open" else Action.BLOCK
        verdict = Verdict(action, None, f"check {status}; failing {bound.on_error}")
    return CheckResult(bound.name, bound.type, phase, verdict, status, latency, error)


# ---- building from a policy file ----------------------------------------------------------------
def build_pipeline(name: str, doc: YamlDoc) -> Pipeline:
    """Validate a policy document and instantiate its checks. Raises ValueError listing problems."""
    problems: list[str] = []
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise ValueError(f"{doc.where(())}: a policy file must be a mapping with `request:` and/or `response:`")
    try:
        policy = PolicyFile.model_validate(data)
    except ValidationError as e:
        raise ValueError("\n".join(doc.problems(e))) from None
    phases: dict[str, list[BoundCheck]] = {"request": [], "response": []}
    only_extras = True  # every problem is a check whose optional dependencies are not installed
    for phase in ("request", "response"):
        seen: set[str] = set()
        for i, entry in enumerate(getattr(policy, phase)):
            try:
                bound = _build_check(doc, phase, i, entry)
            except ValueError as e:
                only_extras &= isinstance(e, MissingExtra)
                problems.extend(str(e).splitlines())
                continue
            if bound is None:
                continue
            if bound.name in seen:
                problems.append(f"{doc.where((phase, i))}: {phase}[{i}].name: duplicate check name {bound.name!r}")
            seen.add(bound.name)
            phases[phase].append(bound)
    if problems:
        raise (MissingExtra if only_extras else ValueError)("\n".join(problems))
    return Pipeline(name, phases["request"], phases["response"], policy.stream, policy.start_upstream_early,
                    policy.trace_content, policy.cache)


def _build_check(doc: YamlDoc, phase: str, i: int, entry: Any) -> BoundCheck | None:
    loc = (phase, i)
    if not isinstance(entry, dict):
        raise ValueError(f"{doc.where(loc)}: {dotted(loc)}: each check must be a mapping with a `type:`")
    try:
        spec = CheckSpec.model_validate(entry)
    except ValidationError as e:
        raise ValueError("\n".join(doc.problems(e, loc))) from None
    if not spec.enabled:
        return None
    types = check_types()
    cls = types.get(spec.type)
    if cls is None:
        raise ValueError(
            f"{doc.where(loc + ('type',))}: {dotted(loc)}.type: unknown check type {spec.type!r}; "
            f"known types: {', '.join(sorted(types))}"
        )
    wanted = RequestCheck if phase == "request" else ResponseCheck
    if not issubclass(cls, wanted):
        raise ValueError(
            f"{doc.where(loc + ('type',))}: {dotted(loc)}.type: check type {spec.type!r} has no {phase} phase"
        )
    if phase == "request" and spec.stream is not None:
        raise ValueError(f"{doc.where(loc + ('stream',))}: {dotted(loc)}.stream: only response checks take `stream`")
    try:
        params = cls.Params.model_validate(spec.model_extra or {})
    except ValidationError as e:
        raise ValueError("\n".join(doc.problems(e, loc))) from None
    try:
        check = cls(params)
    except ValueError as e:
        raise (MissingExtra if isinstance(e, MissingExtra) else ValueError)(f"{doc.where(loc)}: {dotted(loc)}: {e}") from None
    return BoundCheck(
        name=spec.name or spec.type,
        type=spec.type,
        on_error=spec.on_error,
        timeout_s=spec.timeout_ms / 1000,
        stream=spec.stream or "hold",
        check=check,
    )


def load_check(path, check_type: str, phase: Phase = "request"):
    """The first check of `check_type` in a policy file, built as the gateway builds it (benchmarks)."""
    from gateway.config.yamlfile import load_yaml

    pipeline = build_pipeline(path.stem, load_yaml(path))
    checks = pipeline.request_checks if phase == "request" else pipeline.response_checks
    return next(b.check for b in checks if b.type == check_type)
