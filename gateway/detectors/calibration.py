"""Score calibration: a raw detector score becomes a probability measured on a labelled dev split.

Platt scaling (a logistic curve, two parameters) is the default: it is smooth and needs few
examples. Isotonic regression (pool-adjacent-violators) is offered for detectors with enough dev
data and a raw score that is not logistic-shaped. Pure numpy, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Platt:
    a: float
    b: float

    def __call__(self, raw: np.ndarray | float) -> np.ndarray | float:
        z = np.clip(self.a * np.asarray(raw, dtype=np.float64) + self.b, -40, 40)
        return 1.0 / (1.0 + np.exp(-z))

    def to_json(self) -> dict:
        return {"kind": "platt", "a": self.a, "b": self.b}


@dataclass(frozen=True, slots=True)
class Isotonic:
    x: tuple[float, ...]  # increasing raw scores
    y: tuple[float, ...]  # non-decreasing probabilities at those scores

    def __call__(self, raw: np.ndarray | float) -> np.ndarray | float:
        return np.interp(raw, self.x, self.y)

    def to_json(self) -> dict:
        return {"kind": "isotonic", "x": list(self.x), "y": list(self.y)}


Calibrator = Platt | Isotonic


def from_json(data: dict) -> Calibrator:
    if data.get("kind") == "platt":
        return Platt(float(data["a"]), float(data["b"]))
    if data.get("kind") == "isotonic":
        x, y = tuple(map(float, data["x"])), tuple(map(float, data["y"]))
        if len(x) != len(y) or len(x) < 2 or any(b < a for a, b in zip(x, x[1:])):
            raise ValueError("isotonic calibration needs two or more increasing points")
        return Isotonic(x, y)
    raise ValueError(f"unknown calibration kind {data.get('kind')!r}")


def fit_platt(raw: np.ndarray, labels: np.ndarray, iterations: int = 100) -> Platt:
    """Maximum-likelihood logistic fit by Newton's method, with Platt's smoothed targets (so a
    perfectly separated dev set does not drive the slope to infinity)."""
    raw = np.asarray(raw, dtype=np.float64)
    labels = np.asarray(labels)
    n1, n0 = int(labels.sum()), int(len(labels) - labels.sum())
    t = np.where(labels == 1, (n1 + 1) / (n1 + 2), 1 / (n0 + 2))
    a, b = 1.0, 0.0
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-np.clip(a * raw + b, -40, 40)))
        g = np.array([np.sum((p - t) * raw), np.sum(p - t)])
        w = p * (1 - p) + 1e-12
        h = np.array([[np.sum(w * raw * raw), np.sum(w * raw)], [np.sum(w * raw), np.sum(w)]])
        step = np.linalg.solve(h + 1e-9 * np.eye(2), g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    return Platt(float(a), float(b))


def fit_isotonic(raw: np.ndarray, labels: np.ndarray) -> Isotonic:
    """Pool adjacent violators over the sorted scores; ties share one block."""
    order = np.argsort(raw, kind="stable")
    xs, ys = np.asarray(raw, dtype=np.float64)[order], np.asarray(labels, dtype=np.float64)[order]
    blocks: list[list[float]] = []  # [sum_y, count, x_min, x_max]
    for x, y in zip(xs, ys):
        if blocks and blocks[-1][3] == x:
            blocks[-1][0] += y
            blocks[-1][1] += 1
        else:
            blocks.append([y, 1, x, x])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, c, lo, hi = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
            blocks[-1][3] = hi
    px, py = [], []
    for s, c, lo, hi in blocks:
        px += [lo, hi] if hi > lo else [lo]
        py += [s / c] * (2 if hi > lo else 1)
    if len(px) == 1:
        px, py = [px[0] - 1, px[0] + 1], [py[0], py[0]]
    return Isotonic(tuple(px), tuple(py))


def expected_calibration_error(prob: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Mean |predicted - observed| over equal-width probability bins, weighted by bin size."""
    prob, labels = np.asarray(prob, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(prob, edges[1:-1]), 0, bins - 1)
    err = 0.0
    for k in range(bins):
        m = idx == k
        if m.any():
            err += m.mean() * abs(prob[m].mean() - labels[m].mean())
    return float(err)
