"""One pipelined Redis connection for the per-request scripts (reserve, settle).

redis-py gives every command a connection from its pool and reads the reply through its own
parser; for a 0.1 ms round trip that bookkeeping is a large share (measured in process on this
machine, interleaved: a pooled PING 179 us, a raw EVALSHA on one connection 154 us, the pooled
reserve 222 us). Here every request writes its command to one connection and awaits its place in a
FIFO of replies, which Redis sends in command order; a single reader task parses them with hiredis.
Concurrent requests therefore pipeline on one socket instead of queueing for pool connections.

The connection is made by redis-py itself (`pool.make_connection()` + `connect()`), so AUTH,
SELECT, TLS and unix sockets are exactly as configured by the URL; only its stream pair is then
used directly. Anything unusual - hiredis missing, a redis-py without that stream pair, a dropped
connection, a timeout - closes the lane and the caller falls back to redis-py's own path; the lane
is reopened on a later call (at most once a second).
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any


class LaneUnavailable(Exception):
    """The lane cannot carry this command now; use redis-py's path."""


class RedisLane:
    def __init__(self, pool, timeout_s: float) -> None:
        self._pool = pool
        self._timeout_s = timeout_s
        self._conn = None
        self._writer = None
        self._reader_task: asyncio.Task | None = None
        self._waiting: collections.deque[asyncio.Future] = collections.deque()
        self._opening: asyncio.Lock | None = None
        self._retry_at = 0.0
        try:
            import hiredis
        except ImportError:  # redis[hiredis] is a dependency, but stay correct without it
            hiredis = None
        self._hiredis = hiredis
        self.reply_error = hiredis.ReplyError if hiredis is not None else ()
        self.disabled = hiredis is None

    async def call(self, packed: bytes) -> Any:
        """The reply to one packed command. Error replies are returned as hiredis.ReplyError
        instances; transport problems raise ConnectionError or TimeoutError (the lane is closed)."""
        if self._writer is None:
            await self._open()
        fut = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        self._writer.write(packed)
        try:
            async with asyncio.timeout(self._timeout_s):
                return await fut
        except TimeoutError:
            # A silent peer (a half-open connection, a hung server): a fresh connection may work,
            # and the replies still owed on this one would be useless anyway.
            self.close(ConnectionError("Redis reply timed out"))
            raise

    async def _open(self) -> None:
        if self.disabled or time.monotonic() < self._retry_at:
            raise LaneUnavailable()
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._writer is not None:
                return
            self._retry_at = time.monotonic() + 1.0  # a failed open is not retried by every request
            conn = self._pool.make_connection()
            await conn.connect()
            reader, writer = getattr(conn, "_reader", None), getattr(conn, "_writer", None)
            if reader is None or writer is None:  # a redis-py whose connection keeps its streams elsewhere
                await conn.disconnect()
                self.disabled = True
                raise LaneUnavailable()
            self._conn, self._writer = conn, writer
            self._reader_task = asyncio.get_running_loop().create_task(self._read(reader, writer))

    async def _read(self, reader, writer) -> None:
        parser = self._hiredis.Reader()
        waiting = self._waiting
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("Redis closed the connection")
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    fut = waiting.popleft()
                    if not fut.done():  # a request that timed out or went away: its reply is dropped
                        fut.set_result(reply)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - every failure of the socket means the same: reconnect
            if self._writer is writer:
                self.close(e if isinstance(e, ConnectionError) else ConnectionError(f"{type(e).__name__}: {e}"))

    def close(self, error: BaseException | None = None) -> None:
        """Fail every command still waiting and drop the connection (reopened on a later call)."""
        writer, conn, task = self._writer, self._conn, self._reader_task
        self._writer = self._conn = self._reader_task = None
        waiting, self._waiting = self._waiting, collections.deque()
        for fut in waiting:
            if not fut.done():
                fut.set_exception(error or ConnectionError("Redis lane closed"))
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if writer is not None:
            writer.close()
        del conn  # its streams are closed with the writer; redis-py's object holds nothing else

    async def aclose(self) -> None:
        task = self._reader_task
        self.close()
        if task is not None:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
