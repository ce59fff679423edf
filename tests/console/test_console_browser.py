"""The console in a real browser (Debian's chromium driven by Playwright): log in with an admin key,
open every page, check the figures shown against the ledger, filter, diff two prompt versions, promote
one and see its label move, and keep a screenshot of each page (test-artifacts/console/, which CI
keeps). Skips with a reason where chromium or Playwright is missing; GATEWAY_TEST_REQUIRE_SERVICES=1
(set by .ci/run) turns that skip into a failure."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import pytest

from tests.console.conftest import ADMIN_KEY
from tests.helpers import REPO

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(os.environ.get("GATEWAY_TEST_ARTIFACTS", REPO / "test-artifacts")) / "console"


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("GATEWAY_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(reason + "; GATEWAY_TEST_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        _skip_or_fail(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("the playwright package is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture()
def page(browser, console_gw):
    SHOTS.mkdir(parents=True, exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=console_gw.url)
    pg = ctx.new_page()
    pg.js_errors = []
    pg.on("pageerror", lambda e: pg.js_errors.append(str(e)))
    pg.on("console", lambda m: pg.js_errors.append(m.text) if m.type == "error" else None)
    pg.goto("/ui/requests")
    assert pg.locator("input[name=key][type=password]").is_visible()  # 401: the login form
    pg.fill("input[name=key]", ADMIN_KEY)
    pg.click("button[type=submit]")
    pg.wait_for_url("**/ui/requests")  # back where it started
    pg.js_errors.clear()  # the browser logs the 401 of the first visit as a console error
    yield pg
    assert pg.js_errors == []
    ctx.close()


def shoot(pg, name: str) -> None:
    pg.wait_for_load_state("networkidle")
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def raw(gw, sql: str, args=()) -> list[tuple]:
    with sqlite3.connect(gw.ledger) as conn:
        return conn.execute(sql, args).fetchall()


def number(text: str) -> float:
    return float(re.sub(r"[^0-9.]", "", text))


def test_overview_shows_the_ledger_figures_and_draws_its_charts(page, console_gw):
    page.goto("/ui/?since=4d&bucket=hour")
    shoot(page, "overview")
    assert page.locator(".chart .uplot").count() == 4  # uPlot drew all four charts
    data = page.request.get("/ui/api/overview?since=4d&bucket=hour").json()
    lo, hi = data["first_hour"] * 3600, data["end_hour"] * 3600
    (n, cost), = raw(console_gw, "SELECT COUNT(*), SUM(cost_usd) FROM requests WHERE ts >= ? AND ts < ?", (lo, hi))
    assert number(page.locator("[data-total=requests]").inner_text()) == n
    assert number(page.locator("[data-total=cost_usd]").inner_text()) == pytest.approx(cost, abs=1e-4)
    first_key_row = page.locator("table.breakdown[data-dim=key] tbody tr").first
    key = first_key_row.locator("td").first.inner_text()
    want = raw(console_gw, "SELECT COUNT(*) FROM requests WHERE key = ? AND ts >= ? AND ts < ?", (key, lo, hi))[0][0]
    assert number(first_key_row.locator("td").nth(1).inner_text()) == want
    # Drill into that key: the cards then count its rows only, and the URL can be shared.
    first_key_row.locator("a").click()
    page.wait_for_url(re.compile(r"dim=key&value="))
    assert number(page.locator("[data-total=requests]").inner_text()) <= n


def test_requests_filter_and_detail(page, console_gw):
    page.fill("form.filters input[name=since]", "4d")
    page.fill("form.filters input[name=key]", "support-bot")
    page.select_option("form.filters select[name=action]", "redact")
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(r"key=support-bot.*action=redact"))
    rows = page.locator("table.requests tbody tr")
    assert rows.count() > 0
    for i in range(rows.count()):
        assert rows.nth(i).locator("td").nth(1).inner_text() == "support-bot"
        assert "redact" in rows.nth(i).locator("td").last.inner_text()
    shoot(page, "requests")
    rows.first.locator("a").click()
    page.wait_for_url(re.compile(r"/ui/requests/ex-"))
    assert "text is not stored" in page.content()
    shoot(page, "request")


def test_guardrails_counts(page, console_gw):
    page.goto("/ui/guardrails?since=5d")
    shoot(page, "guardrails")
    import json

    blocks = sum(1 for (v,) in raw(console_gw, "SELECT verdicts FROM requests WHERE verdicts IS NOT NULL")
                 for item in json.loads(v) if item[2] == "block")
    assert number(page.locator("[data-total=block]").inner_text()) == blocks
    assert page.locator(".chart .uplot").count() == page.locator("table.checks tbody tr").count()


def test_prompt_diff_and_promote_moves_the_label(page, console_gw):
    page.goto("/ui/prompts")
    shoot(page, "prompts")
    page.click("text=support-answer")
    page.wait_for_url("**/ui/prompts/support-answer")
    page.select_option("form.diff select[name=a]", "1")
    page.select_option("form.diff select[name=b]", "2")
    page.click("form.diff button")
    page.wait_for_url(re.compile(r"diff\?a=1&b=2"))
    assert page.locator("table.diff tr.replace, table.diff tr.insert, table.diff tr.delete").count() > 0
    shoot(page, "prompt-diff")
    page.go_back()
    page.wait_for_url("**/ui/prompts/support-answer")
    page.select_option("form.promote select[name=version]", "3")
    page.fill("form.promote input[name=label]", "browser")
    page.check("form.promote input[name=confirm]")
    page.click("form.promote button")
    page.wait_for_selector("li[data-label=browser]")
    assert page.locator("li[data-label=browser]").inner_text().endswith("v3")
    assert "console:ops" in page.locator("table.history tbody tr").first.inner_text()
    shoot(page, "prompt")
    # The running gateway serves the moved label at once.
    assert console_gw.app[__import__("gateway.keys", fromlist=["HOLDER"]).HOLDER].current.prompts.labels[
        "support-answer"]["browser"] == 3


def test_experiment_and_evals_pages(page, console_gw):
    page.goto("/ui/experiments")
    page.click("text=support-answer-v2")
    page.wait_for_url("**/ui/experiments/support-answer-v2")
    page.wait_for_selector(".chart .uplot")  # htmx swapped the page in; console.js draws after it settles
    assert page.locator(".chart .uplot").count() >= 5
    units = raw(console_gw, "SELECT variant, COUNT(*) FROM experiment_units WHERE experiment = 'support-answer-v2' "
                            "GROUP BY variant")
    for variant, n in units:
        assert number(page.locator(f"[data-units={variant}]").inner_text()) == n
    shoot(page, "experiment")
    page.goto("/ui/evals")
    shoot(page, "evals")
    page.click("text=Compare A with B")
    page.wait_for_url(re.compile(r"/ui/evals/compare\?"))
    assert page.locator("table.cases tbody tr").count() == 5
    shoot(page, "eval-compare")


def test_tabular_model_page(page, console_gw):
    """Predictions, labels and drift of the churn model as the API reports them, the reference vs
    current histograms, and the webhook delivery the shifted traffic set off."""
    import httpx

    from tests.console.conftest import USER_KEY

    page.goto("/ui/tabular")
    page.click("text=churn")
    page.wait_for_url("**/ui/tabular/churn")
    page.wait_for_selector(".chart .uplot")
    assert page.locator(".chart .uplot").count() == 2
    report = httpx.get(console_gw.url + "/v1/tabular/churn/drift?window=24h", timeout=30,
                       headers={"Authorization": f"Bearer {USER_KEY}"}).json()
    assert report["drift"] is True
    with sqlite3.connect(console_gw.ledger.with_name("tabular.db")) as conn:
        rows, labelled = conn.execute("SELECT COUNT(*), COUNT(label) FROM predictions WHERE model = 'churn'").fetchone()
        [(delivered, status)] = conn.execute("SELECT delivered, http_status FROM alert_deliveries").fetchall()
    assert number(page.locator("[data-total=rows]").inner_text()) == rows == report["window"]["rows"] == 300
    assert number(page.locator("[data-total=labelled]").inner_text()) == labelled == 300
    for c in report["data_drift"]["columns"]:
        row = page.locator(f"tr[data-feature={c['column']}]")
        assert (row.locator("text=drifted").count() == 1) == c["drifted"]
        assert row.locator(".bin").count() >= 3
    assert (delivered, status) == (1, 200)
    assert page.locator("#deliveries tbody tr").count() == 1
    assert "delivered" in page.locator("#deliveries tbody tr").inner_text()
    shoot(page, "tabular")
