"""Query-string parameters of the console's pages, each checked with a message that says what to fix
(shown on a 400 page). Nothing from the query string reaches SQL other than as a bound value."""

from __future__ import annotations

import re
import time
from typing import Any

from gateway.metering.report import parse_when

MAX_RANGE_DAYS = 400
MAX_PAGE_SIZE = 200
MAX_OFFSET_ROWS = 20_000
_NAME = re.compile(r"^[\w.@:/+-]{1,200}$")  # key, model, upstream, group names (as gateway.yaml allows)
_PROMPT = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


class BadParam(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def one(query: Any, name: str) -> str | None:
    values = query.getall(name, [])
    if len(values) > 1:
        raise BadParam(name, "give it once")
    value = values[0].strip() if values else None
    return value or None


def time_range(query: Any, default_since: str = "24h") -> tuple[float, float]:
    since_s, until_s = one(query, "since") or default_since, one(query, "until")
    try:
        since = parse_when(since_s)
    except ValueError as e:
        raise BadParam("since", str(e)) from None
    try:
        until = parse_when(until_s) if until_s else time.time()
    except ValueError as e:
        raise BadParam("until", str(e)) from None
    if since >= until:
        raise BadParam("since", "must be before `until`")
    if until - since > MAX_RANGE_DAYS * 86400:
        raise BadParam("since", f"the range may span at most {MAX_RANGE_DAYS} days")
    return since, until


def choice(query: Any, name: str, allowed: tuple[str, ...]) -> str | None:
    value = one(query, name)
    if value is not None and value not in allowed:
        raise BadParam(name, f"must be one of {', '.join(allowed)} (got {value[:40]!r})")
    return value


def name(query: Any, param: str, pattern: re.Pattern = _NAME) -> str | None:
    value = one(query, param)
    if value is not None and not pattern.match(value):
        raise BadParam(param, "letters, digits and . _ - @ : / + only, at most 200 characters")
    return value


def prompt_name(value: str, what: str = "prompt") -> str:
    """A prompt or experiment name from the path (never a path of its own: no `/`, no `..`)."""
    if not _PROMPT.match(value) or ".." in value:
        raise BadParam(what, f"{what} names use a-z, 0-9, '.', '_' and '-'")
    return value


def integer(query: Any, param: str, default: int, low: int, high: int) -> int:
    value = one(query, param)
    if value is None:
        return default
    if not re.fullmatch(r"\d{1,9}", value):
        raise BadParam(param, f"must be a whole number from {low} to {high}")
    n = int(value)
    if not low <= n <= high:
        raise BadParam(param, f"must be from {low} to {high} (got {n})")
    return n


def status(query: Any) -> str | None:
    value = one(query, "status")
    if value is not None and not re.fullmatch(r"[1-5]xx|[1-5]\d\d", value):
        raise BadParam("status", "use 2xx, 4xx, 5xx or an exact status such as 429")
    return value
