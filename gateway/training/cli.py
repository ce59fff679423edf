"""`gateway train DETECTOR`: regenerate a learned detector's shipped weights and model card."""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

DETECTORS = ("injection", "faithfulness", "pii")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("detector", choices=DETECTORS)
    p.add_argument("--data", help="training data folder (default: $GATEWAY_TRAIN_DATA or ../shared/data/train)")
    p.add_argument("--out", help="weights file to write (default: the shipped one in gateway/guard_data/)")


def main(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"gateway.training.{args.detector}")
    t0 = time.perf_counter()
    print(f"training the {args.detector} detector", flush=True)
    out = Path(args.out) if args.out else module.WEIGHTS
    manifest = module.train(args.data, out)
    from gateway.training.card import write_card

    card = write_card(out, manifest, time.perf_counter() - t0)
    print(f"done in {time.perf_counter() - t0:.0f} s; model card: {card}")
    return 0
