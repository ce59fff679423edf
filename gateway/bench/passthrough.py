"""The floor: the smallest useful aiohttp pass-through proxy (no parsing, no checks, no routing).

`python -m gateway.bench.passthrough --port P --upstream http://127.0.0.1:U`
"""

from __future__ import annotations

import argparse

import aiohttp
from aiohttp import web

SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session")
UPSTREAM: web.AppKey[str] = web.AppKey("upstream")


async def handle(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    session = request.app[SESSION]
    async with session.post(request.app[UPSTREAM] + request.path, data=body,
                            headers={"Content-Type": "application/json"}) as up:
        if up.content_type == "text/event-stream":
            resp = web.StreamResponse(status=up.status, headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp
        return web.Response(status=up.status, body=await up.read(), content_type="application/json")


async def _session(app: web.Application):
    app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    yield
    await app[SESSION].close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True)
    args = ap.parse_args()
    app = web.Application()
    app[UPSTREAM] = args.upstream.rstrip("/")
    app.cleanup_ctx.append(_session)
    app.router.add_post("/v1/chat/completions", handle)
    app.router.add_get("/healthz", lambda r: web.Response(text="ok"))
    loop = None
    try:
        import uvloop  # same event loop as the gateway, so the comparison is like for like

        loop = uvloop.new_event_loop()
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main()
