"""Jinja2 for the console: autoescaped templates, number/time filters, and chart data embedded as JSON
that cannot break out of its <script> element."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import jinja2
from aiohttp import web

from gateway.console.session import USER

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("gateway.console", "templates"), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

# Pages are admin data: never cached, never framed, scripts only from /ui/static.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _when(ts: float | None, with_seconds: bool = True) -> str:
    if ts is None:
        return "-"
    fmt = "%Y-%m-%d %H:%M:%S" if with_seconds else "%Y-%m-%d %H:%M"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime(fmt)


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and digits:
        return f"{value:,.{digits}f}"
    return f"{round(value):,}" if isinstance(value, float) else f"{value:,}"


def _usd(value: float | None) -> str:
    if value is None:
        return "-"
    if value and abs(value) < 0.01:
        return f"${value:.6f}"
    return f"${value:,.4f}" if abs(value) < 100 else f"${value:,.2f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f} ms" if value < 1000 else f"{value / 1000:,.2f} s"


def chart_json(data: Any) -> str:
    """JSON for a <script type="application/json"> element: `<`, `>` and `&` escaped so no value (a key
    or model name holding `</script>`) can end the element."""
    text = json.dumps(data, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_ENV.filters.update(when=_when, num=_num, usd=_usd, pct=_pct, ms=_ms, chart_json=chart_json)


def page(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    user = request.get(USER)
    ctx = {"nav": "", "csrf": user.csrf if user else "", "who": user.principal.name if user else None,
           "open_mode": user.open_mode if user else False, "query": request.query, "path": request.path, **context}
    html = _ENV.get_template(template).render(**ctx)
    return web.Response(text=html, status=status, content_type="text/html", headers=SECURITY_HEADERS)
