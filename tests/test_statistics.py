"""Holm's correction against a table computed by hand, Clopper–Pearson against published intervals."""

import math

import numpy as np
import pytest

from circuitcheck.probes.statistics import binomial_tail, clopper_pearson, holm

# Holm on m = 5 p-values, given in this order:      0.01   0.04   0.03   0.005  0.20
# sorted ascending, with their multipliers m − j + 1: 0.005×5  0.01×4  0.03×3  0.04×2  0.20×1
#                                                  = 0.025   0.04    0.09    0.08    0.20
# running maximum (monotone):                        0.025   0.04    0.09    0.09    0.20
# back in the order given:                           0.04    0.09    0.09    0.025   0.20
HOLM_TABLE = [([0.01, 0.04, 0.03, 0.005, 0.20], [0.04, 0.09, 0.09, 0.025, 0.20]),
              # capped at 1: 0.3×3 = 0.9, 0.4×2 = 0.8 → 0.9, 0.6×1 = 0.6 → 0.9
              ([0.6, 0.3, 0.4], [0.9, 0.9, 0.9]),
              # 0.5×3 = 1.5 → 1; then max(1, …) stays 1
              ([0.5, 0.7, 0.9], [1.0, 1.0, 1.0]),
              # ties: 0.01×2 = 0.02, 0.01×1 = 0.01 → 0.02 (monotone)
              ([0.01, 0.01], [0.02, 0.02]),
              # NaN is not a test: m = 2, 0.02×2 = 0.04, 0.03×1 = 0.03 → 0.04
              ([0.03, math.nan, 0.02], [0.04, math.nan, 0.04]),
              ([0.2], [0.2])]


@pytest.mark.parametrize("raw, expected", HOLM_TABLE)
def test_holm_equals_the_hand_computed_table(raw, expected):
    np.testing.assert_allclose(holm(raw), expected, rtol=0, atol=1e-12)


def test_holm_is_at_least_the_raw_value_monotone_capped_and_keeps_the_shape():
    raw = np.random.default_rng(0).uniform(0, 0.2, size=(4, 5))
    adjusted = holm(raw)
    assert adjusted.shape == raw.shape and (adjusted >= raw).all() and (adjusted <= 1).all()
    order = np.argsort(raw, axis=None)
    assert (np.diff(adjusted.reshape(-1)[order]) >= 0).all()
    assert holm([]).shape == (0,)
    assert np.isnan(holm([math.nan])).all()


@pytest.mark.parametrize("bad", [[0.2, 1.5], [-0.01], [math.inf]])
def test_holm_refuses_what_is_not_a_p_value(bad):
    with pytest.raises(ValueError, match="is not between 0 and 1"):
        holm(bad)


# Exact 95% intervals as published (e.g. Clopper & Pearson's tables; R's binom.test).
PUBLISHED = [(11, 12, (0.6152, 0.9979)), (0, 10, (0.0, 0.3085)), (5, 10, (0.1871, 0.8129)),
             (10, 10, (0.6915, 1.0)), (1, 1, (0.025, 1.0)), (0, 1, (0.0, 0.975))]


@pytest.mark.parametrize("k, n, interval", PUBLISHED)
def test_clopper_pearson_equals_the_published_intervals(k, n, interval):
    low, high = clopper_pearson(k, n)
    assert low == pytest.approx(interval[0], abs=1e-4) and high == pytest.approx(interval[1], abs=1e-4)


def test_the_bounds_are_where_the_binomial_tails_are_alpha_over_two():
    low, high = clopper_pearson(7, 20, confidence=0.9)
    assert binomial_tail(7, 20, low, upper=True) == pytest.approx(0.05, abs=1e-9)
    assert binomial_tail(7, 20, high, upper=False) == pytest.approx(0.05, abs=1e-9)
    narrower = clopper_pearson(7, 20, confidence=0.5)
    assert low < narrower[0] < 7 / 20 < narrower[1] < high
    assert clopper_pearson(0, 10)[0] == 0.0 and clopper_pearson(10, 10)[1] == 1.0
    big = clopper_pearson(5000, 10000)  # exact sums in logs: no overflow at large n
    assert big[0] == pytest.approx(0.4902, abs=1e-4) and big[1] == pytest.approx(0.5098, abs=1e-4)


@pytest.mark.parametrize("call, says", [
    (lambda: clopper_pearson(13, 12), "more than trials=12"),
    (lambda: clopper_pearson(-1, 12), "successes=-1"),
    (lambda: clopper_pearson(1, 0), "trials=0"),
    (lambda: clopper_pearson(1.5, 3), "successes=1.5"),
    (lambda: clopper_pearson(1, 3, confidence=95), "confidence=95"),
])
def test_clopper_pearson_refuses_bad_counts_with_the_fix(call, says):
    with pytest.raises(ValueError, match=says):
        call()
