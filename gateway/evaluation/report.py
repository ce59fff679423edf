"""Metrics of a run (per target, per assertion, per slice; judge calibration), gates, and the
terminal / JSON / HTML reports."""

from __future__ import annotations

import html
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.evaluation.runner import CaseResult
from gateway.evaluation.suite import Gate, Suite
from gateway.stats.agreement import cohen_kappa, mcnemar, mean_ci, paired_mean_test, wilson


def _rate(values: list[bool | None]) -> dict[str, Any]:
    known = [v for v in values if v is not None]
    passed = sum(known)
    lo, hi = wilson(passed, len(known))
    return {"n": len(known), "passed": passed, "rate": passed / len(known) if known else math.nan,
            "ci95": [lo, hi], "errors": len(values) - len(known)}


def metrics(suite: Suite, results: list[CaseResult]) -> dict[str, Any]:
    by_target: dict[str, list[CaseResult]] = defaultdict(list)
    for r in results:
        by_target[r.target].append(r)
    out: dict[str, Any] = {}
    for t in suite.targets:
        rs = by_target.get(t.name, [])
        lat = [r.reply.latency_ms for r in rs if r.reply.error is None]
        costs = [r.reply.cost_usd for r in rs if r.reply.cost_usd is not None]
        per_assertion = {}
        for j, a in enumerate(suite.assertions):
            outs = [r.outcomes[j] for r in rs if j < len(r.outcomes)]
            scores = [o.score for o in outs if o.score is not None]
            m, lo, hi = mean_ci(scores)
            per_assertion[a.label] = {**_rate([o.passed for o in outs]),
                                      **({"mean_score": m, "score_ci95": [lo, hi]} if scores else {})}
        slices: dict[str, dict[str, Any]] = {}
        for key in sorted({k for r in rs for k in r.attributes}):
            groups: dict[str, list] = defaultdict(list)
            for r in rs:
                groups[r.attributes.get(key, "")].append(r.passed)
            slices[key] = {v: _rate(g) for v, g in sorted(groups.items())}
        out[t.name] = {
            **({"model_metrics": model_metrics(t.task, t.threshold, rs)} if t.tabular else {}),
            "cases": len(rs),
            "pass": _rate([r.passed for r in rs]),
            "answer_errors": sum(r.reply.error is not None for r in rs),
            "cached": sum(r.reply.cached for r in rs),
            "latency_ms": {"p50": float(np.percentile(lat, 50)) if lat else math.nan,
                           "p95": float(np.percentile(lat, 95)) if lat else math.nan},
            "cost_usd": {"total": float(sum(costs)), "mean": float(np.mean(costs)) if costs else math.nan,
                         "priced": len(costs)},
            "assertions": per_assertion,
            "slices": slices,
        }
    return {"targets": out, "calibration": calibration(suite, results)}


def _pairs(rs: list[CaseResult]) -> tuple[np.ndarray, np.ndarray]:
    ok = [(r.reply.prediction, r.truth) for r in rs if r.reply.prediction is not None and r.truth is not None]
    return np.array([p for p, _ in ok], float), np.array([y for _, y in ok], float)


def model_metrics(task: str, threshold: float, rs: list[CaseResult]) -> dict[str, Any]:
    """Dataset-level quality of a tabular target on the cases it answered."""
    from gateway.stats.concept import auc

    p, y = _pairs(rs)
    if p.size == 0:
        return {"n": 0}
    if task == "regression":
        return {"n": int(p.size), "mae": float(np.abs(p - y).mean()), "rmse": float(np.sqrt(((p - y) ** 2).mean()))}
    q = np.clip(p, 1e-15, 1 - 1e-15)
    return {"n": int(p.size), "accuracy": float(((p >= threshold) == (y == 1)).mean()), "auc": auc(y, p),
            "log_loss": float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).mean())}


