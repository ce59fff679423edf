from __future__ import annotations

import textwrap
from pathlib import Path

from tests.helpers import run_cli

V1 = """\
description: Answer a support question.
model: mock-model
params: {temperature: 0.1, max_tokens: 50}
variables:
  question: {type: string}
  tone: {type: string, default: friendly, enum: [friendly, formal]}
  retries: {type: integer, default: 1}
messages:
  - role: system
    content: "Be {{ tone }}."
  - role: user
    content: "Q: {{ question }}"
"""


def make_prompts(root: Path, **versions: str) -> Path:
    """prompts/support/v1.yaml (+ more as v2=...); nothing published."""
    folder = root / "support"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "v1.yaml").write_text(V1)
    for key, text in versions.items():
        (folder / f"{key}.yaml").write_text(textwrap.dedent(text))
    return root


def prompts_cli(root: Path, *args: str):
    return run_cli("prompts", "--prompts", str(root), *args, env={"GATEWAY_USER": "tester"})
