"""Honest numbers for claims that test many things: Holm's correction and exact binomial intervals.

* **Holm–Bonferroni** (Holm 1979): testing m hypotheses at level α, a raw p < α passes far
  more often than α by chance. Sort the p-values p(1) ≤ … ≤ p(m); the adjusted value of
  p(i) is ``max over j ≤ i of min(1, (m − j + 1) · p(j))``. Rejecting where the adjusted
  value is below α keeps the chance of any false rejection at most α, for any dependence
  between the tests, and never rejects less than Bonferroni (``m · p``).
* **Clopper–Pearson** (1934): the exact confidence interval of a proportion, "flips on 11
  of 12 prompts". Its bounds are the success rates p at which seeing k or more (lower
  bound) or k or fewer (upper bound) successes of n has chance α/2. It never undercovers,
  unlike the normal approximation, which fails worst at k = 0 or k = n — where circuit
  claims live.

Both are plain functions of numbers (no scipy): the binomial tails are exact sums of
``C(n, i) pⁱ (1 − p)ⁿ⁻ⁱ`` (in logs, so any n works), solved for p by bisection.
"""

import math

import numpy as np

from .input_errors import check_count


def holm(p_values) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in the order given (any shape). Each is at least its
    raw value, at most 1, and they rise with the raw values (monotone). NaN (a test that did
    not run) stays NaN and does not count among the m tests."""
    p = np.array(p_values, dtype=float)
    flat = p.reshape(-1)
    bad = [v for v in flat if not (math.isnan(v) or 0 <= v <= 1)]
    if bad:
        raise ValueError(f"holm(): p-value {bad[0]!r} is not between 0 and 1; give p-values (NaN for a "
                         "test that did not run)")
    finite = np.flatnonzero(~np.isnan(flat))
    order = finite[np.argsort(flat[finite], kind="stable")]
    m = len(order)
    scaled = np.minimum(1.0, (m - np.arange(m)) * flat[order])  # (m − j + 1) · p(j), j from 1
    adjusted = flat.copy()
    adjusted[order] = np.maximum.accumulate(scaled) if m else scaled
    return adjusted.reshape(p.shape)


def log_binomial_coefficients(n: int) -> list[float]:
    """log C(n, i) for i = 0..n: the exact integers (math.comb's recurrence), then their logs."""
    row, c = [], 1
    for i in range(n + 1):
        row.append(math.log(c))
        c = c * (n - i) // (i + 1)
    return row


def binomial_tail(k: int, n: int, p: float, upper: bool, log_comb: list[float] | None = None) -> float:
    """P(X ≥ k) (``upper``) or P(X ≤ k) for X ~ Binomial(n, p), summed exactly term by term
    (each term ``C(n, i) pⁱ (1 − p)ⁿ⁻ⁱ`` in logs, so no power underflows)."""
    indices = range(max(k, 0), n + 1) if upper else range(0, min(k, n) + 1)
    if not indices:
        return 0.0
    if p <= 0 or p >= 1:  # all the mass on X = 0 or X = n
        return float((0 if p <= 0 else n) in indices)
    log_comb = log_comb or log_binomial_coefficients(n)
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [log_comb[i] + i * log_p + (n - i) * log_q for i in indices]
    top = max(terms)
    return min(1.0, math.exp(top) * math.fsum(math.exp(t - top) for t in terms))


def _solve(tail, target: float, rising: bool) -> float:
    """The p in [0, 1] where the monotone ``tail(p)`` (rising or falling) crosses ``target``,
    by bisection to the last bit of a float."""
    low, high = 0.0, 1.0
    while True:
        middle = (low + high) / 2
        if middle in (low, high):
            return middle
        if (tail(middle) < target) == rising:
            low = middle
        else:
            high = middle


def clopper_pearson(successes, trials, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper–Pearson) interval ``(low, high)`` of a proportion: ``successes`` of
    ``trials`` at ``confidence`` (two-sided, α/2 each side). 0 successes gives low 0, all of
    them high 1. ``clopper_pearson(11, 12)`` ≈ (0.615, 0.998)."""
    trials = check_count("trials", trials, 1, "give the number of prompts (or trials) counted")
    successes = check_count("successes", successes, 0, f"give how many of the {trials} trials succeeded")
    if successes > trials:
        raise ValueError(f"successes={successes} is more than trials={trials}; give how many of the "
                         f"{trials} succeeded")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float, np.floating)) \
            or not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r}: give a level between 0 and 1, e.g. 0.95")
    alpha = (1 - float(confidence)) / 2
    k, n = successes, trials
    log_comb = log_binomial_coefficients(n)
    # low: P(X ≥ k) = α/2 (rises with p); high: P(X ≤ k) = α/2 (falls with p)
    low = 0.0 if k == 0 else _solve(lambda p: binomial_tail(k, n, p, True, log_comb), alpha, rising=True)
    high = 1.0 if k == n else _solve(lambda p: binomial_tail(k, n, p, False, log_comb), alpha, rising=False)
    return low, high
