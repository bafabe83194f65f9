"""Is the circuit the model? Faithfulness, and the random-circuit test.

* **faithfulness** (Wang et al. 2022): F(C), the metric with everything outside the circuit
  ablated, against F(M), the plain model's: F(C)/F(M) and |F(M) − F(C)|.
* **random circuits** (circuitry, Shi et al. 2024): is C closer to the model than random
  circuits of the same size? An empirical quantile and a p-value
  ``(1 + #random at least as close) / (1 + N)``.

The candidate and its random circuits are evaluated in the same batched passes (`engine`).
Outside the circuit: ``ablation`` mean, resample or zero over a reference, or ``"patching"``
(counterfactual: each prompt's corrupted twin, the name and meaning edge circuits use). With
``ablation=None`` (the default) a circuit taken from a ranking is judged with the ablation it was
found with, any other with `spec.DEFAULT_ABLATION` (`spec.judged_with`); the notes say which.
"""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..ablation_values import COUNTERFACTUAL
from ..results import Result

P_BELOW_005 = 20  # random circuits: the fewest N whose smallest p-value, 1/(1+N) = 1/21, is below 0.05


def check_enough_random(fraction: float, n: int, argument: str, what: str, probe_name: str) -> None:
    """Refuse ``beats_random(fraction)`` over ``n`` random draws when the smallest p-value,
    1/(1 + n), cannot be below 1 − ``fraction``, saying how many ``argument`` it needs."""
    if not 0 < fraction < 1:
        raise ValueError(f"beats_random(fraction={fraction!r}): give a share of {what} between 0 and 1, e.g. 0.95")
    needed = random_needed(fraction)
    if n < needed:
        raise ValueError(f"beats_random({fraction}) on {argument}={n} {what}: the p-value can be no smaller than "
                         f"1/(1+n) = {1 / (1 + n):.3g}, not below {1 - fraction:.3g}; run {probe_name} with "
                         f"{argument} >= {needed} ({argument} >= {P_BELOW_005} for p < 0.05)")


def random_needed(fraction: float) -> int:
    """The fewest random circuits N for which beating ``fraction`` of them can be significant:
    the smallest p-value, 1/(1+N), is below 1 − ``fraction`` (20 for 0.95: p < 0.05)."""
    return math.floor(1 / (1 - fraction) + 1e-9)


def rounding_floor(model, *metrics) -> float:
    """How far float rounding alone can move a mean of these per-prompt metric values: the
    model's epsilon (float32: 2^-23) × the metric's own scale (its largest |value|) × the
    depth of the residual sum behind it (embedding + attention and MLP of every layer)."""
    eps = torch.finfo(getattr(model.cfg, "dtype", torch.float32)).eps
    scale = max((float(np.nanmax(np.abs(m))) for m in metrics if np.size(m)), default=0.0)
    return eps * scale * (2 * model.cfg.n_layers + 1)


def undefined_reason(model, f_model: float, f_empty: float, *metrics) -> str:
    """Why f = (F − F(∅)) / (F(M) − F(∅)) is undefined, or "": its denominator is no larger than
    float rounding of the metric (`rounding_floor`), so the ablation removes nothing measurable."""
    return _undefined(f_model, f_empty, rounding_floor(model, *metrics))


def _undefined(f_model: float, f_empty: float, floor: float) -> str:
    gap = f_model - f_empty
    if not math.isfinite(gap):
        return f"F(M) − F(empty) = {gap}"
    if abs(gap) > floor:
        return ""
    return (f"F(M) − F(empty) = {gap:.3g} is within float rounding of the metric ({floor:.2g}): the ablation "
            "removes nothing measurable, so no circuit can be scored against it")


