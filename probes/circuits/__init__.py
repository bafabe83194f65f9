"""Circuits judged as a whole: faithfulness, random circuits, completeness, minimality.

A *circuit* C is a set of components (attention heads, optionally MLP layers), each
optionally restricted to some positions (`spec.Circuit`). To run "only the circuit", every
head outside it has its output (``hook_z``, per head) replaced by an ablation value
(`probes.ablation_values`: mean over a reference set, a resampled reference prompt, or zero).
The metric F (mean logit difference) of the ablated model is F(C); F(M) is the plain model's.

* `spec`: the circuit as researchers write it, and what a criterion judges it with;
* `protocol`: what the criteria ask of an engine (`CircuitRun`), node or edge;
* `engine`: the node engine, many circuits evaluated in one batched forward pass;
* `faithful`: F(C) against F(M), and against random circuits of the same size;
* `knockouts`: completeness and minimality, over knocked-out subsets K of the circuit;
* `curve`: faithfulness over circuit sizes (MIB's CPR and CMD), beside a random order.

Those three hold the Results and the searches; the criteria that run them, once for node and
edge circuits, are `probes.criteria`, above this package and `probes.edges`.

Compensation (backup heads) is head attribution under ablation: `probes.compensation`.
"""

from ..renamed import moved_names
from .curve import FaithfulnessCurve
from .faithful import Faithfulness, RandomCircuitTest
from .knockouts import Completeness, Minimality
from .spec import Circuit

# The researcher name: the circuit the criteria judge. The criteria themselves, one each for node
# and edge circuits, are `probes.criteria`'s (``from circuitcheck import faithfulness``), which
# sits above both engines; their Results are importable here and from circuitcheck.results.
__all__ = ["Circuit"]

# The last release's names here, from their modules for one release, with a warning.
_CRITERIA = ("completeness", "faithfulness", "faithfulness_curve", "minimality", "random_circuit_test")
__getattr__ = moved_names(__name__, {
    **dict.fromkeys(("Setup", "TOKENS_PER_PASS", "evaluate", "head_hook", "masks", "mlp_hook", "setup"),
                    f"{__name__}.engine"),
    **dict.fromkeys(("P_BELOW_005", "random_needed"), f"{__name__}.faithful"),
    **dict.fromkeys(_CRITERIA, f"{__name__.rpartition('.')[0]}.criteria"),
    "as_circuit": f"{__name__}.spec"},
    {name: f"`from circuitcheck import {name}`" for name in _CRITERIA})
del moved_names, _CRITERIA
