"""The documentation (docs/src/): generated pages are current, the code blocks marked runnable run and
succeed, every page is in the site's nav, and links between pages resolve. (`mkdocs build --strict`
runs in .ci/run.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO

DOCS = REPO / "docs" / "src"
MARK = "<!-- runnable"
_BLOCK = re.compile(r"^<!-- runnable[^\n]*-->\n```(?:bash|sh)\n(.*?)\n```$", re.S | re.M)


def runnable_blocks() -> list[tuple[str, str]]:
    out = []
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        blocks = _BLOCK.findall(text)
        marks = len(re.findall(rf"^{MARK}", text, re.M))
        assert len(blocks) == marks, f"{page}: a runnable mark not followed by a ```bash block"
        out += [(f"{page.relative_to(DOCS)}#{i + 1}", b) for i, b in enumerate(blocks)]
    return out


def test_generated_pages_are_current(tmp_path):
    # In a fresh process: tests register check types of their own, which would enter the reference.
    r = subprocess.run([sys.executable, "-m", "gateway.config.reference_docs", str(tmp_path)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    fresh = [Path(line) for line in r.stdout.split()]
    assert len(fresh) == 3
    for path in fresh:
        rel = path.relative_to(tmp_path)
        assert (DOCS / rel).read_text() == path.read_text(), (
            f"docs/src/{rel} is stale: run `.venv/bin/python -m gateway.config.reference_docs`")


def test_every_page_is_in_the_nav_and_links_resolve():
    config = yaml.safe_load((REPO / "docs" / "mkdocs.yml").read_text())
    nav: list[str] = []

    def walk(items):
        for item in items:
            for v in item.values():
                walk(v) if isinstance(v, list) else nav.append(v)

    walk(config["nav"])
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages
    for page in DOCS.rglob("*.md"):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not re.match(r"[a-z]+://", target):
                assert (page.parent / target).exists(), f"{page.relative_to(DOCS)}: broken link {target}"
    # the README's links point at the same pages
    for target in re.findall(r"\]\((docs/[^)#\s]+)", (REPO / "README.md").read_text()):
        assert (REPO / target).exists(), target


@pytest.mark.parametrize("where, block", runnable_blocks(), ids=lambda x: x if "#" in str(x) else "")
def test_runnable_blocks_run(where, block, tmp_path):
    for name in ("policies", "prompts", "evals"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns(".edit.lock"))
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))  # blocks may call .venv/bin/gateway
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    r = subprocess.run(["bash", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{where}:\n{block}\n--- stdout\n{r.stdout[-2000:]}\n--- stderr\n{r.stderr[-2000:]}"
