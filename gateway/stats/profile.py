"""A fitted reference profile of a dataset: what drift monitoring needs, without the data.

Only data classes and (de)serialisation, numpy-free and scipy-free: the gateway loads profiles at
start-up; the statistics that use them are in gateway/stats/drift.py.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal


@dataclass
class NumericRef:
    n: int
    n_missing: int
    mean: float
    std: float
    min: float
    max: float
    edges: list[float]  # interior bin edges (reference quantiles)
    props: list[float]  # reference share per bin
    quantiles: list[float]  # N_QUANTILES points of the reference distribution (a quantile sketch)
    hist_edges: list[float]  # equal-width bins for pictures
    hist_props: list[float]
    kind: Literal["numeric"] = "numeric"


@dataclass
class CategoricalRef:
    n: int
    n_missing: int
    counts: dict[str, int]
    kind: Literal["categorical"] = "categorical"


@dataclass
class Profile:
    """A fitted reference: what monitoring needs, without the reference data."""

    columns: dict[str, NumericRef | CategoricalRef]
    rows: int
    content_hash: str
    source: str
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    version: int = 1
    # Sorted valid values of each numeric column, kept by drift.fit(keep_sample=True) for exact KS and
    # Wasserstein in the same process; never saved.
    sorted_samples: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def schema(self) -> dict[str, str]:
        return {name: c.kind for name, c in self.columns.items()}

    def save(self, path: Path) -> None:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sorted_samples"}
        data["columns"] = {name: asdict(c) for name, c in self.columns.items()}
        Path(path).write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Profile:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("version") != 1:
            raise ValueError(f"{path}: unknown profile version {data.get('version')!r}")
        columns = {name: (NumericRef if c["kind"] == "numeric" else CategoricalRef)(**c)
                   for name, c in data.pop("columns").items()}
        return cls(columns=columns, **data)


