"""What of an upstream's error text a client may see.

An upstream's error message is written for whoever runs that upstream: it can quote the key it was
given, internal host names and addresses, stack traces, or a whole HTML page from a proxy in front
of it. Clients get the status and a short, sanitised message; the full text goes to the debug log
only (escaped there like every log line)."""

from __future__ import annotations

import logging
import re

log = logging.getLogger("gateway.upstream")

MAX_CHARS = 300
_SECRET = re.compile(
    r"\b(?:sk|pk|rk|sess|key|tok)[-_][A-Za-z0-9_\-]{12,}"     # provider keys: sk-..., sk-proj-..., key_...
    r"|\bBearer\s+[A-Za-z0-9._~+/=\-]{8,}"                   # a bearer token quoted back
    r"|\bAKIA[0-9A-Z]{16}\b"                                  # AWS access key ids
    r"|\b[A-Za-z0-9_\-]{40,}\b",                              # any long opaque token
    re.IGNORECASE)
_URL = re.compile(r"\b[a-z][a-z0-9+.\-]*://[^\s\"'<>]+", re.IGNORECASE)
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_TAGS = re.compile(r"<[^>]{0,200}>")


def client_message(text: str, *, upstream: str = "", key: str | None = None) -> str:
    """`text` bounded to MAX_CHARS, with keys, tokens, URLs, IP addresses, markup and control
    characters taken out. The full text is logged at debug level."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug("upstream %r error text (full): %s", upstream, text if key is None else text.replace(key, "[upstream key]"))
    if key:
        text = text.replace(key, "[upstream key]")
    text = _TAGS.sub(" ", text)
    text = _CONTROLS.sub(" ", text)
    text = _URL.sub("[url]", text)
    text = _SECRET.sub("[redacted]", text)
    text = _IPV4.sub("[address]", text)
    text = " ".join(text.split())
    if len(text) > MAX_CHARS:
        text = text[: MAX_CHARS - 1].rstrip() + "…"
    return text
