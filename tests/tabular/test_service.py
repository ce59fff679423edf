"""Tabular models behind the gateway: predict, feedback, drift, scheduled alerts (real servers)."""

from __future__ import annotations

import re
import sqlite3
import time

import httpx
import pytest

from gateway.tabular.example_model import build_app as model_app
from gateway.tabular.example_model import churn_probability, generate
from tests.helpers import REPO, ServerThread, recording_webhook, run_cli, running_gateway, write_policies

FEATURES = """
      tenure_months: {type: number, min: 0}
      monthly_spend: {type: number, min: 0}
      support_calls: {type: integer, min: 0}
      plan: {type: category, values: [basic, pro, enterprise]}
"""


def gateway_yaml(model_url: str, webhook: str | None = None) -> str:
    hook = f"webhook: {webhook}" if webhook else "webhook: null"
    return f"""
upstreams: {{mock: {{type: mock}}}}
models: {{echo: {{targets: [{{upstream: mock, model: echo}}]}}}}
server: {{watch_interval_s: 0}}
tabular:
  churn:
    url: {model_url}
    features: {FEATURES}
    reference: churn.profile
    drift: {{min_rows: 100}}
  churn-b:
    url: {model_url}
    features: {FEATURES}
    reference: churn.profile
    drift: {{min_rows: 100, check_every_s: 0.3, {hook}, realert_after_s: 3600}}
  down:
    url: http://127.0.0.1:9/predict
    timeout_s: 2
    features: {FEATURES}
"""


@pytest.fixture(scope="module")
def model_server():
    server = ServerThread(model_app()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hook():
    """A webhook that fails its first delivery (the gateway must retry), then records alerts."""
    server = recording_webhook(fail_first=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory, model_server, hook):
    root = write_policies(tmp_path_factory.mktemp("tab"), gateway_yaml(model_server.url + "/predict", hook.url + "/hook"))
    (root / "churn.profile").write_bytes((REPO / "policies/tabular/churn.profile").read_bytes())
    with running_gateway(root, ledger=root / "state" / "ledger.db") as server:
        server.ledger = root / "state" / "ledger.db"
        yield server


def post(gw, path, body):
    return httpx.post(gw.url + path, json=body, timeout=30)


def rows_of(n, shift=0.0, seed=5):
    return [{k: r[k] for k in ("tenure_months", "monthly_spend", "support_calls", "plan")} | {"_label": r["label"]}
            for r in generate(n, shift, seed)]


def test_predict_forwards_validated_rows_and_returns_prediction_ids(gw):
    row = {"tenure_months": 12, "monthly_spend": 80.5, "support_calls": 3, "plan": "basic"}
    r = post(gw, "/v1/tabular/churn/predict", {"rows": [row, {**row, "plan": "pro"}]})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["prediction"] for p in preds] == [round(churn_probability(row), 6),
                                                 round(churn_probability({**row, "plan": "pro"}), 6)]
    assert all(p["id"].startswith("pred-") for p in preds) and preds[0]["id"] != preds[1]["id"]


@pytest.mark.parametrize("rows, message", [
    ([{"tenure_months": 1, "monthly_spend": 2, "support_calls": 1, "plan": "pro", "age": 4}], "unknown feature(s) age"),
    ([{"monthly_spend": 2, "support_calls": 1, "plan": "pro"}], "rows[0].tenure_months: required"),
    ([{"tenure_months": "ten", "monthly_spend": 2, "support_calls": 1, "plan": "pro"}], "expected a finite number"),
    ([{"tenure_months": 1, "monthly_spend": 2, "support_calls": 1.5, "plan": "pro"}], "expected an integer"),
    ([{"tenure_months": -1, "monthly_spend": 2, "support_calls": 1, "plan": "pro"}], "below the minimum"),
    ([{"tenure_months": 1, "monthly_spend": 2, "support_calls": 1, "plan": "gold"}], "'gold' is not one of"),
    ([], "non-empty array"),
    ("nope", "non-empty array"),
])
def test_schema_violations_are_400_with_row_and_field(gw, rows, message):
    r = post(gw, "/v1/tabular/churn/predict", {"rows": rows})
    assert r.status_code == 400 and message in r.json()["error"]["message"]


