"""Drift statistics from a window read in batches: mergeable partial summaries per column.

A window that does not fit in memory is read batch by batch (gateway/tabular/engines.py), on one
machine or on many (a Dask worker per file); each part becomes a `NumericPartial` or
`CategoricalPartial`, and partials merge in any order. What has a streaming form is exact:
counts per reference bin (PSI, KL, JS), category counts (chi-square, Cramer's V), means, missing
and invalid counts. KS and Wasserstein need the sorted window: while the whole window's values fit
in the exact budget they are kept and the result equals the in-memory engine's; past it, every
numeric column switches to a KLL quantile sketch (Apache DataSketches, k = KLL_K), and the report
names the sketched columns with their error bounds:

  KS D: |D_sketch - D| <= 3 eps + step. eps is the sketch's rank error over all queries at once,
  at 99% confidence (0.00098 at k = 4000): once for F_cur at each grid point, twice more for how far
  F_cur can move between two of the sketch's quantiles. step is the widest rank step of the grid D
  is taken on: 1/(N_QUANTILES - 1) against a profile (its quantiles), 1/(2 N_QUANTILES - 2) against
  the raw reference (the sketch's 2,001 quantiles). Bound 0.0039 against a profile, 0.0034 against
  the raw reference.
  Wasserstein: each sketch quantile q(u) lies within [q(u - eps), q(u + eps)], so the W1 computed
  on the profile's quantile grid is within mean_u(q(u + eps) - q(u - eps)) / std of the exact one
  on that grid; the bound is computed per column from the sketch itself.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gateway.stats import drift
from gateway.stats.profile import CategoricalRef, NumericRef

KLL_K = 4000


def _kll():
    try:
        from datasketches import kll_doubles_sketch
    except ImportError:
        raise ValueError("streaming drift needs the datasketches package: pip install 'llm-gateway[drift]'") from None
    return kll_doubles_sketch


@dataclass
class NumericPartial:
    """Part of a numeric column: exact counts, and the values themselves (`kept`) until the window
    outgrows the exact budget, then a KLL sketch of them."""

    edges: np.ndarray  # the reference's bin edges
    hist_edges: np.ndarray  # the profile's picture bins
    n: int = 0
    missing: int = 0
    invalid: int = 0
    total: float = 0.0  # sum of the values (the mean, exactly up to float64 rounding)
    cells: np.ndarray | None = None  # counts between consecutive edges of both kinds (one search per batch)
    kept: list[np.ndarray] | None = field(default_factory=list)  # None once sketched
    sketch: Any = None

    def __post_init__(self) -> None:
        self.cuts = np.unique(np.concatenate([self.edges, self.hist_edges[1:-1]]))
        if self.cells is None:
            self.cells = np.zeros(self.cuts.size + 1, np.int64)

    @classmethod
    def of(cls, ref: NumericRef) -> NumericPartial:
        return cls(np.asarray(ref.edges, float), np.asarray(ref.hist_edges, float))

    @property
    def kept_values(self) -> int:
        return 0 if self.kept is None else sum(a.size for a in self.kept)

    def add(self, column: np.ndarray) -> None:
        values, missing, invalid = drift.numeric_values(column)
        self.missing += missing
        self.invalid += invalid
        if values.size == 0:
            return
        self.n += int(values.size)
        self.total += float(values.sum(dtype=np.float64))
        self.cells += np.bincount(np.searchsorted(self.cuts, values, side="right"), minlength=self.cells.size)
        if self.kept is not None:
            self.kept.append(values)
        else:
            self._feed([values])

    def shares(self, edges: np.ndarray) -> np.ndarray:
        """Share per bin of `edges` (bin k: edges[k-1] <= x < edges[k]), from the cell counts: cell j
        lies in the bin of its lower cut, cuts[j - 1]."""
        lower = np.concatenate([[0], np.searchsorted(edges, self.cuts, side="right")])
        return np.bincount(lower, weights=self.cells, minlength=edges.size + 1) / max(self.n, 1)

    def to_sketch(self) -> None:
        """Stop keeping values: from now on they go into the sketch (the kept ones first)."""
        if self.kept is None:
            return
        self.sketch = self.sketch or _kll()(KLL_K)
        self._feed(self.kept)
        self.kept = None

    def _feed(self, arrays: list[np.ndarray]) -> None:
        for a in arrays:
            self.sketch.update(a.astype(np.float64, copy=False))

    def merge(self, other: NumericPartial) -> None:
        self.n += other.n
        self.missing += other.missing
        self.invalid += other.invalid
        self.total += other.total
        self.cells += other.cells
        if self.kept is not None and other.kept is not None:
            self.kept.extend(other.kept)
            return
        self.to_sketch()
        if other.kept is not None:
            self._feed(other.kept)
        elif other.sketch is not None:
            self.sketch.merge(other.sketch)

    # Partials travel between Dask workers and the client: the sketch as its own serialised bytes.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["sketch"] = None if self.sketch is None else self.sketch.serialize()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        blob = state.pop("sketch")
        self.__dict__.update(state)
        self.sketch = None if blob is None else _kll().deserialize(blob)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (the prediction log's stored summaries): always sketched, never the values."""
        self.to_sketch()
        return {"n": self.n, "missing": self.missing, "invalid": self.invalid, "total": self.total,
                "cells": self.cells.tolist(), "sketch": base64.b64encode(self.sketch.serialize()).decode()}

    @classmethod
    def from_dict(cls, ref: NumericRef, d: dict[str, Any]) -> NumericPartial:
        p = cls.of(ref)
        if len(d["cells"]) != p.cells.size:
            raise ValueError("a stored summary does not match the profile's bins")
        p.n, p.missing, p.invalid, p.total = d["n"], d["missing"], d["invalid"], d["total"]
        p.cells = np.asarray(d["cells"], np.int64)
        p.kept, p.sketch = None, _kll().deserialize(base64.b64decode(d["sketch"]))
        return p

    def summary(self, ref: NumericRef, ref_sorted: np.ndarray | None = None) -> drift.NumericSummary:
        props = self.shares(self.edges)
        hist = self.shares(self.hist_edges[1:-1]) if self.hist_edges.size else None
        if self.n == 0 or ref.n == 0:
            return drift.NumericSummary(self.n, self.missing, self.invalid, props, math.nan, math.nan, 1.0, math.nan,
                                        hist)
        if self.kept is not None:  # the whole window is here: the in-memory engine's exact statistics
            values = np.concatenate(self.kept) if len(self.kept) > 1 else self.kept[0].copy()
            values.sort()
            return drift.exact_summary(ref, values, self.missing, self.invalid, ref_sorted)
        d, w, bounds = sketch_distances(ref, self.sketch, ref_sorted)
        return drift.NumericSummary(self.n, self.missing, self.invalid, props, self.total / self.n, d,
                                    drift.ks_p_value(d, ref.n, self.n), w, hist, bounds)


