"""Who may use the console: a session opened with an admin key (or an admin key as a Bearer header,
for scripts calling /ui/api), or anyone on loopback in open mode. Also the login and logout pages,
CSRF on every POST, and error pages (HTML for pages, JSON for /ui/api)."""

from __future__ import annotations

import ipaddress
import logging
import secrets
from urllib.parse import quote

from aiohttp import web

from gateway.auth import Principal, hash_key
from gateway.console.params import BadParam
from gateway.console.render import SECURITY_HEADERS, page
from gateway.console.session import COOKIE, LOGIN_COOKIE, USER, ConsoleUser, Sessions
from gateway.errors import GatewayError
from gateway.keys import HOLDER

log = logging.getLogger("gateway.console")

SESSIONS = web.AppKey("console_sessions", Sessions)
PUBLIC = ("/ui/login", "/ui/static/")


def _is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith("/ui/api/")


# JSON errors in the gateway's (OpenAI-style) error body: a type, and a string code.
_JSON_ERRORS = {400: ("invalid_request_error", "bad_parameter"), 401: ("authentication_error", "login_required"),
                403: ("permission_error", "admin_key_required"), 404: ("invalid_request_error", "not_found"),
                500: ("server_error", "internal_error")}


def _error(request: web.Request, status: int, message: str) -> web.Response:
    if _wants_json(request):
        kind, code = _JSON_ERRORS.get(status, ("console_error", None))
        return web.json_response({"error": {"message": message, "type": kind, "param": None, "code": code}},
                                 status=status, headers=SECURITY_HEADERS)
    if status == 401:
        return login_page(request, status=401, message=message)
    return page(request, "error.html", status=status, status_code=status, message=message)


def principal_for(request: web.Request) -> tuple[Principal | None, str | None, str]:
    """(principal, CSRF nonce, why not) for this request."""
    keys = request.config_dict[HOLDER].current.keys
    sessions = request.config_dict[SESSIONS]
    auth = request.headers.get("Authorization")
    if auth is not None:
        try:
            p = keys.authenticate(auth)
        except GatewayError as e:
            return None, None, e.message
        return (p, None, "") if p.admin else (None, None, f"the key {p.name!r} is not an admin key")
    if keys.open_mode:
        if _is_loopback(request.remote):
            return keys.open_principal, "open-mode", ""
        return None, None, ("open mode (no keys in gateway.yaml) serves the console on loopback only; "
                            "add an admin key to use it from elsewhere")
    session = sessions.read(request.cookies.get(COOKIE))
    if session is None:
        return None, None, ("log in with an admin key" if COOKIE not in request.cookies
                            else "your session has expired or is not valid: log in again")
    for digest, p in keys.by_digest().items():
        if sessions.key_id(digest) == session.key_id:
            return ((p, session.nonce, "") if p.admin else (None, None, f"the key {p.name!r} is no longer an admin key"))
    return None, None, "the key this session was opened with is no longer configured: log in again"


@web.middleware
async def console_middleware(request: web.Request, handler) -> web.StreamResponse:
    public = request.path.startswith(PUBLIC)
    try:
        if not public:
            principal, nonce, why = principal_for(request)
            if principal is None:
                status = 403 if "not an admin key" in why or "loopback only" in why else 401
                return _error(request, status, why)
            sessions = request.config_dict[SESSIONS]
            request[USER] = ConsoleUser(principal, sessions.csrf(nonce) if nonce else "", nonce == "open-mode")
            if request.method == "POST" and nonce is not None:
                form = await request.post()
                token = request.headers.get("X-CSRF-Token") or form.get("csrf")
                if not sessions.csrf_ok(nonce, token if isinstance(token, str) else None):
                    return _error(request, 403, "this form is missing its CSRF token or it is stale: reload the page "
                                                "and try again")
        resp = await handler(request)
    except BadParam as e:
        return _error(request, 400, str(e))
    except GatewayError as e:
        return _error(request, e.status, e.message)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return _error(request, e.status, "no such console page" if e.status == 404 else e.reason)
    except Exception:  # a crashing page is an error page; logged as the gateway logs any internal error
        log.exception("internal error on console page %s %s", request.method, request.path)
        return _error(request, 500, "this page failed on the server; the error is in the gateway's log")
    for k, v in SECURITY_HEADERS.items():
        resp.headers.setdefault(k, v)
    return resp


def _safe_next(value: str | None) -> str:
    """Only a console path (never another site) after logging in."""
    if value and value.startswith("/ui/") and "//" not in value and "\\" not in value:
        return value
    return "/ui/"


def login_page(request: web.Request, status: int = 200, message: str | None = None) -> web.Response:
    sessions = request.config_dict[SESSIONS]
    nonce = secrets.token_hex(16)
    target = request.query.get("next") if request.path == "/ui/login" else request.path_qs
    resp = page(request, "login.html", status=status, message=message, login_csrf=sessions.csrf("login:" + nonce),
                next=_safe_next(target))
    resp.set_cookie(LOGIN_COOKIE, nonce, max_age=1800, httponly=True, samesite="Strict", path="/ui/",
                    secure=request.secure)
    return resp


async def login_get(request: web.Request) -> web.Response:
    return login_page(request)


async def login_post(request: web.Request) -> web.StreamResponse:
    sessions = request.config_dict[SESSIONS]
    form = await request.post()
    nonce = request.cookies.get(LOGIN_COOKIE)
    token = form.get("csrf")
    if not nonce or not sessions.csrf_ok("login:" + nonce, token if isinstance(token, str) else None):
        return login_page(request, status=403, message="the login form had expired: try again")
    key = form.get("key")
    keys = request.config_dict[HOLDER].current.keys
    if keys.open_mode:
        return login_page(request, status=400, message="this gateway runs in open mode (no keys): there is nothing to "
                                                       "log in with")
    if not isinstance(key, str) or not key.strip():
        return login_page(request, status=400, message="paste a gateway admin key")
    digest = hash_key(key.strip())
    principal = keys.by_digest().get(digest)
    if principal is None:
        log.info("console login refused: unknown key")
        return login_page(request, status=401, message="that is not a key of this gateway")
    if not principal.admin:
        log.info("console login refused: key %s is not an admin key", principal.name)
        return login_page(request, status=403, message=f"the key {principal.name!r} is not an admin key "
                                                       "(`admin: true` in gateway.yaml)")
    cookie, _ = sessions.issue(digest)
    log.info("console login: key %s", principal.name)
    next_url = form.get("next")
    resp = web.Response(status=303, headers={"Location": _safe_next(next_url if isinstance(next_url, str) else None)})
    resp.set_cookie(COOKIE, cookie, max_age=round(sessions.lifetime_s), httponly=True, samesite="Strict", path="/ui/",
                    secure=request.secure)
    resp.del_cookie(LOGIN_COOKIE, path="/ui/")
    return resp


async def logout(request: web.Request) -> web.StreamResponse:
    resp = web.Response(status=303, headers={"Location": "/ui/login"})
    resp.del_cookie(COOKIE, path="/ui/")
    return resp


def login_url(path_qs: str) -> str:
    return "/ui/login?next=" + quote(path_qs, safe="")
