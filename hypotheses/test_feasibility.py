"""The workflow-feasibility map: every prompt family through every step of the workflow, checked
against the map expected for the model.

Families come from circuitcheck.fixtures.families (IOI, a/an, counting, days, pet family) and from
any file in hypotheses/families/ that registers one with ``@family("name")``. Each
(family, step) is one checked claim, judged against its cell of ``EXPECTED`` below:

- expected ``holds``: the step must hold;
- expected ``breaks``: the step must not hold; it is recorded as an expected failure with its
  numbers ("the analogy breaks here"), and if it holds now the test fails ("cell moved: … now holds");
- expected ``unmeasured``: the step cannot be measured (its value is NaN and its detail says why,
  e.g. answers that are not one token); recorded as an expected failure, and fails if it is measured.

So a change in where a family breaks fails the run and names the cell that moved. A family with no
row in the map fails with the observed cell printed, ready to paste into the map. A model with no
map at all (a model other than the embedded ones, e.g. the tiny test models) is explored, not
checked: a step that does not hold is an expected failure, as before there was a map.
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

from circuitcheck import FAMILIES, feasibility_step, ioi_prompts, model_info, patch
from circuitcheck.registries import STEPS
from circuitcheck.scrutiny import holm_family, robustness, selection_stability
from circuitcheck.fixtures.gguf_models import EMBEDDED

for module in pkgutil.iter_modules([str(Path(__file__).parent / "families")]):
    importlib.import_module(f"hypotheses.families.{module.name}")

OUTCOMES = ("holds", "breaks", "unmeasured")

# The expected map: model → family → step → "<outcome>: <the numbers that justify it>".
# Only the outcome word (holds / breaks / unmeasured) is checked; the numbers after it are the
# value against the step's threshold (and the held-out p-value, or the neuron's 95% CI, where the
# claim needs them) as measured on CPU, float32, when the cell was written. Thresholds and claims:
# probes.feasibility. When a cell moves on purpose, paste the observed cell from the failure.
EXPECTED = {
    "smollm2-135m": {
        "IOI": {
            "answers":    "holds: 12 ≤ 20",
            "task":       "holds: 1 ≥ 0.8",
            "corruption": "holds: 1 ≥ 0.8",
            "lens":       "holds: 0.93 ≥ 0.3",
            "heads":      "holds: 0.681 ≥ 0.5, p = 0.001 < 0.05",
            "patching":   "holds: 0.578 ≥ 0.5, p = 0.001 < 0.05",
            "circuit":    "breaks: 1.41 ≥ 0.5, p = 0.095 ≥ 0.05",
            "neuron":     "holds: 0.781 ≥ 0.5, 95% CI 0.38 to 0.96",
        },
        "a/an": {
            "answers":    "holds: 2 ≤ 20",
            "task":       "breaks: 0.698 < 0.8",
            "corruption": "breaks: 0.286 < 0.8",
            "lens":       "holds: 0.696 ≥ 0.3",
            "heads":      "breaks: 0.299 < 0.5, p = 0.001 < 0.05",
            "patching":   "holds: 0.545 ≥ 0.5, p = 0.001 < 0.05",
            "circuit":    "holds: 0.912 ≥ 0.5, p = 0.048 < 0.05",
            "neuron":     "holds: 0.906 ≥ 0.5, 95% CI 0.88 to 0.93",
        },
        "counting": {
            "answers":    "holds: 3.5 ≤ 20",
            "task":       "holds: 1 ≥ 0.8",
            "corruption": "holds: 1 ≥ 0.8",
            "lens":       "breaks: 0.248 < 0.3",
            "heads":      "breaks: 0.282 < 0.5, p = 0.001 < 0.05",
            "patching":   "holds: 0.533 ≥ 0.5, p = 0.001 < 0.05",
            "circuit":    "breaks: 0.432 < 0.5, p = 0.048 < 0.05",
            "neuron":     "holds: 0.827 ≥ 0.5, 95% CI 0.51 to 0.99",
        },
        "days": {
            "answers":    "holds: 3 ≤ 20",
            "task":       "breaks: 0.429 < 0.8",
            "corruption": "breaks: 0.786 < 0.8",
            "lens":       "breaks: 0.175 < 0.3",
            "heads":      "breaks: 0.479 < 0.5, p = 0.001 < 0.05",
            "patching":   "breaks: 0.467 < 0.5, p = 0.001 < 0.05",
            "circuit":    "breaks: -1.23 < 0.5, p = 1 ≥ 0.05",
            "neuron":     "breaks: -0.269 < 0.5, 95% CI -0.81 to 0.21",
        },
        "pet family": {
            "answers":    "holds: 3 ≤ 20",
            "task":       "breaks: 0.625 < 0.8",
            "corruption": "breaks: 0 < 0.8",
            "lens":       "holds: 1.14 ≥ 0.3",
            "heads":      "breaks: 0.251 < 0.5, p = 0.001 < 0.05",
            "patching":   "breaks: 0.212 < 0.5, p = 0.001 < 0.05",
            "circuit":    "breaks: 1.25 ≥ 0.5, p = 0.95 ≥ 0.05",
            "neuron":     "holds: 0.682 ≥ 0.5, 95% CI 0.38 to 0.98",
        },
        "months": {
            "answers":    "holds: 7.5 ≤ 20",
            "task":       "breaks: 0 < 0.8",
            "corruption": "breaks: 0.75 < 0.8",
            "lens":       "holds: 0.334 ≥ 0.3",
            "heads":      "breaks: 0.333 < 0.5, p = 0.001 < 0.05",
            "patching":   "breaks: 0.392 < 0.5, p = 0.001 < 0.05",
            "circuit":    "breaks: -0.498 < 0.5, p = 1 ≥ 0.05",
            "neuron":     "breaks: 0.336 < 0.5, 95% CI -0.85 to 0.91",
        },
    },
    "gemma3-270m": {
        "IOI": {
            "answers":    "holds: 6.5 ≤ 20",
            "task":       "holds: 1 ≥ 0.8",
            "corruption": "holds: 1 ≥ 0.8",
            "lens":       "holds: 0.942 ≥ 0.3",
            "heads":      "holds: 0.738 ≥ 0.5, p = 0.001 < 0.05",
            "patching":   "holds: 0.563 ≥ 0.5, p = 0.001 < 0.05",
            "circuit":    "breaks: 1.19 ≥ 0.5, p = 0.095 ≥ 0.05",
            "neuron":     "holds: 0.622 ≥ 0.5, 95% CI 0.08 to 0.93",
        },
        "a/an": {
            "answers":    "holds: 6.5 ≤ 20",
            "task":       "breaks: 0.571 < 0.8",
            "corruption": "breaks: 0 < 0.8",
            "lens":       "holds: 0.515 ≥ 0.3",
            "heads":      "holds: 0.52 ≥ 0.5, p = 0.001 < 0.05",
            "patching":   "holds: 0.663 ≥ 0.5, p = 0.001 < 0.05",
            "circuit":    "holds: 0.798 ≥ 0.5, p = 0.048 < 0.05",
            "neuron":     "breaks: 0.228 < 0.5, 95% CI 0.07 to 0.37",
        },
        "counting": {
            "answers":    "holds: 3 ≤ 20",
            "task":       "holds: 1 ≥ 0.8",
            "corruption": "holds: 1 ≥ 0.8",
            "lens":       "holds: 0.788 ≥ 0.3",
            "heads":      "holds: 0.845 ≥ 0.5, p = 0.001 < 0.05",
            "patching":   "holds: 0.779 ≥ 0.5, p = 0.001 < 0.05",
            "circuit":    "breaks: 0.732 ≥ 0.5, p = 0.14 ≥ 0.05",
            "neuron":     "holds: 0.611 ≥ 0.5, 95% CI 0.01 to 0.96",
        },
        "days": {
            "answers":    "holds: 3 ≤ 20",
            "task":       "breaks: 0.714 < 0.8",
            "corruption": "holds: 1 ≥ 0.8",
            "lens":       "holds: 0.372 ≥ 0.3",
            "heads":      "holds: 0.657 ≥ 0.5, p = 0.001 < 0.05",
            "patching":   "holds: 0.711 ≥ 0.5, p = 0.001 < 0.05",
            "circuit":    "breaks: 1.18 ≥ 0.5, p = 0.91 ≥ 0.05",
            "neuron":     "holds: 0.696 ≥ 0.5, 95% CI 0.37 to 0.88",
        },
        "pet family": {
            "answers":    "holds: 2 ≤ 20",
            "task":       "breaks: 0.375 < 0.8",
            "corruption": "breaks: 0 < 0.8",
            "lens":       "holds: 2.23 ≥ 0.3",
            "heads":      "breaks: 0.453 < 0.5, p = 0.001 < 0.05",
            "patching":   "breaks: 0.334 < 0.5, p = 0.4 ≥ 0.05",
            "circuit":    "unmeasured: F(M) = -0.98 ≤ 0 on held-out prompts [1, 3, 5, 7]",
            "neuron":     "breaks: 0.474 < 0.5, 95% CI 0.13 to 0.83",
        },
        "months": {
            "answers":    "holds: 3.5 ≤ 20",
            "task":       "breaks: 0.5 < 0.8",
            "corruption": "holds: 1 ≥ 0.8",
            "lens":       "holds: 0.521 ≥ 0.3",
            "heads":      "holds: 0.667 ≥ 0.5, p = 0.001 < 0.05",
            "patching":   "holds: 0.769 ≥ 0.5, p = 0.001 < 0.05",
            "circuit":    "holds: 0.814 ≥ 0.5, p = 0.048 < 0.05",
            "neuron":     "holds: 0.586 ≥ 0.5, 95% CI 0.11 to 0.96",
        },
    },
}


def _check_map(expected: dict) -> dict:
    """The map as (model, family, step) → (outcome, cell text). A malformed map stops collection:
    a cell that does not start with an outcome, a row without every step in order, a row for a
    family that is not registered, or an embedded model without a map."""
    if missing := [name for name in EMBEDDED if name not in expected]:
        raise ValueError(f"no expected map for {', '.join(missing)}: add EXPECTED[{missing[0]!r}] (run these "
                         "hypotheses on it and paste each observed cell from the failures)")
    cells = {}
    for model, families in expected.items():
        for family, steps in families.items():
            if family not in FAMILIES:
                raise ValueError(f"EXPECTED[{model!r}] has a row for {family!r}, which is not a registered "
                                 f"family ({', '.join(FAMILIES)}): remove the row or register the family")
            if list(steps) != list(STEPS):
                raise ValueError(f"EXPECTED[{model!r}][{family!r}] lists steps {list(steps)}: give every "
                                 f"step once, in order: {', '.join(STEPS)}")
            for step, cell in steps.items():
                outcome = cell.split(":", 1)[0].strip()
                if outcome not in OUTCOMES:
                    raise ValueError(f"EXPECTED[{model!r}][{family!r}][{step!r}] = {cell!r}: start the cell "
                                     f"with one of {', '.join(OUTCOMES)}")
                cells[model, family, step] = outcome, cell
    return cells


CELLS = _check_map(EXPECTED)


def observed(result) -> tuple[str, str]:
    """The outcome of one step's result and its cell as it would be written in ``EXPECTED``."""
    if math.isnan(result.value):
        outcome = "breaks" if result.step == "answers" else "unmeasured"  # no answer token is a break
        reason = result.detail.removeprefix("not measured: ")
        return outcome, f"{outcome}: {reason if len(reason) <= 90 else reason[:89] + '…'}"
    outcome = "holds" if result.passed else "breaks"
    lower_is_better = result.step == "answers"  # a median rank
    meets = result.value <= result.threshold if lower_is_better else result.value >= result.threshold
    op = ("≤" if lower_is_better else "≥") if meets else (">" if lower_is_better else "<")
    numbers = f"{result.value:.3g} {op} {result.threshold:g}"
    if result.p_value is not None:
        numbers += f", p = {result.p_value:.2g} {'<' if result.p_value < 0.05 else '≥'} 0.05"
    elif result.step in ("heads", "patching", "circuit"):
        numbers += ", no p-value"
    if result.step == "neuron" and result.ci is not None:
        numbers += f", 95% CI {result.ci[0]:.2f} to {result.ci[1]:.2f}"
    return outcome, f"{outcome}: {numbers}"


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
    """This step of the IOI / 'an'-neuron workflow holds, breaks or cannot be measured for this
    family as the model's map says (claims and thresholds: probes.feasibility)."""
    name = model_info(model).name
    result = feasibility_step(model, family_prompts(model, family), step, family=family)
    got, cell = observed(result)
    measured = "" if math.isnan(result.value) else f"; value {result.value:.3g} against {result.threshold:g}"
    breaks_here = (f"the analogy breaks here: '{result.claim}' does not hold for {family} "
                   f"({result.detail}{measured})")
    if name not in EXPECTED:  # not an embedded model: explored, not checked (see the module docstring)
        if got != "holds":
            pytest.xfail(f"{breaks_here}; no expected map for {name}")
        return
    where = f"{name} / {family} / {step}"
    if (name, family, step) not in CELLS:
        pytest.fail(f"no row for family {family!r} in EXPECTED[{name!r}]: add one with this family's "
                    f"eight cells; observed here: \"{step}\": \"{cell}\",  (detail: {result.detail})",
                    pytrace=False)
    expected, recorded = CELLS[name, family, step]
    if got != expected:
        now = {"holds": "now holds", "breaks": "now breaks", "unmeasured": "now cannot be measured"}[got]
        pytest.fail(f"cell moved: {where} {now}: expected {expected!r} (recorded {recorded!r}), got {got!r}; "
                    f"value {result.value:.3g}, threshold {result.threshold:g}; observed cell {cell!r}; "
                    f"detail: {result.detail}", pytrace=False)
    if got != "holds":
        pytest.xfail(breaks_here)


