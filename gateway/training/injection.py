"""Train the injection detector: `gateway train injection [--data DIR] [--out FILE]`.

Data: ../shared/data/train/injection/train.jsonl.gz ({text, label, family, source}), plus ordinary
texts from the other labelled sets in ../shared/data as extra negatives (`extra_negatives`): the
training set's benign side is short commands, expert questions and maths problems, and lacks the
everyday assistant requests ("translate ...", "tell me a joke") and plain documents a gateway
mostly sees. Split 75/25
by group - the first 200 normalised characters, so one jailbreak template, or one carrier document
with its injected and benign twins, never sits on both sides. Two L2 logistic regressions share one
feature layout (detectors/injection.py):
  whole  trained on whole texts;
  piece  trained on pieces, as multiple-instance learning: a benign text's pieces are all benign; of
         an attack text's pieces only the one the model finds most suspicious is the attack (the
         rest of a poisoned e-mail is ordinary e-mail), re-chosen for two rounds.
The max of the raw scores is calibrated with Platt scaling on the dev split; the shipped threshold
is the lowest probability (0.05 steps from 0.5) keeping dev false alarms on the training set's own
benign rows at or under 3%. The threshold table counts those rows and the attacks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from gateway.detectors import calibration
from gateway.detectors.injection import WEIGHTS, InjectionDetector, PartPlan, default_spec, piece_features, plan, whole_features
from gateway.detectors.linear import FeatureSpec, LinearScorer, TextFeatures, WeightsFile
from gateway.training.common import EmbeddingCache, Timer, auroc, data_dir, file_digest, grouped_split, read_jsonl_gz, threshold_table

C = 4.0  # inverse L2 strength, chosen on the dev split among 1, 4, 16 (4 and 16 within 0.001 AUROC)
MIL_ROUNDS = 2
MAX_FALSE_ALARMS = 0.03


def extra_negatives(shared: Path) -> list[dict]:
    """Benign texts from ../shared/data: CLINC user requests (all domains), HaluEval questions and
    knowledge passages, BEGIN dialogue replies and their Wikipedia snippets, PII-dev sentences."""
    out: list[dict] = []

    def add(text: str, family: str) -> None:
        if text and text.strip():
            out.append({"text": text, "label": 0, "family": family, "source": family})

    def jsonl(rel: str) -> list[dict]:
        path = shared / rel
        if not path.is_file():
            raise SystemExit(f"gateway train: {path} not found (the extra negatives come from ../shared/data)")
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    for r in jsonl("topics/clinc_banking_dev.jsonl"):
        add(r["text"], "benign-shared-requests")
    for r in jsonl("faithfulness/halueval_qa_dev.jsonl"):
        add(r["question"], "benign-shared-requests")
        add(r["knowledge"], "benign-shared-documents")
    seen: set[str] = set()
    for r in jsonl("faithfulness/begin_wow_dev.jsonl"):
        add(r["answer"], "benign-shared-dialogue")
        if r["context"] not in seen:
            seen.add(r["context"])
            add(r["context"], "benign-shared-documents")
    pii = shared / "pii" / "presidio_synth_dev.json"
    if pii.is_file():
        for r in json.loads(pii.read_text(encoding="utf-8")):
            add(r["full_text"], "benign-shared-personal")
    return out


def group_of(row: dict) -> str:
    return re.sub(r"\W+", " ", row["text"].lower())[:200]


def matrix(spec: FeatureSpec, feats: list[TextFeatures]) -> sp.csr_matrix:
    cols, vals, indptr = [], [], [0]
    for f in feats:
        c, v = f.sparse_row(spec)
        cols.append(c)
        vals.append(v)
        indptr.append(indptr[-1] + len(c))
    return sp.csr_matrix((np.concatenate(vals), np.concatenate(cols), np.array(indptr)),
                         shape=(len(feats), spec.width))


def fit(x: sp.csr_matrix, y: np.ndarray, weight: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    # Balanced class weights: the extra negatives outnumber the attacks two to one.
    m = LogisticRegression(C=C, solver="liblinear", max_iter=5000, random_state=0, class_weight="balanced")
    m.fit(x, y, sample_weight=weight)
    return m.coef_.ravel(), float(m.intercept_[0])


class Featurized:
    """Every row's readings, embedded once, as whole- and piece-level feature rows."""

    def __init__(self, spec: FeatureSpec, rows: list[dict], embed) -> None:
        self.plans: list[PartPlan] = [plan(r["text"]) for r in rows]
        texts = [t for p in self.plans for t in p.texts_to_embed()]
        vectors = embed(texts)
        self.whole, self.pieces, self.owner = [], [], []
        pos = 0
        for i, p in enumerate(self.plans):
            n, k = len(p.pieces), len(p.decoded)
            v = vectors[pos: pos + n + k]
            pos += n + k
            self.whole.append(whole_features(spec, p, v[:n]) if n > 1 else piece_features(spec, p, p.pieces[0], v[0]))
            for j, r in enumerate((*p.pieces, *p.decoded)):
                self.pieces.append(piece_features(spec, p, r, v[j]))
                self.owner.append(i)
        self.owner = np.array(self.owner)
        self.whole_x = matrix(spec, self.whole)
        self.piece_x = matrix(spec, self.pieces)


