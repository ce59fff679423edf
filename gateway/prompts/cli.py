"""`gateway prompts ...`: list, show, diff, new, promote, rollback, render."""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

import yaml


from gateway.errors import GatewayError, PolicyError
from gateway.prompts.registry import DEFAULT_LABEL, Registry, load_registry, parse_ref
from gateway.prompts.schema import NAME
from gateway.prompts import edits
from gateway.prompts.store import PromptStore

SKELETON = """\
description: What this prompt is for.
tags: []
model: gpt-4o-mini              # default model (a request's own `model` wins, unless it is "prompt")
params: {temperature: 0.2}      # default request parameters
variables:
  question: {type: string}      # string | integer | number | boolean | list; `default:` makes it optional
messages:
  - role: system
    content: You are a helpful assistant.
  - role: user
    content: "{{ question }}"
"""


class CliError(Exception):
    pass


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompts", help="prompts directory (default: $GATEWAY_PROMPTS or ./prompts)")
    sub = p.add_subparsers(dest="prompts_command", required=True, metavar="ACTION")
    sub.add_parser("list", help="prompts, their versions and labels")
    s = sub.add_parser("show", help="one version: NAME, NAME@VERSION or NAME:LABEL (default label production)")
    s.add_argument("ref")
    s = sub.add_parser("diff", help="compare two versions (numbers or labels)")
    s.add_argument("name")
    s.add_argument("a")
    s.add_argument("b")
    s = sub.add_parser("new", help="create the next version (a draft) of NAME, copied from --from (default: latest)")
    s.add_argument("name")
    s.add_argument("--from", dest="from_version", type=int)
    s = sub.add_parser("promote", help="publish VERSION (freeze its hash) and point LABEL at it")
    s.add_argument("name")
    s.add_argument("version", type=int)
    s.add_argument("--label", default=DEFAULT_LABEL)
    s = sub.add_parser("rollback", help="point LABEL back at the version it had before its last promotion")
    s.add_argument("name")
    s.add_argument("--label", default=DEFAULT_LABEL)
    s = sub.add_parser("render", help="render a prompt with variables, as the gateway would")
    s.add_argument("ref")
    s.add_argument("--var", action="append", default=[], metavar="KEY=VALUE",
                   help="a variable (VALUE read as YAML: 3 is a number, [a, b] a list); repeat for more")
    s.add_argument("--vars-json", help="all variables as one JSON object")


def main(args: argparse.Namespace, root: Path) -> int:
    store = PromptStore(root)
    try:
        out = _COMMANDS[args.prompts_command](args, store)
    except (CliError, GatewayError) as e:
        print(f"gateway prompts: {getattr(e, 'message', e)}", file=sys.stderr)
        return 2
    except PolicyError as e:
        print(f"gateway prompts: invalid prompts in {root}:", file=sys.stderr)
        for p in e.problems:
            print(f"  {p}", file=sys.stderr)
        return 2
    if out:
        print(out)
    return 0


def _registry(store: PromptStore) -> Registry:
    return load_registry(store.root)


def cmd_list(args, store: PromptStore) -> str:
    reg = _registry(store)
    if not reg.versions:
        return f"no prompts in {store.root} (create one: gateway prompts new NAME)"
    lines = [f"{'name':<24} {'versions':<18} labels"]
    for name, versions in sorted(reg.versions.items()):
        vs = ", ".join(f"{v}{'' if c.published else '*'}" for v, c in versions.items())
        labels = ", ".join(f"{k}=v{v}" for k, v in sorted(reg.labels.get(name, {}).items())) or "-"
        lines.append(f"{name:<24} {vs:<18} {labels}")
    return "\n".join(lines) + "\n(* draft: not published yet, may still be edited)"


def cmd_show(args, store: PromptStore) -> str:
    reg = _registry(store)
    compiled, label = reg.resolve_ref(args.ref)
    labels = [k for k, v in reg.labels.get(compiled.name, {}).items() if v == compiled.version]
    head = (f"# {compiled.name} v{compiled.version} ({'published' if compiled.published else 'draft'}) "
            f"{compiled.hash}\n# labels: {', '.join(labels) or '-'}\n# file: {compiled.path}\n")
    return head + compiled.path.read_text(encoding="utf-8")


def cmd_diff(args, store: PromptStore) -> str:
    reg = _registry(store)

    def pick(which: str):
        return reg.resolve(args.name, int(which)) if which.isdigit() else reg.resolve(args.name, label=which)

    (a, _), (b, _) = pick(args.a), pick(args.b)
    diff = difflib.unified_diff(a.path.read_text(encoding="utf-8").splitlines(keepends=True),
                                b.path.read_text(encoding="utf-8").splitlines(keepends=True),
                                fromfile=f"{args.name}@{a.version}", tofile=f"{args.name}@{b.version}")
    return "".join(diff) or f"{args.name}@{a.version} and @{b.version} are identical"


def cmd_new(args, store: PromptStore) -> str:
    if not NAME.match(args.name):
        raise CliError(f"prompt names use a-z, 0-9, '.', '_' and '-' (got {args.name!r})")
    with store.editing():
        versions = store.version_files(args.name)
        if args.from_version is not None and args.from_version not in versions:
            raise CliError(f"{args.name} has no version {args.from_version} (versions: "
                           f"{', '.join(map(str, versions)) or 'none'})")
        source = versions.get(args.from_version or (max(versions) if versions else 0))
        version = max(versions, default=0) + 1
        path = store.root / args.name / f"v{version}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source.read_text(encoding="utf-8") if source else SKELETON, encoding="utf-8")
    return (f"created {path} (draft). Edit it, try it with `gateway prompts render {args.name}@{version} --var ...`,"
            f" then publish: `gateway prompts promote {args.name} {version} --label staging`")


def cmd_promote(args, store: PromptStore) -> str:
    try:
        old, compiled = edits.promote(store, args.name, args.version, args.label)
    except edits.PromptEditError as e:
        raise CliError(str(e)) from None
    moved = f"v{old} -> v{args.version}" if old is not None else f"v{args.version}"
    return f"{args.name}: {args.label} {moved} (v{args.version} published, {compiled.hash})"


def cmd_rollback(args, store: PromptStore) -> str:
    try:
        current, target = edits.rollback(store, args.name, args.label)
    except edits.PromptEditError as e:
        raise CliError(str(e)) from None
    return f"{args.name}: {args.label} v{current} -> v{target} (rolled back)"


def cmd_render(args, store: PromptStore) -> str:
    variables = json.loads(args.vars_json) if args.vars_json else {}
    for item in args.var:
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--var takes KEY=VALUE (got {item!r})")
        variables[key] = yaml.safe_load(value) if value else ""
    rendered = _registry(store).render(parse_ref(args.ref), variables)
    return json.dumps({"prompt": rendered.record(), "model": rendered.model, "params": rendered.params,
                       "messages": rendered.messages}, indent=2, ensure_ascii=False)


_COMMANDS = {"list": cmd_list, "show": cmd_show, "diff": cmd_diff, "new": cmd_new, "promote": cmd_promote,
             "rollback": cmd_rollback, "render": cmd_render}