# The IOI family's circuit step under scrutiny (circuitcheck.scrutiny): the same step, chosen
# and judged as above, on the family's template and a paraphrase, under mean and resample
# ablation; its random-circuit p-values corrected together; the patching step's top heads
# found again on bootstrap resamples of the prompts.
IOI_TEMPLATES = [ioi_prompts(8), ioi_prompts(8, template="fun")]
ABLATIONS = ["mean", "resample"]


def circuit_step(model, prompts, *, ablation):
    """The circuit step, against 100 random circuits (not 20): four p-values corrected together
    need p < 0.0125 each at best, and 20 random circuits cannot give less than 1/21."""
    return feasibility_step(model, prompts, "circuit", family="IOI", ablation=ablation, n_random=100)


def keeps_half(ratio: float) -> bool:
    return ratio >= 0.5


@pytest.fixture(scope="module")
def ioi_circuit_steps(model):
    """The circuit step in each of the four variants (templates × ablations)."""
    return robustness(model, None, circuit_step, over={"prompts": IOI_TEMPLATES, "ablation": ABLATIONS},
                      value="value", holds=keeps_half)


def test_the_ioi_circuit_step_holds_across_ablations_and_templates(ioi_circuit_steps):
    """The heads head patching picks on half the prompts keep F(C)/F(M) ≥ 0.5 on the other half
    in all four variants: the demo's template and a paraphrase, mean and resample ablation."""
    assert ioi_circuit_steps.holds_everywhere, ioi_circuit_steps


