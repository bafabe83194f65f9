"""Bad input to the edge probes (`circuitcheck.edges`): refused in one line naming what was
given and what to pass instead, before any pass where the input alone shows it; a metric's
values show only after a pass, and are refused with a `MetricValueError` naming the prompts."""

import numpy as np
import pytest
import torch

from circuitcheck.probes import PromptSet
from circuitcheck.probes.edges import EdgeCircuit, EdgeScores, edge_attribution, edge_patch, edge_patch_scores
from circuitcheck.probes import faithfulness, faithfulness_curve, random_circuit_test
from circuitcheck.probes.metrics import MetricValueError

from .test_faults import refused_before_any_pass
from .test_patching import PROMPTS


def fresh():
    """PROMPTS under a new name: nothing cached for it, so a pass would have to run."""
    return PromptSet(PROMPTS.prompts, PROMPTS.answers, corrupted_prompts=PROMPTS.corrupted_prompts, name="fresh")


STRINGS = list(PROMPTS.prompts)  # prompts without their answers or corrupted twins
SCORES = EdgeScores(model="tiny-llama", prompt_set="fresh", method="exact", ablation="patching", reference="",
                    metric="logit_diff", labels=("embed → logits",), scores=np.array([1.0]), f_clean=1.0,
                    f_target=0.0)
AS_SET = "not a list of 2 strings; wrap them with their answers (and, to patch, their corrupted twins): PromptSet("


@pytest.mark.parametrize("call, message", [
    (lambda m: edge_patch(m, fresh(), SCORES), "edges: an EdgeScores is a ranking, not a set of edges; give its top"),
    (lambda m: edge_patch_scores(m, fresh(), SCORES), "edges: an EdgeScores is a ranking, not a set of edges; "),
    (lambda m: edge_patch(m, fresh(), None), "edges=None: give edge labels such as ['L0H1 → L1H2.q'], an EdgeCirc"),
    (lambda m: EdgeCircuit(None), "EdgeCircuit takes edge labels, not None: EdgeCircuit(['L0H1 → L1H2.q', "),
    (lambda m: EdgeCircuit(SCORES), "EdgeCircuit takes edge labels, not an EdgeScores: "),
    (lambda m: faithfulness(m, fresh(), SCORES), "an EdgeScores is a ranking, not a circuit: take its top k"),
    (lambda m: edge_attribution(m, STRINGS), f"edge_attribution takes prompts as a PromptSet, {AS_SET}"),
    (lambda m: edge_patch(m, STRINGS, []), f"edge_patch takes prompts as a PromptSet, {AS_SET}"),
    (lambda m: edge_patch_scores(m, STRINGS, ["embed → logits"]), "edge_patch_scores takes prompts as a PromptSet, "),
    (lambda m: faithfulness(m, STRINGS, ["embed → logits"]), "faithfulness takes prompts as a PromptSet, "),
    (lambda m: random_circuit_test(m, STRINGS, ["embed → logits"], n=2), "random_circuit_test takes prom"),
    (lambda m: faithfulness_curve(m, PROMPTS.prompts, ["embed → logits"]),
     "faithfulness_curve takes prompts as a PromptSet, not a tuple of 2 strings; "),
    (lambda m: edge_attribution(m, fresh(), ablation="mean", reference=STRINGS),
     f"edge_attribution takes reference as a PromptSet, {AS_SET}"),
    (lambda m: edge_attribution(m, fresh(), method="EAP"), "method 'EAP': choose one of eap, eap-corrupted, eap-ig "),
])
def test_bad_edge_inputs_are_refused_before_any_pass(tiny_llama, call, message):
    refused_before_any_pass(tiny_llama, call, message)


def mean_logit_diff(logits, answers, clean_logits):
    """One number for all the prompts: their mean, which the probe takes itself."""
    picked = logits.gather(1, answers)
    return (picked[:, 0] - picked[:, 1]).mean()


def undefined_on_the_second(logits, answers, clean_logits):
    """The logit difference, NaN on prompt 1 (rows are blocks of the 2 prompts)."""
    picked = logits.gather(1, answers)
    return torch.where(torch.arange(len(logits)) % 2 == 1, torch.nan, picked[:, 0] - picked[:, 1])


NAN = "metric 'undefined_on_the_second' is NaN on prompt(s) [1] of 'fresh' (e.g. 'When "
ONE = "metric 'mean_logit_diff' returned shape () for "


@pytest.mark.parametrize("call, message", [
    (lambda m: edge_attribution(m, fresh(), metric=mean_logit_diff), ONE + "2 rows of logits; a metric returns "),
    (lambda m: edge_attribution(m, fresh(), ablation="mean", metric=mean_logit_diff), ONE),
    (lambda m: faithfulness(m, fresh(), ["embed → logits"], metric=mean_logit_diff), ONE),
    (lambda m: edge_patch(m, fresh(), ["embed → logits"], metric=mean_logit_diff), ONE),
    (lambda m: edge_attribution(m, fresh(), metric=undefined_on_the_second), NAN),
    (lambda m: edge_attribution(m, fresh(), method="eap-ig", ig_steps=2, metric=undefined_on_the_second), NAN),
    (lambda m: edge_patch_scores(m, fresh(), ["embed → logits"], metric=undefined_on_the_second), NAN),
    (lambda m: faithfulness_curve(m, fresh(), ["embed → logits"], sizes=[0.5], metric=undefined_on_the_second),
     NAN),
])
def test_a_metric_that_is_not_one_finite_number_per_prompt_is_refused(tiny_llama, call, message):
    """A metric returning their mean was scored (edge_attribution) or failed deep inside numpy
    ("zero-dimensional arrays cannot be concatenated"); one returning NaN gave NaN scores,
    ranked as the graph's first edges."""
    with pytest.raises(MetricValueError) as refused:
        call(tiny_llama)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value), refused.value
