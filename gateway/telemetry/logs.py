"""Log set-up: one line per record, whatever a client put in a path, a header or a body.

Every message passes `escape_controls` after formatting, so a request path holding `%0d%0a`
cannot forge a second log line, and terminal escape sequences cannot reach an operator's screen.
The gateway never logs prompt text, detected values or header values by default; aiohttp's own
loggers, which would (a malformed request is logged with its raw bytes), are replaced in
gateway/server.py and quieted here.
"""

from __future__ import annotations

import logging
import re

_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x80-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """Control characters (new lines included) as visible escapes: "\\n", "\\x1b", "\\u2028"."""
    def sub(m: re.Match) -> str:
        ch = m.group()
        return {"\n": "\\n", "\r": "\\r"}.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")

    return _CONTROLS.sub(sub, text)


class SafeFormatter(logging.Formatter):
    """A record's message, and a traceback if one is logged, as one line each with controls escaped
    (tracebacks keep their line breaks: they are the gateway's own text, not the client's)."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            line = escape_controls(super().format(record))
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved
        extra = []
        if record.exc_info:
            extra.append(self.formatException(record.exc_info))
        if record.stack_info:
            extra.append(self.formatStack(record.stack_info))
        return "\n".join([line, *extra])


FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str = "info", access_log: bool = False) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))
    logging.getLogger("gateway.access").setLevel(logging.INFO if access_log else logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # aiohttp.server logs malformed requests with their raw bytes (gateway/server.py logs them
    # without); aiohttp.web / aiohttp.internal lines can quote request data too.
    for name in ("aiohttp.server", "aiohttp.web", "aiohttp.internal", "aiohttp.websocket"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
