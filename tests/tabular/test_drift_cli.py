"""`gateway drift fit|report` on files, as a user runs it."""

import csv
import json

import numpy as np

from tests.helpers import run_cli


def write_csv(path, n, shift, seed, extra_bad=False):
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["age", "plan", "score"])
        for i in range(n):
            score = f"{rng.normal(0, 1):.3f}"
            if extra_bad and i % 50 == 0:
                score = "unknown"
            elif extra_bad and i % 70 == 0:
                score = "n/a"
            w.writerow([f"{rng.normal(40 + shift, 10):.1f}", rng.choice(["basic", "pro"]), score])
    return path


def test_fit_then_report_table_json_html(tmp_path):
    ref = write_csv(tmp_path / "ref.csv", 5000, 0, 1)
    cur = write_csv(tmp_path / "cur.csv", 3000, 5, 2, extra_bad=True)
    r = run_cli("drift", "fit", str(ref), "-o", str(tmp_path / "ref.profile"))
    assert r.returncode == 0 and "age: numeric, plan: categorical, score: numeric" in r.stdout, r.stderr
    r = run_cli("drift", "report", "--reference", str(tmp_path / "ref.profile"), "--current", str(cur))
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines()[2:-1]}
    assert lines["age"].rstrip().endswith("YES") and " no" in lines["plan"]
    out = json.loads(run_cli("drift", "report", "--reference", str(ref), "--current", str(cur), "--format", "json").stdout)
    assert out["profile"]["source"] == str(ref) and out["profile"]["content_hash"].startswith("sha256:")
    score = next(c for c in out["columns"] if c["column"] == "score")
    assert score["n_invalid"] == 60  # text in a numeric column is counted, not read as 0
    assert score["n_missing"] == 34  # n/a, NA, null and empty cells are missing values
    html = run_cli("drift", "report", "--reference", str(ref), "--current", str(cur), "--format", "html").stdout
    assert html.startswith("<!doctype html>") and html.count("<svg") >= 3


def test_rules_and_bad_input(tmp_path):
    ref = write_csv(tmp_path / "ref.csv", 500, 0, 1)
    r = run_cli("drift", "report", "--reference", str(ref), "--current", str(ref),
                "--rules", '{"age": {"test": "psi", "threshold": 0.01}}', "--format", "json")
    assert json.loads(r.stdout)["columns"][0]["test"] == "psi"
    ragged = tmp_path / "bad.csv"
    ragged.write_text("a,b\n1,2\n3\n")
    r = run_cli("drift", "report", "--reference", str(ref), "--current", str(ragged))
    assert r.returncode == 2 and f"{ragged}:3: 1 values, but the header has 2 columns" in r.stderr
    for args, fragment in [
        (["--current", str(tmp_path / "missing.csv")], "no such file"),
        (["--current", str(ref), "--rules", "{oops"], "Expecting property name"),
        (["--current", str(tmp_path / "x.parquet")], "no such file"),
    ]:
        r = run_cli("drift", "report", "--reference", str(ref), *args)
        assert r.returncode == 2 and fragment in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    empty = tmp_path / "empty.csv"
    empty.write_text("age,plan,score\n")
    r = run_cli("drift", "report", "--reference", str(ref), "--current", str(empty))
    assert r.returncode == 2 and "empty" in r.stderr


def test_target_and_prediction_give_prediction_drift_and_performance(tmp_path):
    rng = np.random.default_rng(4)

    def write(path, noise, n):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["age", "churned", "p_churn"])
            for i in range(n):
                y = int(rng.integers(0, 2))
                p = 1 / (1 + np.exp(-((2 * y - 1) * 2 + rng.normal(0, noise))))
                w.writerow([f"{rng.normal(40, 10):.1f}", y if i % 10 else "", f"{p:.4f}"])  # some labels not in yet
        return path

    ref, cur = write(tmp_path / "ref.csv", 1.0, 3000), write(tmp_path / "cur.csv", 3.0, 1500)
    out = json.loads(run_cli("drift", "report", "--reference", str(ref), "--current", str(cur), "--target", "churned",
                             "--prediction", "p_churn", "--format", "json").stdout)
    assert [c["column"] for c in out["columns"]] == ["age"]  # target and prediction are not features
    model = out["model"]
    assert model["task"] == "classification" and model["labelled"] == {"reference": 2700, "current": 1350}
    assert {c["metric"] for c in model["performance"] if c["worse"]} >= {"accuracy", "auc", "log_loss"}
    assert "prediction_drift" in model
    run_cli("drift", "fit", str(ref), "-o", str(tmp_path / "ref.profile"))
    table = run_cli("drift", "report", "--reference", str(tmp_path / "ref.profile"), "--current", str(cur),
                    "--target", "churned", "--prediction", "p_churn").stdout
    assert "Prediction drift (label-free proxy)" in table and "needs the reference data with labels" in table
    bad = run_cli("drift", "report", "--reference", str(ref), "--current", str(cur), "--target", "nope")
    assert bad.returncode == 2 and "'nope'" in bad.stderr


def test_prediction_drift_on_a_small_window_uses_ks_and_can_fire(tmp_path):
    rng = np.random.default_rng(9)
    for name, shift, n in (("ref.csv", 0.0, 2000), ("cur.csv", 0.3, 400)):
        with open(tmp_path / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["x", "score"])
            for _ in range(n):
                w.writerow([f"{rng.normal():.3f}", f"{min(1, max(0, rng.normal(0.3 + shift, 0.1))):.3f}"])
    out = json.loads(run_cli("drift", "report", "--reference", str(tmp_path / "ref.csv"), "--current",
                             str(tmp_path / "cur.csv"), "--prediction", "score", "--format", "json").stdout)
    pred = out["model"]["prediction_drift"]
    assert pred["test"] == "ks" and pred["drifted"] and pred["p_adjusted"] == pred["p_value"]
