"""Robustness of a claim: does its verdict survive the choices the experimenter made?

Circuit and component claims are fragile: faithfulness moves with the ablation method
(mean, resample and zero differ significantly on IOI, Miller et al. 2024), with the prompt
template, the seed of a resample, and the model. A claim that holds for one choice of
each is an anecdote; `robustness` evaluates it under every combination of the variants
given and says whether it holds in all of them::

    claim = lambda model, prompts, **options: faithfulness(model, prompts, CIRCUIT, **options)
    result = robustness(model, IOI, claim, over={"ablation": ["mean", "resample"], "seed": [0, 1]},
                        value="ratio", holds=lambda ratio: ratio > 0.8)
    assert result.holds_everywhere, result

Each axis of ``over`` is an option the claim takes, with the values to try
(``"ablation"``, ``"seed"``, ``"reference"``: ``[None, abc_prompts]`` is mean ablation over
the prompts themselves and over another set). Two axes replace the claim's arguments
instead: ``"prompts"`` (several PromptSets: templates, paraphrases) and ``"model"``
(several loaded models, ``load_model(name)``: a name is refused). Every combination is evaluated (the
product of the axes' lengths, at most `MAX_VARIANTS`), each variant's Result is kept as a
part, and the table lists the failing variants first.
"""

import itertools
import math
from dataclasses import dataclass
from numbers import Real

import numpy as np
import pandas as pd

from .evidence import probe
from .prompts import PromptSet
from .results import Result

MAX_VARIANTS = 64  # every combination is run: beyond this, split the claim by axis
ARGUMENT_AXES = ("model", "prompts")  # axes that replace the claim's arguments, not options
# Until Faithfulness, RandomCircuitTest and LogitDiff state their ``usual`` number on the class
# (`Result.usual`), it is read here by the kind of a class the Result is or inherits from, so
# their subclasses (the edge criteria's Results) have it too.

@dataclass(frozen=True, eq=False, repr=False)
class Robustness(Result):
    """One claim's value and verdict in every variant: one row per combination of the axes.

    ``labels[i][j]`` is variant i's value on axis ``axes[j]`` (a PromptSet by its name, a
    model by its name); ``values[i]`` the number the predicate judged, ``verdicts[i]``
    whether the claim holds there."""

    claim: str
    axes: tuple[str, ...]
    labels: tuple[tuple[str, ...], ...]
    values: np.ndarray
    verdicts: np.ndarray
    value_name: str
    predicate: str

    kind = "robustness"
    extremes_column = "value"

    @property
    def variants(self) -> tuple[str, ...]:
        """Each variant as ``"ablation=mean, seed=0"``."""
        return tuple(", ".join(f"{axis}={label}" for axis, label in zip(self.axes, row)) for row in self.labels)

    @property
    def holds_everywhere(self) -> bool:
        return bool(self.verdicts.all())

    @property
    def failing(self) -> tuple[str, ...]:
        """The variants where the claim does not hold (empty when it holds everywhere)."""
        return tuple(v for v, holds in zip(self.variants, self.verdicts) if not holds)

    def _known(self) -> np.ndarray:
        """The values with NaN (no number) left out; infinities are values, and kept."""
        return self.values[~np.isnan(self.values)]

    @property
    def spread(self) -> float:
        """max − min of the value over the variants (NaN values left out; an infinite value
        makes it infinite)."""
        known = self._known()
        return float(known.max() - known.min()) if len(known) else float("nan")

    def _order(self) -> list[int]:
        """Failing variants first, each group in the order the axes were given."""
        return sorted(range(len(self.values)), key=lambda i: bool(self.verdicts[i]))

    @property
    def title(self) -> str:
        n, failing = len(self.values), len(self.failing)
        if not failing:
            return f"{self.claim} holds in all {n} variants"
        return f"{self.claim} fails in {failing} of {n} variants (first: {self.failing[0]})"

    @property
    def df(self) -> pd.DataFrame:
        order = self._order()
        columns = {axis: [self.labels[i][j] for i in order] for j, axis in enumerate(self.axes)}
        columns |= {"value": self.values[order], "holds": self.verdicts[order]}
        return pd.DataFrame(columns)

    def summary(self) -> dict:
        known = self._known()
        return {"variants": len(self.values), "failing": len(self.failing), "holds_everywhere": self.holds_everywhere,
                "min": float(known.min()) if len(known) else float("nan"),
                "max": float(known.max()) if len(known) else float("nan"), "spread": self.spread}

    def notes(self) -> list[str]:
        sizes = " × ".join(f"{axis} ({len(set(row[j] for row in self.labels))})" for j, axis in enumerate(self.axes))
        lines = [f"every combination of {sizes} evaluated: {len(self.values)} variants",
                 f"value: {self.value_name}; holds: {self.predicate}"]
        if self.failing:
            lines.append("fails in: " + "; ".join(self.failing))
        return [*lines, *self.notes_text]

    def figure(self) -> dict:
        """A strip plot: one point per variant at its value, on the row of its verdict (a
        ``scatter`` spec; the report draws no strip type of its own)."""
        order = self._order()
        return {"type": "scatter", "x": [float(self.values[i]) for i in order],
                "y": [int(self.verdicts[i]) for i in order],
                "labels": [f"{self.variants[i]}: {'holds' if self.verdicts[i] else 'fails'}" for i in order],
                "xlabel": self.value_name, "ylabel": "verdict (1 holds, 0 fails)",
                "title": f"{self.claim} across {len(order)} variants"}


