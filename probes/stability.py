"""Stability of a discovery: would the same components be selected on other prompts?

Anything that selects components (the top-k heads by patching or attribution, a circuit read
off a sweep) is a statistic of the prompts it ran on. Resampling the prompts with
replacement (the bootstrap: n draws of as many prompts as there are, seeded) and selecting
again shows how much of the selection is the mechanism and how much the sample: each
resample's selection S_b is compared with the reference selection S (on all the prompts)
by the Jaccard overlap |S ∩ S_b| / |S ∪ S_b|, and each component is counted by how often it
is selected. Méloux et al. (2025) find circuits for IOI on GPT-2 small overlap 0.67 across
resamples of the task: a selection that holds on every resample has Jaccard 1.

* `stability`: any selection, ``select(model, prompts) -> labels``, run again per resample;
* `selection_stability`: the top k of a Result with per-prompt values (`Patching`,
  `HeadAttribution`: any Result with ``scores_over``, `probes.results`), recomputed from its
  table per resample, with no forward pass.

Both draw the same resamples for the same seed and number of prompts (`resamples`), so the
two agree exactly when ``select`` makes the same selection.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .evidence import probe
from .input_errors import check_count
from .model_state import model_name
from .results import Result, best_first
from .sites import head_label


def resamples(n_prompts: int, n: int, seed: int) -> np.ndarray:
    """``n`` bootstrap resamples (rows) of ``n_prompts`` prompt indices, drawn with replacement
    from ``numpy.random.default_rng(seed)``: the draw both entry points share."""
    return np.random.default_rng(seed).integers(0, n_prompts, size=(n, n_prompts))


def jaccard(a, b) -> float:
    """|a ∩ b| / |a ∪ b|; 1 for two empty sets (they agree)."""
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else 1.0


@dataclass(frozen=True, eq=False, repr=False)
class Stability(Result):
    """A selection of components against its bootstrap resamples.

    ``selected``: the reference selection (on every prompt); ``selections``: each resample's;
    ``jaccards``: each resample's Jaccard overlap with the reference. ``jaccard`` is their
    mean and ``interval`` its 95% percentile interval; ``frequency``: how often each
    component is selected, as a share of resamples (``df``, most often first).
    """

    subject: str
    method: str  # "re-selected per resample" or "recomputed from the per-prompt table"
    selected: tuple[str, ...]
    selections: tuple[tuple[str, ...], ...]
    jaccards: np.ndarray
    indices: np.ndarray  # resample × prompt
    seed: int

    kind = "stability"
    usual = "jaccard"
    extremes_column = "frequency"

    @property
    def title(self) -> str:
        return f"Stability of {self.subject} over {len(self.jaccards)} bootstrap resamples"

    @property
    def jaccard(self) -> float:
        """The mean Jaccard overlap of a resample's selection with the reference selection."""
        return float(self.jaccards.mean())

    @property
    def interval(self) -> tuple[float, float]:
        """The 95% percentile interval of the resamples' Jaccard overlaps."""
        low, high = np.percentile(self.jaccards, [2.5, 97.5])
        return float(low), float(high)

    @property
    def counts(self) -> dict[str, int]:
        """Component → how many resamples select it, most often first (ties: reference order)."""
        counts = dict.fromkeys([*self.selected, *(c for chosen in self.selections for c in chosen)], 0)
        for chosen in self.selections:
            for label in set(chosen):
                counts[label] += 1
        return dict(sorted(counts.items(), key=lambda item: -item[1]))

    @property
    def frequency(self) -> dict[str, float]:
        """Component → the share of resamples that select it, most often first."""
        return {label: count / len(self.selections) for label, count in self.counts.items()}

    @property
    def df(self) -> pd.DataFrame:
        counts = self.counts
        return pd.DataFrame({"component": list(counts),
                             "frequency": [c / len(self.selections) for c in counts.values()],
                             "selected": list(counts.values()), "in reference": [c in self.selected for c in counts]})

    @property
    def resamples_df(self) -> pd.DataFrame:
        """One row per resample: its prompt indices, its selection and its Jaccard overlap."""
        return pd.DataFrame({"resample": range(len(self.jaccards)),
                             "prompts": [list(map(int, r)) for r in self.indices],
                             "selected": [", ".join(s) for s in self.selections], "jaccard": self.jaccards})

    def summary(self) -> dict:
        low, high = self.interval
        return {"jaccard": self.jaccard, "jaccard 2.5%": low, "jaccard 97.5%": high,
                "selected": len(self.selected), "always selected": sum(f == 1 for f in self.frequency.values()),
                "resamples": len(self.jaccards), "prompts": self.indices.shape[1]}

    def notes(self) -> list[str]:
        return [f"reference selection (all prompts): {', '.join(self.selected) or 'none'}; {self.method}",
                f"{len(self.jaccards)} bootstrap resamples of {self.indices.shape[1]} prompts (with replacement), "
                f"seed {self.seed}; Jaccard |S ∩ S_b| / |S ∪ S_b|, interval: 2.5th–97.5th percentile"] \
            + list(self.notes_text)

    def figure(self) -> dict:
        frequency = self.frequency
        return {"type": "bar", "x": list(frequency), "y": list(frequency.values()), "xlabel": "component",
                "ylabel": "share of resamples selecting it",
                "title": f"selection frequency; Jaccard {self.jaccard:.2f} "
                         f"(95% {self.interval[0]:.2f}–{self.interval[1]:.2f})"}