def sketch_distances(ref: NumericRef, sketch: Any, ref_sorted: np.ndarray | None) -> tuple[float, float, dict]:
    """(KS D, W1, the sketch's description with its error bounds) of a sketched current column. D is
    taken over the sketch's 2,001 quantiles and the reference's points (its 1,001 profile quantiles,
    or 4,001 points of the raw sample), at each point's value and left limit, as drift.ks_test does."""
    eps = sketch.get_normalized_rank_error(sketch.k, True)  # over all queries at once, 99% confidence
    u = np.linspace(0, 1, drift.N_QUANTILES)
    cur_q = np.asarray(sketch.get_quantiles(np.linspace(0, 1, 2 * drift.N_QUANTILES - 1)))
    if ref_sorted is not None:
        grid = np.unique(np.concatenate([cur_q, ref_sorted[np.linspace(0, ref_sorted.size - 1, 4001).astype(int)]]))
        f_ref = (np.searchsorted(ref_sorted, grid, "right") / ref_sorted.size,
                 np.searchsorted(ref_sorted, grid, "left") / ref_sorted.size)
        ref_q = drift.sorted_quantiles(ref_sorted, u)
        step = 1 / (2 * drift.N_QUANTILES - 2)  # the widest rank step between grid points: the sketch's
    else:
        ref_q = np.asarray(ref.quantiles)
        grid = np.unique(np.concatenate([cur_q, ref_q]))
        f_ref = drift.profile_cdf(ref_q, grid, "right"), drift.profile_cdf(ref_q, grid, "left")
        step = 1 / (drift.N_QUANTILES - 1)  # the profile's quantile spacing
    points = grid.tolist()
    f_cur = np.asarray(sketch.get_cdf(points, True))[:-1], np.asarray(sketch.get_cdf(points, False))[:-1]
    d = drift.sup_gap(f_ref[0], f_cur[0], f_ref[1], f_cur[1])
    w = drift.profile_wasserstein(ref_q, cur_q[::2])
    lo = np.asarray(sketch.get_quantiles(np.clip(u - eps, 0, 1)))
    hi = np.asarray(sketch.get_quantiles(np.clip(u + eps, 0, 1)))
    w_bound = float(np.mean(hi - lo))
    return d, w, {"kind": "kll", "k": int(sketch.k), "rank_error": float(eps), "ks_d_bound": float(3 * eps + step),
                  "wasserstein_bound": drift.normalised(ref, w_bound) if ref.std > 0 else w_bound}


