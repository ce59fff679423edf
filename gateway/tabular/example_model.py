"""A tiny churn model server and data generator for the README demo and tests (numpy only).

    gateway tabular example-server --port 9100
    gateway tabular example-data -o churn.csv [--rows 5000] [--shift 0.0] [--seed 1]

The model is a fixed logistic regression; the data generator draws customers whose churn follows the
same model, so labels match predictions on unshifted data. `--shift` moves the feature distributions
(longer support call queues, higher prices) and changes the true relationship - data and concept
drift to detect.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import numpy as np
from aiohttp import web

PLANS = ("basic", "pro", "enterprise")
COEF = {"intercept": -1.2, "tenure_months": -0.04, "monthly_spend": 0.012, "support_calls": 0.35,
        "plan": {"basic": 0.4, "pro": 0.0, "enterprise": -0.6}}


def sigmoid(z: float) -> float:
    """1 / (1 + e^-z) without overflow for any finite z (math.exp(-z) overflows for z < -709)."""
    if z >= 0:
        return 1 / (1 + math.exp(-z))
    e = math.exp(max(z, -745.0))
    return e / (1 + e)


NUMERIC = ("tenure_months", "monthly_spend", "support_calls")


def churn_probability(row: dict) -> float:
    z = (COEF["intercept"] + COEF["tenure_months"] * row["tenure_months"]
         + COEF["monthly_spend"] * row["monthly_spend"] + COEF["support_calls"] * row["support_calls"]
         + COEF["plan"].get(row["plan"], 0.0))
    return sigmoid(z)


def generate(rows: int, shift: float = 0.0, seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0, 12.0 * (1 - 0.4 * shift), rows).round()
    spend = rng.normal(60 + 30 * shift, 20, rows).clip(5, None).round(2)
    calls = rng.poisson(1.5 + 2.5 * shift, rows)
    plan = rng.choice(PLANS, rows, p=[0.5 - 0.2 * shift, 0.35, 0.15 + 0.2 * shift])
    out = []
    for t, s, c, p in zip(tenure, spend, calls, plan):
        row = {"tenure_months": float(t), "monthly_spend": float(s), "support_calls": int(c), "plan": str(p)}
        prob = churn_probability(row)
        # Concept drift: under `shift`, high prices stop driving churn (a competitor matched them), so the
        # model over-predicts churn for big spenders.
        true_p = 1 / (1 + math.exp(-(math.log(prob / (1 - prob)) - shift * 0.06 * (s - 60))))
        out.append({**row, "prediction": round(prob, 6), "label": int(rng.random() < true_p)})
    return out


def naive_probability(row: dict) -> float:
    """A deliberately worse model (`?variant=naive`): it ignores support calls and the plan."""
    z = -0.9 + COEF["tenure_months"] * row["tenure_months"] + COEF["monthly_spend"] * row["monthly_spend"]
    return sigmoid(z)


def _row_problem(i: int, row: object) -> str | None:
    """This server is an example others copy: it checks its own input instead of trusting the gateway."""
    if not isinstance(row, dict):
        return f"rows[{i}] must be an object"
    for name in NUMERIC:
        v = row.get(name)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"rows[{i}].{name} must be a number"
        try:
            if not math.isfinite(v):
                return f"rows[{i}].{name} must be finite"
        except OverflowError:
            return f"rows[{i}].{name} is too large"
    if not isinstance(row.get("plan"), str):
        return f"rows[{i}].plan must be a string"
    return None


async def predict(request: web.Request) -> web.Response:
    model = naive_probability if request.query.get("variant") == "naive" else churn_probability
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "the body is not JSON"}, status=400)
    rows = body.get("rows") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        return web.json_response({"error": "send {\"rows\": [...]}"}, status=400)
    for i, row in enumerate(rows):
        if problem := _row_problem(i, row):
            return web.json_response({"error": problem}, status=400)
    preds = [round(model(r), 6) for r in rows]
    return web.json_response({"predictions": preds})


def build_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/predict", predict)
    return app


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gateway tabular")
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("example-server", help="serve the example churn model on POST /predict")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=9100)
    d = sub.add_parser("example-data", help="write example churn data (features, prediction, label) as CSV")
    d.add_argument("-o", "--output", required=True)
    d.add_argument("--rows", type=int, default=5000)
    d.add_argument("--shift", type=float, default=0.0, help="0 = like the training data; 1 = strongly drifted")
    d.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if args.command == "example-server":
        web.run_app(build_app(), host=args.host, port=args.port, print=lambda *_: print(
            f"example churn model on http://{args.host}:{args.port}/predict", file=sys.stderr))
        return 0
    rows = generate(args.rows, args.shift, args.seed)
    with Path(args.output).open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} rows written to {args.output}")
    return 0
