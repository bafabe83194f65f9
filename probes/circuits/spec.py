"""A circuit as researchers write it: heads and MLP layers, each at some positions.

``Circuit(["L9H6", "L10H0"], mlps=[0], positions={"L9H6": "end"})``: everything not named is
ablated when the circuit is evaluated (`probes.circuits.engine`). Labels parse through
`probes.sites`, positions through `probes.positions`. Also here, the one place that says what a
criterion judges with when not told: `DEFAULT_ABLATION`, or the ablation a circuit taken from a
ranking was found with (`FoundWith`, resolved by `judged_with`).
"""

from dataclasses import dataclass, field

import numpy as np

from ..ablation_values import CIRCUIT_ABLATIONS, COUNTERFACTUAL, MissingCorruptedPromptsError
from ..sites import Site, head_label, head_order, mlp_label, parse_mlp, parse_site, unit_site

# The one default ablation of every circuit criterion (faithfulness, random_circuit_test,
# completeness, minimality, faithfulness_curve), node and edge circuits alike, for a circuit
# that does not say how it was found: mean over ``reference`` (default the prompts), the IOI
# paper's. A circuit taken from a ranking (`EdgeScores.circuit`, `Patching.circuit`) carries
# the ablation it was found with (`FoundWith`), and is judged with that unless ``ablation=``
# says otherwise (`judged_with`).
DEFAULT_ABLATION = "mean"
REFERENCE_ABLATIONS = ("mean", "resample")  # the ablations that read a reference set


class ReferenceNeededError(ValueError):
    """A circuit found with mean or resample ablation over a named reference set, judged with
    ``ablation=None`` and no ``reference=``: the set is needed to judge it the way it was found."""


@dataclass(frozen=True)
class FoundWith:
    """How a circuit taken from a ranking was found: the ``ablation`` its ranking ran with
    (``"patching"``: each prompt's corrupted twin; ``"mean"``, ``"resample"``, ``"zero"``) and,
    for mean and resample over a set other than the ranked prompts, that set's name
    (``reference``) and, where the ranking could give it, the set itself (``reference_set``).
    ``by``: what found it, for the notes."""

    ablation: str
    reference: str | None = None
    reference_set: object = field(default=None, compare=False, repr=False)
    by: str = ""

    @staticmethod
    def of_ranking(ablation, reference, prompt_set: str, by: str, reference_set=None) -> "FoundWith | None":
        """The found-with of a ranking Result that ran ``ablation`` over ``reference`` (a name)
        on the prompt set named ``prompt_set``; None for an ablation the criteria cannot run
        (a ranking read from a file, patching with Gaussian noise). A reference that is the
        ranked prompts themselves is kept as None: the circuit is judged over its own prompts."""
        if ablation not in CIRCUIT_ABLATIONS:
            return None
        named = reference if ablation in REFERENCE_ABLATIONS and reference != prompt_set else None
        return FoundWith(ablation, named, reference_set if named is not None else None, by)

    def describe(self) -> str:
        if self.ablation == COUNTERFACTUAL:
            return "counterfactual ablation (ablation='patching')"
        over = "" if self.ablation not in REFERENCE_ABLATIONS else \
            f" over {self.reference!r}" if self.reference else " over the ranked prompts themselves"
        return f"{self.ablation} ablation{over}"


