"""Prometheus metrics, in a registry of the app's own (so several apps in one process stay apart).
Label values are bounded: models are the configured routes (a name a client made up is counted as
"unknown"), upstreams and keys come from gateway.yaml, outcomes and kinds from the code.
Under `gateway serve --workers N` (PROMETHEUS_MULTIPROC_DIR set by the supervisor) every worker's
values live in shared files and a scrape of any worker sums them all."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_OVERHEAD = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple, object] = {}
        self.requests = Counter("gateway_requests", "Requests by endpoint, model, key and HTTP status",
                                ["endpoint", "model", "key", "status"], registry=r)
        self.failures = Counter("gateway_request_failures", "Failed requests (5xx, or a stream that broke after "
                                "its 200; gateway/metering/outcome.py) by endpoint, model and error kind",
                                ["endpoint", "model", "kind"], registry=r)
        self.latency = Histogram("gateway_request_duration_seconds", "Total time per request",
                                 ["endpoint", "model"], buckets=_LATENCY, registry=r)
        self.upstream_latency = Histogram("gateway_upstream_duration_seconds", "Time waiting on upstreams",
                                          ["upstream"], buckets=_LATENCY, registry=r)
        self.attempt_latency = Histogram("gateway_upstream_attempt_duration_seconds", "Each upstream attempt "
                                         "(retries and fallbacks apart) by upstream and outcome (ok, http_429, "
                                         "timeout, connect, ...)", ["upstream", "outcome"], buckets=_LATENCY,
                                         registry=r)
        self.retries = Counter("gateway_upstream_retries", "Attempts that repeated a failed one on the same "
                               "upstream and model", ["upstream"], registry=r)
        self.fallbacks = Counter("gateway_upstream_fallbacks", "Attempts that moved to the next target of a "
                                 "route after the previous one failed", ["from_upstream", "to_upstream"], registry=r)
        self.first_token = Histogram("gateway_stream_first_token_seconds", "Streams: time from the request's "
                                     "arrival to the first content sent to the client", ["model"],
                                     buckets=_LATENCY, registry=r)
        self.overhead = Histogram("gateway_overhead_seconds", "Time spent in the gateway itself",
                                  ["endpoint"], buckets=_OVERHEAD, registry=r)
        self.tokens = Counter("gateway_tokens", "Tokens by model, key and kind (input, cached, output)",
                              ["model", "key", "kind", "source"], registry=r)
        self.cost = Counter("gateway_cost_usd", "Cost in USD by model and key", ["model", "key"], registry=r)
        self.unpriced = Counter("gateway_unpriced_requests", "Requests whose served model has no price",
                                ["model"], registry=r)
        self.verdicts = Counter("gateway_check_verdicts", "Check verdicts by type, action and run status",
                                ["type", "action", "status"], registry=r)
        self.findings = Counter("gateway_check_findings", "What checks found, by check type and kind "
                                "(pii: entity type) - counts only", ["type", "kind"], registry=r)
        self.check_latency = Histogram("gateway_check_duration_seconds", "Time per check run", ["type"],
                                       buckets=_OVERHEAD, registry=r)
        self.rate_limited = Counter("gateway_rate_limited", "Requests refused by a rate limit or budget",
                                    ["scope", "code"], registry=r)
        self.state_errors = Counter("gateway_state_backend_errors", "Calls to the shared state backend that "
                                    "failed (state.on_backend_error decides what requests get)", ["backend"],
                                    registry=r)
        self.ledger_errors = Counter("gateway_ledger_write_errors", "Failed ledger write attempts", registry=r)
        self.ledger_rows = Counter("gateway_ledger_rows_written", "Rows committed to the ledger", registry=r)
        self.trace_exported = Counter("gateway_trace_spans_exported", "Spans the OTLP collector accepted",
                                      registry=r)
        self.trace_dropped = Counter("gateway_trace_spans_dropped", "Spans not exported: queue_full (the "
                                     "collector is slower than the traffic) or export_failed", ["reason"], registry=r)
        self.trace_bad_parent = Counter("gateway_trace_bad_traceparent", "Requests whose traceparent header was "
                                        "malformed (a new trace was started)", registry=r)
        self.cache_requests = Counter("gateway_cache_requests", "Chat requests by cache result: hit, miss (went "
                                      "upstream), bypass (not cacheable: see the request's gateway.cache.reason)",
                                      ["result"], registry=r)
        self.cache_saved = Counter("gateway_cache_saved_usd", "What cache hits would have cost upstream (priced as "
                                   "the original answer)", ["key"], registry=r)
        self.cache_stored = Counter("gateway_cache_stored", "Answers stored, and answers not stored by reason "
                                    "(too_large, not_storable)", ["result"], registry=r)
        self.cache_errors = Counter("gateway_cache_errors", "Cache store calls that failed (get, put, delete: the "
                                    "request went on uncached), calls skipped while the store recovers (skipped), "
                                    "entries that could not be read (corrupt, removed)", ["op"], registry=r)
        self.drift_summaries = Counter("gateway_drift_summaries_written", "Drift summaries of the prediction log "
                                       "written (five-minute buckets and hours), by tabular model", ["model"],
                                       registry=r)
        self.drift_summary_errors = Counter("gateway_drift_summary_errors", "Summariser passes that failed (retried "
                                            "the next minute), by tabular model", ["model"], registry=r)
        self.predictions_deleted = Counter("gateway_tabular_predictions_deleted", "Predictions deleted by keep_days, "
                                           "by tabular model", ["model"], registry=r)
        self.cache_entries = Gauge("gateway_cache_entries", "Entries in the embedded cache", registry=r,
                                   multiprocess_mode="livesum")
        self.cache_bytes = Gauge("gateway_cache_bytes", "Bytes held by the embedded cache", registry=r,
                                 multiprocess_mode="livesum")
        self.ledger_pending = Gauge("gateway_ledger_pending_rows", "Rows queued, not yet committed", registry=r,
                                    multiprocess_mode="livesum")  # all live workers' queues together

    def child(self, metric, *labels: str):
        """`metric.labels(*labels)`, cached: the lookup costs more than the increment it serves."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def render(self) -> bytes:
        shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if shared:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=shared)
            return generate_latest(registry)
        return generate_latest(self.registry)