def calibration(suite: Suite, results: list[CaseResult]) -> dict[str, Any]:
    """Judge (llm-rubric) verdicts against human labels, per rubric assertion, all targets pooled."""
    out = {}
    for j, a in enumerate(suite.assertions):
        if a.type != "llm-rubric":
            continue
        pairs = [(r.label, "pass" if r.outcomes[j].passed else "fail") for r in results
                 if r.label is not None and j < len(r.outcomes) and r.outcomes[j].passed is not None]
        if pairs:
            out[a.label] = cohen_kappa([h for h, _ in pairs], [m for _, m in pairs])
            out[a.label]["raters"] = "human (rows) vs judge (columns)"
            out[a.label]["meaning"] = kappa_meaning(pairs, out[a.label])
    return out


def kappa_meaning(pairs: list[tuple[str, str]], cal: dict[str, Any]) -> str:
    """What the agreement figures say, in words: a kappa of 0 next to a high accuracy is the common
    case of a judge that never disagrees with the majority label, and it tells nothing."""
    humans, judge = {h for h, _ in pairs}, {m for _, m in pairs}
    if len(judge) == 1:
        (v,) = judge
        share = sum(h == v for h, _ in pairs) / len(pairs)
        return (f"the judge answered {v} on every case, so its accuracy ({share:.3f}) is the share of {v} labels "
                f"and kappa is 0: it has not shown it can tell pass from fail on these cases")
    if len(humans) == 1:
        (v,) = humans
        return f"every human label is {v}: agreement cannot be judged; label some cases {'fail' if v == 'pass' else 'pass'}"
    minority = min(sum(h == "pass" for h, _ in pairs), sum(h == "fail" for h, _ in pairs))
    k = cal["kappa"]
    band = ("no better than chance" if k <= 0 else "slight" if k < 0.2 else "fair" if k < 0.4 else "moderate"
            if k < 0.6 else "substantial" if k < 0.8 else "almost perfect")
    caution = f"; only {minority} labels of the rarer class, so it is uncertain" if minority < 5 else ""
    return f"agreement beyond chance: {band} (Landis and Koch){caution}"


# ---- gates -------------------------------------------------------------------------------------
@dataclass
class GateResult:
    gate: Gate
    passed: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"gate": self.gate.model_dump(exclude_none=True), "passed": self.passed, "detail": self.detail}


def check_gates(suite: Suite, results: list[CaseResult], m: dict[str, Any],
                previous: dict[str, tuple[str, dict] | None] | None = None) -> list[GateResult]:
    """`previous`: baseline_run spec -> (run id, {(target, case): result}) from the run store."""
    out = []
    for g in suite.gates:
        tm = m["targets"][g.target]
        if g.baseline_run is not None:
            out.append(_previous_run_gate(g, results, (previous or {}).get(g.baseline_run)))
            continue
        if g.baseline is not None:
            out.append(_baseline_gate(suite, g, results))
            continue
        value = _value(suite, g, tm)
        ok = not math.isnan(value) and (g.min is None or value >= g.min) and (g.max is None or value <= g.max)
        bound = " and ".join(x for x in ((f">= {g.min}" if g.min is not None else ""),
                                         (f"<= {g.max}" if g.max is not None else "")) if x)
        out.append(GateResult(g, ok, f"{g.metric}{'[' + g.assertion + ']' if g.assertion else ''}"
                                     f"{'[' + g.attribute + ']' if g.attribute else ''} of {g.target} = {value:.4g}, "
                                     f"required {bound}"))
    return out


def _value(suite: Suite, g: Gate, tm: dict[str, Any]) -> float:
    match g.metric:
        case "pass_rate":
            return tm["pass"]["rate"]
        case "assertion_pass_rate":
            return _assertion(tm, g.assertion, suite)["rate"]
        case "mean_score":
            return _assertion(tm, g.assertion, suite).get("mean_score", math.nan)
        case "latency_p95_ms":
            return tm["latency_ms"]["p95"]
        case "cost_usd":
            return tm["cost_usd"]["total"]
        case "errors":
            return float(tm["answer_errors"] + tm["pass"]["errors"])
        case "slice_gap":
            rates = [s["rate"] for s in tm["slices"].get(g.attribute, {}).values() if s["n"]]
            return max(rates) - min(rates) if len(rates) >= 2 else math.nan
        case "accuracy" | "auc" | "log_loss" | "mae" | "rmse":
            return (tm.get("model_metrics") or {}).get(g.metric, math.nan)
    return math.nan


