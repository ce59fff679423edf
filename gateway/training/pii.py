"""Train the PII span filter: `gateway train pii [--data DIR] [--out FILE]`.

Candidates are the name / place / organisation guesses the engine makes (after the look-alike
rules, before the filter) on two sets:
  ../shared/data/pii/presidio_synth_dev.json  a guess is personal data when it overlaps a labelled
      span of the same type (GPE / street address = LOCATION); one overlapping only an out-of-scope
      label (TITLE, AGE, NRP, ZIP_CODE) is left out. Split by sample: even indices train, odd dev.
  ../shared/data/train/pii_negatives          technical texts without personal data: every guess
      is a false alarm. Split 75/25 by text.
An L2 logistic regression (balanced classes) over span_filter.span_features, Platt-calibrated on
the dev halves. Thresholds per tier, on the dev halves: `balanced` maximises typed F2 with at most
5% of the negative texts raising any alarm; `strict` allows 2%.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from gateway.detectors import calibration
from gateway.detectors.linear import LinearScorer, WeightsFile
from gateway.pii.engine import PiiEngine
from gateway.pii.entities import Entity
from gateway.pii.span_filter import FILTERED_SOURCES, FILTERED_TYPES, WEIGHTS, span_features, spec
from gateway.training.common import Timer, data_dir, file_digest, grouped_split, read_jsonl_gz
from gateway.training.injection import fit, matrix

MAP = {"PERSON": "PERSON", "GPE": "LOCATION", "STREET_ADDRESS": "LOCATION", "ORGANIZATION": "ORGANIZATION",
       "PHONE_NUMBER": "PHONE_NUMBER", "EMAIL_ADDRESS": "EMAIL_ADDRESS", "CREDIT_CARD": "CREDIT_CARD",
       "IBAN_CODE": "IBAN_CODE", "US_SSN": "US_SSN", "IP_ADDRESS": "IP_ADDRESS", "DATE_TIME": "DATE_TIME",
       "US_DRIVER_LICENSE": "US_DRIVER_LICENSE", "DOMAIN_NAME": "URL"}  # as ../shared/eval/pii_score.py
OUT_OF_SCOPE = {"TITLE", "AGE", "NRP", "ZIP_CODE"}
MIN_SCORE = 0.4  # the engine's candidates as benchmarks/pii_quality.py counts them
TIER_FALSE_ALARMS = {"balanced": 0.05, "strict": 0.02}


class Sample:
    """One text's entities: the filter's candidates (with features) and the rest (always kept)."""

    def __init__(self, engine: PiiEngine, text: str, gold: list[tuple[int, int, str]] | None) -> None:
        self.gold = gold or []
        self.fixed: list[Entity] = []
        self.cands: list[Entity] = []
        self.feats = []
        for offset, chunk, ents, doc in engine.analyze_chunks(text):
            for e in ents:
                if e.score < MIN_SCORE:
                    continue
                shifted = Entity(e.start + offset, e.end + offset, e.type, e.score, e.source)
                if e.type in FILTERED_TYPES and e.source in FILTERED_SOURCES:
                    self.cands.append(shifted)
                    self.feats.append(span_features(chunk, e, doc))
                else:
                    self.fixed.append(shifted)


def label(e: Entity, gold: list[tuple[int, int, str]], oos: list[tuple[int, int]]) -> int | None:
    over = [g for g in gold if g[0] < e.end and e.start < g[1]]
    if any(g[2] == e.type for g in over):
        return 1
    if not over and any(o[0] < e.end and e.start < o[1] for o in oos):
        return None
    return 0


def typed_f2(samples: list[Sample], kept: list[list[Entity]]) -> float:
    """Typed F2 over in-scope types, as ../shared/eval/pii_score.py counts it (overlap >= 1 char)."""
    tp_p = n_p = tp_g = n_g = 0
    for s, ents in zip(samples, kept):
        gold = [g for g in s.gold if g[2] != "OOS"]
        oos = [g for g in s.gold if g[2] == "OOS"]
        ents = [e for e in ents if any(e.start < g[1] and g[0] < e.end for g in gold)
                or not any(e.start < o[1] and o[0] < e.end for o in oos)]
        ents = [e for e in ents if e.type in set(MAP.values())]
        n_p += len(ents)
        tp_p += sum(any(g[2] == e.type and e.start < g[1] and g[0] < e.end for g in gold) for e in ents)
        n_g += len(gold)
        tp_g += sum(any(g[2] == e.type and e.start < g[1] and g[0] < e.end for e in ents) for g in gold)
    p, r = tp_p / max(1, n_p), tp_g / max(1, n_g)
    return 5 * p * r / (4 * p + r) if p + r else 0.0


def train(data: str | None = None, out: Path = WEIGHTS) -> dict:
    tick = Timer()
    root = data_dir(data)
    gold_path = root.parent / "pii" / "presidio_synth_dev.json"
    neg_path = root / "pii_negatives" / "train.jsonl.gz"
    if not gold_path.is_file():
        raise SystemExit(f"gateway train: {gold_path} not found")
    gold_rows = json.loads(gold_path.read_text(encoding="utf-8"))
    negatives = read_jsonl_gz(neg_path)
    engine = PiiEngine(mode="ner", use_filter=False)
    engine.load()

    def gold_of(row: dict) -> list[tuple[int, int, str]]:
        out = []
        for g in row["spans"]:
            kind = MAP.get(g["entity_type"], "OOS" if g["entity_type"] in OUT_OF_SCOPE else None)
            if kind:
                out.append((g["start_position"], g["end_position"], kind))
        return out

    pos_train = [Sample(engine, r["full_text"], gold_of(r)) for r in gold_rows[0::2]]
    pos_dev = [Sample(engine, r["full_text"], gold_of(r)) for r in gold_rows[1::2]]
    neg_train_rows, neg_dev_rows = grouped_split(negatives, lambda r: r["text"][:120])
    neg_train = [Sample(engine, r["text"], None) for r in neg_train_rows]
    neg_dev = [Sample(engine, r["text"], None) for r in neg_dev_rows]
    tick(f"candidates from {len(gold_rows)} labelled and {len(negatives)} negative texts")

    fs = spec()
    feats, ys = [], []
    for s in pos_train + neg_train:
        oos = [(g[0], g[1]) for g in s.gold if g[2] == "OOS"]
        for e, f in zip(s.cands, s.feats):
            y = label(e, [g for g in s.gold if g[2] != "OOS"], oos)
            if y is not None:
                feats.append(f)
                ys.append(y)
    y = np.array(ys)
    scorer = LinearScorer.from_flat(fs, *fit(matrix(fs, feats), y))
    tick(f"trained on {len(y)} candidates ({int(y.sum())} personal data)")

    def raw(s: Sample) -> np.ndarray:
        return np.array([scorer.raw(f) for f in s.feats])

    dev = pos_dev + neg_dev
    dev_raw = [raw(s) for s in dev]
    dev_y = []
    for s in pos_dev:
        oos = [(g[0], g[1]) for g in s.gold if g[2] == "OOS"]
        dev_y.append([label(e, [g for g in s.gold if g[2] != "OOS"], oos) for e in s.cands])
    dev_y += [[0] * len(s.cands) for s in neg_dev]
    flat_raw = np.concatenate(dev_raw)
    flat_y = np.array([v for ys_ in dev_y for v in ys_], dtype=object)
    mask = np.array([v is not None for v in flat_y])
    platt = calibration.fit_platt(flat_raw[mask], flat_y[mask].astype(int))
    dev_prob = [np.asarray(platt(r)) if len(r) else r for r in dev_raw]

    def kept(samples, probs, t):
        return [s.fixed + [e for e, p in zip(s.cands, pr) if p >= t] for s, pr in zip(samples, probs)]

    def false_alarm_rate(t):
        k = kept(neg_dev, dev_prob[len(pos_dev):], t)
        return sum(bool(x) for x in k) / len(neg_dev)

    grid = [round(t, 2) for t in np.arange(0.0, 0.96, 0.05)]
    table = []
    for t in grid:
        table.append({"threshold": t, "typed_f2_dev_half": round(typed_f2(pos_dev, kept(pos_dev, dev_prob, t)), 4),
                      "negative_texts_with_alarm": round(false_alarm_rate(t), 4)})
    thresholds = {}
    for tier, bound in TIER_FALSE_ALARMS.items():
        ok = [r for r in table if r["negative_texts_with_alarm"] <= bound]
        best = max(ok, key=lambda r: (r["typed_f2_dev_half"], -r["threshold"])) if ok else table[-1]
        thresholds[tier] = best["threshold"]
    no_filter = {"typed_f2_dev_half": round(typed_f2(pos_dev, [s.fixed + s.cands for s in pos_dev]), 4),
                 "negative_texts_with_alarm": round(sum(bool(s.fixed or s.cands) for s in neg_dev) / len(neg_dev), 4)}
    kinds = Counter()
    for s, pr in zip(neg_dev, dev_prob[len(pos_dev):]):
        for e in s.fixed:
            kinds[f"{e.type}/{e.source}"] += 1
        for e, p in zip(s.cands, pr):
            if p >= thresholds["balanced"]:
                kinds[f"{e.type}/{e.source}"] += 1
    metrics = {"dev_labelled_texts": len(pos_dev), "dev_negative_texts": len(neg_dev),
               "without_filter": no_filter, "threshold_table": table,
               "balanced_remaining_alarms_by_kind": dict(kinds.most_common(12))}
    manifest = {
        "kind": "pii", "features": fs.to_json(), "calibration": platt.to_json(), "thresholds": thresholds,
        "threshold": thresholds["balanced"],
        "threshold_rule": "per tier, max typed F2 on the odd half of the PII dev set with negative-text alarms "
                          "<= 5% (balanced) / 2% (strict) on the negatives' dev split",
        "description": "logistic regression over span shape, part-of-speech and word-list features of name / place / "
                       "organisation candidates (gateway/pii/span_filter.py)",
        "training": {"data": f"{gold_path.name} (even half) + {neg_path.name}",
                     "data_sha256": f"{file_digest(gold_path)} / {file_digest(neg_path)}", "rows": len(y),
                     "split": "PII dev by index parity; negatives 75/25 by first 120 characters, seed 20261202"},
        "metrics": metrics,
    }
    WeightsFile(manifest, scorer.arrays("span")).save(out)
    row = next(r for r in table if r["threshold"] == thresholds["balanced"])
    tick(f"wrote {out}: balanced threshold {thresholds['balanced']} (typed F2 {row['typed_f2_dev_half']}, "
         f"negative texts with an alarm {row['negative_texts_with_alarm']:.1%}; without the filter "
         f"{no_filter['typed_f2_dev_half']} / {no_filter['negative_texts_with_alarm']:.1%}), strict {thresholds['strict']}")
    return manifest
