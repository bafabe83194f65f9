"""Faithfulness over circuit size: the curve, its area (CPR) and its distance from 1 (CMD).

A ranking of components (heads by patching or attribution, or any order) defines a family
of circuits: C_k is the top k. At each size the circuit's normalised faithfulness
``f(k) = (F(C_k) − F(∅)) / (F(M) − F(∅))`` says how much of what the ablation removes the
top k give back. One size can flatter or damn a ranking; the whole curve cannot. The
Mechanistic Interpretability Benchmark (MIB, Mueller et al. 2025, circuit track) scores it
by two areas over the x axis of the *fraction of components* in the circuit:

* **CPR**, the area under f: higher is better (a ranking whose top few already act like
  the model);
* **CMD**, the area under |1 − f|: lower is better, 0 when every C_k acts like the model.

As in MIB's ``evaluate_area_under_curve`` (MIB-circuit-track, ``MIB_circuit_track/evaluation.py``,
its default ``log_scale=False``), both are trapezoids over the evaluated fractions on a
linear axis, from the smallest evaluated fraction to 1 (the full model, always evaluated),
with no point added at 0; its grid is 0.1%, 0.2%, 0.5%, 1%, 2%, 5%, 10%, 20%, 50%, 100%.
Two differences, both because a model has a few hundred heads, not tens of thousands of
edges: MIB takes ``int(fraction × total)`` items (0 items at 0.1% of 270 heads) and plots at
the nominal fraction; here a fraction takes max(1, round(fraction × total)) components,
equal sizes collapse into one point, and each point sits at its realised fraction k/total.

Every size, the empty circuit and the same sizes over a seeded random order of all
components are evaluated together in the batched circuit passes (`engine.evaluate`).
"""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..results import Result
from ..sites import head_label, mlp_label, parse_mlp, parse_site
from .faithful import check_enough_random
from .spec import Circuit

