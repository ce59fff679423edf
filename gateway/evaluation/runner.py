"""Run a suite: every case through every target (bounded concurrency), every assertion on every
answer, with a progress line and ETA on stderr. Ctrl-C stops the run and keeps what finished."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.evaluation.assertions import Assessor, Outcome
from gateway.evaluation.client import GatewayClient, Reply
from gateway.evaluation.suite import Case, LoadedSuite, Target
from gateway.prompts.registry import Registry, parse_ref


@dataclass
class CaseResult:
    target: str
    case_id: str
    answer: str
    reply: Reply
    outcomes: list[Outcome]
    attributes: dict[str, str] = field(default_factory=dict)
    label: str | None = None

    @property
    def passed(self) -> bool | None:
        """All assertions passed; None when the answer or an assertion errored."""
        if self.reply.error is not None or any(o.passed is None for o in self.outcomes):
            return None
        return all(o.passed for o in self.outcomes)

    truth: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "case": self.case_id, "passed": self.passed, "answer": self.answer,
                "prediction": self.reply.prediction, "truth": self.truth,
                "error": self.reply.error, "latency_ms": round(self.reply.latency_ms, 2), "cached": self.reply.cached,
                "cost_usd": self.reply.cost_usd, "usage": self.reply.usage, "attributes": self.attributes,
                "label": self.label, "assertions": [o.to_json() for o in self.outcomes]}


@dataclass
class Plan:
    """What each target sends for each case, resolved before any call (bad references fail early)."""

    calls: list[tuple[Target, Case, str, list[dict[str, Any]], dict[str, Any], str]]  # target, case, model, messages, params, question
    prompts: dict[str, dict[str, Any]]  # target -> prompt record (name, version, label, hash)


def plan(loaded: LoadedSuite, registry: Registry, models: set[str]) -> tuple[Plan | None, list[str]]:
    problems: list[str] = []
    calls = []
    prompts: dict[str, dict[str, Any]] = {}
    where = loaded.path
    for t in loaded.suite.targets:
        model = t.model
        if t.tabular is not None:
            if t.tabular not in models:
                problems.append(f"{where}: target {t.name!r}: unknown tabular model {t.tabular!r} "
                                "(declare it under `tabular:` in gateway.yaml)")
                continue
            for case in loaded.cases:
                row = case.features if case.features is not None else case.vars
                calls.append((t, case, t.tabular, [], row, ""))
            continue
        for case in loaded.cases:
            messages: list[dict[str, Any]] = []
            params = dict(t.params)
            if t.prompt is not None:
                try:
                    rendered = registry.render(parse_ref(t.prompt), case.vars)
                except Exception as e:  # unknown prompt, version, label or variables: listed, exit 2
                    problems.append(f"{where}: target {t.name!r}, case {case.id!r}: {getattr(e, 'message', e)}")
                    if len(problems) > 30:
                        return None, problems
                    continue
                prompts[t.name] = rendered.record()
                messages = list(rendered.messages)
                params = {**rendered.params, **t.params}
                model = t.model or rendered.model
            if case.input is not None:
                messages.append({"role": "user", "content": case.input})
            if not messages:
                problems.append(f"{where}: target {t.name!r}, case {case.id!r}: nothing to send "
                                "(no prompt messages and no `input`)")
                continue
            if model is None:
                problems.append(f"{where}: target {t.name!r}: no model (the prompt names none; set `model`)")
                break
            if model not in models:
                problems.append(f"{where}: target {t.name!r}: unknown model {model!r}; the gateway serves "
                                f"{', '.join(sorted(models))}")
                break
            question = case.input or next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
            calls.append((t, case, model, messages, params, question))
    for a in loaded.suite.assertions:
        if a.judge is not None and a.judge not in models:
            problems.append(f"{where}: assertion {a.label!r}: unknown judge model {a.judge!r}")
    return (None if problems else Plan(calls, prompts)), problems


class Progress:
    """On a terminal, a bar redrawn in place; otherwise (CI logs, pipes) a plain line every
    `every_s` seconds, so a long run never looks hung."""

    def __init__(self, total: int, enabled: bool, every_s: float = 5.0) -> None:
        self.total, self.done, self.errors = total, 0, 0
        self.t0 = time.monotonic()
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.every_s = every_s
        self._last = self.t0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self.enabled and not self.tty:  # a heartbeat even while no answer comes back
            self._task = asyncio.create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            self._line()

    def _stats(self) -> tuple[float, float]:
        rate = self.done / max(time.monotonic() - self.t0, 1e-9)
        return rate, ((self.total - self.done) / rate if rate else float("nan"))

    def _line(self) -> None:
        rate, eta = self._stats()
        sys.stderr.write(f"eval: {self.done}/{self.total} answered in {time.monotonic() - self.t0:.0f}s, "
                         f"{rate:.1f}/s, ETA {'?' if eta != eta else f'{eta:.0f}s'}, errors {self.errors}\n")
        sys.stderr.flush()

    def tick(self, error: bool) -> None:
        self.done += 1
        self.errors += error
        now = time.monotonic()
        if self.enabled and self.tty and (now - self._last > 0.1 or self.done == self.total):
            self._last = now
            rate, eta = self._stats()
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                             f"{rate:.1f}/s ETA {eta:.0f}s errors {self.errors}  ")
            sys.stderr.flush()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.enabled and self.tty:
            sys.stderr.write("\n")
        elif self.enabled and self.done:
            self._line()


class TargetUnreachable(RuntimeError):
    """A target's model refused connections for several cases in a row (after the retries): the run
    stops instead of waiting out every case."""

    def __init__(self, dead: dict[str, str]) -> None:
        self.dead = dead
        super().__init__("; ".join(f"target {t!r}: {why}" for t, why in dead.items()))


DEAD_AFTER = 3  # consecutive unreachable answers (each after its retries) that stop a target


async def execute(loaded: LoadedSuite, the_plan: Plan, client: GatewayClient, *, concurrency: int,
                  progress: bool = True) -> tuple[list[CaseResult], bool]:
    """(results, interrupted). Results keep the plan's order; an interrupted run returns what finished."""
    assessor = Assessor(client)
    sem = asyncio.Semaphore(concurrency)
    bar = Progress(len(the_plan.calls), progress)
    results: dict[int, CaseResult] = {}
    streak: dict[str, int] = {}
    dead: dict[str, str] = {}

    async def one(i: int, target: Target, case: Case, model: str, messages, params, question) -> None:
        async with sem:
            if target.name in dead:
                return
            if target.tabular is not None:
                reply = await client.predict(model, params)  # params: the feature row
            else:
                reply = await client.chat(model, messages, params)
            if reply.unreachable:
                streak[target.name] = streak.get(target.name, 0) + 1
                if streak[target.name] >= DEAD_AFTER and target.name not in dead:
                    dead[target.name] = (f"{client.where(model, target.tabular is not None)} refused connections "
                                         f"for {DEAD_AFTER} cases in a row, each after {client.retries} retries "
                                         f"(last: {reply.error})")
            else:
                streak[target.name] = 0
            outcomes = [await assessor.check(a, case, reply, question, target.threshold)
                        for a in loaded.suite.assertions]
            results[i] = CaseResult(target.name, case.id, reply.text, reply, outcomes, case.attributes, case.label,
                                    case.truth)
            bar.tick(reply.error is not None)

    bar.start()
    tasks = [asyncio.create_task(one(i, *call)) for i, call in enumerate(the_plan.calls)]
    interrupted = False
    try:
        await asyncio.gather(*tasks)
        await _pairwise(loaded, the_plan, results, assessor, sem)
    except (asyncio.CancelledError, KeyboardInterrupt):
        interrupted = True
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        bar.close()
    if dead:
        raise TargetUnreachable(dead)
    return [results[i] for i in sorted(results)], interrupted


async def _pairwise(loaded: LoadedSuite, the_plan: Plan, results: dict[int, CaseResult], assessor: Assessor,
                    sem: asyncio.Semaphore) -> None:
    """Pairwise assertions need every target's answer to a case: they run after all answers are in."""
    specs = [(j, a) for j, a in enumerate(loaded.suite.assertions) if a.type == "pairwise"]
    if not specs:
        return
    questions = {(c[0].name, c[1].id): c[5] for c in the_plan.calls}
    by_key = {(r.target, r.case_id): r for r in results.values()}

    async def judge(r: CaseResult, j: int, spec) -> None:
        base = by_key.get((spec.baseline, r.case_id))
        if r.target == spec.baseline:
            r.outcomes[j] = Outcome(spec.label, True, None, "baseline")
            return
        if base is None or base.reply.error is not None or r.reply.error is not None:
            r.outcomes[j] = Outcome(spec.label, None, reason="no baseline answer to compare with")
            return
        async with sem:
            r.outcomes[j] = await assessor.pairwise(spec, questions[(r.target, r.case_id)], r.answer, base.answer)

    await asyncio.gather(*(judge(r, j, spec) for r in results.values() for j, spec in specs))