def test_huge_numbers_are_refused_by_the_schema_and_survived_by_the_example_server(gw, model_server):
    row = {"tenure_months": 1, "monthly_spend": 2, "support_calls": 1, "plan": "pro"}
    # 1e308 is finite: the schema's max refuses it in the shipped policies...
    import yaml

    from gateway.tabular.config import TabularModelConfig, validate_rows
    shipped = yaml.safe_load((REPO / "policies/gateway.yaml").read_text())["tabular"]["churn"]
    _, problems = validate_rows(TabularModelConfig.model_validate(shipped), [{**row, "monthly_spend": 1e308}])
    assert problems and "above the maximum" in problems[0]
    _, problems = validate_rows(TabularModelConfig.model_validate(shipped), [{**row, "support_calls": 10**400}])
    assert problems and "finite" in problems[0]
    # ...and the example server answers for any finite number instead of overflowing (it used to be a 502)
    r = post(gw, "/v1/tabular/churn/predict", {"rows": [{**row, "monthly_spend": 1e308}, {**row, "tenure_months": 1e308}]})
    assert r.status_code == 200, r.text
    assert [p["prediction"] for p in r.json()["predictions"]] == [1.0, 0.0]
    direct = httpx.post(model_server.url + "/predict", json={"rows": [{**row, "monthly_spend": "NaN"}]})
    assert direct.status_code == 400 and "monthly_spend" in direct.json()["error"]
    assert httpx.post(model_server.url + "/predict", content=b"{not json").status_code == 400


def test_unknown_model_and_dead_model_server(gw):
    assert post(gw, "/v1/tabular/nope/predict", {"rows": []}).status_code == 404
    row = {"tenure_months": 1, "monthly_spend": 2, "support_calls": 1, "plan": "pro"}
    r = post(gw, "/v1/tabular/down/predict", {"rows": [row]})
    assert r.status_code == 502 and r.json()["error"]["code"] == "model_server_unreachable"


def test_feedback_is_idempotent_and_refuses_unknown_ids_and_conflicts(gw):
    row = {"tenure_months": 5, "monthly_spend": 20, "support_calls": 0, "plan": "pro"}
    pid = post(gw, "/v1/tabular/churn/predict", {"rows": [row]}).json()["predictions"][0]["id"]
    assert post(gw, "/v1/tabular/churn/feedback", {"id": pid, "label": 1}).json()["results"][0]["status"] == "recorded"
    time.sleep(0.5)  # now on disk: the answer must not depend on where the label lives
    again = post(gw, "/v1/tabular/churn/feedback", {"id": pid, "label": 1})
    assert again.status_code == 200 and again.json()["results"][0]["status"] == "unchanged"
    assert post(gw, "/v1/tabular/churn/feedback", {"id": pid, "label": 0}).status_code == 409
    assert post(gw, "/v1/tabular/churn/feedback", {"id": "pred-nope", "label": 1}).status_code == 404
    assert post(gw, "/v1/tabular/churn/feedback", {"id": pid, "label": "yes"}).status_code == 400


def send(gw, model, rows):
    clean = [{k: v for k, v in r.items() if k != "_label"} for r in rows]
    preds = post(gw, f"/v1/tabular/{model}/predict", {"rows": clean}).json()["predictions"]
    labels = [{"id": p["id"], "label": r["_label"]} for p, r in zip(preds, rows)]
    r = post(gw, f"/v1/tabular/{model}/feedback", {"labels": labels})
    assert r.status_code == 200, r.text


