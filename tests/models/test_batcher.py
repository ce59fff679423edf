"""The micro-batcher: concurrent submissions share a model call, results go back to their callers,
a failure reaches every waiter of its batch and the next batch still runs, a request that went
away is skipped."""

import asyncio
import threading

import pytest

from gateway.models.batcher import MicroBatcher


def run(coro):
    return asyncio.run(coro)


def test_concurrent_submissions_share_calls_and_get_their_own_results():
    calls = []
    gate = threading.Event()

    def double(items):
        calls.append(list(items))
        gate.wait(1)  # the first batch is slow, so the others queue behind it
        return [x * 2 for x in items]

    async def go():
        b = MicroBatcher(double, max_items=100)
        first = asyncio.ensure_future(b.submit([1]))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(b.submit([i, i + 100])) for i in range(2, 12)]
        await asyncio.sleep(0.05)
        gate.set()
        return await first, await asyncio.gather(*rest), b

    first, rest, b = run(go())
    assert first == [2]
    assert rest == [[2 * i, 2 * (i + 100)] for i in range(2, 12)]
    assert len(calls) == 2 and len(calls[1]) == 20  # ten requests, one model call
    assert b.batches == 2 and b.items == 21


def test_max_items_splits_batches():
    sizes = []

    def ident(items):
        sizes.append(len(items))
        return items

    async def go():
        b = MicroBatcher(ident, max_items=4)
        return await asyncio.gather(*(b.submit([i, i]) for i in range(6)))

    out = run(go())
    assert out == [[i, i] for i in range(6)] and max(sizes) <= 4


def test_a_failing_batch_fails_its_waiters_and_the_next_batch_runs():
    state = {"n": 0}

    def flaky(items):
        state["n"] += 1
        if state["n"] == 1:
            raise RuntimeError("model crashed")
        return items

    async def go():
        b = MicroBatcher(flaky)
        with pytest.raises(RuntimeError, match="model crashed"):
            await b.submit(["a"])
        return await b.submit(["b"])

    assert run(go()) == ["b"]


def test_a_cancelled_waiter_is_skipped():
    gate = threading.Event()
    seen = []

    def slow(items):
        seen.append(list(items))
        gate.wait(1)
        return items

    async def go():
        b = MicroBatcher(slow)
        first = asyncio.ensure_future(b.submit(["first"]))
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(b.submit(["gone"]))
        kept = asyncio.ensure_future(b.submit(["kept"]))
        await asyncio.sleep(0.01)
        gone.cancel()
        gate.set()
        return await first, await kept

    assert run(go()) == (["first"], ["kept"])
    assert ["gone"] not in seen and ["kept"] in seen