def _assertion_index(suite: Suite, name: str | None) -> int:
    """A gate names an assertion by its name or, if unnamed, its type."""
    return next(i for i, a in enumerate(suite.assertions) if name in (a.label, a.type))


def _assertion(tm: dict[str, Any], name: str | None, suite: Suite) -> dict[str, Any]:
    return tm["assertions"][suite.assertions[_assertion_index(suite, name)].label]


def _within(g: Gate, drop: float, p_worse: float) -> bool:
    """A baseline gate fails only when the drop exceeds max_drop *and* is significant at alpha."""
    return not (drop > g.max_drop and p_worse < g.alpha)


def _paired_passes(pairs: list[tuple[bool, bool]]) -> tuple[float, float, dict[str, Any]]:
    """(baseline rate, candidate rate, McNemar result) of paired pass/fail outcomes."""
    test = mcnemar([b for b, _ in pairs], [c for _, c in pairs])
    return sum(b for b, _ in pairs) / len(pairs), sum(c for _, c in pairs) / len(pairs), test


def _baseline_gate(suite: Suite, g: Gate, results: list[CaseResult]) -> GateResult:
    """The candidate may not be worse than the baseline by more than max_drop - judged on the cases
    both answered (paired), and failed only when the drop is also significant at alpha."""
    cand = {r.case_id: r for r in results if r.target == g.target}
    base = {r.case_id: r for r in results if r.target == g.baseline}
    common = [c for c in cand if c in base]
    if g.metric == "mean_score":
        j = _assertion_index(suite, g.assertion)
        pairs = [(base[c].outcomes[j].score, cand[c].outcomes[j].score) for c in common
                 if base[c].outcomes[j].score is not None and cand[c].outcomes[j].score is not None]
        if not pairs:
            return GateResult(g, False, "no paired scores")
        test = paired_mean_test([b for b, _ in pairs], [c for _, c in pairs])
        drop = -test["mean_diff"]
        detail = (f"mean {g.assertion} score of {g.target} vs {g.baseline}: {-drop:+.4f} on {len(pairs)} paired "
                  f"cases (one-sided p = {test['p_worse']:.3g}); allowed drop {g.max_drop}")
        return GateResult(g, _within(g, drop, test["p_worse"]), detail)
    if g.metric in ("pass_rate", "assertion_pass_rate"):
        if g.metric == "pass_rate":
            get = lambda r: r.passed  # noqa: E731
        else:
            j = _assertion_index(suite, g.assertion)
            get = lambda r: r.outcomes[j].passed  # noqa: E731
        pairs = [(get(base[c]), get(cand[c])) for c in common if get(base[c]) is not None and get(cand[c]) is not None]
        if not pairs:
            return GateResult(g, False, "no paired outcomes")
        b_rate, c_rate, test = _paired_passes(pairs)
        drop = b_rate - c_rate
        detail = (f"{g.metric} {g.target} {c_rate:.3f} vs {g.baseline} {b_rate:.3f} on {len(pairs)} paired cases "
                  f"(drop {drop:+.3f}, allowed {g.max_drop}; McNemar: {test['baseline_only']} lost, "
                  f"{test['candidate_only']} gained, one-sided p = {test['p_worse']:.3g})")
        return GateResult(g, _within(g, drop, test["p_worse"]), detail)
    if g.metric in ("accuracy", "auc", "log_loss", "mae", "rmse"):
        return _model_baseline_gate(suite, g, cand, base, common)
    return GateResult(g, False, f"metric {g.metric} has no baseline comparison; use min/max")


