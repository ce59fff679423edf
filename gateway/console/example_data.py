"""`gateway console example-data`: a ledger of made-up but plausible traffic (keys, groups, models,
upstreams, errors, latencies, tokens and cost, check verdicts, prompts, an experiment), and predictions
with labels for the shipped `churn` tabular model whose inputs drift over the last days, to try the
console on, and for its tests and benchmark. Deterministic for a seed."""

from __future__ import annotations

import json
import math
import random
import time
import uuid
from pathlib import Path

from gateway.metering import ledger as L
from gateway.metering.outcome import outcome

KEYS = (("support-bot", "support"), ("search-rag", "support"), ("batch-evals", "research"), ("sales-assist", None))
MODELS = (("gpt-4o-mini", "openai", 0.15, 0.6, 420.0), ("claude-sonnet", "anthropic", 3.0, 15.0, 900.0),
          ("gemini-flash", "gemini", 0.1, 0.4, 350.0))
CHECKS = (("pii", "no-pii", ("EMAIL_ADDRESS", "PHONE_NUMBER", "PERSON", "CREDIT_CARD")),
          ("injection", "injection", ("override", "role_play", "exfiltration")),
          ("topics", "on-topic", ("legal-advice", "medical-advice")))


def example_rows(n: int, days: float = 30, now: float | None = None, seed: int = 7) -> list[tuple]:
    rng = random.Random(seed)
    now = now or time.time()
    out = []
    for i in range(n):
        key, group = rng.choice(KEYS)
        model, upstream, in_price, out_price, typical_ms = MODELS[rng.choices(range(3), (6, 3, 2))[0]]
        # More traffic in working hours, so the charts have a shape.
        ts = now - rng.random() * days * 86400
        if rng.random() < 0.35 and not 8 <= (ts % 86400) / 3600 <= 18:
            ts = now - rng.random() * days * 86400
        values = dict.fromkeys(L.COLUMNS)
        status, error = rng.choices([(200, None), (429, "rpm"), (400, "invalid_request"), (502, "http_502"),
                                     (200, "stream_cut"), (403, "blocked")], (90, 3, 2, 2, 1, 2))[0]
        inp, outp = int(rng.lognormvariate(6, 0.8)), int(rng.lognormvariate(5, 0.9))
        served = status == 200
        verdicts = []
        if key != "batch-evals":
            for ctype, name, labels in CHECKS:
                roll = rng.random()
                action = "block" if status == 403 and ctype == "injection" else (
                    "redact" if ctype == "pii" and roll < 0.06 else "flag" if roll < 0.03 else "allow")
                found = rng.sample(labels, rng.randint(1, 2)) if action != "allow" else []
                run = rng.choices(["ok", "timeout", "error"], (995, 4, 1))[0]
                verdicts.append([ctype, name, action, round(rng.random(), 4), run, found])
        prompt = ("support-answer", rng.choice([1, 2])) if key == "support-bot" else (None, None)
        values.update(
            request_id=f"ex-{uuid.UUID(int=rng.getrandbits(128)).hex[:20]}", ts=ts, endpoint="chat.completions",
            key=key, grp=group, model=model, served_model=model if served else None,
            upstream=upstream if served or status == 502 else None, prompt_name=prompt[0], prompt_version=prompt[1],
            prompt_hash=f"sha256:{prompt[1]:064x}" if prompt[0] else None, stream=int(rng.random() < 0.4),
            status=status, error=error, input_tokens=inp if served else 0, cached_tokens=0,
            output_tokens=outp if served else 0, reasoning_tokens=0, usage_source="upstream" if served else "none",
            cost_usd=round((inp * in_price + outp * out_price) / 1e6, 8) if served else 0.0,
            price_key=model if served else None,
            latency_ms=round(rng.lognormvariate(math.log(typical_ms), 0.5), 3) if served else round(rng.uniform(1, 30), 3),
            upstream_ms=None, overhead_ms=round(rng.uniform(0.5, 3), 3), attempts=1 + (status == 502),
            verdicts=json.dumps(verdicts, separators=(",", ":")) if verdicts else None,
            experiment="support-answer-v2" if prompt[0] else None,
            variant=("control" if prompt[1] == 1 else "cited") if prompt[0] else None,
            unit_hash=f"u{rng.randrange(5000)}" if prompt[0] else None, outcome=outcome(status, error),
            cache=rng.choice(["miss", "miss", "hit"]) if served and key == "search-rag" else None)
        if values["cache"] == "hit":
            values["saved_usd"], values["cost_usd"], values["input_tokens"], values["output_tokens"] = (
                values["cost_usd"], 0.0, 0, 0)
        out.append(tuple(values[c] for c in L.COLUMNS))
    return out


def example_feedback(rows: list[tuple], seed: int = 7) -> list[tuple]:
    """Outcomes for half the experiment's requests, the cited variant resolving a little more often."""
    rng = random.Random(seed)
    col = {c: i for i, c in enumerate(L.COLUMNS)}
    out = []
    for r in rows:
        if r[col["experiment"]] is None or rng.random() < 0.5:
            continue
        cited = r[col["variant"]] == "cited"
        rid, ts, exp, variant, unit = (r[col["request_id"]], r[col["ts"]] + 60, r[col["experiment"]], r[col["variant"]],
                                       r[col["unit_hash"]])
        out.append((rid, "resolved", ts, exp, variant, unit, float(rng.random() < (0.42 if cited else 0.35))))
        out.append((rid, "rating", ts, exp, variant, unit, float(min(5, max(1, round(rng.gauss(4.2 if cited else 4.0, 0.8)))))))
    return out


def write_example_ledger(path: Path, n: int, days: float = 30, now: float | None = None, seed: int = 7,
                         batch: int = 20_000) -> int:
    """Append `n` example rows to the SQLite ledger at `path` (created if missing). Returns rows written."""
    conn = L.connect(Path(path))
    written = 0
    try:
        for start in range(0, n, batch):
            rows = example_rows(min(batch, n - start), days, now, seed + start)
            written += L.write_rows(conn, rows, example_feedback(rows, seed + start))
    finally:
        conn.close()
    return written


def write_example_predictions(path: Path, n: int, days: float = 30, now: float | None = None, seed: int = 7,
                              model: str = "churn") -> int:
    """Append `n` predictions of the example churn model (gateway/tabular/example_model.py) to the
    prediction log at `path` (tabular.db beside the ledger), evenly over `days` days; the last fifth
    of the time drifts (shift 0.8), and 80% of predictions have their label. Returns rows written."""
    from gateway.tabular.example_model import generate
    from gateway.tabular.store import _INSERT, _LABEL, SqliteLog, insert_params

    now = now or time.time()
    rng = random.Random(seed)
    drifting = max(1, n // 5)
    rows = generate(n - drifting, 0.0, seed) + generate(drifting, 0.8, seed + 1)
    predictions, labels = [], []
    for i, r in enumerate(rows):
        ts = now - days * 86400 * (1 - (i + rng.random()) / n)
        pid = f"ex-{uuid.UUID(int=rng.getrandbits(128)).hex[:20]}"
        features = {k: r[k] for k in ("tenure_months", "monthly_spend", "support_calls", "plan")}
        predictions.append((pid, model, ts, features, r["prediction"]))
        if rng.random() < 0.8:
            labels.append((float(r["label"]), ts + 3600, pid))
    log = SqliteLog(Path(path))
    log.setup()
    conn = log.connect()
    try:
        with conn:
            conn.executemany(_INSERT, insert_params(predictions))
            conn.executemany(_LABEL, labels)
    finally:
        conn.close()
    return n
