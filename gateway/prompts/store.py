"""The prompts folder on disk, and the CLI's edits of it: atomic writes under a cross-process lock.

    prompts/
      prompts.lock               published versions' content hashes: {name: {version: sha256}}
      <name>/v<N>.yaml           one immutable version each (a draft until published)
      <name>/labels.yaml         {production: 3, staging: 4}
      <name>/history.jsonl       every label move: {at, by, label, from, to, action}
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import getpass
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from gateway.config.yamlfile import parse_yaml

LOCK_FILE = "prompts.lock"
LABELS_FILE = "labels.yaml"
HISTORY_FILE = "history.jsonl"
_VERSION_FILE = re.compile(r"^v(\d+)\.ya?ml$")


class PromptStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # ---- reading ---------------------------------------------------------------------------------
    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.version_files(p.name))

    def version_files(self, name: str) -> dict[int, Path]:
        folder = self.root / name
        out = {}
        if folder.is_dir():
            for p in folder.iterdir():
                if m := _VERSION_FILE.match(p.name):
                    out[int(m.group(1))] = p
        return dict(sorted(out.items()))

    def read_lock(self) -> dict[str, dict[int, str]]:
        path = self.root / LOCK_FILE
        if not path.is_file():
            return {}
        data = parse_yaml(path) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of prompt name to {{version: hash}}")
        return {str(name): {int(v): str(h) for v, h in (versions or {}).items()} for name, versions in data.items()}

    def read_labels(self, name: str) -> dict[str, Any]:
        path = self.root / name / LABELS_FILE
        if not path.is_file():
            return {}
        data = parse_yaml(path) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of label to version number")
        return data

    def read_history(self, name: str) -> list[dict[str, Any]]:
        path = self.root / name / HISTORY_FILE
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def files(self) -> list[Path]:
        """Every file whose edit should reload the registry."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.rglob("*") if p.is_file() and not p.name.startswith("."))

    # ---- editing (CLI) ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def editing(self) -> Iterator[None]:
        """One editor at a time, across processes: two `gateway prompts promote` never interleave."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".edit.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def write_lock(self, lock: dict[str, dict[int, str]]) -> None:
        ordered = {n: {v: lock[n][v] for v in sorted(lock[n])} for n in sorted(lock)}
        header = ("# Content hashes of published prompt versions. Written by `gateway prompts promote`;\n"
                  "# a published version whose file no longer matches its hash refuses to load.\n")
        atomic_write(self.root / LOCK_FILE, header + yaml.safe_dump(ordered, sort_keys=False))

    def write_labels(self, name: str, labels: dict[str, int]) -> None:
        atomic_write(self.root / name / LABELS_FILE, yaml.safe_dump(dict(sorted(labels.items())), sort_keys=False))

    def append_history(self, name: str, entry: dict[str, Any]) -> None:
        with open(self.root / name / HISTORY_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())


def atomic_write(path: Path, text: str) -> None:
    """Write then rename: a reader (the gateway's reload) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; these are ordinary, committed files
    os.replace(tmp, path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def history_entry(label: str, old: int | None, new: int, action: str, by: str | None = None) -> dict[str, Any]:
    """`by`: who made the move (the console passes `console:<admin key name>`); default: this user."""
    return {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "by": by or who(), "label": label,
            "from": old, "to": new, "action": action}


def who() -> str:
    return os.environ.get("GATEWAY_USER") or _git_user() or getpass.getuser()


def _git_user() -> str | None:
    import subprocess

    try:
        out = subprocess.run(["git", "config", "user.email"], capture_output=True, text=True, timeout=2)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None