def _previous_run_gate(g: Gate, results: list[CaseResult], prev: tuple[str, dict] | None) -> GateResult:
    if prev is None:
        return GateResult(g, True, f"no earlier run {g.baseline_run!r} of this suite to compare with (first run)")
    run_id, old = prev
    pairs = [(old[(r.target, r.case_id)]["passed"], r.passed) for r in results
             if r.target == g.target and (r.target, r.case_id) in old]
    pairs = [(b, c) for b, c in pairs if b is not None and c is not None]
    if not pairs:
        return GateResult(g, False, f"no cases shared with run {run_id}")
    b_rate, c_rate, test = _paired_passes(pairs)
    drop = b_rate - c_rate
    detail = (f"pass_rate of {g.target} since run {run_id}: {-drop:+.3f} on {len(pairs)} shared cases (allowed drop "
              f"{g.max_drop}; {test['baseline_only']} newly failing, {test['candidate_only']} newly passing, "
              f"one-sided p = {test['p_worse']:.3g})")
    return GateResult(g, _within(g, drop, test["p_worse"]), detail)


def _model_baseline_gate(suite: Suite, g: Gate, cand: dict, base: dict, common: list[str]) -> GateResult:
    """Tabular targets on the same labelled cases: accuracy by McNemar, errors by a paired t-test,
    AUC by a paired bootstrap. For error metrics (log_loss, mae, rmse) a 'drop' is an increase."""
    from gateway.stats.concept import auc

    tgt = {t.name: t for t in suite.targets}
    keep = [c for c in common if cand[c].reply.prediction is not None and base[c].reply.prediction is not None
            and cand[c].truth is not None]
    if len(keep) < 2:
        return GateResult(g, False, "fewer than 2 paired predictions")
    y = np.array([cand[c].truth for c in keep], float)
    pc = np.array([cand[c].reply.prediction for c in keep], float)
    pb = np.array([base[c].reply.prediction for c in keep], float)
    tc, tb = tgt[g.target].threshold, tgt[g.baseline].threshold
    if g.metric == "accuracy":
        cc, cb = (pc >= tc) == (y == 1), (pb >= tb) == (y == 1)
        vb, vc, test = _paired_passes(list(zip(cb.tolist(), cc.tolist())))
        drop, p = vb - vc, test["p_worse"]
    elif g.metric == "auc":
        vc, vb = auc(y, pc), auc(y, pb)
        drop = vb - vc
        rng = np.random.default_rng(0)
        worse = 0
        for _ in range(1000):
            i = rng.integers(0, len(y), len(y))
            if len(set(y[i])) == 2 and auc(y[i], pb[i]) - auc(y[i], pc[i]) > 0:
                worse += 1
        p = 1 - worse / 1000  # share of resamples where the candidate is not worse
    else:
        def errors(pred):
            if g.metric == "log_loss":
                q = np.clip(pred, 1e-15, 1 - 1e-15)
                return -(y * np.log(q) + (1 - y) * np.log(1 - q))
            return np.abs(pred - y) if g.metric == "mae" else (pred - y) ** 2
        ec, eb = errors(pc), errors(pb)
        test = paired_mean_test(list(-eb), list(-ec))  # higher error = worse: compare negated errors
        vc, vb = float(ec.mean()), float(eb.mean())
        if g.metric == "rmse":
            vc, vb = math.sqrt(vc), math.sqrt(vb)
        drop, p = vc - vb, test["p_worse"]
    detail = (f"{g.metric} {g.target} {vc:.4f} vs {g.baseline} {vb:.4f} on {len(keep)} paired cases "
              f"(worse by {drop:+.4f}, allowed {g.max_drop}; one-sided p = {p:.3g})")
    return GateResult(g, _within(g, drop, p), detail)


# ---- rendering ---------------------------------------------------------------------------------
def _pct(x: float) -> str:
    return "  n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:5.1f}%"


