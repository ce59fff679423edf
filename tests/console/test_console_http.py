"""The console over plain HTTP: who may see it (401/403 on every page and JSON call), sessions and CSRF,
the numbers it shows against the ledger's own rows, bad query parameters, and escaping."""

from __future__ import annotations

import re
import sqlite3
import time

import httpx
import pytest

from gateway.console.session import COOKIE, Sessions
from tests.console.conftest import ADMIN_KEY, MARKUP_KEY, MARKUP_NAME, SEEDED, USER_KEY

PAGES = ["/ui/", "/ui/requests", "/ui/guardrails", "/ui/prompts", "/ui/prompts/support-answer",
         "/ui/prompts/support-answer/diff?a=1&b=2", "/ui/experiments", "/ui/experiments/support-answer-v2",
         "/ui/evals", "/ui/evals/compare?a=20261203-000000-aaaaaa&b=20261203-000000-bbbbbb", "/ui/tabular",
         "/ui/tabular/churn", "/ui/requests/some-id"]
JSON_CALLS = ["/ui/api/overview", "/ui/api/requests", "/ui/api/guardrails", "/ui/api/experiments/support-answer-v2"]
POSTS = ["/ui/prompts/support-answer/promote", "/ui/prompts/support-answer/rollback", "/ui/logout"]


def login(gw, key: str = ADMIN_KEY) -> httpx.Client:
    c = httpx.Client(base_url=gw.url, timeout=30, follow_redirects=False)
    form = c.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    r = c.post("/ui/login", data={"key": key, "csrf": csrf, "next": "/ui/requests"})
    c.last_login = r
    return c


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)


