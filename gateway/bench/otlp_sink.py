"""A stand-in OpenTelemetry collector for `gateway bench`: accepts OTLP/HTTP trace exports and
counts them (no decoding: the benchmark measures the gateway's side of tracing, not a collector).

`python -m gateway.bench.otlp_sink --port P`; GET /stats gives {"exports": n, "bytes": n}.
"""

from __future__ import annotations

import argparse

from aiohttp import web

STATS: web.AppKey[dict] = web.AppKey("stats")


async def traces(request: web.Request) -> web.Response:
    body = await request.read()
    stats = request.app[STATS]
    stats["exports"] += 1
    stats["bytes"] += len(body)
    return web.Response(body=b"", content_type="application/x-protobuf")


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATS])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATS] = {"exports": 0, "bytes": 0}
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/stats", stats)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
