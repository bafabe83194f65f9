"""Scrutiny's numbers and what reaches the report (issue 29): a published value's verdict
and slack, the spread of a robustness claim with infinite values, p-values given by hand to
a family, a `published` call at a module's import, and Clopper–Pearson at any n."""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from circuitcheck.probes import evidence
from circuitcheck.probes.results import Result
from circuitcheck.reports.render import render_html
from circuitcheck.reports.scrutiny import p_value_rows, published_rows
from circuitcheck.scrutiny import clopper_pearson, holm, holm_family, published, robustness

from .test_patching import PROMPTS
from .test_plugin import load_report, run

WANG = "Wang et al. 2022, §3"


def test_reported_on_none_is_the_same_model_not_a_comparison():
    same = published(3.41, reported=3.56, band=0.3, source=WANG, reported_on=None)
    assert same.verdict == "replicates" and same.reported_on == ""
    assert "reported on" not in same.title and same.title.startswith("Measured value replicates")
    assert published(3.41, reported=3.56, band=0.3, source=WANG, reported_on="").verdict == "replicates"
    assert published(3.41, reported=3.56, band=0.3, source=WANG, reported_on=" GPT-2 small ").title.endswith(
        "(reported on GPT-2 small): 3.41 vs 3.56 ± 0.3")


@pytest.mark.parametrize("measured, reported, band, replicates", [
    (1e-12, 0.0, 1e-15, False),  # a fixed 1e-9 slack let this "replicate": 1000 bands away
    (1e8 + 0.75, 1e8, 0.7, False),  # and this: the slack grew with the reported value to 0.1
    (1e-12, 0.0, 1e-12, True),  # exactly on the band's edge
    (3.86, 3.56, 0.3, True),  # 3.86 − 3.56 is 0.30000000000000027 in float64: on the edge all the same
    (-3.86, -3.56, 0.3, True),
    (1e8 + 0.7, 1e8, 0.7, True),  # 1e8 + 0.7 − 1e8 is 0.70000000298 in float64
    (0.957, 0.87, "10%", True),
])
def test_the_band_edge_slack_is_a_few_roundings_of_the_numbers_own_size(measured, reported, band, replicates):
    assert published(measured, reported=reported, band=band, source=WANG).replicates is replicates


def number_of(model, prompts, x):
    return x


def spread_of(*values):
    """A claim on numbers alone (the model and prompts are placeholders it ignores)."""
    return robustness(object(), PROMPTS, number_of, over={"x": list(values)}, holds=lambda x: x > 0)


def test_an_infinite_value_is_kept_in_the_spread_min_and_max():
    """Only NaN (no number) is left out: a variant whose value is infinite makes the spread infinite."""
    result = spread_of(1.0, math.inf)
    assert result.spread == math.inf and (result.summary()["min"], result.summary()["max"]) == (1.0, math.inf)
    result = spread_of(1.0, math.nan, 3.0, -math.inf)
    assert result.spread == math.inf and (result.summary()["min"], result.summary()["max"]) == (-math.inf, 3.0)
    assert spread_of(1.0, math.nan, 3.0).spread == 2.0 and math.isnan(spread_of(math.nan).spread)


@dataclass(frozen=True, eq=False, repr=False)
class OneTest(Result):
    """A Result with one test of its own, as a random_circuit_test is."""

    p: float
    title = "a test"

    @property
    def df(self):
        return pd.DataFrame({"p_value": [self.p]})

    def p_values(self) -> dict[str, float]:
        return {"p_value": self.p}


