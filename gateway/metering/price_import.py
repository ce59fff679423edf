"""`gateway prices import FILE`: merge the community price table that LiteLLM publishes
(`model_prices_and_context_window.json`, MIT; inside the `litellm` wheel as
`litellm/model_prices_and_context_window_backup.json`, so `pip download litellm --no-deps` gives it
offline) into `policies/pricing.yaml`.

The user's file is edited as text, so its comments and layout stay: imported entries live in one
block at the end of `models:`, between two marker comments, and a re-import replaces that block. An
entry the user wrote (outside the block) is never overwritten unless `--force`, which removes the
user's entry of that name and takes the imported one. LiteLLM's prices are USD per token; ours are
USD per 1M tokens. Every imported entry says where it came from (`source`) and when (`as_of`).
The result is validated as the gateway validates it before the file is replaced (atomically).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.metering.pricing import _MAX_PER_MILLION, PricingFile

BEGIN = "  # ---- BEGIN prices imported by `gateway prices import` (re-run it to update; edits here are replaced) ----"
END = "  # ---- END imported prices ----"
MODES = ("chat", "completion", "responses", "embedding")
_LONG = re.compile(r"^input_cost_per_token_above_(\d+)k_tokens$")
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_.:/@+-]+$")
# An entry of `models:` (two spaces in): its name, quoted or plain (plain names may hold `:`, as Bedrock ids
# do; the name ends at the first `:` followed by a space or the end of the line).
_ENTRY = re.compile(r"^  (\"[^\"]+\"|'[^']+'|[^\s#\"'][^\s]*?):(?:\s|$)")


def _entry_name(line: str) -> str | None:
    m = _ENTRY.match(line)
    return m.group(1).strip("'\"") if m else None


@dataclass
class ImportReport:
    read: int = 0
    imported: int = 0
    new: int = 0
    updated: int = 0
    kept_yours: list[str] = field(default_factory=list)
    replaced_yours: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    cached_read: int = 0
    cache_write: int = 0
    reasoning: int = 0
    long_context: int = 0

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def lines(self) -> list[str]:
        out = [f"read {self.read:,} entries; imported {self.imported:,} token prices ({self.new:,} new, "
               f"{self.updated:,} updated)",
               f"  with a cached-read price: {self.cached_read:,}; cache-write: {self.cache_write:,}; "
               f"reasoning: {self.reasoning:,}; long-context tier: {self.long_context:,}"]
        if self.kept_yours:
            out.append(f"  kept your own entry (not overwritten; --force replaces it): {len(self.kept_yours)}: "
                       + ", ".join(self.kept_yours[:10]) + (" ..." if len(self.kept_yours) > 10 else ""))
        if self.replaced_yours:
            out.append(f"  replaced your own entry (--force): {', '.join(self.replaced_yours)}")
        for why, n in sorted(self.skipped.items(), key=lambda kv: -kv[1]):
            out.append(f"  skipped {n:,}: {why}")
        return out


def _per_million(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(f"{value * 1e6:.6g}")


def convert(name: str, entry: dict[str, Any], as_of: dt.date, report: ImportReport) -> dict[str, Any] | None:
    """One LiteLLM entry as a pricing.yaml entry (None: skipped, the reason counted in `report`)."""
    mode = entry.get("mode")
    if mode not in MODES:
        report.skip(f"mode {mode!r} (not {', '.join(MODES)})" if isinstance(mode, str) and len(mode) < 40
                    else "no mode")
        return None
    inp = _per_million(entry.get("input_cost_per_token"))
    out = _per_million(entry.get("output_cost_per_token", 0 if mode == "embedding" else None))
    if inp is None or out is None:
        report.skip("no per-token input and output price")
        return None
    if max(inp, out) > _MAX_PER_MILLION:
        report.skip(f"a price above {_MAX_PER_MILLION:g} USD per 1M tokens (not a per-token price)")
        return None
    price: dict[str, Any] = {"input": inp, "output": out}
    cached = _per_million(entry.get("cache_read_input_token_cost"))
    if cached is not None and cached <= inp:
        price["cached_input"] = cached
        report.cached_read += 1
    write = _per_million(entry.get("cache_creation_input_token_cost"))
    if write is not None and write <= _MAX_PER_MILLION:
        price["cache_write_input"] = write
        report.cache_write += 1
    reasoning = _per_million(entry.get("output_cost_per_reasoning_token"))
    if reasoning is not None and reasoning <= _MAX_PER_MILLION:
        price["reasoning"] = reasoning
        report.reasoning += 1
    tiers = sorted((int(m.group(1)) * 1000, k) for k in entry if (m := _LONG.match(k)))
    if tiers:
        above, key = tiers[0]  # the first tier above the base price
        suffix = key.removeprefix("input_cost_per_token")
        t_in, t_out = _per_million(entry.get(key)), _per_million(entry.get(f"output_cost_per_token{suffix}"))
        if t_in is not None and t_out is not None and max(t_in, t_out) <= _MAX_PER_MILLION:
            tier: dict[str, Any] = {"above_input_tokens": above, "input": t_in, "output": t_out}
            t_cached = _per_million(entry.get(f"cache_read_input_token_cost{suffix}"))
            if t_cached is not None:
                tier["cached_input"] = t_cached
            price["long_context"] = tier
            report.long_context += 1
    origin = entry.get("source") if isinstance(entry.get("source"), str) else entry.get("litellm_provider", "")
    price["source"] = f"LiteLLM model_prices_and_context_window.json ({origin})" if origin else \
        "LiteLLM model_prices_and_context_window.json"
    price["as_of"] = as_of.isoformat()
    return price


def _yaml_key(name: str) -> str:
    return name if _PLAIN_KEY.match(name) and not name[0].isdigit() else json.dumps(name)


def _flow(v: Any) -> str:
    """A YAML flow value (JSON strings and numbers are valid YAML)."""
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_flow(x)}" for k, x in v.items()) + "}"
    if isinstance(v, float):  # no exponent: PyYAML reads 1e-05 as a string
        text = f"{v:.8f}".rstrip("0")
        return text + "0" if text.endswith(".") else text
    return json.dumps(v)


def _models_span(lines: list[str]) -> tuple[int, int]:
    """(index of the `models:` line, index after its last entry line) in the file's lines."""
    start = next((i for i, ln in enumerate(lines) if re.match(r"^models:\s*(#.*)?$", ln)), None)
    if start is None:
        raise ValueError("no block-style `models:` mapping at the top level (write `models:` on its own line)")
    end = start + 1
    for i in range(start + 1, len(lines)):
        ln = lines[i]
        if ln.strip() and not ln.startswith((" ", "\t", "#")):
            break  # the next top-level key
        if ln.strip() and not ln.lstrip().startswith("#"):
            end = i + 1
    return start, end


