"""Server-sent events: incremental decoding of `data:` payloads, and encoding."""

from __future__ import annotations

DONE = b"[DONE]"


class SSEDecoder:
    """Feed raw bytes as they arrive; get back the complete events' `data` payloads.

    Handles events split across network chunks, several events per chunk, CRLF line endings,
    comments (`: keep-alive`) and multi-line data fields.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        events: list[bytes] = []
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            data = _event_data(buf[start:end])
            if data is not None:
                events.append(data)
            start = end + 2
        self._buf = buf[start:]
        return events

    def pending(self) -> bytes:
        """Bytes of an unfinished event (non-empty at EOF means the stream was cut mid-event)."""
        return self._buf.strip()


def _event_data(block: bytes) -> bytes | None:
    parts = []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            parts.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(parts) if parts else None


def encode(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


DONE_EVENT = encode(DONE)
