"""The console's Evals pages: tracked runs (`gateway eval run` records them in the state directory's
eval.db), each suite's pass-rate trend, and two runs compared case by case with their answers."""

from __future__ import annotations

import asyncio
import json
import re
from collections import defaultdict
from pathlib import Path

from aiohttp import web

from gateway.console import params
from gateway.console.render import page
from gateway.errors import GatewayError
from gateway.evaluation import store

STATE_DIR: web.AppKey[Path | None] = web.AppKey("console_state_dir")
_RUN_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")
MAX_RUNS = 500


def _state(request: web.Request) -> Path:
    state = request.config_dict[STATE_DIR]
    if state is None:
        raise GatewayError("This gateway runs without a state directory, so there are no tracked eval runs.",
                           status=409, type="invalid_request_error")
    return state


def _runs(state: Path) -> list[dict]:
    out = []
    for rid, ts, suite, status, commit, metrics in store.list_runs(state, MAX_RUNS):
        targets = (json.loads(metrics) or {}).get("targets", {}) if metrics else {}
        out.append({"id": rid, "ts": ts, "suite": suite, "status": status, "git_commit": commit,
                    "pass_rates": {t: (m.get("pass") or {}).get("rate") for t, m in targets.items()}})
    return out


async def evals_list(request: web.Request) -> web.Response:
    suite = params.name(request.query, "suite")
    runs = await asyncio.to_thread(_runs, _state(request))
    suites = sorted({r["suite"] for r in runs})
    shown = [r for r in runs if suite is None or r["suite"] == suite]
    trends = {}
    for name in ([suite] if suite else suites):
        by_target: dict[str, list] = defaultdict(list)
        for r in sorted((r for r in runs if r["suite"] == name), key=lambda r: r["ts"]):
            for target, rate in r["pass_rates"].items():
                by_target[target].append({"t": r["ts"], "pass_rate": rate})
        trends[name] = dict(by_target)
    return page(request, "evals.html", nav="evals", runs=shown, suites=suites, suite=suite, trends=trends)


def _run_id(query, name: str) -> str:
    value = params.one(query, name)
    if value is None or not _RUN_ID.match(value):
        raise params.BadParam(name, "a run id as `gateway eval runs` lists it (e.g. 20261203-101500-a1b2c3)")
    return value


async def evals_compare(request: web.Request) -> web.Response:
    a_id, b_id = _run_id(request.query, "a"), _run_id(request.query, "b")
    state = _state(request)

    def load():
        try:
            (a, res_a), (b, res_b) = store.load_run(state, a_id), store.load_run(state, b_id)
        except KeyError as e:
            raise GatewayError(f"No tracked eval {e.args[0]}.", status=404, type="invalid_request_error") from None
        return a, res_a, store.load_gates(state, a_id), b, res_b, store.load_gates(state, b_id)

    a, res_a, gates_a, b, res_b, gates_b = await asyncio.to_thread(load)
    targets = sorted(set(a["metrics"].get("targets", {})) | set(b["metrics"].get("targets", {})))
    cases = []
    for key in sorted(set(res_a) | set(res_b)):
        ra, rb = res_a.get(key), res_b.get(key)
        cases.append({"target": key[0], "case": key[1], "a": ra, "b": rb,
                      "changed": (ra or {}).get("passed") != (rb or {}).get("passed")})
    cases.sort(key=lambda c: (not c["changed"], c["target"], c["case"]))
    return page(request, "eval_compare.html", nav="evals", a=a, b=b, gates_a=gates_a, gates_b=gates_b,
                targets=targets, cases=cases, changed=sum(c["changed"] for c in cases))
