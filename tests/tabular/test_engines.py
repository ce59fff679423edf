"""Drift engines on real files: memory, stream (directories, globs, URLs) and a real Dask LocalCluster."""

import json

import numpy as np
import pytest

from gateway.stats import drift
from gateway.tabular import engines, sources
from tests.helpers import run_cli

pa = pytest.importorskip("pyarrow", reason="the drift extra (pyarrow) is not installed")
pq = pytest.importorskip("pyarrow.parquet")


def _frame(rng, n, shift=0.0):
    num = rng.normal(shift, 1, n)
    num[::30] = np.nan
    return pa.table({"num": num, "small": rng.normal(0, 1, n).astype(np.float32),
                     "count": pa.array(rng.poisson(3 + shift, n).astype(np.int32)),
                     "plan": rng.choice(["basic", "pro", "team"], n, p=[0.5, 0.3, 0.2])})


@pytest.fixture
def window(tmp_path):
    """A reference, and a current window written as one file and as a directory of four files."""
    rng = np.random.default_rng(7)
    ref = _frame(rng, 40_000)
    pq.write_table(ref, tmp_path / "ref.parquet")
    parts = [_frame(rng, 15_000, shift=0.2) for _ in range(4)]
    (tmp_path / "cur").mkdir()
    for i, t in enumerate(parts):
        pq.write_table(t, tmp_path / "cur" / f"day-{i}.parquet", row_group_size=4_000)
    pq.write_table(pa.concat_tables(parts), tmp_path / "cur.parquet", row_group_size=4_000)
    from gateway.tabular.io import read_table

    profile = drift.fit(read_table(tmp_path / "ref.parquet"), keep_sample=True)
    return tmp_path, profile


def _same(a, b):
    """Reports equal in every statistic (means up to float64 summation order)."""
    a, b = a.to_json(), b.to_json()
    a.pop("engine"), b.pop("engine")
    for ca, cb in zip(a["columns"], b["columns"]):
        ma, mb = ca["metrics"].pop("mean", 0.0), cb["metrics"].pop("mean", 0.0)
        assert ma == pytest.approx(mb, rel=1e-12)
    assert a == b


def test_stream_equals_memory_exactly_and_records_its_engine(window):
    tmp, profile = window
    memory, data = engines.run(profile, str(tmp / "cur.parquet"), engines.Options(engine="memory"))
    assert data is not None and memory.engine["name"] == "memory" and memory.engine["rows_read"] == 60_000
    for spec in (str(tmp / "cur"), str(tmp / "cur" / "day-*.parquet"), f"file://{tmp}/cur"):
        streamed, none = engines.run(profile, spec, engines.Options(engine="stream", batch_rows=5_000))
        assert none is None
        assert streamed.engine | {"wall_s": 0} == {"name": "stream", "rows_read": 60_000, "wall_s": 0, "files": 4,
                                                   "parts": 4, "input": spec, "batch_rows": 5_000,
                                                   "sketched_columns": []}
        _same(memory, streamed)
    # auto: one file that fits is read whole; a directory is streamed
    assert engines.run(profile, str(tmp / "cur.parquet"), engines.Options())[0].engine["name"] == "memory"
    assert engines.run(profile, str(tmp / "cur"), engines.Options())[0].engine["name"] == "stream"


def test_stream_past_the_exact_budget_sketches_within_its_bound(window):
    tmp, profile = window
    exact, _ = engines.run(profile, str(tmp / "cur.parquet"), engines.Options(engine="memory"))
    sketched, _ = engines.run(profile, str(tmp / "cur"), engines.Options(engine="stream", exact_bytes=100_000))
    assert sketched.engine["sketched_columns"] == ["num", "small", "count"]
    for e, s in zip(exact.columns, sketched.columns):
        assert s.metrics["psi"] == e.metrics["psi"] and s.n_current == e.n_current
        if s.kind == "numeric":
            assert abs(s.metrics["ks_d"] - e.metrics["ks_d"]) <= s.sketch["ks_d_bound"]
            assert "KLL quantile sketch" in s.note
        else:
            assert s.sketch is None and s.metrics == e.metrics


