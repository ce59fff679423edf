"""`gateway eval run SUITE | runs | compare A B`. Exit codes: 0 gates pass, 1 a gate failed (or the
run was interrupted), 2 configuration error."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="eval_command", required=True)
    r = sub.add_parser("run", help="run a suite; exit 1 if a gate fails")
    r.add_argument("suite", help="evals/<suite>.yaml")
    r.add_argument("--gateway", metavar="URL", help="a running gateway (default: in-process, on the shipped policies)")
    r.add_argument("--api-key", default=os.environ.get("GATEWAY_API_KEY"), help="gateway key ($GATEWAY_API_KEY)")
    r.add_argument("--concurrency", type=int, help="parallel cases (default: the suite's, 8)")
    r.add_argument("--no-cache", action="store_true", help="ignore cached model and judge replies")
    r.add_argument("--json", metavar="FILE", help="write the machine-readable report")
    r.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    r.add_argument("--junit", metavar="FILE", help="write JUnit XML for CI test reporters (a test case per case x "
                   "target, gates as their own test cases)")
    r.add_argument("--markdown", metavar="FILE", help="write a Markdown summary (a pull-request comment, or "
                   "$GITHUB_STEP_SUMMARY; appended to if the file exists)")
    r.add_argument("--no-progress", action="store_true")
    sub.add_parser("runs", help="list recorded runs")
    c = sub.add_parser("compare", help="metric deltas and changed cases between two runs")
    c.add_argument("run_a")
    c.add_argument("run_b")


def main(args: argparse.Namespace, policies: Path, prompts: Path, state: Path) -> int:
    if args.eval_command == "runs":
        return _runs(state)
    if args.eval_command == "compare":
        return _compare(state, args.run_a, args.run_b)
    return _run(args, policies, prompts, state)


def _run(args, policies: Path, prompts: Path, state: Path) -> int:
    from gateway.errors import PolicyError
    from gateway.evaluation import ci_output, report, runner, store
    from gateway.evaluation.client import GatewayClient
    from gateway.evaluation.suite import load_suite
    from gateway.prompts.registry import load_registry

    for flag in ("json", "html", "junit", "markdown"):
        value = getattr(args, flag)
        if value and (Path(value).is_dir() or not Path(value).parent.is_dir()):
            print(f"gateway eval: --{flag} {value}: not a file in an existing directory", file=sys.stderr)
            return 2
    try:
        loaded = load_suite(Path(args.suite))
        registry = load_registry(prompts)
    except PolicyError as e:
        print("gateway eval: invalid suite:\n  " + "\n  ".join(e.problems), file=sys.stderr)
        return 2
    except OSError as e:
        print(f"gateway eval: {e}", file=sys.stderr)
        return 2

    async def go():
        client = GatewayClient(url=args.gateway, policies=policies, prompts=prompts, state=state,
                               api_key=args.api_key, cache=not args.no_cache)
        async with client:
            models = set(client.models)
            for t in loaded.suite.targets:
                if t.tabular is not None and await client.tabular_exists(t.tabular):
                    models.add(t.tabular)
            the_plan, problems = runner.plan(loaded, registry, models)
            if problems:
                return None, problems, False
            results, interrupted = await runner.execute(
                loaded, the_plan, client, concurrency=args.concurrency or loaded.suite.concurrency,
                progress=not args.no_progress)
            return (the_plan, results), [], interrupted

    t0, started = time.perf_counter(), time.time()
    try:
        outcome, problems, interrupted = asyncio.run(go())
    except KeyboardInterrupt:
        print("gateway eval: interrupted before any result was collected", file=sys.stderr)
        return 1
    except runner.TargetUnreachable as e:
        print("gateway eval: run stopped, nothing recorded:\n  " + "\n  ".join(
            f"target {t!r}: {why}" for t, why in e.dead.items())
            + "\n  start the model server (or fix its url in gateway.yaml) and run again", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as e:
        print(f"gateway eval: {e}", file=sys.stderr)
        return 2
    if problems:
        print("gateway eval: the suite does not match the gateway or prompts:\n  " + "\n  ".join(problems),
              file=sys.stderr)
        return 2
    the_plan, results = outcome
    m = report.metrics(loaded.suite, results)
    previous = {}
    for g in loaded.suite.gates:
        if g.baseline_run is not None and g.baseline_run not in previous:
            rid = store.last_run_id(state, loaded.suite.name) if g.baseline_run == "last" else g.baseline_run
            try:
                previous[g.baseline_run] = (rid, store.load_run(state, rid)[1]) if rid else None
            except KeyError as e:
                print(f"gateway eval: gate baseline_run: {e.args[0]}", file=sys.stderr)
                return 2
    gates = report.check_gates(loaded.suite, results, m, previous) if not interrupted else []
    status = "interrupted" if interrupted else ("passed" if all(g.passed for g in gates) else "failed")
    targets = [{**t.model_dump(), "prompt_version": the_plan.prompts.get(t.name)} for t in loaded.suite.targets]
    run_id = store.save_run(state, suite=loaded.suite.name, suite_path=loaded.path, suite_hash=loaded.content_hash,
                            dataset_hash=loaded.dataset_hash, targets=targets, metrics=m,
                            gates=[g.to_json() for g in gates], status=status,
                            results=[r.to_json() for r in results])
    print(report.terminal(loaded.suite, m, gates, run_id, interrupted))
    print(f"\n{len(results)} answers in {time.perf_counter() - t0:.1f} s; run {run_id} recorded in {state / 'eval.db'}")
    doc = {"run_id": run_id, "suite": loaded.suite.name, "status": status, "suite_hash": loaded.content_hash,
           "dataset_hash": loaded.dataset_hash, "targets": targets, "metrics": m,
           "gates": [g.to_json() for g in gates], "results": [r.to_json() for r in results]}
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1, default=lambda o: None))
    if args.html:
        Path(args.html).write_text(report.html_page(loaded.suite, m, gates, results), encoding="utf-8")
    if args.junit:
        Path(args.junit).write_text(ci_output.junit_xml(loaded.suite, results, gates, run_id=run_id,
                                                        interrupted=interrupted, started=started), encoding="utf-8")
    if args.markdown:
        # Appended: $GITHUB_STEP_SUMMARY collects every step's summary in one file.
        with open(args.markdown, "a", encoding="utf-8") as f:
            f.write(ci_output.markdown(loaded.suite, m, results, gates, run_id=run_id, status=status))
    return 0 if status == "passed" else 1


def _runs(state: Path) -> int:
    from gateway.evaluation import store

    rows = store.list_runs(state)
    if not rows:
        print(f"no runs recorded in {state / 'eval.db'}")
        return 0
    print(f"{'run':<24}{'when':<18}{'suite':<28}{'status':<13}{'commit':<14}pass rate per target")
    for rid, ts, suite, status, commit, metrics in rows:
        m = json.loads(metrics)
        rates = ", ".join(f"{t} {_fmt(v['pass']['rate'])}" for t, v in m["targets"].items())
        print(f"{rid:<24}{time.strftime('%Y-%m-%d %H:%M', time.localtime(ts)):<18}{suite[:27]:<28}{status:<13}"
              f"{(commit or '-')[:12]:<14}{rates}")
    return 0


def _prompt_of(run: dict, target: str) -> str:
    for t in run["targets"]:
        if t["name"] == target and t.get("prompt_version"):
            v = t["prompt_version"]
            return f"{v['name']}@{v['version']} {v['hash'][:19]}"
    return ""


def _fmt(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _compare(state: Path, a: str, b: str) -> int:
    from gateway.evaluation import store

    try:
        run_a, res_a = store.load_run(state, a)
        run_b, res_b = store.load_run(state, b)
    except KeyError as e:
        print(f"gateway eval compare: {e.args[0]}", file=sys.stderr)
        return 2
    print(f"compare {run_a['id']} ({run_a['suite']}, {run_a['git_commit'] or '-'}) -> "
          f"{run_b['id']} ({run_b['suite']}, {run_b['git_commit'] or '-'})")
    if run_a["dataset_hash"] != run_b["dataset_hash"]:
        print("note: the datasets differ (content hash); case-level changes cover the shared cases only")
    for target in sorted(set(run_a["metrics"]["targets"]) | set(run_b["metrics"]["targets"])):
        ma, mb = run_a["metrics"]["targets"].get(target), run_b["metrics"]["targets"].get(target)
        if ma is None or mb is None:
            print(f"\n{target}: only in {'B' if ma is None else 'A'}")
            continue
        pa, pb = _prompt_of(run_a, target), _prompt_of(run_b, target)
        print(f"\n{target}" + (f"  (prompt {pa} -> {pb})" if pa != pb else (f"  (prompt {pa})" if pa else "")))
        rows = [("pass rate", ma["pass"]["rate"], mb["pass"]["rate"], True),
                ("latency p95 ms", ma["latency_ms"]["p95"], mb["latency_ms"]["p95"], False),
                ("cost $", ma["cost_usd"]["total"], mb["cost_usd"]["total"], False)]
        for name in ma["assertions"]:
            if name in mb["assertions"]:
                rows.append((f"  {name}", ma["assertions"][name]["rate"], mb["assertions"][name]["rate"], True))
        for label, va, vb, pct in rows:
            if va is None or vb is None:
                print(f"  {label:<26} {'n/a':>10}")
                continue
            fa, fb = (f"{100 * va:.1f}%", f"{100 * vb:.1f}%") if pct else (f"{va:.4g}", f"{vb:.4g}")
            delta = f"{100 * (vb - va):+.1f} pts" if pct else f"{vb - va:+.4g}"
            print(f"  {label:<26} {fa:>10} -> {fb:>10}  ({delta})")
    changed = [(k, res_a[k]["passed"], res_b[k]["passed"]) for k in sorted(set(res_a) & set(res_b))
               if res_a[k]["passed"] != res_b[k]["passed"]]
    print(f"\ncases that changed ({len(changed)}):")
    for (target, case), pa, pb in changed[:50]:
        word = {True: "pass", False: "fail", None: "error"}
        print(f"  {target} / {case}: {word[pa]} -> {word[pb]}")
    return 0
