import math

from gateway.experiments.analysis import MetricData, analyse
from gateway.experiments.config import Experiment
from gateway.stats import power
from gateway.stats.ab import Summary


def test_planning_sizes_the_smaller_arm_at_the_configured_split():
    exp = Experiment(name="e", models=["m"], minimum_detectable_effect=0.1,
                     variants=[{"name": "control", "weight": 0.9}, {"name": "new", "weight": 0.1}],
                     metrics={"conversion": {"type": "proportion"}})
    units = {"control": 9000, "new": 1000}
    metric = MetricData("conversion", "proportion", True,
                        {"control": Summary.proportion(900, 9000), "new": Summary.proportion(100, 1000)}, "feedback")
    report = analyse(exp, [metric], units, days_running=2.0)
    n_c, n_t = power.sample_size_proportions(0.1, 0.11, ratio=0.1 / 0.9)
    assert n_t < n_c  # the 10% arm needs fewer units, but it grows 9x slower
    days = max((n_c - 9000) / 4500, (n_t - 1000) / 500)
    [line] = [d for d in report["decision"] if d.startswith("No significant difference")]
    assert f"{n_c:,} control and {n_t:,} new units" in line and f"~{math.ceil(days)} day(s)" in line
    assert not report["srm"]["mismatch"]