def terminal(suite: Suite, m: dict[str, Any], gates: list[GateResult], run_id: str | None, interrupted: bool) -> str:
    lines = [f"suite {suite.name}" + (f"  (run {run_id})" if run_id else "") + ("  INTERRUPTED" if interrupted else ""), ""]
    head = f"{'target':<16}{'cases':>6}{'pass':>8}{'95% CI':>16}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}{'cost $':>10}"
    lines.append(head)
    for name, tm in m["targets"].items():
        p = tm["pass"]
        ci = f"{_pct(p['ci95'][0]).strip()}-{_pct(p['ci95'][1]).strip()}"
        lines.append(f"{name:<16}{tm['cases']:>6}{_pct(p['rate']):>8}{ci:>16}{tm['answer_errors'] + p['errors']:>8}"
                     f"{tm['latency_ms']['p50']:>9.1f}{tm['latency_ms']['p95']:>9.1f}{tm['cost_usd']['total']:>10.5f}")
    lines += ["", f"{'assertion':<22}" + "".join(f"{n:>18}" for n in m["targets"])]
    for a in suite.assertions:
        cells = []
        for tm in m["targets"].values():
            am = tm["assertions"][a.label]
            score = f" ({am['mean_score']:.2f})" if "mean_score" in am and not math.isnan(am["mean_score"]) else ""
            cells.append(f"{_pct(am['rate']).strip()}{score}")
        lines.append(f"{a.label:<22}" + "".join(f"{c:>18}" for c in cells))
    for name, tm in m["targets"].items():
        for key, groups in tm["slices"].items():
            lines.append(f"slice {name} by {key}: " + ", ".join(f"{v} {_pct(s['rate']).strip()} (n={s['n']})"
                                                              for v, s in groups.items()))
    for name, tm in m["targets"].items():
        mm = tm.get("model_metrics")
        if mm:
            lines.append(f"model {name}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                       for k, v in mm.items()))
    for label, cal in m["calibration"].items():
        lines.append(f"judge calibration [{label}] vs human labels: n={cal['n']} accuracy {cal['accuracy']:.3f} "
                     f"kappa {cal['kappa']:.3f}; confusion (human/judge) {cal['confusion']}")
        if cal.get("meaning"):
            lines.append(f"  ({cal['meaning']})")
    if gates:
        lines += ["", "gates:"]
        lines += [f"  [{'PASS' if g.passed else 'FAIL'}] {g.detail}" for g in gates]
    return "\n".join(lines)


def html_page(suite: Suite, m: dict[str, Any], gates: list[GateResult], results: list[CaseResult]) -> str:
    esc = html.escape
    targets = [t.name for t in suite.targets]
    by_case: dict[str, dict[str, CaseResult]] = defaultdict(dict)
    for r in results:
        by_case[r.case_id][r.target] = r
    rows = []
    for case_id, per in by_case.items():
        cells = []
        for t in targets:
            r = per.get(t)
            if r is None:
                cells.append("<td>-</td>")
                continue
            mark = {True: "pass", False: "fail", None: "error"}[r.passed]
            checks = "".join(f"<li class='{ {True: 'pass', False: 'fail', None: 'error'}[o.passed] }'>{esc(o.assertion)}"
                             f"{'' if o.score is None else f' {o.score:.2f}'} {esc(o.reason)}</li>" for o in r.outcomes)
            cells.append(f"<td class='{mark}'><pre>{esc(r.answer or (r.reply.error or ''))}</pre><ul>{checks}</ul></td>")
        rows.append(f"<tr><th>{esc(case_id)}</th>{''.join(cells)}</tr>")
    gate_rows = "".join(f"<li class='{'pass' if g.passed else 'fail'}'>{esc(g.detail)}</li>" for g in gates)
    summary = "".join(f"<tr><th>{esc(n)}</th><td>{_pct(tm['pass']['rate'])}</td><td>{tm['latency_ms']['p95']:.1f}</td>"
                      f"<td>{tm['cost_usd']['total']:.5f}</td></tr>" for n, tm in m["targets"].items())
    return f"""<!doctype html><meta charset="utf-8"><title>eval {esc(suite.name)}</title>
<style>body{{font:14px system-ui;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px;vertical-align:top}}
pre{{white-space:pre-wrap;max-width:40em;margin:0}}.pass{{background:#eaf7ea}}.fail{{background:#fbeaea}}.error{{background:#fff4d6}}</style>
<h1>{esc(suite.name)}</h1><p>{esc(suite.description)}</p>
<table><tr><th>target</th><th>pass</th><th>p95 ms</th><th>cost $</th></tr>{summary}</table>
<h2>Gates</h2><ul>{gate_rows or '<li>none</li>'}</ul>
<h2>Cases</h2><table><tr><th>case</th>{''.join(f'<th>{esc(t)}</th>' for t in targets)}</tr>{''.join(rows)}</table>"""