MIB_FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def area(x, y) -> float:
    """The trapezoid area under ``y`` over ``x`` (sorted): MIB's sum, (x₂ − x₁)(y₁ + y₂)/2."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return float(((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2).sum())


@dataclass(frozen=True, eq=False, repr=False)
class FaithfulnessCurve(Result):
    """Normalised faithfulness of the top-k circuits of a ranking, k over ``sizes``.

    ``fractions`` = sizes / all components; ``faithfulness`` f(k) per size and
    ``random_faithfulness`` the same sizes over random orders of all components (the mean of
    ``random_runs``, one row per order); ``f_model`` F(M), ``f_empty`` F(∅) (mean metric).
    ``cpr`` = area under f, ``cmd`` = area under |1 − f| over ``fractions`` (MIB's circuit
    track; ``random_cpr``, ``random_cmd`` for the random-order curve): a ranking that finds
    the mechanism has CMD near 0 and well below the random order's.
    """

    ranking: tuple[str, ...]  # every component, ranked first, then any the ranking left out
    n_ranked: int
    ablation: str
    reference: str
    metric: str
    sizes: np.ndarray
    fractions: np.ndarray
    circuit_metric: np.ndarray  # mean F(C_k) per size
    faithfulness: np.ndarray
    random_faithfulness: np.ndarray
    random_runs: np.ndarray  # random order × size
    f_model: float
    f_empty: float
    seed: int
    undefined: str = ""  # why f is undefined (F(M) − F(∅) within rounding of the metric), "" when defined

    kind = "faithfulness_curve"
    usual = "cmd"
    extremes_column = "faithfulness"

    @property
    def title(self) -> str:
        return f"Faithfulness over circuit size ({self.ablation} ablation, {self.metric})"

    @property
    def cpr(self) -> float:
        """Area under f over the fraction of components (MIB's CPR; higher is better)."""
        return area(self.fractions, self.faithfulness)

    @property
    def cmd(self) -> float:
        """Area under |1 − f| over the fraction of components (MIB's CMD; 0 is perfect)."""
        return area(self.fractions, np.abs(1 - self.faithfulness))

    @property
    def random_cprs(self) -> np.ndarray:
        """CPR of each random order (``random_runs``' rows)."""
        return np.array([area(self.fractions, run) for run in self.random_runs])

    @property
    def random_cmds(self) -> np.ndarray:
        """CMD of each random order."""
        return np.array([area(self.fractions, np.abs(1 - run)) for run in self.random_runs])

    @property
    def random_cpr(self) -> float:
        """The mean CPR of the random orders (``random_cprs`` has each, for their spread)."""
        return float(self.random_cprs.mean())

    @property
    def random_cmd(self) -> float:
        """The mean CMD of the random orders (``random_cmds`` has each)."""
        return float(self.random_cmds.mean())

    @property
    def p_value(self) -> float:
        """The share of random orders whose CMD is as low as the ranking's, counting the ranking
        itself: (1 + #{random CMD ≤ CMD}) / (1 + n); NaN when f is undefined."""
        if not np.isfinite(self.cmd):
            return float("nan")
        return float((1 + (self.random_cmds <= self.cmd).sum()) / (1 + len(self.random_runs)))

    def beats_random(self, fraction: float = 0.95) -> bool:
        """True when the ranking's CMD is lower than ``fraction`` of the random orders'. A
        ValueError when there are too few orders for that to mean anything: the smallest
        p-value, 1/(1 + n), must be below 1 − ``fraction`` (for 0.95: n_random ≥ 20)."""
        check_enough_random(fraction, len(self.random_runs), "n_random", "random orders", "faithfulness_curve")
        if not np.isfinite(self.cmd):
            raise ValueError(f"beats_random: f is undefined on this curve ({self.undefined}); there is nothing "
                             "to compare")
        return float((self.random_cmds > self.cmd).mean()) >= fraction

    def p_values(self) -> dict[str, float]:
        return {} if math.isnan(self.p_value) else {"p_value (CMD vs random orders)": self.p_value}

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame({"size": self.sizes, "fraction": self.fractions,
                             "last added": [self.ranking[k - 1] for k in self.sizes],
                             "F(C)": self.circuit_metric, "faithfulness": self.faithfulness,
                             "random order": self.random_faithfulness})

    def summary(self) -> dict:
        return {"CPR": self.cpr, "CMD": self.cmd, "random CPR": self.random_cpr, "random CMD": self.random_cmd,
                "random CMD min": float(self.random_cmds.min()), "random CMD max": float(self.random_cmds.max()),
                "p_value": self.p_value, "n_random": len(self.random_runs),
                "F(M)": self.f_model, "F(empty)": self.f_empty, "points": len(self.sizes),
                "components": len(self.ranking)}

    def notes(self) -> list[str]:
        notes = [f"CPR = area under f, CMD = area under |1 − f|, trapezoids over the fraction of components "
                 f"from {self.fractions[0]:.3g} to 1 (linear axis, as MIB's circuit track); "
                 "f = (F(C) − F(empty)) / (F(M) − F(empty))",
                 f"outside each circuit: {self.ablation} ablation"
                 + ("" if self.ablation == "zero" else f" over {self.reference!r}")
                 + f"; random order: {len(self.random_runs)} seeded permutation(s) of all components, seed "
                 f"{self.seed}; random CPR and CMD are the means over them, p = share of orders with CMD as "
                 "low as the ranking's"]
        if self.n_ranked < len(self.ranking):
            notes.append(f"the ranking names {self.n_ranked} of {len(self.ranking)} components; the other "
                         f"{len(self.ranking) - self.n_ranked} follow it in the model's order "
                         "(heads by layer, then MLPs)")
        if self.undefined:
            notes.append(f"f is undefined: {self.undefined}")
        return notes + list(self.notes_text)

    def figure(self) -> dict:
        clean = lambda v: np.where(np.isfinite(v), v, None).tolist()  # noqa: E731
        return {"type": "line", "x": self.fractions.tolist(),
                "series": {"ranking": clean(self.faithfulness), "random order": clean(self.random_faithfulness),
                           "f = 1 (the model)": [1.0] * len(self.sizes)},
                "xlabel": "fraction of components in the circuit", "ylabel": "normalised faithfulness f",
                "title": f"CPR {self.cpr:.3g}, CMD {self.cmd:.3g} (random order: {self.random_cpr:.3g}, "
                         f"{self.random_cmd:.3g})"}


def _ranked_labels(ranking) -> list[str]:
    """The ranking as component labels, best first: a ranking Result's own ``ranking()`` (its
    order rule is its ``ranked_by``: `probes.results`), or the order given."""
    if isinstance(ranking, Result):
        if not callable(getattr(ranking, "ranking", None)):
            raise ValueError(f"ranking: a {type(ranking).__name__} holds no ranking of components; give a list "
                             "of components best first, a Patching from patch(model, prompts, 'head_out') or a "
                             "HeadAttribution")
        try:
            return list(ranking.ranking())
        except ValueError as error:  # it ranks no whole components (a patching sweep of positions)
            raise ValueError(f"ranking: {error}") from None
    if isinstance(ranking, str):
        raise ValueError(f"ranking={ranking!r} is one label; give a list of components best first, e.g. "
                         f"[{ranking!r}, ...]")
    check_ordered(ranking)
    return list(ranking)


def check_ordered(ranking) -> None:
    """A ranking is an order: a set has none, and a mapping's scores would be ignored."""
    if isinstance(ranking, Mapping):
        raise ValueError(f"ranking: a {type(ranking).__name__} of scores is not an order; rank it yourself, best "
                         "first: sorted(scores, key=scores.get, reverse=True) (or key=lambda c: abs(scores[c]))")
    if isinstance(ranking, Circuit):
        raise ValueError("ranking: a Circuit is a set of components, not an order; give its components best "
                         "first as a list, or a Patching, HeadAttribution or EdgeScores that ranks them")
    if isinstance(ranking, (set, frozenset)):
        raise ValueError(f"ranking: a {type(ranking).__name__} has no order; give a list of components best first")
    if ranking is None or not isinstance(ranking, Iterable):
        raise ValueError(f"ranking={ranking!r}: give components best first (a list), a Patching from "
                         "patch(model, prompts, 'head_out'), a HeadAttribution or an EdgeScores")


def _component(item) -> str:
    """A head (``"L9H6"``, ``(9, 6)``) or an MLP (``"MLP5"``) as its label."""
    if isinstance(item, tuple) and len(item) == 2:
        return head_label(*(int(x) for x in item))
    text = str(item).strip()
    try:
        site = parse_site(text)
    except ValueError:
        site = None
    if site is not None and site.unit == "head" and site.pos is None and not site.activation:
        return site.label
    try:
        return mlp_label(parse_mlp(text))
    except ValueError:
        raise ValueError(f"ranking: {item!r} is not a component; write heads as 'L9H6' and MLPs as 'MLP5'") from None


def full_order(model, ranking) -> tuple[tuple[str, ...], np.ndarray, int]:
    """Every component in the model's order (heads by layer, then MLPs, when the ranking names
    one: only then are MLPs judged), the ranking over them as indices (the ranked ones first,
    then the rest in the model's order), and how many were ranked (`CircuitRun.order`)."""
    ranked = [_component(c) for c in _ranked_labels(ranking)]
    if not ranked:
        raise ValueError("ranking is empty: give components best first, e.g. ['L9H6', 'L10H0', ...], or a "
                         "Patching from patch(model, prompts, 'head_out')")
    if len(set(ranked)) < len(ranked):
        twice = sorted({c for c in ranked if ranked.count(c) > 1})
        raise ValueError(f"ranking names {', '.join(twice)} more than once; list each component once")
    mlps = any(c.startswith("MLP") for c in ranked)
    circuit_of(ranked).check(model, 1)  # a clear error for a head or MLP the model does not have
    universe = Circuit.full(model, with_mlps=mlps).components
    index = {c: i for i, c in enumerate(universe)}
    first = [index[c] for c in ranked]
    return universe, np.array(first + sorted(set(range(len(universe))) - set(first))), len(ranked)


def circuit_of(components, mlps: bool = True) -> Circuit:
    """The circuit of these head and MLP labels (MLPs judged when ``mlps``)."""
    heads = [c for c in components if not c.startswith("MLP")]
    layers = [parse_mlp(c) for c in components if c.startswith("MLP")]
    return Circuit(heads, layers if mlps else None)


def curve_sizes(sizes, total: int) -> list[int]:
    """The sizes as sorted, distinct counts of components, the full model included. Sizes that
    are all in (0, 1] are fractions of ``total`` (max(1, round half up); 1 is the full model),
    sizes that are all whole numbers with one above 1 are counts; a mix of the two is refused."""
    fix = f"give fractions of all {total} components in (0, 1] (e.g. [0.1, 0.5, 1]) or counts from 1 to {total} " \
          "(e.g. [5, 20])"
    values = MIB_FRACTIONS if sizes is None else [sizes] if np.isscalar(sizes) else list(sizes)
    if not values:
        raise ValueError(f"sizes=[] lists no size; {fix}, or leave sizes out for MIB's grid")
    for value in values:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not math.isfinite(value) or value <= 0:
            raise ValueError(f"sizes: {value!r} is not a size; {fix}")
    fractions = all(value <= 1 for value in values)
    if not fractions and not all(float(value).is_integer() for value in values):
        raise ValueError(f"sizes={list(values)!r} mixes fractions and counts; {fix}")
    counts = {total}
    for value in values:
        count = max(1, math.floor(value * total + 0.5)) if fractions else int(value)
        if count > total:
            raise ValueError(f"sizes: {count} components, but the model has {total}; {fix}")
        counts.add(count)
    if len(counts) < 2:
        raise ValueError(f"sizes {list(values)} give only the full model ({total} components): a curve needs "
                         f"a smaller circuit too; {fix}")
    return sorted(counts)


def _normalised(metric: np.ndarray, f_model: float, f_empty: float, undefined: str) -> np.ndarray:
    return np.full(metric.shape, np.nan) if undefined else (metric - f_empty) / (f_model - f_empty)