@dataclass(frozen=True)
class Judged:
    """The ablation and reference a criterion judges a circuit with, and why: ``how`` is
    ``"asked"`` (``ablation=`` was given), ``"found"`` (the circuit's `FoundWith`) or
    ``"default"`` (`DEFAULT_ABLATION`)."""

    ablation: str
    reference: object
    how: str
    found_with: FoundWith | None = None

    def note(self, reference_name: str = "") -> str:
        """The Result's note: which ablation judged the circuit, and whether it was the one the
        circuit was found with or the default."""
        if self.ablation == COUNTERFACTUAL:
            what = "counterfactual ablation (ablation='patching': each prompt's corrupted twin)"
        elif self.ablation in REFERENCE_ABLATIONS:
            what = f"{self.ablation} ablation over {reference_name!r}"
        else:
            what = f"{self.ablation} ablation"
        found = self.found_with
        if self.how == "found":
            return f"judged with {what}: the ablation the circuit was found with, by {found.by}; pass ablation= " \
                   "to judge it another way"
        if self.how == "asked":
            differs = found is not None and found.ablation != self.ablation
            return f"judged with {what}, as asked (ablation={self.ablation!r})" + (
                f"; the circuit was found with {found.describe()}, by {found.by}" if differs else "")
        if found is not None:  # a reference was given for a circuit found with an ablation that reads none
            return f"judged with {what}: the default ablation of the circuit criteria, as reference= was given " \
                   f"and the circuit was found with {found.describe()}, which reads none, by {found.by}"
        return f"judged with {what}: the default ablation of the circuit criteria ({DEFAULT_ABLATION!r}; a circuit " \
               "taken from a ranking is judged with the ablation it was found with); pass ablation= to choose"


def judged_with(found: FoundWith | None, ablation=None, reference=None, prompts=None) -> Judged:
    """What a criterion judges with: an explicit ``ablation`` always wins; otherwise the
    ablation the circuit was found with (``found``), over the ``reference`` given or the one it
    was found with; otherwise `DEFAULT_ABLATION`. A ``reference`` given for a circuit found with
    an ablation that reads none (counterfactual, zero) asks for the default over it."""
    if ablation is not None:
        return Judged(ablation, reference, "asked", found)
    if found is None:
        return Judged(DEFAULT_ABLATION, reference, "default")
    if reference is not None:
        if found.ablation in REFERENCE_ABLATIONS:
            return Judged(found.ablation, reference, "found", found)
        return Judged(DEFAULT_ABLATION, reference, "default", found)
    if found.reference is not None:
        if found.reference_set is None:
            raise ReferenceNeededError(
                f"this circuit was found with {found.describe()}, by {found.by}, and is judged that way unless "
                f"told otherwise: pass reference=<the PromptSet {found.reference!r}> to judge it as it was found, "
                "or ablation= (and reference=) to judge it another way")
        return Judged(found.ablation, found.reference_set, "found", found)
    if found.ablation == COUNTERFACTUAL and prompts is not None and getattr(prompts, "corrupted_prompts", 0) is None:
        raise MissingCorruptedPromptsError(
            f"this circuit was found with counterfactual ablation, by {found.by}, and is judged that way unless told "
            f"otherwise, but PromptSet {prompts.name!r} has no corrupted prompts: give it corrupted_prompts=[...] "
            "or corrupted_template=..., or pass ablation='mean' (or resample, zero) to judge it another way")
    return Judged(found.ablation, None, "found", found)


