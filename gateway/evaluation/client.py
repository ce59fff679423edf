"""How the runner reaches models: through the gateway - in-process (the same routing, policies and
metering as production, on a loopback port) or a running gateway's URL - with retries on transient
errors and a content-addressed response cache (key: model, params, messages)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
# Gateway error codes meaning "nothing listens there" (not a transient overload): see routing.failure
# and tabular.service.
UNREACHABLE_CODES = {"upstream_unreachable", "model_server_unreachable"}


@dataclass
class Reply:
    text: str = ""
    latency_ms: float = 0.0
    usage: dict[str, Any] = field(default_factory=dict)
    cost_usd: float | None = None
    cached: bool = False
    error: str | None = None
    attempts: int = 0
    prediction: float | None = None  # tabular targets
    unreachable: bool = False  # the model (or the gateway) refused connections, after the retries

    @property
    def output_tokens(self) -> int | None:
        return self.usage.get("output_tokens") or self.usage.get("completion_tokens")


class GatewayClient:
    def __init__(self, *, url: str | None, policies: Path, prompts: Path, state: Path, api_key: str | None,
                 cache: bool = True, retries: int = 3) -> None:
        self.url, self.policies, self.prompts, self.state = url, policies, prompts, state
        self.api_key, self.use_cache, self.retries = api_key, cache, retries
        self.cache_dir = state / "eval-cache"
        self._runner = None
        self._runtime: Any = None  # the in-process gateway's runtime (None with --gateway URL)
        self._session: aiohttp.ClientSession | None = None
        self.models: set[str] = set()

    async def __aenter__(self) -> GatewayClient:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300))
        if self.url is None:
            await self._start_in_process()
        headers = self._headers()
        async with self._session.get(self.url.rstrip("/") + "/v1/models", headers=headers) as r:
            if r.status != 200:
                raise RuntimeError(f"gateway at {self.url} answered /v1/models with HTTP {r.status}: {await r.text()}")
            self.models = {m["id"] for m in (await r.json())["data"]}
        return self

    async def __aexit__(self, *exc) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _start_in_process(self) -> None:
        from aiohttp import web

        from gateway.app import build_app
        from gateway.keys import HOLDER
        from gateway.runtime import load_runtime
        from gateway.upstreams.openai import HttpPool

        pool = HttpPool()
        # The eval's own gateway: its own counters and ledger (in the eval state directory), even when
        # gateway.yaml shares production's Redis and PostgreSQL - an eval run must not spend a key's
        # production limits and budgets, nor add its traffic to production's usage and experiments.
        runtime = self._runtime = load_runtime(self.policies, pool, self.prompts, embedded_state=True)
        app = build_app(self.policies, runtime, pool, ledger_path=self.state / "ledger.db", prompts_dir=self.prompts)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while not app[HOLDER].ready and time.monotonic() < deadline:  # models warm before the first case
            await asyncio.sleep(0.05)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    # ---- one chat completion ------------------------------------------------------------------
    async def chat(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> Reply:
        def parse(data: dict[str, Any], elapsed: float, attempt: int) -> Reply:
            choice = (data.get("choices") or [{}])[0]
            info = data.get("gateway") or {}
            text = (choice.get("message") or {}).get("content") or ""
            return Reply(text, elapsed, info.get("usage") or data.get("usage") or {}, info.get("cost_usd"),
                         attempts=attempt)

        return await self._cached({"model": model, "params": params, "messages": messages},
                                  "/v1/chat/completions", {**params, "model": model, "messages": messages}, parse)

    # ---- tabular models ----------------------------------------------------------------------
    async def tabular_exists(self, model: str) -> bool:
        """An empty predict is a 400 (schema) for a served model and a 404 for an unknown one."""
        assert self._session is not None
        async with self._session.post(f"{self.url.rstrip('/')}/v1/tabular/{model}/predict", json={"rows": []},
                                      headers=self._headers()) as r:
            return r.status != 404

    async def predict(self, model: str, row: dict[str, Any]) -> Reply:
        def parse(data: dict[str, Any], elapsed: float, attempt: int) -> Reply:
            p = float(data["predictions"][0]["prediction"])
            return Reply(str(p), elapsed, attempts=attempt, prediction=p)

        return await self._cached({"tabular": model, "row": row}, f"/v1/tabular/{model}/predict", {"rows": [row]}, parse)

    # ---- cache and transport ------------------------------------------------------------------
    async def _cached(self, key_doc: dict[str, Any], path: str, body: dict[str, Any], parse) -> Reply:
        """The reply for `key_doc` from the cache, or from the gateway (then cached if it succeeded)."""
        key = hashlib.sha256(json.dumps(key_doc, sort_keys=True, default=str).encode()).hexdigest()
        entry = self.cache_dir / key[:2] / f"{key}.json"
        if self.use_cache and entry.exists():
            try:
                data = json.loads(entry.read_text())
                return Reply(data["text"], data["latency_ms"], data.get("usage", {}), data.get("cost_usd"),
                             cached=True, prediction=data.get("prediction"))
            except (OSError, ValueError, KeyError):
                pass  # a damaged entry is refetched
        reply = await self._post(path, body, parse)
        if reply.error is None:
            entry.parent.mkdir(parents=True, exist_ok=True)
            tmp = entry.with_suffix(".tmp")
            tmp.write_text(json.dumps({"text": reply.text, "latency_ms": reply.latency_ms, "usage": reply.usage,
                                       "cost_usd": reply.cost_usd, "prediction": reply.prediction}))
            tmp.replace(entry)
        return reply

    async def _post(self, path: str, body: dict[str, Any], parse) -> Reply:
        """POST with retries on transient failures (429, 5xx, connection errors), jittered backoff."""
        assert self._session is not None
        url = self.url.rstrip("/") + path
        last = "no attempt"
        unreachable = False
        for attempt in range(1, self.retries + 2):
            t0 = time.perf_counter()
            try:
                async with self._session.post(url, json=body, headers=self._headers()) as r:
                    data = await r.json(content_type=None)
                    elapsed = (time.perf_counter() - t0) * 1000
                    if r.status == 200:
                        return parse(data, elapsed, attempt)
                    error = ((data or {}).get("error") or {}) if isinstance(data, dict) else {}
                    message = error.get("message", "") if isinstance(error, dict) else ""
                    unreachable = isinstance(error, dict) and error.get("code") in UNREACHABLE_CODES
                    last = f"HTTP {r.status}: {message[:200]}"
                    if r.status not in RETRY_STATUS:
                        return Reply(error=last, attempts=attempt)
            except aiohttp.ClientConnectorError as e:  # the gateway itself is gone
                last, unreachable = f"cannot connect to the gateway at {self.url} ({e.os_error or e})"[:200], True
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError, TypeError, IndexError) as e:
                last, unreachable = f"{type(e).__name__}: {e}"[:200], False
            await asyncio.sleep(min(8.0, 0.25 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2))
        return Reply(error=last, attempts=self.retries + 1, unreachable=unreachable)

    def where(self, model: str, tabular: bool) -> str:
        """Where a target's model is served, for messages: the configured URL(s) when the gateway runs
        in this process, else the gateway's URL."""
        runtime = self._runtime
        if runtime is not None:
            if tabular and model in runtime.tabular:
                return f"tabular model {model!r} at {runtime.tabular[model].cfg.url}"
            route = runtime.router.routes.get(model)
            if route is not None:
                urls = sorted({str(getattr(getattr(u, "cfg", None), "base_url", None) or f"upstream {u.name!r}")
                               for u, _ in route.targets})
                return f"model {model!r} at {', '.join(urls)}"
        return f"{'tabular model' if tabular else 'model'} {model!r} behind the gateway at {self.url}"
