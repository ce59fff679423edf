"""Semantic cache quality (issue #17): precision and recall of semantic hits on a labelled set of
(cached question, new question, should-hit) pairs, and lookup speed with 100k cached entries.

    python benchmarks/semantic_cache_quality.py [--threshold 0.92] [--entries 100000]

The set is built here, reproducibly (seed 7), from the CLINC banking questions in
../shared/data/topics/clinc_banking_dev.jsonl (dev data; see its README for source and licence):
  should hit   the same question reworded the way users retype it: a greeting or a sign-off added,
               "how do I" / "how can I", "please" added or dropped, case and punctuation changed,
               contractions, a filler word
  traps        the same question with one thing changed that changes the answer: a number (an amount,
               an account or order number), a date or time, a name, a negation; and a different
               question on the same subject (the nearest question of another intent)
Documents supplied as context are part of the exact-match bucket, so "different documents" never
reaches the vector search: it is tested in tests/cache, not counted here.
Every pair is judged by the same code the gateway runs (gateway/cache/semantic.py): MiniLM
similarity above the threshold and an equal guard signature. A figure here is a dev figure.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.cache.semantic import SemanticIndex, signature  # noqa: E402
from gateway.cache.store import CacheKey  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "topics" / "clinc_banking_dev.jsonl"

GREETINGS = ["hi, ", "hello, ", "hey there, ", "quick question: ", "excuse me, ", "good morning, "]
SIGNOFFS = [" thanks", " thank you", " please", " asap", " thx"]
REWRITES = [(r"\bhow do i\b", "how can i"), (r"\bhow can i\b", "how do i"), (r"\bi want to\b", "i'd like to"),
            (r"\bwhat is\b", "what's"), (r"\bwhat's\b", "what is"), (r"\bi would like to\b", "i want to"),
            (r"\bcan you\b", "could you"), (r"\bplease\b", ""), (r"\bmy\b", "my own")]
NAMES = ["John", "Maria", "Chen", "Fatima", "Oliver"]
DATES = [("today", "tomorrow"), ("on monday", "on friday"), ("this week", "next week"), ("in may", "in june")]


def paraphrase(q: str, rng: random.Random) -> str:
    out = q
    for pattern, repl in rng.sample(REWRITES, len(REWRITES)):
        if re.search(pattern, out):
            out = re.sub(pattern, repl, out, count=1)
            break
    if rng.random() < 0.6:
        out = rng.choice(GREETINGS) + out
    if rng.random() < 0.5:
        out = out.rstrip("?. ") + rng.choice(SIGNOFFS)
    if rng.random() < 0.4:
        out = out.rstrip("?. ") + "?"
    if rng.random() < 0.3:
        out = out.capitalize()
    out = re.sub(r"\s+", " ", out).strip()
    return out if out != q else q + "?"


def traps(q: str, rng: random.Random) -> list[tuple[str, str]]:
    out = []
    digits = re.findall(r"\d+", q)
    if digits:
        d = rng.choice(digits)
        out.append(("number", q.replace(d, str(int(d) + rng.choice([1, 9, 10, 100])), 1)))
    else:
        amount = rng.choice([20, 50, 120, 500])
        out.append(("number", (f"{q} for {amount} dollars", f"{q} for {amount + rng.choice([5, 30, 100])} dollars")))
    a, b = rng.choice(DATES)
    out.append(("date", (f"{q} {a}", f"{q} {b}")))
    n1, n2 = rng.sample(NAMES, 2)
    out.append(("name", (f"{q} for {n1}", f"{q} for {n2}")))
    neg = re.sub(r"\b(can|do|does|did|is|are|was|will|should)\b", lambda m: m.group(1) + " not", q, count=1)
    if neg == q:
        neg = "why not " + q if not q.startswith("why") else q.replace("why", "why not", 1)
    out.append(("negation", neg))
    return out


def build(rng: random.Random) -> list[tuple[str, str, bool, str]]:
    rows = [json.loads(line) for line in DATA.open()]
    questions = [(r["text"], r["intent"]) for r in rows if r["label"] == 1]
    pairs = []
    for q, _ in questions:
        pairs.append((q, paraphrase(q, rng), True, "reworded"))
        for kind, t in traps(q, rng):
            if isinstance(t, tuple):
                pairs.append((t[0], t[1], False, kind))
            else:
                pairs.append((q, t, False, kind))
    return pairs, questions


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threshold", type=float, default=0.92)
    p.add_argument("--entries", type=int, default=100_000, help="0 skips the lookup-speed part")
    args = p.parse_args()
    from gateway.models import embedder
    from gateway.models.workers import single_threaded_blas

    single_threaded_blas()  # as `gateway serve` does: spinning BLAS threads would starve the embedding
    rng = random.Random(7)
    pairs, questions = build(rng)
    # the nearest question of another intent: the realistic "different question, same subject" trap
    texts = [q for q, _ in questions]
    vec = embedder.encode(texts)
    sims = vec @ vec.T
    for i, (q, intent) in enumerate(questions):
        order = np.argsort(-sims[i])
        j = next(j for j in order if questions[j][1] != intent)
        pairs.append((q, texts[j], False, "other question"))
    firsts = sorted({a for a, _, _, _ in pairs} | {b for _, b, _, _ in pairs})
    vectors = dict(zip(firsts, embedder.encode(firsts)))
    by_kind: dict[str, list[tuple[bool, bool, float]]] = {}
    for a, b, should, kind in pairs:
        index = SemanticIndex(10)
        index.add("bucket", vectors[a], signature(a), CacheKey("h", "key:t", "m"))
        sim = float(vectors[a] @ vectors[b])
        hit = index.search("bucket", vectors[b], signature(b), args.threshold) is not None
        by_kind.setdefault(kind, []).append((should, hit, sim, signature(a) == signature(b)))
    n_pos = sum(1 for _, _, s, _ in pairs if s)
    hits = [(s, h) for rows in by_kind.values() for s, h, _, _ in rows if h]
    tp = sum(1 for s, _ in hits if s)
    precision = tp / len(hits) if hits else float("nan")
    recall = tp / n_pos
    print(f"{len(pairs)} pairs ({n_pos} should hit, {len(pairs) - n_pos} traps), threshold {args.threshold}")
    print(f"  precision {precision:.4f} ({tp} of {len(hits)} hits right), recall {recall:.4f}")
    for kind, rows in by_kind.items():
        hit = sum(1 for _, h, _, _ in rows if h)
        print(f"  {kind:<15} {len(rows):>4} pairs, {hit:>4} hit, similarity median {statistics.median(r[2] for r in rows):.3f}")
    print("  threshold sweep (precision / recall):", "  ".join(
        f"{t}: {_pr(by_kind, t, n_pos)}" for t in (0.85, 0.88, 0.9, 0.92, 0.94, 0.96)))
    print("  without the guard signature (similarity alone):", "  ".join(
        f"{t}: {_pr(by_kind, t, n_pos, guard=False)}" for t in (0.85, 0.9, 0.92, 0.94, 0.96)))
    if args.entries:
        lookup_speed(args.entries, vectors, firsts)
    return 0


def _pr(by_kind, t: float, n_pos: int, guard: bool = True) -> str:
    """Precision / recall at threshold `t`: a hit needs the similarity and (guard) an equal signature."""
    hits = [s for rows in by_kind.values() for s, _, sim, same in rows if sim >= t and (same or not guard)]
    return "-" if not hits else f"{sum(hits) / len(hits):.3f}/{sum(hits) / n_pos:.3f}"


def lookup_speed(entries: int, vectors: dict, texts: list[str]) -> None:
    """A semantic lookup as the gateway does it on a miss: embed the turn, scan its bucket. 100k
    entries in one bucket (one tenant, one system prompt: the worst case), and spread over 100
    buckets (tenants, prompts)."""
    from gateway.models import embedder

    rng = np.random.default_rng(1)
    base = np.stack(list(vectors.values()))
    for buckets in (1, 100):
        index = SemanticIndex(entries + 1)
        for i in range(entries):
            v = base[i % len(base)] + rng.normal(0, 0.05, 384).astype(np.float32)
            index.add(f"b{i % buckets}", (v / np.linalg.norm(v)).astype(np.float32), ((), (), (), (), 0),
                      CacheKey(f"{i}", "k", "m"))
        lat, scan = [], []
        for q in texts[:200]:
            t0 = time.perf_counter()
            v = embedder.encode([q])[0]
            t1 = time.perf_counter()
            index.search("b0", v, signature(q), 0.92)
            t2 = time.perf_counter()
            lat.append((t2 - t0) * 1000)
            scan.append((t2 - t1) * 1000)
        print(f"Lookup, {entries:,} entries in {buckets} bucket(s): p50 {statistics.median(lat):.2f} ms "
              f"(embedding + scan; the scan alone {statistics.median(scan):.2f} ms), "
              f"p99 {sorted(lat)[int(len(lat) * .99)]:.2f} ms")


if __name__ == "__main__":
    raise SystemExit(main())