def test_fsspec_urls_are_read(window):
    fsspec = pytest.importorskip("fsspec", reason="fsspec is not installed")
    tmp, profile = window
    mem = fsspec.filesystem("memory")
    for p in sorted((tmp / "cur").iterdir()):
        mem.pipe(f"/drift-test/{p.name}", p.read_bytes())
    streamed, _ = engines.run(profile, "memory://drift-test", engines.Options(engine="stream"))
    exact, _ = engines.run(profile, str(tmp / "cur.parquet"), engines.Options(engine="memory"))
    _same(exact, streamed)
    assert streamed.engine["files"] == 4


def test_csv_windows_stream_like_parquet(window, tmp_path):
    tmp, profile = window
    import pyarrow.csv as pcsv

    (tmp / "csv").mkdir()
    for p in sorted((tmp / "cur").iterdir()):
        pcsv.write_csv(pq.read_table(p), tmp / "csv" / (p.stem + ".csv"))
    streamed, _ = engines.run(profile, str(tmp / "csv"), engines.Options(engine="stream", batch_rows=3_000))
    assert streamed.engine["rows_read"] == 60_000 and streamed.engine["files"] == 4
    plan = next(c for c in streamed.columns if c.column == "plan")
    exact_plan = next(c for c in engines.run(profile, str(tmp / "cur.parquet"), engines.Options())[0].columns
                      if c.column == "plan")
    assert plan.metrics == exact_plan.metrics  # category counts are exact whatever the format


