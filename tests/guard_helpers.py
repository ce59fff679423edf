"""Build one check from a policy file, for check tests and the quality benchmarks."""

from __future__ import annotations

from pathlib import Path

from gateway.config.yamlfile import load_yaml
from gateway.pipeline import build_pipeline


def load_check(policy: Path, check_type: str, phase: str = "request"):
    pipeline = build_pipeline(policy.stem, load_yaml(policy))
    checks = pipeline.request_checks if phase == "request" else pipeline.response_checks
    return next(b.check for b in checks if b.type == check_type)
