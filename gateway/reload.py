"""Hot reload: validate the whole new policy set next to the running one, then swap atomically.

Triggers: a file watch (mtime polling, no extra dependency), SIGHUP, and `POST /admin/reload`.
An invalid edit leaves the running set in force and is reported in the log, `/readyz` and the
admin endpoint, with file and line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import PolicyError
from gateway.runtime import Runtime, fingerprint, load_runtime
from gateway.upstreams.openai import HttpPool

log = logging.getLogger("gateway.reload")


@dataclass(slots=True)
class ReloadResult:
    ok: bool
    reason: str
    problems: list[str]
    at: float


class RuntimeHolder:
    def __init__(
        self,
        policies_dir: Path,
        pool: HttpPool,
        runtime: Runtime,
        *,
        prompts_dir: Path | None = None,
        vet: Callable[[Runtime], list[str]] | None = None,
    ) -> None:
        self.policies_dir = policies_dir
        self.prompts_dir = prompts_dir
        self.pool = pool
        self.current = runtime
        self.ready = False  # True once the running set is warm
        self.last: ReloadResult | None = None
        self._vet = vet  # extra refusals from the server (e.g. open mode on a public address)
        self._lock = asyncio.Lock()
        self._failed_fingerprint: dict[str, float] | None = None

    async def warm_initial(self) -> None:
        try:
            await self.current.warm()
        except Exception:
            log.exception("warming the initial policy set failed; /readyz stays not ready")
            return
        self.ready = True
        log.info("ready: policies loaded and warm")

    async def reload(self, reason: str) -> ReloadResult:
        async with self._lock:
            stamp = fingerprint(self.policies_dir, self.prompts_dir)
            try:
                runtime = await asyncio.to_thread(load_runtime, self.policies_dir, self.pool, self.prompts_dir,
                                                  embedded_state=self.current.embedded_state)
                problems = self._vet(runtime) if self._vet else []
                if problems:
                    raise PolicyError(problems)
                await runtime.warm()
            except PolicyError as e:
                return self._failed(reason, e.problems, stamp)
            except Exception as e:  # a check's warm-up crashed: same rule, keep the old set
                log.exception("reload (%s): warming the new policy set failed", reason)
                return self._failed(reason, [f"warming the new policy set failed: {type(e).__name__}"], stamp)
            if runtime.state != self.current.state:
                # Backends (Redis counters, the ledger) are opened once at start-up: say so rather than
                # appear to switch; the running ones stay and the new runtime describes them.
                log.warning("reload (%s): the `state:` section of gateway.yaml changed; it takes effect at the next "
                            "restart (counters: %s, ledger: %s stay in use)", reason, self.current.state.counters,
                            self.current.state.ledger)
                runtime.state = self.current.state
            if runtime.telemetry != self.current.telemetry:
                log.warning("reload (%s): the `telemetry:` section of gateway.yaml changed; it takes effect at the "
                            "next restart (tracing stays %s)", reason,
                            "on" if self.current.telemetry.enabled else "off")
                runtime.telemetry = self.current.telemetry
            if runtime.cache != self.current.cache:
                log.warning("reload (%s): the `cache:` section of gateway.yaml changed; it takes effect at the "
                            "next restart (the cache stays %s; routes' and policies' `cache:` apply now)", reason,
                            "on" if self.current.cache.enabled else "off")
                runtime.cache = self.current.cache
            self.current = runtime
            self.ready = True
            self._failed_fingerprint = None
            for w in runtime.warnings:
                log.warning("%s", w)
            log.info("reload (%s): new policy set in force", reason)
            self.last = ReloadResult(True, reason, [], time.time())
            return self.last

    def _failed(self, reason: str, problems: list[str], stamp: dict[str, float]) -> ReloadResult:
        self._failed_fingerprint = stamp
        log.error("reload (%s) rejected; the previous policy set stays in force:\n  %s", reason,
                  "\n  ".join(problems))
        self.last = ReloadResult(False, reason, problems, time.time())
        return self.last

    async def watch(self, interval_s: float) -> None:
        """Poll policy file mtimes; reload on change (a failed version is not retried until edited)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                stamp = await asyncio.to_thread(fingerprint, self.policies_dir, self.prompts_dir)
                if stamp != self.current.fingerprint and stamp != self._failed_fingerprint:
                    await self.reload("file change")
            except Exception:
                log.exception("policy watcher iteration failed; will retry")

    def status(self) -> dict:
        out: dict = {
            "ready": self.ready,
            "policies_dir": str(self.policies_dir),
            "loaded_at": self.current.loaded_at,
            "open_mode": self.current.keys.open_mode,
            "warnings": self.current.warnings,
        }
        if self.last is not None:
            out["last_reload"] = {"ok": self.last.ok, "reason": self.last.reason, "at": self.last.at,
                                  "problems": self.last.problems}
        return out
