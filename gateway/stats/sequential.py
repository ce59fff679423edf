"""Always-valid inference: the mixture sequential probability ratio test (mSPRT).

Johari, Koomen, Pekelis & Walsh, "Always valid inference: continuous monitoring of A/B tests"
(Operations Research 2022). With the difference estimate theta_hat, its variance v (sigma_c^2/n_c +
sigma_t^2/n_t) and a N(0, tau^2) mixture over the true difference, the likelihood ratio against
"no difference" is

    Lambda = sqrt(v / (v + tau^2)) * exp(theta_hat^2 tau^2 / (2 v (v + tau^2)))

and by Ville's inequality P(Lambda ever exceeds 1/alpha | no difference) <= alpha. So p = min(1, 1/Lambda)
may be looked at after every observation and stays valid, and inverting the test gives a confidence
sequence: theta_hat +- sqrt(2 v (v + tau^2) / tau^2 * (ln(1/alpha) + 0.5 ln((v + tau^2) / v))).
The normal approximation with estimated variances is asymptotic; simulated A/A tests with continuous
peeking (tests/stats/test_sequential.py) check the false-positive rate.

tau is the scale of differences the test is tuned for: the default, 0.1 pooled standard deviations of
the per-unit metric, suits the small effects typical of product experiments. Any tau keeps the
guarantee; a tau far from the real effect only makes detection slower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.stats.ab import Summary

DEFAULT_TAU_SD = 0.1


@dataclass(frozen=True, slots=True)
class SequentialResult:
    p_value: float  # always valid: may be read at any time, any number of times
    ci: tuple[float, float]  # confidence sequence for treatment - control at this moment
    tau: float


def msprt(c: Summary, t: Summary, *, alpha: float = 0.05, tau: float | None = None) -> SequentialResult:
    v = c.se2 + t.se2
    diff = t.mean - c.mean
    if tau is None:
        pooled_sd = math.sqrt(((c.n - 1) * c.var + (t.n - 1) * t.var) / max(c.n + t.n - 2, 1))
        tau = DEFAULT_TAU_SD * pooled_sd
    if v == 0 and c.n > 1 and t.n > 1:  # both arms constant (and measured): the difference is known exactly
        return SequentialResult(0.0 if diff else 1.0, (diff, diff), tau or 0.0)
    if not (v > 0 and tau > 0):
        return SequentialResult(1.0, (-math.inf, math.inf), tau or 0.0)
    tau2 = tau * tau
    log_lambda = 0.5 * math.log(v / (v + tau2)) + diff * diff * tau2 / (2 * v * (v + tau2))
    p = 1.0 if log_lambda <= 0 else min(1.0, math.exp(-log_lambda))
    half = math.sqrt(2 * v * (v + tau2) / tau2 * (math.log(1 / alpha) + 0.5 * math.log((v + tau2) / v)))
    return SequentialResult(p, (diff - half, diff + half), tau)
