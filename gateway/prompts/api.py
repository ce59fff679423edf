"""`GET /v1/prompts` and `GET /v1/prompts/{name}`: what prompts exist, for any valid key."""

from __future__ import annotations

import orjson
from aiohttp import web

from gateway.keys import HOLDER
from gateway.runtime import Runtime


async def list_prompts(request: web.Request) -> web.Response:
    rt: Runtime = request.app[HOLDER].current
    rt.keys.authenticate(request.headers.get("Authorization"))
    return web.Response(body=orjson.dumps({"object": "list", "data": rt.prompts.describe()}),
                        content_type="application/json")


async def show_prompt(request: web.Request) -> web.Response:
    rt: Runtime = request.app[HOLDER].current
    rt.keys.authenticate(request.headers.get("Authorization"))
    return web.Response(body=orjson.dumps(rt.prompts.describe(request.match_info["name"])),
                        content_type="application/json")