@dataclass
class CategoricalPartial:
    counts: dict[str, int] = field(default_factory=dict)
    missing: int = 0

    def add(self, column: Any) -> None:
        """`column`: a numpy array, or an Arrow array (counted by Arrow, with no Python loop per row)."""
        if hasattr(column, "value_counts"):
            pairs = [(v["values"], v["counts"]) for v in column.value_counts().to_pylist()]
        else:
            values, counts = np.unique(drift.categories(column), return_counts=True)
            pairs = list(zip(values.tolist(), counts.tolist()))
        for v, c in pairs:
            key = "" if v is None else str(v)
            if key == "" or (isinstance(v, float) and math.isnan(v)):
                self.missing += c
            else:
                self.counts[key] = self.counts.get(key, 0) + c

    def merge(self, other: CategoricalPartial) -> None:
        self.missing += other.missing
        for v, c in other.counts.items():
            self.counts[v] = self.counts.get(v, 0) + c

    def to_dict(self) -> dict[str, Any]:
        return {"counts": self.counts, "missing": self.missing}

    @classmethod
    def from_dict(cls, ref: CategoricalRef, d: dict[str, Any]) -> CategoricalPartial:
        return cls(dict(d["counts"]), int(d["missing"]))


def to_dict(partials: dict[str, Any]) -> dict[str, Any]:
    return {name: p.to_dict() for name, p in partials.items()}


def from_dict(columns: dict[str, NumericRef | CategoricalRef], d: dict[str, Any]) -> dict[str, Any]:
    """Stored summaries back into partials, for the profile's `columns` (a summary made against
    another profile is refused: its bins differ)."""
    if set(d) != set(columns):
        raise ValueError("a stored summary does not match the profile's columns")
    return {name: (NumericPartial if ref.kind == "numeric" else CategoricalPartial).from_dict(ref, d[name])
            for name, ref in columns.items()}


def partials_for(columns: dict[str, NumericRef | CategoricalRef]) -> dict[str, NumericPartial | CategoricalPartial]:
    return {name: NumericPartial.of(ref) if ref.kind == "numeric" else CategoricalPartial()
            for name, ref in columns.items()}


def merge_all(into: dict[str, Any], other: dict[str, Any]) -> None:
    for name, part in other.items():
        into[name].merge(part)


def kept_values(partials: dict[str, Any]) -> int:
    return sum(p.kept_values for p in partials.values() if isinstance(p, NumericPartial))


def sketch_all(partials: dict[str, Any]) -> None:
    for p in partials.values():
        if isinstance(p, NumericPartial):
            p.to_sketch()


def results(profile_columns: dict[str, NumericRef | CategoricalRef], partials: dict[str, Any],
            rules: dict[str, drift.ColumnRule], ref_samples: dict[str, np.ndarray]) -> list[drift.ColumnDrift]:
    out = []
    for name, ref in profile_columns.items():
        if name not in partials:
            continue
        part, rule = partials[name], rules.get(name) or drift.ColumnRule()
        if ref.kind == "numeric":
            out.append(drift.numeric_result(name, ref, part.summary(ref, ref_samples.get(name)), rule))
        else:
            out.append(drift.categorical_result(name, ref, part.counts, part.missing, rule))
    return out
