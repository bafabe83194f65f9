"""Circuits judged as a whole: faithfulness, random circuits, completeness, minimality.

A *circuit* C is a set of components (attention heads, optionally MLP layers), each
optionally restricted to some positions (`spec.Circuit`). To run "only the circuit", every
head outside it has its output (``hook_z``, per head) replaced by an ablation value
(`probes.ablation_values`: mean over a reference set, a resampled reference prompt, or zero).
The metric F (mean logit difference) of the ablated model is F(C); F(M) is the plain model's.

* `spec`: the circuit as researchers write it;
* `engine`: many circuits evaluated in one batched forward pass;
* `faithfulness`: F(C) against F(M), and against random circuits of the same size;
* `knockouts`: completeness and minimality, over knocked-out subsets K of the circuit;
* `curve`: faithfulness over circuit sizes (MIB's CPR and CMD), beside a random order.

Compensation (backup heads) is head attribution under ablation: `probes.compensation`.
"""

from .curve import FaithfulnessCurve, faithfulness_curve
from .engine import TOKENS_PER_PASS, Setup, evaluate, head_hook, masks, mlp_hook, setup
from .faithfulness import (P_BELOW_005, Faithfulness, RandomCircuitTest, faithfulness, random_circuit_test,
                           random_needed)
from .knockouts import Completeness, Minimality, completeness, minimality
from .spec import Circuit, as_circuit

__all__ = ["Circuit", "Completeness", "Faithfulness", "FaithfulnessCurve", "Minimality", "P_BELOW_005", "RandomCircuitTest",
           "Setup", "TOKENS_PER_PASS", "as_circuit", "completeness", "evaluate", "faithfulness", "faithfulness_curve", "head_hook",
           "masks", "minimality", "mlp_hook", "random_circuit_test", "random_needed", "setup"]