def _user_entries(lines: list[str], start: int, end: int) -> dict[str, tuple[int, int]]:
    """name -> (first line, line after it) of each entry under `models:` outside the imported block."""
    out: dict[str, tuple[int, int]] = {}
    i = start + 1
    while i < end:
        name = _entry_name(lines[i])
        if name is None:
            i += 1
            continue
        j = i + 1
        while j < end and (not lines[j].strip() or lines[j].startswith("    ")):  # its nested lines
            j += 1
        while j > i + 1 and not lines[j - 1].strip():  # blank lines after it are not part of it
            j -= 1
        out[name] = (i, j)
        i = j
    return out


def merge(pricing_text: str, table: dict[str, Any], *, as_of: dt.date, force: bool = False,
          providers: set[str] | None = None) -> tuple[str, ImportReport]:
    """The new pricing.yaml text and what the import did. Raises ValueError for a file it cannot edit."""
    report = ImportReport()
    lines = pricing_text.splitlines()
    if BEGIN in lines:  # drop the previous import: it is rebuilt from the table
        b = lines.index(BEGIN)
        e = lines.index(END, b) if END in lines[b:] else b
        previous = {name for ln in lines[b + 1:e] if (name := _entry_name(ln))}
        del lines[b:e + 1]
    else:
        previous = set()
    start, end = _models_span(lines)
    yours = _user_entries(lines, start, end)
    imported: dict[str, dict[str, Any]] = {}
    for name, entry in table.items():
        if name == "sample_spec" or not isinstance(entry, dict):
            continue
        report.read += 1
        if providers is not None and entry.get("litellm_provider") not in providers:
            report.skip("provider not selected (--providers)")
            continue
        price = convert(name, entry, as_of, report)
        if price is None:
            continue
        if name in yours and not force:
            report.kept_yours.append(name)
            continue
        if name in yours:
            report.replaced_yours.append(name)
        imported[name] = price
    for name in sorted(report.replaced_yours, key=lambda n: -yours[n][0]):  # bottom up: indexes stay valid
        a, b = yours[name]
        del lines[a:b]
    start, end = _models_span(lines)
    block = [BEGIN] + [f"  {_yaml_key(n)}: {_flow(p)}" for n, p in sorted(imported.items())] + [END]
    lines[end:end] = block
    report.imported = len(imported)
    report.updated = len(set(imported) & previous)
    report.new = report.imported - report.updated
    text = "\n".join(lines) + "\n"
    _validate(text)
    return text, report


def _validate(text: str) -> None:
    import yaml

    class Loader(yaml.SafeLoader):  # dates as the gateway reads them (it loads with PyYAML too)
        pass

    try:
        PricingFile.model_validate(yaml.load(text, Loader))
    except (ValidationError, yaml.YAMLError) as e:
        raise ValueError(f"the merged table does not validate, nothing written: {str(e).splitlines()[0]}") from None


def read_table(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read it ({e})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or not any(isinstance(v, dict) and "input_cost_per_token" in v for v in data.values()):
        raise ValueError(f"{path}: not LiteLLM's price table (an object of models with input_cost_per_token); "
                         "it is litellm/model_prices_and_context_window_backup.json in the litellm wheel")
    return data


def write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".pricing-", suffix=".yaml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
