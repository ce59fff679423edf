"""The console's Prompts pages: every prompt with its versions, labels and history, a side-by-side diff
of two versions, and promote / roll back (admin only, confirmed, recorded with who did it)."""

from __future__ import annotations

import asyncio
import difflib
import logging

from aiohttp import web

from gateway.console import params
from gateway.console.render import page
from gateway.console.session import USER
from gateway.errors import GatewayError
from gateway.keys import HOLDER
from gateway.prompts import edits
from gateway.prompts.store import PromptStore

log = logging.getLogger("gateway.console")


def _store(request: web.Request) -> PromptStore:
    root = request.config_dict[HOLDER].prompts_dir
    if root is None:
        raise GatewayError("This gateway runs without a prompts folder.", status=409, type="invalid_request_error")
    return PromptStore(root)


def _prompt(request: web.Request) -> tuple[str, dict]:
    name = params.prompt_name(request.match_info["name"])
    reg = request.config_dict[HOLDER].current.prompts
    if name not in reg.versions:
        raise GatewayError(f"No prompt named {name!r}.", status=404, type="invalid_request_error")
    return name, reg.versions[name]


async def prompts_list(request: web.Request) -> web.Response:
    reg = request.config_dict[HOLDER].current.prompts
    items = [{"name": n, "versions": list(vs), "labels": reg.labels.get(n, {}),
              "description": list(vs.values())[-1].spec.description if vs else ""}
             for n, vs in sorted(reg.versions.items())]
    return page(request, "prompts.html", nav="prompts", prompts=items)


async def prompt_detail(request: web.Request) -> web.Response:
    name, versions = _prompt(request)
    reg = request.config_dict[HOLDER].current.prompts
    history = await asyncio.to_thread(_store(request).read_history, name)
    return page(request, "prompt.html", nav="prompts", name=name, versions=versions, labels=reg.labels.get(name, {}),
                history=list(reversed(history)))


def side_by_side(a: list[str], b: list[str]) -> list[tuple[str, int | None, str, int | None, str]]:
    """Rows of (tag, left line no, left text, right line no, right text) for a two-column diff."""
    rows = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        for k in range(max(i2 - i1, j2 - j1)):
            li, rj = i1 + k, j1 + k
            rows.append((tag, li + 1 if li < i2 else None, a[li] if li < i2 else "",
                         rj + 1 if rj < j2 else None, b[rj] if rj < j2 else ""))
    return rows


async def prompt_diff(request: web.Request) -> web.Response:
    name, versions = _prompt(request)
    picked = []
    for side in ("a", "b"):
        v = params.integer(request.query, side, 0, 1, 1_000_000)
        if v not in versions:
            raise params.BadParam(side, f"{name} has versions {', '.join(map(str, versions))}")
        picked.append(versions[v])
    a, b = (c.path.read_text(encoding="utf-8") for c in picked)
    rows = side_by_side(a.splitlines(), b.splitlines())
    return page(request, "diff.html", nav="prompts", name=name, a=picked[0], b=picked[1], rows=rows,
                changed=sum(1 for r in rows if r[0] != "equal"))


async def _label_move(request: web.Request, action: str) -> web.StreamResponse:
    name, versions = _prompt(request)
    form = await request.post()
    label = form.get("label")
    if not isinstance(label, str) or not label:
        raise params.BadParam("label", "choose a label")
    if form.get("confirm") != "yes":
        raise params.BadParam("confirm", f"confirm the {action} (tick the box)")
    by = f"console:{request[USER].principal.name}"
    store = _store(request)
    try:
        if action == "promote":
            raw = form.get("version")
            if not isinstance(raw, str) or not raw.isdigit() or int(raw) not in versions:
                raise params.BadParam("version", f"{name} has versions {', '.join(map(str, versions))}")
            await asyncio.to_thread(edits.promote, store, name, int(raw), label, by)
        else:
            await asyncio.to_thread(edits.rollback, store, name, label, by)
    except edits.PromptEditError as e:
        raise GatewayError(str(e), status=409, type="invalid_request_error") from None
    result = await request.config_dict[HOLDER].reload(f"console {action} by {request[USER].principal.name}")
    if not result.ok:
        log.error("prompt %s %s by console: the reload reported problems: %s", name, action, result.problems)
    return web.Response(status=303, headers={"Location": f"/ui/prompts/{name}"})


async def promote(request: web.Request) -> web.StreamResponse:
    return await _label_move(request, "promote")


async def rollback(request: web.Request) -> web.StreamResponse:
    return await _label_move(request, "rollback")
