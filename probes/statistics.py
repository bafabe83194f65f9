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

`holm` is a plain function of numbers. The interval's bounds are quantiles of Beta
distributions (``Beta(k, n − k + 1)`` at α/2 and ``Beta(k + 1, n − k)`` at 1 − α/2, the same
equations as the binomial tails' above), computed by SciPy: exact, and fast at any n.
"""

import math
from numbers import Real

import numpy as np

from .input_errors import check_count

P_VALUES = "give p-values as numbers between 0 and 1 (NaN for a test that did not run), e.g. result.p_value"


def _p_value_leaves(values, where: str):
    """The numbers in ``values`` (a number, list, tuple or array, nested), each checked to be a
    real number and not a verdict (a bool)."""
    if isinstance(values, (bool, np.bool_)):
        raise ValueError(f"{where}: {bool(values)} is a verdict, not a p-value; give the test's p-value "
                         "(result.p_value), or the Result itself to holm_family")
    if isinstance(values, Real):
        return [float(values)]
    if hasattr(values, "tolist") and not isinstance(values, (list, tuple)):  # an array, a tensor, a Series
        return _p_value_leaves(values.tolist(), where)
    if isinstance(values, (list, tuple)):
        return [leaf for value in values for leaf in _p_value_leaves(value, where)]
    if isinstance(values, dict):
        raise ValueError(f"{where}: a dict of p-values; give a list (list(d.values())), or holm_family(*d.items()) "
                         "to keep the labels")
    if isinstance(values, (set, frozenset)):
        raise ValueError(f"{where}: a set has no order to give the corrected values back in; give the "
                         "p-values in a list or array")
    if hasattr(values, "__next__"):
        raise ValueError(f"{where}: a generator or iterator is read once; give the p-values in a list "
                         "(list(...)) or array")
    raise ValueError(f"{where}: {values!r:.60} ({type(values).__name__}) is not a p-value; {P_VALUES}")


def p_value_array(p_values, where: str = "holm()") -> np.ndarray:
    """``p_values`` as a float array of their shape, each a real number in [0, 1] or NaN;
    otherwise a ValueError naming what was given and what to give."""
    leaves = _p_value_leaves(p_values, where)
    bad = [v for v in leaves if not (math.isnan(v) or 0 <= v <= 1)]
    if bad:
        raise ValueError(f"{where}: p-value {bad[0]!r} is not between 0 and 1; give p-values (NaN for a "
                         "test that did not run)")
    try:
        return np.array(p_values.tolist() if hasattr(p_values, "tolist") else p_values, dtype=float)
    except ValueError:  # the numbers are checked: only the shape is left to be wrong
        raise ValueError(f"{where}: the p-values are ragged (rows of different lengths); give a flat list "
                         "or a rectangular array") from None


def holm(p_values) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in the order given (any shape). Each is at least its
    raw value, at most 1, and they rise with the raw values (monotone). NaN (a test that did
    not run) stays NaN and does not count among the m tests. A bool (a verdict such as
    ``beats_random()``), a string, a set, a dict or a generator is refused: give the numbers."""
    p = p_value_array(p_values)
    flat = p.reshape(-1)
    finite = np.flatnonzero(~np.isnan(flat))
    order = finite[np.argsort(flat[finite], kind="stable")]
    m = len(order)
    scaled = np.minimum(1.0, (m - np.arange(m)) * flat[order])  # (m − j + 1) · p(j), j from 1
    adjusted = flat.copy()
    adjusted[order] = np.maximum.accumulate(scaled) if m else scaled
    return adjusted.reshape(p.shape)


def binomial_tail(k: int, n: int, p: float, upper: bool) -> float:
    """P(X ≥ k) (``upper``) or P(X ≤ k) for X ~ Binomial(n, p) (SciPy's)."""
    from scipy.stats import binom

    return float(binom.sf(k - 1, n, p) if upper else binom.cdf(k, n, p))


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
    from scipy.stats import beta  # imported on first use: most runs never build an interval

    alpha = (1 - float(confidence)) / 2
    k, n = successes, trials
    # low: P(X ≥ k) = α/2 (rises with p); high: P(X ≤ k) = α/2 (falls with p)
    low = 0.0 if k == 0 else float(beta.ppf(alpha, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha, k + 1, n - k))
    return low, high
