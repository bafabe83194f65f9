"""A circuit as researchers write it: heads and MLP layers, each at some positions.

``Circuit(["L9H6", "L10H0"], mlps=[0], positions={"L9H6": "end"})``: everything not named is
ablated when the circuit is evaluated (`probes.circuits.engine`). Labels parse through
`probes.sites`, positions through `probes.positions`.
"""

from dataclasses import dataclass, field

import numpy as np

from ..sites import Site, head_label, head_order, parse_mlp, parse_site, unit_site


@dataclass(frozen=True)
class Circuit:
    """Heads (``"L9H6"``) and optionally MLP layers (``"MLP5"`` or 5), each optionally
    restricted to ``positions``: ``{"L9H6": "end"}`` (each prompt's final position), a
    position the prompt set names, resolved per prompt (``"S2"``, ``"IO"``, ``"S1+1"``: see
    `probes.positions`; `ioi_prompts` names IO, S1 and S2), ``{"L9H6": [3, 10]}`` (token
    indices, BOS counted) or a list mixing both (``["S2", "end"]``); components not named
    there keep every position. ``mlps=None`` leaves every MLP alone (only heads are judged);
    ``mlps=[...]`` ablates the MLPs not listed.

    >>> Circuit(["L9H6", "L10H0"], positions={"L9H6": "end", "L10H0": "S2"}).label()
    '{L9H6@end, L10H0@S2}'
    """

    heads: tuple = ()
    mlps: tuple | None = None
    positions: tuple = field(default=(), compare=True)  # ((label, "end" | (ints)), ...)

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
        return self.heads + tuple(f"MLP{m}" for m in (self.mlps or ()))

    def __len__(self) -> int:
        return len(self.components)

    def without(self, removed) -> "Circuit":
        """The circuit minus the components labelled in ``removed`` (C \\ K)."""
        removed = set(removed)
        return Circuit([h for h in self.heads if h not in removed],
                       None if self.mlps is None else [m for m in self.mlps if f"MLP{m}" not in removed],
                       [(k, v) for k, v in self.positions if k not in removed])

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