@dataclass(frozen=True, eq=False, repr=False)
class Faithfulness(Result):
    """The metric with only the circuit left (everything else ablated) against the full model.

    ``model_metric`` F(M), ``circuit_metric`` F(C) and ``empty_metric`` F(∅) (everything
    ablated) per prompt. A faithful circuit has F(C)/F(M) near 1 and |F(M) − F(C)| small;
    ``normalised`` = (F(C) − F(∅)) / (F(M) − F(∅)) is how much of what the ablation removes
    the circuit gives back.
    """

    circuit: str
    components: tuple[str, ...]
    ablation: str
    reference: str
    metric: str
    prompts: tuple[str, ...]
    model_metric: np.ndarray
    circuit_metric: np.ndarray
    empty_metric: np.ndarray
    rounding: float = 0.0  # how far float rounding alone can move these means (`rounding_floor`)

    kind = "circuit_faithfulness"
    usual = "ratio"

    @property
    def title(self) -> str:
        return f"Faithfulness of {self.circuit} ({self.ablation} ablation, {self.metric})"

    @property
    def f_model(self) -> float:
        return float(self.model_metric.mean())

    @property
    def f_circuit(self) -> float:
        return float(self.circuit_metric.mean())

    @property
    def f_empty(self) -> float:
        return float(self.empty_metric.mean())

    @property
    def ratio(self) -> float:
        """F(C) / F(M); NaN when F(M) is within float rounding of 0."""
        return self.f_circuit / self.f_model if abs(self.f_model) > self.rounding else float("nan")

    @property
    def gap(self) -> float:
        """|F(M) − F(C)|."""
        return abs(self.f_model - self.f_circuit)

    @property
    def undefined(self) -> str:
        """Why ``normalised`` is undefined (F(M) − F(∅) within float rounding), or ""."""
        return _undefined(self.f_model, self.f_empty, self.rounding)

    @property
    def normalised(self) -> float:
        """(F(C) − F(∅)) / (F(M) − F(∅)); NaN when ``undefined`` says why."""
        return float("nan") if self.undefined else (self.f_circuit - self.f_empty) / (self.f_model - self.f_empty)

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame({"prompt": self.prompts, "F(M)": self.model_metric,
                             "F(C)": self.circuit_metric, "F(empty)": self.empty_metric})

    def summary(self) -> dict:
        return {"F(M)": self.f_model, "F(C)": self.f_circuit, "F(empty)": self.f_empty,
                "F(C)/F(M)": self.ratio, "|F(M)-F(C)|": self.gap, "normalised": self.normalised,
                "components": len(self.components)}

    def notes(self) -> list[str]:
        undefined = []
        if self.undefined:
            undefined.append(f"normalised faithfulness is undefined: {self.undefined}")
        if abs(self.f_model) <= self.rounding:
            undefined.append(f"F(C)/F(M) is undefined: F(M) = {self.f_model:.3g} is within float rounding of 0 "
                             f"({self.rounding:.2g})")
        return self._ablation_notes() + undefined + list(self.notes_text)

    def _ablation_notes(self) -> list[str]:
        if self.ablation == COUNTERFACTUAL:
            return [f"outside the circuit: counterfactual ablation (ablation='patching'), each component's output "
                    f"on the prompt's corrupted twin ({self.reference!r}) at the same position; heads by their "
                    "hook_z output, MLPs by hook_mlp_out; the input embedding stays clean"]
        return [f"outside the circuit: {self.ablation} ablation"
                + ("" if self.ablation == "zero" else f" over {self.reference!r}")
                + "; heads by their hook_z output, MLPs by hook_mlp_out"]

    def figure(self) -> dict:
        return {"type": "bar", "x": ["F(M)", "F(C)", "F(empty)"], "y": [self.f_model, self.f_circuit, self.f_empty],
                "xlabel": "model", "ylabel": f"mean {self.metric}"}


@dataclass(frozen=True, eq=False, repr=False)
class RandomCircuitTest(Result):
    """The circuit against ``N`` random circuits of the same size (circuitry's test).

    Score: closeness to the model, −|F(M) − F(circuit)|. ``quantile``: the share of random
    circuits the candidate beats (strictly closer); ``p_value`` = (1 + #random at least as
    close) / (1 + N), the chance that a random circuit does as well. It is never below
    1/(1 + N): p < 0.05 needs N ≥ 20, and `beats_random` refuses an N too small to tell.
    """

    circuit: str
    f_model: float
    f_candidate: float
    random_circuits: tuple[str, ...]
    random_metric: np.ndarray  # mean metric per random circuit
    seed: int

    kind = "random_circuit_test"
    usual = "p_value"

    @property
    def title(self) -> str:
        return f"{self.circuit} against {len(self.random_circuits)} random circuits of its size"

    @property
    def random_gaps(self) -> np.ndarray:
        return np.abs(self.f_model - self.random_metric)

    @property
    def candidate_gap(self) -> float:
        return abs(self.f_model - self.f_candidate)

    @property
    def quantile(self) -> float:
        return float((self.random_gaps > self.candidate_gap).mean())

    @property
    def p_value(self) -> float:
        return float((1 + (self.random_gaps <= self.candidate_gap).sum()) / (1 + len(self.random_gaps)))

    @property
    def smallest_p_value(self) -> float:
        """1/(1 + N): the p-value when the candidate beats every random circuit."""
        return 1 / (1 + len(self.random_gaps))

    def beats_random(self, fraction: float = 0.95) -> bool:
        """True when the candidate is closer to the model than ``fraction`` of random circuits.
        A ValueError when N is too small for that to mean anything: the smallest p-value,
        1/(1 + N), must be below 1 − ``fraction`` (for 0.95, p < 0.05: N ≥ 20)."""
        check_enough_random(fraction, len(self.random_gaps), "n", "random circuits", "random_circuit_test")
        return self.quantile >= fraction

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame({"circuit": self.random_circuits, "F": self.random_metric,
                             "|F(M)-F|": self.random_gaps}).sort_values("|F(M)-F|").reset_index(drop=True)

    def summary(self) -> dict:
        return {"F(M)": self.f_model, "F(C)": self.f_candidate, "|F(M)-F(C)|": self.candidate_gap,
                "median random |F(M)-F|": float(np.median(self.random_gaps)), "quantile": self.quantile,
                "p_value": self.p_value, "n_random": len(self.random_gaps)}

    def p_values(self) -> dict[str, float]:
        return {"p_value (vs random circuits)": self.p_value}

    def notes(self) -> list[str]:
        return [f"random circuits: same number of heads (and MLPs), uniform without replacement, seed {self.seed}",
                *self.notes_text]

    def figure(self) -> dict:
        gaps = np.sort(self.random_gaps)
        return {"type": "line", "x": list(range(1, len(gaps) + 1)), "xlabel": "random circuit (sorted)",
                "ylabel": "|F(M) − F|", "series": {"random circuits": gaps.tolist(),
                                                  "candidate": [self.candidate_gap] * len(gaps)}}
