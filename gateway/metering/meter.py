"""Per-request metering: admit (limits, with an estimate), settle usage and cost, record (ledger, metrics)."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import orjson

from gateway.errors import GatewayError
from gateway.exchange import Exchange
from gateway.metering import counting
from gateway.metering.ledger import Ledger
from gateway.metering.limits import CounterStore, RateLimited
from gateway.metering.metrics import Metrics
from gateway.metering.outcome import FAILED, outcome
from gateway.metering.pricing import cost_usd
from gateway.metering.usage import Usage, from_upstream

if TYPE_CHECKING:
    from gateway.auth import Principal
    from gateway.runtime import Runtime

log = logging.getLogger("gateway.meter")


class Meter:
    def __init__(self, metrics: Metrics, counters: CounterStore, ledger: Ledger | None) -> None:
        self.metrics = metrics
        self.counters = counters
        self.ledger = ledger
        self._warned_unpriced: set[str] = set()
        # Recent experiment assignments by request id, so feedback that arrives before the ledger row
        # is written (it is written up to one flush interval later) still finds its variant.
        self.recent_assignments: OrderedDict[str, Any] = OrderedDict()

    def remember_assignment(self, request_id: str, assignment: Any) -> None:
        recent = self.recent_assignments
        recent[request_id] = assignment
        recent[(assignment.experiment, assignment.unit_hash)] = assignment
        while len(recent) > 400_000:
            recent.popitem(last=False)

    # ---- before the call -------------------------------------------------------------------------
    async def admit(self, ex: Exchange, rt: Runtime, principal: Principal) -> None:
        scopes = principal.scopes
        if not scopes:
            return
        tokens = usd = 0
        if any(s.limits.needs_tokens for s in scopes):
            input_tokens = self.estimate_input(ex, rt)
            output_tokens = _max_output(ex.body) if ex.endpoint == "chat.completions" else 0
            tokens = input_tokens + output_tokens
            route = rt.router.routes.get(ex.model)
            if route is not None:
                upstream, target = route.targets[0]
                price = rt.prices.lookup(upstream.name, target)
                if price is not None:
                    usd = cost_usd(price, Usage(input_tokens, output_tokens))
                elif any(s.limits.usd_per_day is not None or s.limits.usd_per_month is not None for s in scopes):
                    # A budget cannot be enforced on a model whose cost is unknown: refuse, loudly.
                    ex.error = "unpriced_model_under_budget"
                    raise GatewayError(
                        f"Model {ex.model!r} is served by {upstream.name}/{target}, which has no price in "
                        "policies/pricing.yaml, and this key has a USD budget that could not be enforced.",
                        status=403, type="invalid_request_error", code="unpriced_model_under_budget")
        try:
            ex.reservation = await self.counters.reserve(scopes, tokens, usd, time.time())
        except RateLimited as e:
            self.metrics.child(self.metrics.rate_limited, principal.name, e.code or "").inc()
            ex.error = e.code
            raise

    def estimate_input(self, ex: Exchange, rt: Runtime) -> int:
        enc = counting.encoding_for_model(ex.model, rt.prices.file.default_encoding).name
        if ex.endpoint == "embeddings":
            return counting.count_embedding_input(ex.body, enc)
        return counting.count_chat_request(ex.body, enc)

    # ---- after the call --------------------------------------------------------------------------
    def settle(self, ex: Exchange, rt: Runtime, usage: Any, output_text: str | None, served_model: str | None) -> None:
        """Fix the request's usage and cost: the upstream's figures when usable, else our count."""
        if ex.served_by is None:
            return
        got = from_upstream(usage, embeddings=ex.endpoint == "embeddings")
        if got is None:
            enc_info = counting.encoding_for_model(served_model or ex.served_by.model, rt.prices.file.default_encoding)
            got = Usage(
                self.estimate_input(ex, rt),
                counting.count_text(output_text or "", enc_info.name),
                source="estimated",
                note=("upstream sent no usable usage" if usage is None or ex.stream_error is None
                      else f"stream ended early ({ex.stream_error}); counted what was received")
                + ("" if enc_info.known else f"; tokenizer family unknown, counted with {enc_info.name}"),
            )
        ex.usage = got
        model = served_model or ex.served_by.model
        price = rt.prices.lookup(ex.served_by.upstream, model)
        if price is None:
            ex.cost_usd = None
            self.metrics.child(self.metrics.unpriced, model).inc()
            if model not in self._warned_unpriced:
                self._warned_unpriced.add(model)
                log.warning("no price for model %r (upstream %r): its cost is recorded as null; add it to "
                            "policies/pricing.yaml", model, ex.served_by.upstream)
        else:
            ex.cost_usd = cost_usd(price, got)
            ex.price_key = price.key

    # ---- when the request is over (also on errors and disconnects) ---------------------------------
    def record_row(self, ex: Exchange, status: int, grp: str | None) -> None:
        """The request's ledger row, journaled and queued: called before the response is written, so
        a crash after the client has its answer cannot lose the row (gateway/metering/journal.py)."""
        if self.ledger is not None:
            t0 = time.time_ns() if ex.trace is not None else 0
            self.ledger.record(_row(ex, status, grp, ex.elapsed_ms()))
            if t0:
                ex.trace.mark("ledger enqueue", t0, {"gateway.request_id": ex.id})

    def finish(self, ex: Exchange, status: int, grp: str | None, *, recorded: bool = False) -> None:
        """Settle limits, update metrics and (unless `recorded` by record_row already) write the row."""
        usage = ex.usage
        reservation = ex.reservation
        if reservation is not None:
            self.counters.settle(reservation, (usage.input + usage.output) if usage else 0, ex.cost_usd or 0.0)
        key = ex.key_name or "-"
        m = self.metrics
        child = m.child
        # only configured routes as label values: a client inventing model names must not create series
        model = (ex.model or "-") if ex.routed else ("unknown" if ex.model else "-")
        child(m.requests, ex.api, model, key, str(status)).inc()
        error = ex.error or ex.stream_error
        if outcome(status, error) == FAILED:
            child(m.failures, ex.api, model, error or f"http_{status}").inc()
        elapsed = ex.elapsed_ms()
        child(m.latency, ex.api, model).observe(elapsed / 1000)
        child(m.overhead, ex.api).observe(ex.overhead_ms() / 1000)
        if ex.served_by is not None:
            child(m.upstream_latency, ex.served_by.upstream).observe(ex.upstream_ms / 1000)
        if ex.attempts:
            _attempt_metrics(m, ex.attempts)
        if ex.first_token_ms is not None:
            child(m.first_token, model).observe(ex.first_token_ms / 1000)
        if usage is not None:
            served = ex.served_by.model if ex.served_by else model
            child(m.tokens, served, key, "input", usage.source).inc(usage.input)
            child(m.tokens, served, key, "output", usage.source).inc(usage.output)
            if usage.cached:
                child(m.tokens, served, key, "cached", usage.source).inc(usage.cached)
            if ex.cost_usd:
                child(m.cost, served, key).inc(ex.cost_usd)
        for r in ex.results:
            child(m.verdicts, r.type, r.verdict.action.value, r.status).inc()
            child(m.check_latency, r.type).observe(r.latency_ms / 1000)
            for kind, n in (r.verdict.details.get("counts") or {}).items():
                child(m.findings, r.type, kind).inc(n)
        if self.ledger is not None and not recorded:
            self.ledger.record(_row(ex, status, grp, elapsed))


def _attempt_metrics(m, attempts) -> None:
    child = m.child
    prev = None
    for a in attempts:
        if a.ms or a.outcome == "ok":  # a mid-stream failure is logged with 0 ms: no duration to observe
            child(m.attempt_latency, a.upstream, _outcome_label(a.outcome)).observe(a.ms / 1000)
        if prev is not None and prev.outcome != "ok":
            if (prev.upstream, prev.model) == (a.upstream, a.model):
                child(m.retries, a.upstream).inc()
            else:
                child(m.fallbacks, prev.upstream, a.upstream).inc()
        prev = a


def _outcome_label(outcome: str) -> str:
    # "stream_cut mid-stream" and the like: the kind is the first word (a bounded set from the code)
    return outcome.split(" ", 1)[0]


def _max_output(body: dict[str, Any]) -> int:
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    return value if isinstance(value, int) and value > 0 else 0


def _row(ex: Exchange, status: int, grp: str | None, elapsed_ms: float) -> tuple:
    u = ex.usage
    served = ex.served_by or (ex.cache.origin if ex.cache is not None else None)  # a hit: who answered first
    verdicts = orjson.dumps([[r.type, r.check, r.verdict.action.value, r.verdict.score, r.status, r.verdict.labels()]
                             for r in ex.results]).decode() if ex.results else None
    return (
        ex.id, ex.wall_start, ex.api, ex.key_name, grp, ex.user_ref, ex.model or None,
        served.model if served else None, served.upstream if served else None,
        *((ex.prompt.name, ex.prompt.version, ex.prompt.hash) if ex.prompt is not None else (None, None, None)),
        int(ex.stream), status, ex.error or ex.stream_error,
        u.input if u else 0, u.cached if u else 0, u.output if u else 0, u.reasoning if u else 0,
        u.source if u else "none",
        ex.cost_usd if u else (0.0 if served is None else None), ex.price_key,
        round(elapsed_ms, 3), round(ex.upstream_ms, 3), round(ex.overhead_ms(), 3), len(ex.attempts), verdicts,
        *((ex.experiment.experiment, ex.experiment.variant.name, ex.experiment.unit_hash)
          if ex.experiment is not None else (None, None, None)),
        outcome(status, ex.error or ex.stream_error),
        *((ex.cache.status if ex.cache.status in ("hit", "miss") else None, ex.cache.saved_usd)
          if ex.cache is not None else (None, None)),
        u.cache_write if u else 0,
    )
