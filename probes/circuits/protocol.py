"""The run protocol: what the circuit criteria ask of an engine.

The criteria (`probes.criteria`: faithfulness, the random-circuit test, completeness,
minimality, the curve) are written once, against this protocol. Two engines implement it:
node circuits (`probes.circuits.engine.Setup`: heads and MLPs, by their ``hook_z`` and
``hook_mlp_out`` outputs) and edge circuits (`probes.edges.setup.EdgeSetup`: edges, by what
each receiving end reads). Both are made by one call with one signature,
``setup(model, prompts, ablation, reference, metric, seed, prepend_bos, probe_name)``, and
both speak of a circuit by what it *keeps*: everything else carries the ablation's value.
"""

from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class CircuitRun(Protocol):
    """One model, prompt set, metric and ablation, ready to judge circuits.

    A *circuit* here is whatever the engine keeps one as (a `Circuit`; an `EdgeCircuit` or an
    index array of edges); the criteria only hand them back. ``parts`` are its component
    labels (heads and MLPs, or edges), the units of completeness's and minimality's K."""

    model: object
    ablation: str
    metric_name: str
    results: object  # the Result classes this engine's criteria build (`Kinds`)

    @property
    def model_name(self) -> str: ...

    @property
    def reference(self) -> str:
        """The name of what replaces the ablated parts (a reference set, the corrupted prompts, "zero")."""

    @property
    def model_metric(self) -> np.ndarray:
        """F(M) per prompt: the plain model."""

    @staticmethod
    def start(model, prompts, ablation: str, reference, metric, seed: int, prepend_bos: bool | None,
              probe_name: str) -> "CircuitRun":
        """Check the inputs and run what every circuit is judged against (the clean prompts and
        the ablation's values): the one constructor of every engine."""

    @staticmethod
    def order(model, ranking) -> tuple[tuple[str, ...], np.ndarray, int]:
        """The curve's order, checked before any pass: every part of the model in the model's
        own order (the universe), the ranking over it as indices (ranked parts first, then the
        rest in the model's order), and how many the ranking named."""

    @staticmethod
    def check(model, circuit):
        """``circuit`` checked against the model before any pass (a clear error otherwise), canonical."""

    def circuit(self, circuit):
        """A circuit `check` returned, checked against the prompts too (named positions)."""

    def parts(self, circuit) -> tuple[str, ...]: ...

    def label(self, circuit) -> str: ...

    def empty(self, circuit):
        """The empty circuit judged like ``circuit`` (F(∅): everything ablated)."""

    def without(self, circuit, removed: tuple[str, ...]):
        """C \\ K: ``circuit`` without the parts labelled in ``removed``."""

    def model_without(self, circuit, removed: tuple[str, ...]):
        """M \\ K: the whole model, judged like ``circuit``, without ``removed``."""

    def random_like(self, circuit, generator: np.random.Generator):
        """A circuit of the same size drawn uniformly without replacement."""

    def top(self, universe, indices):
        """The circuit of ``universe[i]`` for ``indices`` (the curve's top k of an order)."""

    def evaluate(self, circuits: list) -> np.ndarray:
        """The metric (circuit × prompt) with only each circuit kept, in batched passes."""


class Kinds(NamedTuple):
    """The Result classes an engine's criteria build: node and edge circuits differ only in
    their kinds and notes."""

    faithfulness: type
    random_test: type
    curve: type