def train(data: str | None = None, out: Path = WEIGHTS) -> dict:
    from gateway.models import embedder

    tick = Timer()
    path = data_dir(data) / "injection" / "train.jsonl.gz"
    rows = read_jsonl_gz(path)
    extra = extra_negatives(data_dir(data).parent)
    train_rows, dev_rows = grouped_split(rows + extra, group_of)
    tick(f"{len(rows)} rows + {len(extra)} extra negatives: {len(train_rows)} train / {len(dev_rows)} dev")
    spec = default_spec()

    embed = EmbeddingCache(embedder.encode_exact)

    tr = Featurized(spec, train_rows, embed)
    dv = Featurized(spec, dev_rows, embed)
    embed.save()
    tick(f"features: {tr.piece_x.shape[0] + dv.piece_x.shape[0]} pieces embedded ({embed.computed} computed)")
    y = np.array([r["label"] for r in train_rows])
    support = {name: int(sum(1 for p, label in zip(tr.plans, y) if label and any(n == name for n, _ in p.matches)))
               for name in spec.flags}
    whole = LinearScorer.from_flat(spec, *fit(tr.whole_x, y))
    # Multiple-instance rounds for the piece model, starting from the whole-text model's view.
    piece_y = y[tr.owner]
    scores = tr.piece_x @ _flat(whole) + whole.bias
    piece = whole
    for _ in range(MIL_ROUNDS):
        weight = np.ones(len(piece_y))
        for d in np.flatnonzero(y == 1):
            mine = np.flatnonzero(tr.owner == d)
            if len(mine) > 1:
                weight[mine] = 0.0
                weight[mine[np.argmax(scores[mine])]] = 1.0
        piece = LinearScorer.from_flat(spec, *fit(tr.piece_x, piece_y, weight))
        scores = tr.piece_x @ _flat(piece) + piece.bias
    tick("trained whole and piece models")

    # Save with float16 n-gram weights, then score the dev split through the shipped code path.
    provisional = WeightsFile({"kind": "injection", "features": spec.to_json(),
                               "calibration": calibration.Platt(1.0, 0.0).to_json(), "threshold": 0.5},
                              {**whole.arrays("whole"), **piece.arrays("piece")})
    det = InjectionDetector(provisional)
    dev_raw = np.array([_score(det, dv, i).raw for i in range(len(dev_rows))])
    ydev = np.array([r["label"] for r in dev_rows])
    platt = calibration.fit_platt(dev_raw, ydev)
    provisional.manifest["calibration"] = platt.to_json()
    det = InjectionDetector(provisional)  # figures below: the shipped scores, pattern prior included
    prob = np.array([_score(det, dv, i).probability for i in range(len(dev_rows))])
    # The threshold is set on the training set's own benign rows (hard negatives with trigger words,
    # documents): the extra negatives are easier and would let it slide lower.
    hard = np.array([r["label"] == 0 and not r["family"].startswith("benign-shared") for r in dev_rows])
    benign = np.sort(prob[hard])
    # The lowest threshold on a 0.05 grid (>= 0.5) whose dev false alarms stay within the bound.
    threshold = next(t for t in np.arange(0.5, 0.96, 0.05).round(2)
                     if (benign >= t).mean() <= MAX_FALSE_ALARMS or t >= 0.95)
    families = {}
    for fam in sorted({r["family"] for r in dev_rows}):
        idx = [i for i, r in enumerate(dev_rows) if r["family"] == fam]
        families[fam] = {"rows": len(idx), "flagged_at_threshold": round(float((prob[idx] >= threshold).mean()), 4)}
    metrics = {
        "dev_rows": len(dev_rows), "dev_auroc": round(auroc(prob, ydev), 4),
        "dev_false_alarm_rate": round(float((prob[hard] >= threshold).mean()), 4),
        "dev_false_alarm_rate_extra_negatives": round(float((prob[(ydev == 0) & ~hard] >= threshold).mean()), 4),
        "dev_recall": round(float((prob[ydev == 1] >= threshold).mean()), 4),
        "dev_ece": round(calibration.expected_calibration_error(prob, ydev), 4),
        "dev_length_auroc": round(auroc([len(r["text"]) for r in dev_rows], ydev), 4),
        "families": families,
        "threshold_table": threshold_table(prob[hard | (ydev == 1)], ydev[hard | (ydev == 1)],
                                           [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]),
    }
    manifest = {
        "kind": "injection", "features": spec.to_json(), "calibration": platt.to_json(), "threshold": threshold,
        "family_support": support,
        "threshold_rule": "the lowest probability on a 0.05 grid from 0.5 keeping false alarms on the training set's "
                          "own benign rows (dev split) at or under 3%; threshold_table counts those rows and the attacks",
        "description": "two L2 logistic regressions (whole text; ~400-character pieces, multiple-instance) over hashed "
                       "character 2-5-grams, word 1-2-grams, MiniLM piece embeddings and pattern families, the higher "
                       "raw score Platt-calibrated, pattern families also as a prior (gateway/detectors/injection.py)",
        "limits": "Measured on held-out rows of the same sources. Not represented in training: persuasive role-play "
                  "rewrites of harmful requests without jailbreak framing, optimisation (GCG-style) suffixes - "
                  "covered by a pattern prior only - and most languages other than English and German.",
        "training": {"data": str(path.name), "data_sha256": file_digest(path), "rows": len(train_rows),
                     "split": "75/25 by first 200 normalised characters, seed 20261202", "C": C,
                     "mil_rounds": MIL_ROUNDS},
        "metrics": metrics,
    }
    WeightsFile(manifest, provisional.arrays).save(out)
    tick(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): dev AUROC {metrics['dev_auroc']}, "
         f"false alarms {metrics['dev_false_alarm_rate']:.1%} and recall {metrics['dev_recall']:.1%} at {threshold}")
    return {**manifest, "run": {"texts_embedded": embed.computed}}  # run facts: card only, not the weights


def _flat(s: LinearScorer) -> np.ndarray:
    return np.concatenate([s.w_char, s.w_word, s.w_dense, s.w_flags]).astype(np.float64)


def _score(det: InjectionDetector, fz: Featurized, i: int):
    p = fz.plans[i]
    n = len(p.pieces) + len(p.decoded)
    mine = np.flatnonzero(fz.owner == i)
    # Re-embed-free scoring: the vectors are already inside the piece features' dense part.
    vectors = np.stack([fz.pieces[j].dense[:384] for j in mine[:n]])
    return det.score_plan(p, vectors)