def label_of(value) -> str:
    """How a variant's value reads in the table: a PromptSet by its name, a model by its name,
    a function by its name, a Circuit by its label, anything else as ``str``."""
    if isinstance(value, PromptSet):
        return value.name
    if hasattr(value, "cfg") and hasattr(value, "hook_dict"):  # a model (TransformerBridge)
        from .model_state import model_name

        return model_name(value)
    if hasattr(value, "label") and callable(value.label):
        return str(value.label())
    if callable(value) and hasattr(value, "__name__"):
        return value.__name__
    text = str(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _axis_labels(axis: str, values: list) -> list[str]:
    """Labels for one axis, made unique (``name``, ``name #2``) where two values read alike."""
    labels, seen = [], {}
    for value in values:
        label = label_of(value)
        seen[label] = seen.get(label, 0) + 1
        labels.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return labels


def _check_over(over) -> dict:
    example = "e.g. over={'ablation': ['mean', 'resample'], 'seed': [0, 1]}"
    if not isinstance(over, dict) or not over:
        raise ValueError(f"over={over!r}: give the variants as a dict of axis name → values, {example}")
    axes = {}
    for axis, values in over.items():
        if not isinstance(axis, str) or not axis.isidentifier():
            raise ValueError(f"over axis {axis!r}: name an option of the claim (or 'model', 'prompts'), {example}")
        if isinstance(values, (str, bytes, PromptSet)) or not hasattr(values, "__iter__"):
            raise ValueError(f"over[{axis!r}]={values!r}: give a list of values to try, {example}")
        values = list(values)
        if not values:
            raise ValueError(f"over[{axis!r}] is empty: give at least one value to try, {example}")
        if axis == "model" and any(isinstance(v, str) for v in values):
            name = next(v for v in values if isinstance(v, str))
            raise ValueError(f"over['model']: {name!r} is a model's name; give loaded models, e.g. "
                             f"over={{'model': [load_model({name!r}), ...]}} (circuitcheck.load_model), so "
                             "each is loaded once, on the device and dtype you choose")
        if axis == "prompts" and not all(isinstance(v, PromptSet) for v in values):
            other = next(v for v in values if not isinstance(v, PromptSet))
            raise ValueError(f"over['prompts']: give PromptSets (e.g. from PromptSet.from_template with "
                             f"several templates), not {type(other).__name__} {other!r:.40}")
        axes[axis] = values
    n = math.prod(len(v) for v in axes.values())
    if n > MAX_VARIANTS:
        sizes = " × ".join(f"{len(v)} {axis}" for axis, v in axes.items())
        raise ValueError(f"over= gives {sizes} = {n} variants, and every combination is evaluated; at most "
                         f"{MAX_VARIANTS}: try fewer values per axis, or one robustness claim per axis")
    return axes


def _number(value, where: str) -> float:
    if isinstance(value, Real) or (hasattr(value, "item") and getattr(value, "ndim", 1) == 0):
        return float(value.item() if hasattr(value, "item") else value)
    raise ValueError(f"{where} is {type(value).__name__} {value!r:.60}, not a number; give value= a function "
                     "of the claim's Result returning a float, or the name of its number")


def _usual_number(outcome: Result) -> str:
    """The name of the number a claim on ``outcome`` is usually about: its class's ``usual``,
    else its only summary number."""
    summary = outcome.summary()
    numbers = [k for k, v in summary.items() if isinstance(v, Real) and not isinstance(v, bool)]
    name = type(outcome).usual or (numbers[0] if len(numbers) == 1 else None)
    if name is None:
        raise ValueError(f"robustness: which number of {type(outcome).__name__} is the claim about? give value= "
                         f"one of its summary entries {list(summary)}, or a function of the Result")
    return name


def value_of(outcome, value) -> float:
    """The number a variant's outcome is judged on: ``value(outcome)`` for a function; the
    attribute or summary entry so named for a string; by default the outcome itself if it is
    a number, else the Result's usual number (its class's ``usual``, or its only summary number)."""
    if callable(value):
        return _number(value(outcome), "value(...) of the claim's outcome")
    if not isinstance(outcome, Result):
        if value is not None:
            raise ValueError(f"value={value!r} names a Result's number, but the claim returned "
                             f"{type(outcome).__name__}; leave value= out, or give a function")
        return _number(outcome, "the claim's outcome")
    value = _usual_number(outcome) if value is None else value
    if hasattr(type(outcome), value) or value in getattr(outcome, "__dataclass_fields__", {}):
        return _number(getattr(outcome, value), f"{type(outcome).__name__}.{value}")
    summary = outcome.summary()
    if value in summary:
        return _number(summary[value], f"{type(outcome).__name__}.summary()[{value!r}]")
    raise ValueError(f"value={value!r}: {type(outcome).__name__} has no such attribute or summary entry; "
                     f"its summary has {list(summary)}")


def _verdict(holds, number: float, where: str) -> bool:
    verdict = holds(number)
    if hasattr(verdict, "item") and getattr(verdict, "ndim", 1) == 0:
        verdict = verdict.item()
    if not isinstance(verdict, (bool, np.bool_)):
        raise ValueError(f"holds({number!r}) returned {verdict!r} in {where}; give holds= a predicate "
                         "returning True or False, e.g. holds=lambda ratio: ratio > 0.8")
    return bool(verdict)


def _name(function, unnamed: str) -> str:
    """A function's name; ``unnamed`` for a lambda."""
    name = getattr(function, "__name__", None) or type(function).__name__
    return unnamed if name == "<lambda>" else name


@probe
def robustness(model, prompts, claim, *, over: dict, holds, value=None,
               prepend_bos: bool | None = None) -> Robustness:
    """Evaluate ``claim(model, prompts, **options)`` (a Result or a number) in every combination
    of ``over`` (axis → values; ``"model"`` and ``"prompts"`` replace those arguments, and
    ``model``/``prompts`` may then be None), judge each with ``holds(value)`` on the number
    ``value`` picks (a function of the Result, or the name of its number, e.g. ``"ratio"``),
    and report the value and verdict per variant; ``.holds_everywhere``, ``.failing``,
    ``.spread``. ``prepend_bos``, when given, is passed to every call of the claim."""
    if not callable(claim):
        raise ValueError(f"claim={claim!r}: give a function claim(model, prompts, **options) returning a "
                         "Result or a number")
    if not callable(holds):
        raise ValueError(f"holds={holds!r}: give a predicate on the value, e.g. holds=lambda ratio: ratio > 0.8")
    if value is not None and not (callable(value) or isinstance(value, str)):
        raise ValueError(f"value={value!r}: give a function of the claim's Result, or the name of its number "
                         "(e.g. 'ratio')")
    axes = _check_over(over)
    if isinstance(model, str):
        raise ValueError(f"robustness(model={model!r}): give a loaded model (circuitcheck.load_model({model!r})), "
                         "not its name")
    for argument, given in (("model", model), ("prompts", prompts)):
        if given is None and argument not in axes:
            raise ValueError(f"robustness: {argument}=None, and over= has no {argument!r} axis to take it from")
    labels = {axis: _axis_labels(axis, values) for axis, values in axes.items()}
    fixed = {} if prepend_bos is None else {"prepend_bos": prepend_bos}
    rows, numbers, verdicts, parts = [], [], [], []
    for combination in itertools.product(*(range(len(v)) for v in axes.values())):
        chosen = {axis: axes[axis][i] for axis, i in zip(axes, combination)}
        row = tuple(labels[axis][i] for axis, i in zip(axes, combination))
        where = "variant " + ", ".join(f"{axis}={label}" for axis, label in zip(axes, row))
        arguments = {a: chosen.pop(a) if a in chosen else given for a, given in zip(ARGUMENT_AXES, (model, prompts))}
        try:
            outcome = claim(arguments["model"], arguments["prompts"], **chosen, **fixed)
        except Exception as error:  # noqa: BLE001 - re-raised as it was, saying which variant
            if hasattr(error, "add_note"):
                error.add_note(f"(in robustness, {where})")
            raise
        number = value_of(outcome, value)
        rows.append(row)
        numbers.append(number)
        verdicts.append(_verdict(holds, number, where))
        if isinstance(outcome, Result):
            parts.append(outcome)
    models = axes.get("model", [model])
    prompt_sets = axes.get("prompts", [prompts])
    value_name = (value if isinstance(value, str) else _name(value, "value(result)") if value is not None
                  else _usual_number(parts[0]) if parts else "the claim's number")
    return Robustness(model=", ".join(dict.fromkeys(label_of(m) for m in models)),
                      prompt_set=", ".join(dict.fromkeys(label_of(p) for p in prompt_sets)),
                      claim=_name(claim, "the claim"), axes=tuple(axes), labels=tuple(rows),
                      values=np.array(numbers, dtype=float), verdicts=np.array(verdicts, dtype=bool),
                      value_name=value_name, predicate=_name(holds, "the predicate given"), parts=tuple(parts))
