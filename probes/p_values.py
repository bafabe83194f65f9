"""A claim's own family of tests, corrected together: Holm–Bonferroni over its p-values.

A claim that rests on several tests (five heads each beating random circuits, a neuron's
correlation on three prompt sets) must survive all of them at once: testing ten things at
α = 0.05 finds one by chance half the time. `holm_family` collects the p-values of the
Results given (each Result's own tests and its parts', `Result.p_values`) and corrects them
together (`statistics.holm`); assert on the corrected values::

    family = holm_family(random_circuit_test(model, ioi, a), random_circuit_test(model, ioi, b))
    assert family.all_significant, family

The report corrects every p-value of the whole run as well, and marks the claims that pass
on a raw p-value but not on the corrected one: a Result's p-values reach it with that Result's
evidence, and the ``(label, p)`` pairs given here with the family's (`PValueFamily.p_values`).
A p-value is a number in [0, 1] (NaN: a test that did not run); a verdict (a bool, such as
``beats_random()``) is refused.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .evidence import probe
from .results import Result
from .statistics import holm, p_value_array


def p_values_of(result: Result, where: str = "") -> list[tuple[str, float]]:
    """Every p-value ``result`` and its parts report, labelled by the Result's title."""
    label = f"{where} / {result.title}" if where else result.title
    found = [(f"{label}: {name}", float(p)) for name, p in result.p_values().items()]
    for part in result.parts:
        found += p_values_of(part, label)
    return found


def _pair(item) -> tuple[str, float]:
    """A ``(label, p_value)`` pair given by hand, its p-value checked as `holm` checks them."""
    label, p = item
    where = f"holm_family(({label!r:.40}, {p!r:.40}))"
    if isinstance(p, Result):
        raise ValueError(f"{where}: give Results as they are, holm_family(first, second), not in a tuple "
                         "(their p-values are collected with their labels)")
    value = p_value_array(p, where)
    if value.ndim:
        raise ValueError(f"{where}: give one p-value per pair, e.g. ({label!r}, result.p_value)")
    return str(label), float(value)


def _tests(items) -> list[tuple[str, float, bool]]:
    """``(label, p, given)`` per test, in the order given: a Result's p-values, or a pair given by hand."""
    tests = []
    for item in items:
        if isinstance(item, Result):
            tests += [(label, p, False) for label, p in p_values_of(item)]
        elif isinstance(item, tuple) and len(item) == 2:
            tests.append((*_pair(item), True))
        else:
            raise TypeError(f"holm_family({item!r:.60}): give Results (their p-values are collected) or "
                            "(label, p_value) pairs")
    if not tests:
        raise ValueError("holm_family: the Results given report no p-value; give a random_circuit_test, a "
                         "neuron_prediction_correlation, a feasibility step, or (label, p_value) pairs")
    return tests


@dataclass(frozen=True, eq=False, repr=False)
class PValueFamily(Result):
    """The p-values of one claim's tests, raw and Holm-corrected, at level ``alpha``."""

    labels: tuple[str, ...]
    raw: np.ndarray
    corrected: np.ndarray
    alpha: float
    given: np.ndarray  # True where the p-value was given as a (label, p) pair, not by a Result

    kind = "p_value_family"

    @property
    def title(self) -> str:
        return f"{len(self.labels)} p-values corrected together (Holm), α = {self.alpha:g}"

    @property
    def all_significant(self) -> bool:
        return bool((self.corrected < self.alpha).all())

    @property
    def lost(self) -> tuple[str, ...]:
        """Tests significant on their raw p-value but not once corrected."""
        return tuple(l for l, r, c in zip(self.labels, self.raw, self.corrected) if r < self.alpha <= c)

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame({"test": self.labels, "p_value": self.raw, "holm": self.corrected,
                             "significant (raw)": self.raw < self.alpha,
                             "significant (Holm)": self.corrected < self.alpha})

    def summary(self) -> dict:
        return {"tests": len(self.labels), "significant (raw)": int((self.raw < self.alpha).sum()),
                "significant (Holm)": int((self.corrected < self.alpha).sum()),
                "largest corrected p": float(self.corrected.max())}

    def p_values(self) -> dict[str, float]:
        """The p-values given as ``(label, p)`` pairs, for the report's run-level correction (a
        Result's own p-values reach it with that Result's evidence)."""
        found = {}
        for label, p, own in zip(self.labels, self.raw, self.given):
            if own:
                name, n = label, 1
                while name in found:  # two pairs with one label: both kept
                    n += 1
                    name = f"{label} #{n}"
                found[name] = float(p)
        return found

    def notes(self) -> list[str]:
        return [f"significant on the raw p-value only: {', '.join(self.lost)}"] if self.lost else []


@probe
def holm_family(*tests, alpha: float = 0.05) -> PValueFamily:
    """Correct the p-values of ``tests`` (Results, or ``(label, p)`` pairs) together by Holm's
    step-down method; ``.corrected``, ``.all_significant``, ``.lost``."""
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, (int, float, np.floating)) or not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r}: give a significance level between 0 and 1, e.g. 0.05")
    found = _tests(tests)
    raw = np.array([p for _, p, _ in found])
    models = sorted({t.model for t in tests if isinstance(t, Result)})
    sets = sorted({t.prompt_set for t in tests if isinstance(t, Result)})
    return PValueFamily(model=", ".join(models) or "-", prompt_set=", ".join(sets) or "-",
                        labels=tuple(label for label, _, _ in found), raw=raw, corrected=holm(raw), alpha=float(alpha),
                        given=np.array([given for _, _, given in found], dtype=bool))