def test_drift_report_on_the_logged_window(gw):
    r = httpx.get(gw.url + "/v1/tabular/churn/drift?window=1h", timeout=30).json()
    assert r["status"] == "insufficient_data"
    send(gw, "churn", rows_of(400, shift=0.0, seed=11))
    time.sleep(0.6)  # the log is written in batches
    same = httpx.get(gw.url + "/v1/tabular/churn/drift?window=1h", timeout=30).json()
    assert same["status"] == "ok" and same["data_drift"]["dataset_drift"] is False
    assert same["performance"]["status"] == "ok" and same["drift"] is False
    assert httpx.get(gw.url + "/v1/tabular/churn/drift?window=soon", timeout=30).status_code == 400


def test_shifted_traffic_is_detected_and_the_webhook_alerted_with_retries(gw, hook):
    send(gw, "churn-b", rows_of(400, shift=1.0, seed=12))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(hook.got) < 2:
        time.sleep(0.1)
    assert len(hook.got) == 2  # first delivery answered 500, the retry succeeded, no third alert
    alert = hook.got[-1]
    assert alert["model"] == "churn-b" and alert["data_drift"] is True
    drifted = {c["column"] for c in alert["report"]["data_drift"]["columns"] if c["drifted"]}
    assert {"support_calls", "monthly_spend"} <= drifted
    report = httpx.get(gw.url + "/v1/tabular/churn-b/drift", timeout=30).json()
    assert report["drift"] is True and report["prediction_drift"]["drifted"] is True


def test_config_errors_name_the_field(tmp_path):
    root = write_policies(tmp_path, gateway_yaml("http://127.0.0.1:1/predict").replace("reference: churn.profile", "reference: missing.profile", 1))
    r = run_cli("check-policies", "--policies", str(root))
    assert r.returncode == 2 and "tabular.churn.reference: cannot load profile" in r.stderr
    root2 = write_policies(tmp_path / "b", gateway_yaml("http://127.0.0.1:1/predict").replace("tenure_months:", "label:", 1))
    r = run_cli("check-policies", "--policies", str(root2))
    assert r.returncode == 2 and "reserved column names" in r.stderr


def test_console_tabular_pages_show_the_drift_report(gw, hook):
    """The console's tabular pages (open mode on loopback: no login) show what GET .../drift reports, with
    reference vs current histograms and the webhook deliveries of the test above."""
    send(gw, "churn-b", rows_of(300, shift=1.0, seed=13))
    time.sleep(0.6)
    listing = httpx.get(gw.url + "/ui/tabular", timeout=30)
    assert listing.status_code == 200 and "churn-b" in listing.text and "Open mode" in listing.text
    report = httpx.get(gw.url + "/v1/tabular/churn-b/drift?window=1h", timeout=30).json()
    page = httpx.get(gw.url + "/ui/tabular/churn-b?window=1h", timeout=30)
    assert page.status_code == 200
    html = page.text
    assert f'data-total="rows">{report["window"]["rows"]:,}<' in html
    for c in report["data_drift"]["columns"]:
        row = re.search(rf'<tr data-feature="{c["column"]}">(.*?)</tr>', html, re.S).group(1)
        assert ("drifted</span>" in row) == c["drifted"]
        assert row.count('class="bin"') >= 3  # a histogram pair per bin
    assert "ADWIN alarms" in html and "Webhook deliveries" in html
    # the delivery of the test above (a 500, then a 200 on the retry) is kept in the prediction log
    deliveries = re.search(r'<table class="data" id="deliveries">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", deliveries, re.S)
    assert cells[1:4] == ["delivered", "200", "2"] and cells[4].startswith("data drift"), cells
    with sqlite3.connect(gw.ledger.parent / "tabular.db") as conn:
        assert conn.execute("SELECT model, delivered, http_status, attempts FROM alert_deliveries").fetchall() == [
            ("churn-b", 1, 200, 2)]
    assert httpx.get(gw.url + "/ui/tabular/churn-b?window=2y", timeout=30).status_code == 400
    assert httpx.get(gw.url + "/ui/tabular/nope", timeout=30).status_code == 404
