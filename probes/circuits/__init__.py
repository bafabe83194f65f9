"""Circuits judged as a whole: faithfulness, random circuits, completeness, minimality.

A *circuit* C is a set of components (attention heads, optionally MLP layers), each
optionally restricted to some positions (`spec.Circuit`). To run "only the circuit", every
head outside it has its output (``hook_z``, per head) replaced by an ablation value
(`probes.ablation_values`: mean over a reference set, a resampled reference prompt, or zero).
The metric F (mean logit difference) of the ablated model is F(C); F(M) is the plain model's.

* `spec`: the circuit as researchers write it;
* `engine`: many circuits evaluated in one batched forward pass (`setup`, `evaluate`);
* `faithfulness`: F(C) against F(M), and against random circuits of the same size;
* `knockouts`: completeness and minimality, over knocked-out subsets K of the circuit;
* `curve`: faithfulness over circuit sizes (MIB's CPR and CMD), beside a random order.

Compensation (backup heads) is head attribution under ablation: `probes.compensation`.
"""

from ..renamed import moved_names
from .curve import FaithfulnessCurve, faithfulness_curve
from .faithfulness import Faithfulness, RandomCircuitTest, faithfulness, random_circuit_test
from .knockouts import Completeness, Minimality, completeness, minimality
from .spec import Circuit

# The researcher names: the criteria and the circuit they judge (node or edge circuits alike; their
# Results are importable here and from circuitcheck.results). The engine is imported from its module.
__all__ = ["Circuit", "completeness", "faithfulness", "faithfulness_curve", "minimality", "random_circuit_test"]

# The last release's plumbing names here, from their modules for one release, with a warning.
__getattr__ = moved_names(__name__, {
    **dict.fromkeys(("Setup", "TOKENS_PER_PASS", "evaluate", "head_hook", "masks", "mlp_hook", "setup"),
                    f"{__name__}.engine"),
    **dict.fromkeys(("P_BELOW_005", "random_needed"), f"{__name__}.faithfulness"),
    "as_circuit": f"{__name__}.spec"})
del moved_names
