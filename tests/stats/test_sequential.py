"""Always-valid inference by simulation: A/A tests peeked at continuously keep the false-positive rate."""

import numpy as np

from gateway.stats.ab import Summary, welch_test
from gateway.stats.sequential import msprt

LOOKS = range(50, 5001, 50)  # 100 looks per experiment


def _experiments(sims, effect, seed):
    rng = np.random.default_rng(seed)
    for _ in range(sims):
        c = rng.normal(0, 1, 5000)
        t = rng.normal(effect, 1, 5000)
        cs_c, cs_t = np.cumsum(c), np.cumsum(t)
        sq_c, sq_t = np.cumsum(c * c), np.cumsum(t * t)
        yield [(Summary.from_sums(n, cs_c[n - 1], sq_c[n - 1]), Summary.from_sums(n, cs_t[n - 1], sq_t[n - 1]))
               for n in LOOKS]


def test_aa_with_continuous_peeking_keeps_false_positives_at_alpha():
    sims = 400
    sequential_fp = naive_fp = 0
    for looks in _experiments(sims, 0.0, seed=1):
        sequential_fp += any(msprt(c, t, tau=0.1).p_value < 0.05 for c, t in looks)
        naive_fp += any(welch_test(c, t).p_value < 0.05 for c, t in looks)
    # alpha 0.05 plus two standard errors of the simulation (sqrt(.05*.95/400) = 0.011)
    assert sequential_fp / sims <= 0.072
    assert naive_fp / sims > 0.2  # why the fixed-horizon p-value must not be peeked at


def test_real_effect_is_detected_and_confidence_sequence_covers_it():
    sims, detected, covered = 150, 0, 0
    for looks in _experiments(sims, 0.1, seed=2):
        detected += any(msprt(c, t, tau=0.1).p_value < 0.05 for c, t in looks)
        covered += all(lo <= 0.1 <= hi for lo, hi in (msprt(c, t, tau=0.1).ci for c, t in looks))
    assert detected / sims >= 0.8
    assert covered / sims >= 0.93  # time-uniform: the true effect is inside at every look


def test_default_tau_and_degenerate_input():
    c, t = Summary(100, 1.0, 4.0), Summary(100, 1.0, 4.0)
    res = msprt(c, t)
    assert res.tau == 0.2 and res.p_value == 1.0
    assert msprt(Summary(1, 1.0, 0.0), Summary(1, 1.0, 0.0)).p_value == 1.0
