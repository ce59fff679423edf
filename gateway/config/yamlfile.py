"""Load YAML keeping the line of every value, so validation errors can say `file:line: field: what`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from gateway.errors import PolicyError

M = TypeVar("M", bound=BaseModel)

Loc = tuple[str | int, ...]


class YamlDoc:
    """A parsed YAML file: its data plus a map from data path to 1-based line number."""

    def __init__(self, path: Path, data: Any, lines: dict[Loc, int]) -> None:
        self.path = path
        self.data = data
        self.lines = lines

    def where(self, loc: Loc) -> str:
        """`file:line` for the deepest part of `loc` that exists in the document."""
        best = self.lines.get((), 1)
        for i in range(len(loc), 0, -1):
            if loc[:i] in self.lines:
                best = self.lines[loc[:i]]
                break
        return f"{self.path}:{best}"

    def data_path(self, loc: tuple[Any, ...]) -> Loc:
        """Drop the parts of a pydantic error location that are not keys in the data.

        Pydantic inserts union tags and model names into `loc` (e.g. `('upstreams', 'x', 'mock', 'latency')`
        for a tagged union); the user only knows the keys they wrote.
        """
        out: list[str | int] = []
        node = self.data
        parts = list(loc)
        i = 0
        while i < len(parts):
            part = parts[i]
            if isinstance(node, dict) and part in node:
                node = node[part]
                out.append(part)
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
                out.append(part)
            elif isinstance(node, dict) and i + 1 < len(parts) and parts[i + 1] in node:
                pass  # a union tag or model name pydantic inserted: skip it
            else:
                # A missing field or an unknown key: keep the rest, it is what the user must fix.
                out.extend(p for p in parts[i:] if not (isinstance(p, str) and "[" in p))
                break
            i += 1
        return tuple(out)

    def problems(self, err: ValidationError, prefix: Loc = ()) -> list[str]:
        lines = []
        for e in err.errors(include_url=False):
            loc = self.data_path(prefix + tuple(e["loc"]))
            field = dotted(loc) or "(top level)"
            msg = e["msg"]
            if e["type"] == "extra_forbidden":
                msg = "unknown field (check the spelling; see the README for the allowed fields)"
            lines.append(f"{self.where(loc)}: {field}: {msg}")
        return lines


def dotted(loc: Loc) -> str:
    s = ""
    for part in loc:
        s += f"[{part}]" if isinstance(part, int) else (f".{part}" if s else str(part))
    return s


# libyaml's parser when PyYAML was built with it: ~20x faster than the pure-Python one (a pricing.yaml
# with thousands of imported prices loads in 0.1 s, not 2), with the same nodes, marks and errors.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path: Path) -> YamlDoc:
    """Parse `path`. Raises `ValueError` with `file:line: message` on a syntax error."""
    text = path.read_text(encoding="utf-8")
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDoc(path, None, {(): 1})
        lines: dict[Loc, int] = {}
        _index(loader, node, (), lines, path)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        raise ValueError(f"{path}:{line}: YAML syntax error: {e.problem or e}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: YAML error: {e}") from None
    finally:
        loader.dispose()
    return YamlDoc(path, data, lines)


def _index(loader: yaml.SafeLoader, node: yaml.Node, loc: Loc, lines: dict[Loc, int], path: Path) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = loader.construct_object(key_node)
                line = key_node.start_mark.line + 1
                if key in seen:
                    # YAML keeps the last of two equal keys and drops the first without a word:
                    # a second `request: []` would silently switch a policy's checks off.
                    where = dotted(loc + (key,)) if isinstance(key, (str, int)) else repr(key)
                    raise ValueError(f"{path}:{line}: duplicate key {where!r} (first at line {seen[key]}); "
                                     "YAML would keep only the last one - remove or merge one of them")
                seen[key] = line
                if isinstance(key, (str, int)):
                    lines[loc + (key,)] = line
                    _index(loader, value_node, loc + (key,), lines, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(loader, item, loc + (i,), lines, path)


def parse_yaml(path: Path) -> Any:
    """The data of a YAML file, with the same checks as `load_yaml` (duplicate keys are errors)."""
    return load_yaml(path).data


def load_model(path: Path, model: type[M]) -> tuple[YamlDoc, M]:
    """Parse `path` and validate it (an empty file counts as `{}`). Raises PolicyError listing every
    problem as `file:line: field: what`."""
    try:
        doc = load_yaml(path)
    except ValueError as e:
        raise PolicyError([str(e)]) from None
    try:
        return doc, model.model_validate(doc.data if doc.data is not None else {})
    except ValidationError as e:
        raise PolicyError(doc.problems(e)) from None
