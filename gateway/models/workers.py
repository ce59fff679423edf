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


def single_threaded_blas() -> None:
    """One thread per BLAS call in the serving process. OpenBLAS threads spin for a while after each
    call, and on 2 cores they starve the torch thread: a MiniLM pass right after a 100k x 384
    matrix-vector product (a semantic cache scan) took 125 ms instead of 9 ms; with one BLAS thread,
    13.5 ms. The gateway's other matrix products are small (guard_bench topics + injection: the same
    figures within noise either way). Libraries loaded later read the environment variables."""
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn's dependency; without it only later-loaded libraries are limited
        return
    threadpool_limits(1, user_api="blas")