def test_p_values_given_by_hand_to_a_family_reach_the_run_level_table():
    evidence.start()
    tested = OneTest(model="m", prompt_set="s", p=0.01)  # made by hand: recorded as a probe would record it
    evidence.record(tested)
    family = holm_family(tested, ("by hand", 0.001), ("by hand", 0.2), ("other", np.float64(0.03)))
    items = [evidence.to_evidence(item) for item in evidence.stop()]
    assert family.p_values() == {"by hand": 0.001, "by hand #2": 0.2, "other": 0.03}  # the Result's own: once
    run_record = {"tests": [{"nodeid": "t.py::a", "outcome": "passed", "evidence": items}]}
    rows = p_value_rows(run_record)
    assert sorted((r["name"], r["p"]) for r in rows) == [("by hand", 0.001), ("by hand #2", 0.2), ("other", 0.03),
                                                         ("p_value", 0.01)]
    assert all(r["family_size"] == 4 for r in rows)


PUBLISHED_AT_IMPORT = '''
from circuitcheck.scrutiny import published

published(3.41, reported=3.56, band=0.3, source="Wang et al. 2022, §3", what="at import", model="gpt2")


def test_something():
    published(1.0, reported=2.0, band=0.1, source="Somebody 2023", what="in the test")
'''


def test_a_published_call_at_module_import_has_its_row_in_the_report(pytester):
    pytester.makepyfile(test_imported=PUBLISHED_AT_IMPORT)
    run(pytester, "--report-dir", "out").assert_outcomes(passed=1)
    report = load_report(pytester)
    [module] = report["fixtures"]
    assert (module["node"], module["file"], module["scope"]) == ("test_imported.py",) * 2 + ("module",)
    rows = published_rows(report)
    assert [(r["nodeid"], r["what"], r["verdict"], r["model"]) for r in rows] == [
        ("test_imported.py::test_something", "in the test", "does not replicate", "—"),
        ("test_imported.py (at import)", "at import", "replicates", "gpt2")]
    assert "at import" in render_html(report)


def test_holm_takes_numbers_in_any_container_with_an_order():
    expected = [0.04, 0.04]
    for given in ([0.02, 0.03], (0.02, 0.03), np.array([0.02, 0.03]), pd.Series([0.02, 0.03])):
        np.testing.assert_allclose(holm(given), expected, rtol=0, atol=1e-15)
    assert holm(np.float64(0.5)) == 0.5 and holm([[0.01], [0.02]]).shape == (2, 1)


def exact_tail(k: int, n: int, p: float, upper: bool) -> float:
    """P(X ≥ k) or P(X ≤ k), X ~ Binomial(n, p), summed term by term (no SciPy: the reference)."""
    indices = range(k, n + 1) if upper else range(0, k + 1)
    return math.fsum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in indices)


def test_clopper_pearson_against_values_known_by_hand_and_exact_tails():
    # k = 0 and k = n have closed forms: high = 1 − (α/2)^(1/n), low = (α/2)^(1/n)
    for n in (1, 10, 10**6):
        assert clopper_pearson(0, n) == (0.0, pytest.approx(1 - 0.025 ** (1 / n), rel=1e-12))
        assert clopper_pearson(n, n) == (pytest.approx(0.025 ** (1 / n), rel=1e-12), 1.0)
    # textbook: 11 of 12 flips (R's binom.test(11, 12): 0.6152 to 0.9979)
    assert clopper_pearson(11, 12) == (pytest.approx(0.61520, abs=1e-5), pytest.approx(0.99789, abs=1e-5))
    for k in range(1, 30):  # each bound is where its binomial tail, summed exactly, is α/2
        low, high = clopper_pearson(k, 30, confidence=0.9)
        assert exact_tail(k, 30, low, upper=True) == pytest.approx(0.05, rel=1e-9)
        assert exact_tail(k, 30, high, upper=False) == pytest.approx(0.05, rel=1e-9)


def test_clopper_pearson_at_a_million_trials():
    """It took 203 s by bisection over tail sums; the normal approximation is close at this n."""
    low, high = clopper_pearson(500_000, 10**6)
    half = 1.959964 * math.sqrt(0.25 / 10**6)
    assert low == pytest.approx(0.5 - half, abs=2e-6) and high == pytest.approx(0.5 + half, abs=2e-6)