@pytest.mark.fails_on("smollm2-135m", reason=(
    "SmolLM2: raw p = 0.079 (IOI, mean), 0.0099 (IOI, resample), 0.050 ('fun', mean), 0.020 ('fun', "
    "resample) against 100 random circuits; after Holm's correction for the four only IOI/resample stays "
    "below 0.05 (0.040; the others 0.099, 0.099, 0.059)"))
@pytest.mark.fails_on("gemma3-270m", reason=(
    "Gemma 3 270M: raw p = 0.079 (IOI, mean), 0.040 (IOI, resample), 0.089 ('fun', mean), 0.040 ('fun', "
    "resample) against 100 random circuits; corrected for the four, 0.16 each: none survives"))
def test_the_ioi_circuit_step_beats_random_circuits_after_correction(ioi_circuit_steps):
    """In every variant the circuit comes closer to the model than 100 random circuits, p < 0.05
    after Holm's correction for the four tests."""
    family = holm_family(*ioi_circuit_steps.parts)
    assert family.all_significant, family


@pytest.mark.fails_on("gemma3-270m", reason=(
    "Gemma 3 270M: mean Jaccard 0.79 (95% interval 0.67-1.00) over 50 resamples: L11H3, L15H3, L10H3 and "
    "L15H2 are picked in all 50, the fifth head is not (L9H3 in 19, L12H1 in 16, L15H0 in 15)"))
def test_the_ioi_patching_step_picks_the_same_heads_on_resampled_prompts(model):
    """Stability: the top five heads by head patching, recomputed on 50 bootstrap resamples of
    the prompts, overlap those of all the prompts with a mean Jaccard index of at least 0.8."""
    result = selection_stability(patch(model, IOI_TEMPLATES[0], "head_out"), k=5, n=50)
    assert result.jaccard >= 0.8, result
