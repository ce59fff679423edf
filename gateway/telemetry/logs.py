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
LOG_FORMATS = ("text", "json")
FIELDS = "gateway"  # LogRecord attribute (logging's `extra`) holding a record's structured fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ms), level, logger, msg, the record's structured fields
    (`extra={"gateway": {...}}`: request id, key name, status, latency; never prompt text or header
    values), and `exc` with the traceback when one is logged. JSON escaping keeps any control
    character a client put in a path inside its string."""

    def format(self, record: logging.LogRecord) -> str:
        import datetime

        import orjson

        out: dict = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            out.update({k: v for k, v in fields.items() if k not in out})
        from gateway.telemetry.tracing import current_ids

        ids = current_ids()  # a traced request's handler is running in this task
        if ids is not None:
            out.setdefault("trace_id", ids[0])
            out.setdefault("span_id", ids[1])
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=str).decode()


def setup_logging(level: str = "info", access_log: bool = False, fmt: str = "text") -> None:
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r}: use one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else SafeFormatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))
    logging.getLogger("gateway.access").setLevel(logging.INFO if access_log else logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # aiohttp.server logs malformed requests with their raw bytes (gateway/server.py logs them
    # without); aiohttp.web / aiohttp.internal lines can quote request data too.
    for name in ("aiohttp.server", "aiohttp.web", "aiohttp.internal", "aiohttp.websocket"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