def _labels(chosen, what: str) -> tuple[str, ...]:
    """What ``select`` returned, as a tuple of labels (a DataFrame gives its head or site column)."""
    if isinstance(chosen, pd.DataFrame):
        column = next((c for c in ("head", "site", "component", "edge") if c in chosen.columns), None)
        if column is None:
            raise ValueError(f"select returned a table with columns {list(chosen.columns)} {what}; return the "
                             "labels, e.g. patch(...).top(5)['site']")
        chosen = chosen[column]
    if hasattr(chosen, "components") and not isinstance(chosen, str):  # a Circuit
        chosen = chosen.components
    if isinstance(chosen, str) or not np.iterable(chosen):
        raise ValueError(f"select returned {chosen!r} {what}; return a list of component labels, e.g. ['L9H6']")
    labels = (head_label(*c) if isinstance(c, tuple) and len(c) == 2 else str(c) for c in chosen)  # (9, 6): L9H6
    return tuple(dict.fromkeys(labels))


def _check(n: int, seed: int, n_prompts: int) -> tuple[int, int]:
    n = check_count("n", n, 1, "the number of bootstrap resamples: 50 is usual")
    seed = check_count("seed", seed, 0, "a seed is a whole number from 0 up, e.g. seed=0")
    if n_prompts < 2:
        raise ValueError(f"a bootstrap of {n_prompts} prompt only ever draws that prompt: give at least 2 "
                         "prompts (the more, the better the estimate)")
    return n, seed


def _result(model, prompt_set, subject, method, selected, selections, indices, seed) -> Stability:
    return Stability(model=model, prompt_set=prompt_set, subject=subject, method=method, selected=selected,
                     selections=tuple(selections), jaccards=np.array([jaccard(selected, s) for s in selections]),
                     indices=indices, seed=seed)


@probe
def stability(model, prompts, select, *, n: int = 50, seed: int = 0) -> Stability:
    """How stable the components ``select(model, prompts)`` picks are under bootstrap
    resampling of ``prompts``: ``select`` runs on every prompt (the reference selection) and
    on ``n`` seeded resamples (``prompts.subset(indices)``, drawn with replacement; corrupted
    prompts and answers follow), each compared with the reference by Jaccard overlap.
    ``select`` returns component labels (a list, a Circuit, or a table such as
    ``patch(...).top(5)``). For the top k of a sweep `selection_stability` gives the same
    numbers from the sweep's per-prompt table without running the model again."""
    if not callable(select):
        raise ValueError(f"select={select!r}: give a function (model, prompts) -> component labels, e.g. "
                         "lambda model, prompts: patch(model, prompts, 'head_out').top(5)['site']")
    n, seed = _check(n, seed, len(prompts))
    subject = getattr(select, "__name__", type(select).__name__)
    selected = _labels(select(model, prompts), "on all the prompts")
    indices = resamples(len(prompts), n, seed)
    selections = [_labels(select(model, prompts.subset(rows)), f"on resample {b}") for b, rows in enumerate(indices)]
    return _result(model_name(model), prompts.name, f"{subject} on {prompts.name!r}", "re-selected per resample",
                   selected, selections, indices, seed)


def top_k(scores: np.ndarray, labels, k: int) -> tuple[str, ...]:
    """The ``k`` labels with the largest scores, ties in table order; a NaN score is never chosen."""
    order = best_first(scores)
    return tuple(labels[i] for i in order[:k] if not np.isnan(scores[i]))  # as `Patching.top`, NaN dropped


@probe
def selection_stability(result, *, k: int = 5, n: int = 50, seed: int = 0, score: str = "recovery") -> Stability:
    """`stability` of the top ``k`` components of ``result`` (a `Patching`: sites by ``score``
    ``"recovery"``, ``"effect"`` or ``"abs_effect"``; a `HeadAttribution`: heads by mean
    contribution, ``"mean"``, which ``"recovery"`` means there, or ``"abs_mean"``), with no
    forward pass: each resample's top k is recomputed from the per-prompt table, for patching
    ``(mean patched − mean target) / (mean source − mean target)`` over the resampled prompts,
    exactly what a sweep on those prompts gives. Same resamples as `stability` for the same
    ``seed``."""
    kind = type(result).__name__
    if not callable(getattr(result, "scores_over", None)):
        raise ValueError(f"selection_stability needs a Result with per-prompt values, a Patching or a "
                         f"HeadAttribution, not {kind}; for any other selection use "
                         "stability(model, prompts, select)")
    choices = result.score_names
    if score not in choices:
        raise ValueError(f"score {score!r}: for a {kind} choose one of {', '.join(choices)}")
    full = result.scores_over(None, score)
    labels, named = tuple(full.index), full.name
    k = check_count("k", k, 1, f"the number of components selected, at most {len(labels)}, e.g. k=5")
    if k > len(labels):
        raise ValueError(f"k={k}: {kind} has {len(labels)} components; choose k from 1 to {len(labels)}")
    n_prompts = result.n_prompts
    n, seed = _check(n, seed, n_prompts)
    full = full.to_numpy()
    if np.isnan(full).all():
        raise ValueError("the normalised recovery is undefined on all the prompts (the source and target runs "
                         "score the same); choose score='effect'")
    indices = resamples(n_prompts, n, seed)
    selected = top_k(full, labels, k)
    selections = [top_k(result.scores_over(rows, score).to_numpy(), labels, k) for rows in indices]
    return _result(result.model, result.prompt_set, f"the top {k} {named}",
                   "recomputed from the per-prompt table (no forward pass)", selected, selections, indices, seed)