def test_no_key_and_non_admin_keys_are_refused_everywhere(console_gw):
    for path in PAGES + JSON_CALLS:
        r = httpx.get(console_gw.url + path, timeout=30)
        assert r.status_code == 401, path
        if path.startswith("/ui/api/"):
            assert r.json()["error"]["type"] == "authentication_error"
        else:
            assert 'name="key"' in r.text  # the login form, with the page to come back to
        for key in (USER_KEY, MARKUP_KEY):
            r = httpx.get(console_gw.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30)
            assert r.status_code == 403 and "not an admin key" in r.text, path
        r = httpx.get(console_gw.url + path, headers={"Authorization": "Bearer wrong"}, timeout=30)
        assert r.status_code == 401, path
    for path in POSTS:
        r = httpx.post(console_gw.url + path, data={"label": "production", "confirm": "yes"}, timeout=30)
        assert r.status_code == 401, path
    # An admin key as a Bearer header works for scripts.
    r = httpx.get(console_gw.url + "/ui/api/overview", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    assert r.status_code == 200 and r.json()["overview"]["totals"]["requests"] > 0


def test_login_sets_a_safe_cookie_and_refuses_non_admin_keys(console_gw):
    c = login(console_gw)
    r = c.last_login
    assert r.status_code == 303 and r.headers["location"] == "/ui/requests"
    cookie = [h for h in r.headers.get_list("set-cookie") if h.startswith(COOKIE + "=")][0].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui/" in cookie and "max-age=3600" in cookie
    assert c.get("/ui/").status_code == 200
    for key, status in ((USER_KEY, 403), ("not-a-key", 401)):
        bad = login(console_gw, key)
        assert bad.last_login.status_code == status and COOKIE not in bad.cookies
    # A login form post without its own CSRF nonce is refused.
    r = httpx.post(console_gw.url + "/ui/login", data={"key": ADMIN_KEY, "csrf": "0" * 40}, timeout=30)
    assert r.status_code == 403
    # Only a console path is followed after logging in.
    c2 = httpx.Client(base_url=console_gw.url, timeout=30)
    csrf = csrf_of(c2.get("/ui/login").text)
    r = c2.post("/ui/login", data={"key": ADMIN_KEY, "csrf": csrf, "next": "https://evil.example/"})
    assert r.headers["location"] == "/ui/"


def test_forged_expired_and_logged_out_cookies_are_refused(console_gw):
    c = login(console_gw)
    good = c.cookies[COOKIE]
    body, mac = good.split(".")
    for forged in (body + "." + "0" * len(mac), body[:-2] + "AA." + mac, "garbage", ""):
        r = httpx.get(console_gw.url + "/ui/", cookies={COOKIE: forged}, timeout=30)
        assert r.status_code == 401, forged
    # Expired: a cookie signed with the server's own secret, but whose time is up.
    sessions = console_gw.app._subapps[0][__import__("gateway.console.auth", fromlist=["SESSIONS"]).SESSIONS]
    from gateway.auth import hash_key

    old, _ = sessions.issue(hash_key(ADMIN_KEY), now=time.time() - 7200)
    r = httpx.get(console_gw.url + "/ui/", cookies={COOKIE: old}, timeout=30)
    assert r.status_code == 401 and "expired" in r.text
    # Signed with another secret: refused.
    other, _ = Sessions(b"x" * 32, 3600).issue(hash_key(ADMIN_KEY))
    assert httpx.get(console_gw.url + "/ui/", cookies={COOKIE: other}, timeout=30).status_code == 401
    # Logging out clears the cookie.
    csrf = csrf_of(c.get("/ui/").text)
    r = c.post("/ui/logout", data={"csrf": csrf})
    assert r.status_code == 303 and c.get("/ui/").status_code == 401


def test_posts_need_the_csrf_token(console_gw):
    c = login(console_gw)
    page = c.get("/ui/prompts/support-answer").text
    for data, headers in (({"version": "2", "label": "canary", "confirm": "yes"}, {}),
                          ({"version": "2", "label": "canary", "confirm": "yes", "csrf": "f" * 40}, {}),
                          ({"version": "2", "label": "canary", "confirm": "yes"}, {"X-CSRF-Token": "bad"})):
        r = c.post("/ui/prompts/support-answer/promote", data=data, headers=headers)
        assert r.status_code == 403 and "CSRF" in r.text
    assert "canary" not in (console_gw.prompts / "support-answer" / "labels.yaml").read_text()
    # With the token (as a form field or as htmx's header) it works; without the confirmation it does not.
    r = c.post("/ui/prompts/support-answer/promote", data={"version": "2", "label": "canary", "csrf": csrf_of(page)})
    assert r.status_code == 400 and "confirm" in r.text
    r = c.post("/ui/prompts/support-answer/promote", data={"version": "2", "label": "canary", "confirm": "yes"},
               headers={"X-CSRF-Token": csrf_of(page)})
    assert r.status_code == 303
    assert "canary: 2" in (console_gw.prompts / "support-answer" / "labels.yaml").read_text()
    history = (console_gw.prompts / "support-answer" / "history.jsonl").read_text().splitlines()[-1]
    assert '"by": "console:ops"' in history and '"label": "canary"' in history


def raw(gw, sql: str, args=()) -> list[tuple]:
    with sqlite3.connect(gw.ledger) as conn:
        return conn.execute(sql, args).fetchall()


def test_overview_numbers_equal_the_ledger_rows(console_gw):
    c = login(console_gw)
    data = c.get("/ui/api/overview", params={"since": "4d", "bucket": "hour"}).json()
    lo, hi = data["first_hour"] * 3600, data["end_hour"] * 3600
    (n, errors, refused, inp, out, cost), = raw(console_gw, (
        "SELECT COUNT(*), SUM(outcome = 'failed'), SUM(outcome = 'refused'), SUM(input_tokens), SUM(output_tokens), "
        "SUM(cost_usd) FROM requests WHERE ts >= ? AND ts < ?"), (lo, hi))
    t = data["overview"]["totals"]
    assert n >= SEEDED and (t["requests"], t["errors"], t["refused"], t["input_tokens"], t["output_tokens"]) == (
        n, errors, refused, inp, out)
    assert t["cost_usd"] == pytest.approx(cost, abs=1e-6)
    assert sum(b["requests"] for b in data["overview"]["series"]) == n
    by_key = {r["value"]: r["requests"] for r in data["breakdowns"]["key"]}
    assert by_key == dict(raw(console_gw, "SELECT key, COUNT(*) FROM requests WHERE ts >= ? AND ts < ? GROUP BY key",
                              (lo, hi)))
    by_group = {r["value"]: r["requests"] for r in data["breakdowns"]["group"]}
    assert by_group == {g or "(no group)": k for g, k in raw(
        console_gw, "SELECT grp, COUNT(*) FROM requests WHERE ts >= ? AND ts < ? GROUP BY grp", (lo, hi))}
    # The percentiles are within a bucket's width (1.25x) of the exact ones.
    lat = sorted(v for (v,) in raw(console_gw, "SELECT latency_ms FROM requests WHERE ts >= ? AND ts < ?", (lo, hi)))
    exact = lat[len(lat) // 2]
    assert exact / 1.25 <= t["p50_ms"] <= exact * 1.25
    # A filter on one key: its rows only.
    one = c.get("/ui/api/overview", params={"since": "4d", "dim": "key", "value": "support-bot"}).json()
    assert one["overview"]["totals"]["requests"] == raw(
        console_gw, "SELECT COUNT(*) FROM requests WHERE key = 'support-bot' AND ts >= ? AND ts < ?", (lo, hi))[0][0]
    # Budgets: the app key's day and month, and its group's month, with what was spent.
    budgets = {(b["scope"], b["name"], b["period"]): b for b in data["budgets"]}
    assert set(budgets) == {("key", "app", "day"), ("key", "app", "month"), ("group", "team-a", "month")}
    assert budgets[("key", "app", "day")]["limit_usd"] == 5


def test_requests_page_filters_and_pages_like_sql(console_gw):
    c = login(console_gw)
    got = c.get("/ui/api/requests", params={"since": "4d", "key": "support-bot", "status": "4xx", "size": 7}).json()
    want = raw(console_gw, "SELECT request_id FROM requests WHERE key = 'support-bot' AND status >= 400 AND status < 500 "
                           "AND ts >= ? ORDER BY ts DESC LIMIT 7", (time.time() - 4 * 86400,))
    assert [r["request_id"] for r in got["data"]] == [w for (w,) in want] and got["more"]
    page2 = c.get("/ui/api/requests", params={"since": "4d", "key": "support-bot", "status": "4xx", "size": 7,
                                              "page": 2}).json()
    assert not {r["request_id"] for r in page2["data"]} & {r["request_id"] for r in got["data"]}
    blocked = c.get("/ui/api/requests", params={"since": "4d", "check": "injection", "action": "block"}).json()["data"]
    assert blocked and all(any(ch["name"] == "injection" and ch["action"] == "block" for ch in r["checks"])
                           for r in blocked)
    html = c.get("/ui/requests", params={"since": "4d", "key": "app"}).text
    assert "text is not stored" in html and "mail me" not in html and "ann@example.com" not in html
    rid = re.search(r'href="/ui/requests/([^"]+)"', html).group(1)
    detail = c.get(f"/ui/requests/{rid}").text
    assert "no-pii" in detail and "EMAIL_ADDRESS" in detail


def test_guardrails_page_counts_equal_the_verdicts(console_gw):
    c = login(console_gw)
    data = c.get("/ui/api/guardrails", params={"since": "5d"}).json()
    import json

    want: dict = {}
    for (v,) in raw(console_gw, "SELECT verdicts FROM requests WHERE verdicts IS NOT NULL"):
        for item in json.loads(v):
            k = want.setdefault(item[1], {"runs": 0, "block": 0, "timeout": 0, "labels": {}})
            k["runs"] += 1
            k["block"] += item[2] == "block"
            k["timeout"] += item[4] == "timeout"
            for label in item[5] if len(item) > 5 else []:
                k["labels"][label] = k["labels"].get(label, 0) + 1
    got = {ch["name"]: {"runs": ch["runs"], "block": ch["block"], "timeout": ch["timeout"], "labels": dict(ch["labels"])}
           for ch in data["checks"]}
    assert got == want and got["no-pii"]["labels"]["EMAIL_ADDRESS"] >= 2


@pytest.mark.parametrize("path, param", [
    ("/ui/?since=yesterday-ish", "since"), ("/ui/?since=2026-13-45", "since"), ("/ui/?until=1d&since=2d&bucket=week", "bucket"),
    ("/ui/?since=1d&until=3d", "since"), ("/ui/?since=900d", "since"), ("/ui/?dim=key", "value"),
    ("/ui/?dim=colour&value=x", "dim"), ("/ui/requests?page=0", "page"), ("/ui/requests?page=abc", "page"),
    ("/ui/requests?size=100000", "size"), ("/ui/requests?page=5000&size=200", "page"), ("/ui/requests?status=6xx", "status"),
    ("/ui/requests?key=%3Cscript%3E", "key"), ("/ui/requests?action=explode", "action"),
    ("/ui/requests?since=1d&since=2d", "since"), ("/ui/prompts/..%2F..%2Fetc", "prompt"),
    ("/ui/prompts/support-answer/diff?a=1&b=99", "b"), ("/ui/prompts/support-answer/diff?a=x&b=1", "a"),
    ("/ui/api/overview?since=nope", "since"),
])
def test_bad_parameters_get_a_400_that_names_them(console_gw, path, param):
    r = httpx.get(console_gw.url + path, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    assert r.status_code == 400, r.text[:300]
    text = r.json()["error"]["message"] if path.startswith("/ui/api/") else r.text
    assert f"{param}:" in text and "Traceback" not in text


def test_unknown_things_are_404_pages(console_gw):
    for path in ("/ui/nothing-here", "/ui/prompts/no-such-prompt", "/ui/requests/no-such-request"):
        r = httpx.get(console_gw.url + path, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
        assert r.status_code == 404 and "<html" in r.text


def test_names_holding_markup_render_as_text(console_gw):
    c = login(console_gw)
    for path in ("/ui/?since=4d", "/ui/requests?since=4d"):
        html = c.get(path).text
        assert MARKUP_NAME not in html and "&lt;script&gt;alert(" in html
    # ... also inside the chart data of a page filtered on it
    html = c.get("/ui/", params={"since": "4d", "dim": "key", "value": "app"}).text
    assert "</script><script" not in html


def test_security_headers_on_every_page(console_gw):
    c = login(console_gw)
    r = c.get("/ui/")
    assert "script-src 'self'" in r.headers["content-security-policy"] and r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"
    assert httpx.get(console_gw.url + "/ui/static/vendor/htmx-2.0.11.min.js", timeout=30).status_code == 200


def test_experiment_page_is_the_ab_report_with_its_confidence_sequences(console_gw):
    from gateway.experiments.report import build_report
    from gateway.metering.ledger import SqliteReader

    c = login(console_gw)
    data = c.get("/ui/api/experiments/support-answer-v2").json()
    exp = console_gw.app[__import__("gateway.keys", fromlist=["HOLDER"]).HOLDER].current.experiments["support-answer-v2"].exp
    want = build_report(SqliteReader(console_gw.ledger), exp)
    assert [v["units"] for v in data["report"]["variants"]] == [v["units"] for v in want["variants"]]
    assert data["report"]["decision"] == want["decision"] and data["report"]["srm"]["p_value"] == pytest.approx(
        want["srm"]["p_value"])
    by_metric = {(r["metric"], r["variant"]): r for r in want["comparisons"] if r["status"] == "ok"}
    assert {m["metric"] for m in data["sequences"]} >= {"resolved", "rating", "latency_ms", "error_rate"}
    for m in data["sequences"]:
        for v in m["variants"]:
            assert v["points"], m["metric"]
            last = v["points"][-1]
            lo, hi = by_metric[(m["metric"], v["variant"])]["confidence_sequence"]
            assert (last["lo"], last["hi"]) == (pytest.approx(lo), pytest.approx(hi)), m["metric"]
            # Always valid: the intervals of earlier days are wider or equal (more data narrows them). A day
            # whose units all had the same outcome in both arms has zero sample variance and a zero-width
            # interval (the first, partial day of the window, at some times of day): compare from the first
            # day with spread.
            first = next((p for p in v["points"] if p["hi"] > p["lo"]), last)
            assert first["hi"] - first["lo"] >= last["hi"] - last["lo"]
    html = c.get("/ui/experiments/support-answer-v2").text
    assert "Decision" in html and "confidence" in html.lower() and 'data-zero="1"' in html
    assert c.get("/ui/experiments").status_code == 200
    assert c.get("/ui/experiments/..%2Fx").status_code == 400
    assert c.get("/ui/experiments/unknown").status_code == 404


def test_evals_pages_list_runs_and_compare_them(console_gw):
    c = login(console_gw)
    html = c.get("/ui/evals").text
    ids = re.findall(r"<code>(\d{8}-\d{6}-[0-9a-f]{6})</code>", html)
    assert len(ids) == 2 and "json-extraction" in html and 'data-fields="pass_rate"' in html
    page = c.get("/ui/evals/compare", params={"a": ids[1], "b": ids[0]})
    assert page.status_code == 200
    assert "order-1" in page.text and "assertion_pass_rate" in page.text and "A-1001" in page.text
    assert c.get("/ui/evals/compare", params={"a": ids[1], "b": "20000101-000000-abcdef"}).status_code == 404
    assert c.get("/ui/evals/compare", params={"a": "../../x", "b": ids[0]}).status_code == 400