def test_bad_windows_name_the_file_and_never_report_partially(window):
    tmp, profile = window
    bad = tmp / "bad"
    bad.mkdir()
    pq.write_table(_frame(np.random.default_rng(1), 100), bad / "a.parquet")
    pq.write_table(pa.table({"num": ["x"] * 10, "small": [1.0] * 10, "count": [1] * 10, "plan": ["pro"] * 10}),
                   bad / "b.parquet")
    with pytest.raises(ValueError, match=r"b\.parquet: column 'num' is text here but numeric in .*a\.parquet"):
        engines.run(profile, str(bad), engines.Options(engine="stream"))
    (bad / "b.parquet").unlink()
    pq.write_table(pa.table({"num": [1.0]}), bad / "c.parquet")
    with pytest.raises(ValueError, match=r"c\.parquet: its columns differ from .*a\.parquet's: it lacks small"):
        engines.run(profile, str(bad), engines.Options(engine="stream"))
    (bad / "c.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ValueError, match=r"c\.parquet: not a readable Parquet file"):
        engines.run(profile, str(bad), engines.Options(engine="stream"))
    (bad / "c.parquet").unlink()
    # a file that is whole at the footer but broken inside: found while reading, nothing reported
    good = (bad / "a.parquet").read_bytes()
    broken = good[:8] + bytes(200) + good[208:]
    (bad / "d.parquet").write_bytes(broken)
    with pytest.raises(ValueError, match=r"d\.parquet: "):
        engines.run(profile, str(bad), engines.Options(engine="stream"))
    (bad / "d.parquet").unlink()
    empty = tmp / "empty"
    empty.mkdir()
    pq.write_table(_frame(np.random.default_rng(1), 0), empty / "z.parquet")
    with pytest.raises(ValueError, match="the window has no rows"):
        engines.run(profile, str(empty), engines.Options(engine="stream"))
    with pytest.raises(ValueError, match="no Parquet or CSV files found"):
        engines.run(profile, str(tmp / "nothing-*.parquet"), engines.Options(engine="stream"))
    (empty / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="must all be .parquet or all .csv"):
        engines.run(profile, str(empty / "*"), engines.Options(engine="stream"))
    with pytest.raises(ValueError, match="--engine dask needs --scheduler"):
        engines.run(profile, str(tmp / "cur"), engines.Options(engine="dask"))


def test_unreachable_scheduler_is_named(window):
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    tmp, profile = window
    with pytest.raises(ValueError, match=r"dask scheduler tcp://127\.0\.0\.1:9: unreachable"):
        engines.run(profile, str(tmp / "cur"), engines.Options(engine="dask", scheduler="tcp://127.0.0.1:9"))


def test_local_cluster_gives_the_in_memory_answers(window):
    """A real dask.distributed LocalCluster with three worker processes: exact statistics equal to the
    in-memory engine's; with no exact budget, every sketched column within its bound."""
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    tmp, profile = window
    exact, _ = engines.run(profile, str(tmp / "cur.parquet"), engines.Options(engine="memory"))
    with distributed.LocalCluster(n_workers=3, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        on_cluster, _ = engines.run(profile, str(tmp / "cur"), engines.Options(engine="dask",
                                                                                scheduler=cluster.scheduler_address))
        sketched, _ = engines.run(profile, str(tmp / "cur"), engines.Options(
            engine="dask", scheduler=cluster.scheduler_address, exact_bytes=0, batch_rows=2_000))
        # one big file is cut at row-group boundaries, so its parts run on several workers
        one, _ = engines.run(profile, str(tmp / "cur.parquet"), engines.Options(
            engine="dask", scheduler=cluster.scheduler_address, batch_rows=4_000))
    assert on_cluster.engine["name"] == "dask" and on_cluster.engine["scheduler"] == cluster.scheduler_address
    assert on_cluster.engine["rows_read"] == 60_000 and on_cluster.engine["sketched_columns"] == []
    _same(exact, on_cluster)
    _same(exact, one)
    assert one.engine["files"] == 1 and one.engine["parts"] > 1
    assert sketched.engine["sketched_columns"] == ["num", "small", "count"]
    for e, s in zip(exact.columns, sketched.columns):
        assert s.metrics["psi"] == e.metrics["psi"] and s.n_missing == e.n_missing
        if s.kind == "numeric":
            assert abs(s.metrics["ks_d"] - e.metrics["ks_d"]) <= s.sketch["ks_d_bound"]


def test_cli_reports_the_same_in_every_engine_and_format(window):
    tmp, profile = window
    outs = {}
    for engine, current in (("memory", tmp / "cur.parquet"), ("stream", tmp / "cur")):
        r = run_cli("drift", "report", "--reference", str(tmp / "ref.parquet"), "--current", str(current),
                    "--engine", engine, "--format", "json")
        assert r.returncode == 0, r.stderr
        outs[engine] = json.loads(r.stdout)
        table = run_cli("drift", "report", "--reference", str(tmp / "ref.parquet"), "--current", str(current),
                        "--engine", engine).stdout
        assert f"Engine: {engine}, 60,000 rows read" in table
        page = run_cli("drift", "report", "--reference", str(tmp / "ref.parquet"), "--current", str(current),
                       "--engine", engine, "--format", "html").stdout
        assert page.count("<svg") >= 5 and f"Engine: {engine}" in page
    assert [c["drifted"] for c in outs["memory"]["columns"]] == [c["drifted"] for c in outs["stream"]["columns"]]
    assert [c["histogram"] for c in outs["memory"]["columns"]] == [c["histogram"] for c in outs["stream"]["columns"]]
    r = run_cli("drift", "report", "--reference", str(tmp / "ref.parquet"), "--current", str(tmp / "cur"),
                "--engine", "stream", "--target", "plan")
    assert r.returncode == 2 and "need the window in memory" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("drift", "report", "--reference", str(tmp / "ref.parquet"), "--current", str(tmp / "nope"))
    assert r.returncode == 2 and "no such file or directory" in r.stderr


def test_parts_cut_big_files_at_row_groups(window):
    tmp, _ = window
    ds = sources.open_dataset(str(tmp / "cur.parquet"))
    parts = ds.parts(10_000)
    assert len(parts) == 5 and all(p[0] == str(tmp / "cur.parquet") for p in parts)
    assert sorted(g for _, groups in parts for g in groups) == list(range(15))  # every row group exactly once
    assert ds.row_count() == 60_000
