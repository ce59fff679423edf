"""Load generation: sequential latency, fixed-concurrency throughput, streaming time to first byte."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import numpy as np


@dataclass
class Sample:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0  # CPU time the proxy process spent while this sample ran

    def add(self, other: Sample) -> None:
        self.latencies_ms += other.latencies_ms
        self.errors += other.errors
        self.seconds += other.seconds
        self.cpu_s += other.cpu_s

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else float("nan")

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu_s / len(self.latencies_ms) if self.latencies_ms else float("nan")


JSON = {"Content-Type": "application/json"}


async def one(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str] = JSON) -> float:
    t0 = time.perf_counter()
    async with session.post(url, data=body, headers=headers) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}")
    return (time.perf_counter() - t0) * 1000


async def ttfb(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str] = JSON) -> float:
    """Milliseconds until the first event carrying content arrives; the rest is read and dropped."""
    t0 = time.perf_counter()
    first = None
    async with session.post(url, data=body, headers=headers) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}")
        async for chunk in resp.content.iter_any():
            if first is None and b'"content":"' in chunk.replace(b'"content":""', b"").replace(b": ", b":"):
                first = (time.perf_counter() - t0) * 1000
    return first if first is not None else float("nan")


async def concurrent(
    session: aiohttp.ClientSession, url: str, body: bytes | Callable[[int], bytes], workers: int, seconds: float,
    headers: dict[str, str] = JSON,
) -> Sample:
    """`body` may be a function of the request number, so every request differs (a model that
    batches identical texts into one pass would otherwise be measured on repeats)."""
    sample = Sample()
    stop_at = time.perf_counter() + seconds
    counter = iter(range(1 << 62))

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            data = body(next(counter)) if callable(body) else body
            try:
                sample.latencies_ms.append(await one(session, url, data, headers))
            except (aiohttp.ClientError, RuntimeError, asyncio.TimeoutError):
                sample.errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    sample.seconds = time.perf_counter() - t0
    return sample