@dataclass(frozen=True)
class Circuit:
    """Heads (``"L9H6"``) and optionally MLP layers (``"MLP5"`` or 5), each optionally
    restricted to ``positions``: ``{"L9H6": "end"}`` (each prompt's final position), a
    position the prompt set names, resolved per prompt (``"S2"``, ``"IO"``, ``"S1+1"``: see
    `probes.positions`; `ioi_prompts` names IO, S1 and S2), ``{"L9H6": [3, 10]}`` (token
    indices, BOS counted) or a list mixing both (``["S2", "end"]``); components not named
    there keep every position. ``mlps=None`` leaves every MLP alone (only heads are judged);
    ``mlps=[...]`` ablates the MLPs not listed. ``found_with``: how a circuit taken from a
    ranking was found (`Patching.circuit`), the ablation the criteria judge it with by default.

    >>> Circuit(["L9H6", "L10H0"], positions={"L9H6": "end", "L10H0": "S2"}).label()
    '{L9H6@end, L10H0@S2}'
    """

    heads: tuple = ()
    mlps: tuple | None = None
    positions: tuple = field(default=(), compare=True)  # ((label, "end" | (ints)), ...)
    found_with: FoundWith | None = field(default=None, compare=False, kw_only=True)  # `Patching.circuit`

    def __post_init__(self):
        heads = (self.heads,) if isinstance(self.heads, str) else tuple(self.heads)
        labels = {unit_site(h, "head").label for h in heads}
        object.__setattr__(self, "heads", tuple(sorted(labels, key=head_order)))
        if self.mlps is not None:
            mlps = (self.mlps,) if isinstance(self.mlps, (str, int)) else tuple(self.mlps)
            layers = sorted({parse_mlp(m) for m in mlps})
            object.__setattr__(self, "mlps", tuple(layers))
        positions = dict(self.positions.items() if isinstance(self.positions, dict) else self.positions)
        normal = []
        for label, where in positions.items():
            if label not in self.components:
                raise ValueError(f"positions names {label!r}, which is not in the circuit "
                                 f"{list(self.components)}")
            normal.append((label, _position_spec(label, where)))
        object.__setattr__(self, "positions", tuple(sorted(normal)))

    @property
    def components(self) -> tuple[str, ...]:
        """Head labels, then ``MLP{layer}`` labels."""
        return self.heads + tuple(mlp_label(m) for m in (self.mlps or ()))

    def __len__(self) -> int:
        return len(self.components)

    def without(self, removed) -> "Circuit":
        """The circuit minus the components labelled in ``removed`` (C \\ K)."""
        removed = set(removed)
        return Circuit([h for h in self.heads if h not in removed],
                       None if self.mlps is None else [m for m in self.mlps if mlp_label(m) not in removed],
                       [(k, v) for k, v in self.positions if k not in removed], found_with=self.found_with)

    def label(self) -> str:
        where = dict(self.positions)
        parts = [c + (f"@{_spec_label(where[c])}" if c in where else "") for c in self.components]
        return "{" + ", ".join(parts) + "}"

    @staticmethod
    def full(model, with_mlps: bool = False) -> "Circuit":
        """The whole model M: every head (and every MLP with ``with_mlps``)."""
        n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
        return Circuit([(l, h) for l in range(n_layers) for h in range(n_heads)],
                       list(range(n_layers)) if with_mlps else None)

    def check(self, model, width: int) -> None:
        """Raise a clear error for heads, MLPs or positions the model or prompts do not have."""
        for h in self.heads:
            parse_site(h).check(model)
        for m in self.mlps or ():
            Site(m, activation="mlp_out").check(model)
        for label, where in self.positions:
            indices = [] if isinstance(where, str) else [p for p in where if isinstance(p, int)]
            if any(not 0 <= p < width for p in indices):
                raise ValueError(f"positions of {label}: {_spec_label(where)}, but the prompts have "
                                 f"positions 0–{width - 1} (BOS counted)")

    def random_like(self, model, generator: np.random.Generator) -> "Circuit":
        """A random circuit of the same size: as many heads (and MLPs), drawn uniformly without
        replacement; the i-th random head takes the i-th head's position restriction."""
        n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
        picks = generator.choice(n_layers * n_heads, size=len(self.heads), replace=False)
        heads = [head_label(int(p) // n_heads, int(p) % n_heads) for p in picks]
        mlps = None if self.mlps is None else sorted(generator.choice(n_layers, len(self.mlps), replace=False).tolist())
        where = dict(self.positions)
        positions = [(new, where[old]) for old, new in zip(self.heads, heads) if old in where]
        return Circuit(heads, mlps, positions)


def _position_spec(label: str, where):
    """A position restriction as stored: a name (``"end"``, ``"S2"``, ``"S1+1"``) or a tuple of
    token indices and names."""
    if isinstance(where, str):
        return where.strip()
    if isinstance(where, (int, np.integer)):
        return (int(where),)
    try:
        items = tuple(where)
    except TypeError:
        items = None
    if not items or not all(isinstance(p, (str, int, np.integer)) for p in items):
        raise ValueError(f"positions of {label}: {where!r}; give 'end', a named position such as 'S2', "
                         "token indices such as [3, 10] (BOS counted), or a list of these")
    return tuple(p.strip() if isinstance(p, str) else int(p) for p in items)


def _spec_label(where) -> str:
    return where if isinstance(where, str) else "[" + ", ".join(map(str, where)) + "]"


def as_circuit(circuit) -> Circuit:
    return circuit if isinstance(circuit, Circuit) else Circuit(circuit)
