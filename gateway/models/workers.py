"""Where model inference runs: a small bounded thread pool, never the event loop.

Threads rather than processes: spaCy and torch release the GIL in their inner loops, a process pool
would need a copy of each model per worker (~0.5 GB for MiniLM with torch), and results would be
pickled back. Two workers match this machine's two cores; more only queue behind the CPU.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")

_POOL: ThreadPoolExecutor | None = None


def pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        workers = int(os.environ.get("GATEWAY_MODEL_WORKERS", "0")) or min(4, os.cpu_count() or 2)
        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gateway-model",
                                   initializer=lower_priority)
    return _POOL


def lower_priority() -> None:
    """Model threads run at a lower CPU priority than the event loop (Linux nice is per thread, and
    threads torch or spaCy start from here inherit it): under full model load the loop still
    answers health probes and relays streams promptly; alone, the models lose nothing."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # not Linux, or not permitted: run at normal priority
        pass


async def run_model(fn: Callable[..., T], *args, executor: Executor | None = None) -> T:
    """Run CPU-bound model work in the model pool (or `executor`) and await it, in a copy of the
    caller's context: a line it logs carries the request's trace and span ids (JSON logs)."""
    ctx = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(executor or pool(), ctx.run, fn, *args)
