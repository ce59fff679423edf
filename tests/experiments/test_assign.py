"""Assignment: split matches weights within sampling error, sticky, independent, minimal moves."""

import numpy as np
import pytest
from scipy import stats

from gateway.experiments.assign import Splitter
from gateway.experiments.config import Experiment
from gateway.stats.ab import sample_ratio_mismatch


def experiment(name="e", weights=(0.5, 0.3, 0.2), salt=None):
    return Experiment(name=name, models=["m"], salt=salt,
                      variants=[{"name": f"v{i}", "weight": w} for i, w in enumerate(weights)])


def test_one_million_units_split_as_configured_and_srm_stays_quiet():
    splitter = Splitter(experiment())
    counts = {"v0": 0, "v1": 0, "v2": 0}
    for i in range(1_000_000):
        counts[splitter.assign(f"user-{i}").variant.name] += 1
    n = 1_000_000
    for name, w in zip(counts, (0.5, 0.3, 0.2)):
        assert abs(counts[name] - n * w) < 4 * (n * w * (1 - w)) ** 0.5, counts
    assert not sample_ratio_mismatch(list(counts.values()), [0.5, 0.3, 0.2]).mismatch


def test_sticky_across_restarts_and_independent_across_experiments():
    a1, a2 = Splitter(experiment("a")), Splitter(experiment("a"))  # a restart builds a new Splitter
    b = Splitter(experiment("b", weights=(0.5, 0.5)))
    table = np.zeros((3, 2))
    for i in range(60_000):
        unit = f"u{i}"
        va = a1.assign(unit)
        assert va.variant.name == a2.assign(unit).variant.name and va.unit_hash == a2.assign(unit).unit_hash
        table[int(va.variant.name[1]), int(b.assign(unit).variant.name[1])] += 1
    assert stats.chi2_contingency(table).pvalue > 0.001  # being in a's treatment says nothing about b


def test_changing_weights_moves_only_the_units_between_boundaries():
    before = Splitter(experiment(weights=(0.5, 0.5)))
    after = Splitter(experiment(weights=(0.6, 0.4)))
    moved = [(before.assign(f"u{i}").variant.name, after.assign(f"u{i}").variant.name) for i in range(100_000)]
    changes = [(b, a) for b, a in moved if b != a]
    assert set(changes) == {("v1", "v0")}
    assert len(changes) / len(moved) == pytest.approx(0.1, abs=0.005)


def test_zero_weight_variant_gets_no_units():
    splitter = Splitter(experiment(weights=(0.5, 0.0, 0.5)))
    assert {splitter.assign(f"u{i}").variant.name for i in range(20_000)} == {"v0", "v2"}


@pytest.mark.parametrize(("weights", "message"), [((0.5, 0.4), "sum to 1"), ((1.2, -0.2), "greater than or equal")])
def test_bad_weights(weights, message):
    with pytest.raises(ValueError, match=message):
        experiment(weights=weights)
