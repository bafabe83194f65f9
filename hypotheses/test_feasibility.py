"""The workflow-feasibility map: every prompt family through every step of the workflow.

Families come from circuitcheck.fixtures.families (IOI, a/an, counting, days, pet family) and from
any file in hypotheses/families/ that registers one with ``@family("name")``. Each
(family, step) is one checked claim; a step that does not hold is recorded as an
expected failure with its numbers ("the analogy breaks here"), not as a broken test, and a
step that cannot be measured (answers that are not one token) says why.
The report draws the families × steps table and marks the first break.

The 'circuit' step (heads found by patching, judged faithful on held-out prompts against 20
random circuits) reads the 'patching' step's sweep from the pass cache: run after it, as
here, it costs two forward passes per family (those sizes are explained in
probes.feasibility).
"""

import importlib
import math
import pkgutil
from pathlib import Path

import pytest

from circuitcheck import FAMILIES, feasibility_step
from circuitcheck.registries import STEPS

for module in pkgutil.iter_modules([str(Path(__file__).parent / "families")]):
    importlib.import_module(f"hypotheses.families.{module.name}")

@pytest.fixture(scope="session")
def family_prompts():
    """Each family built once per model (its builder may adapt to the tokenizer)."""
    built = {}

    def build(model, name):
        if (model, name) not in built:  # the model itself is the key: it lives all session
            built[model, name] = FAMILIES[name](model)
        return built[model, name]

    return build


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_workflow_step(model, family, step, family_prompts):
    """This step of the IOI / 'an'-neuron workflow holds for this family (claims and thresholds:
    probes.feasibility)."""
    result = feasibility_step(model, family_prompts(model, family), step, family=family)
    if not result.passed:
        measured = "" if math.isnan(result.value) else f"; value {result.value:.3g} against {result.threshold:g}"
        pytest.xfail(f"the analogy breaks here: '{result.claim}' does not hold for {family} "
                     f"({result.detail}{measured})")
