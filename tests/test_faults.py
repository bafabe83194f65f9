"""Counts, sizes and seeds of the probes outside probes/circuits.py and probes/head_scores.py
(those are tested beside their probes): a negative or fractional one is refused before any
pass, in one line naming the argument, its value and the fix."""

import inspect

import pytest

import circuitcheck
from circuitcheck.probes import GaussianNoise, PromptSet, ablate, feasibility, noise_corruption

from .test_patching import PROMPTS


def refused_before_any_pass(model, call, message: str) -> None:
    """``call(model)`` raises a one-line ValueError starting with ``message`` and runs no pass
    (a hook on the embeddings counts them)."""
    passes = []
    with model.hooks(fwd_hooks=[("hook_embed", lambda x, hook: passes.append(1))]):
        with pytest.raises(ValueError) as refused:
            call(model)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value), refused.value
    assert passes == []


def fresh():
    """PROMPTS under a new name: nothing cached for it, so a pass would have to run."""
    return PromptSet(PROMPTS.prompts, PROMPTS.answers, corrupted_prompts=PROMPTS.corrupted_prompts, name="fresh")


@pytest.mark.parametrize("call, message", [
    (lambda m: ablate(m, fresh(), "L0H1", ablation="resample", seed=-1), "seed=-1: give a whole number of at least 0; "),
    (lambda m: noise_corruption(m, fresh(), [1], samples=0), "samples=0: give a whole number of at least 1; "),
    (lambda m: noise_corruption(m, fresh(), [1], seed=-4), "seed=-4: give a whole number of at least 0; "),
    (lambda m: noise_corruption(m, fresh(), [-1]), "positions=-1: give a whole number of at least 0; "),
    (lambda m: noise_corruption(m, fresh(), [1.5]), "positions=1.5: give a whole number of at least 0; "),
    (lambda m: noise_corruption(m, fresh(), [1], scale=-3.0), "scale=-3.0: give the noise's size as a number"),
    (lambda m: noise_corruption(m, fresh(), []), "positions=(): name the token indices"),
])
def test_ablation_and_noise_counts_are_refused_before_any_pass(tiny_llama, call, message):
    refused_before_any_pass(tiny_llama, call, message)


def test_noise_for_patching_checks_its_counts_when_made():
    with pytest.raises(ValueError, match="^samples=0: give a whole number of at least 1; "):
        GaussianNoise(positions=(2, 4), samples=0)
    assert GaussianNoise(positions=3).positions == (3,)  # one index is one position


def test_feasibility_checks_every_step_before_running_any(tiny_llama):
    """steps=() was an IndexError after nothing ran; an unknown step was found only after the
    steps before it had run."""
    passes = []
    with tiny_llama.hooks(fwd_hooks=[("hook_embed", lambda x, hook: passes.append(1))]):
        with pytest.raises(ValueError, match=r"^steps=\[\]: choose one or more of answers, task"):
            feasibility(tiny_llama, fresh(), steps=())
        with pytest.raises(ValueError, match=r"^steps=\['task', 'circiut'\]: 'circiut' is not a step; choose"):
            feasibility(tiny_llama, fresh(), steps=["task", "circiut"])
    assert passes == []


PROMPT_PROBES = sorted(name for name in circuitcheck.__all__ if getattr(getattr(circuitcheck, name), "is_probe", False)
                       and "prompts" in inspect.signature(getattr(circuitcheck, name)).parameters)


@pytest.mark.parametrize("name", PROMPT_PROBES)
def test_every_probe_says_to_wrap_a_plain_list_of_prompts_in_a_prompt_set(tiny_llama, name):
    """A list of prompt strings was an AttributeError from deep inside most probes."""
    with pytest.raises(ValueError, match=rf"^{name} takes prompts as a PromptSet, not a list of 2 strings; wrap them"):
        getattr(circuitcheck, name)(tiny_llama, list(PROMPTS.prompts))


def test_a_reference_must_be_a_prompt_set_too(tiny_llama):
    with pytest.raises(ValueError, match="^faithfulness takes reference as a PromptSet, not a tuple of 2 strings"):
        circuitcheck.faithfulness(tiny_llama, fresh(), ["L0H1"], reference=PROMPTS.prompts)
    assert len(PROMPT_PROBES) >= 25  # the top level's probes that read prompts


def mean_only(logits, answers, clean_logits):
    """One number for all the rows: their mean, which every probe takes itself."""
    picked = logits.gather(1, answers)
    return (picked[:, 0] - picked[:, 1]).mean()


@pytest.mark.parametrize("call", [
    lambda m: circuitcheck.patch(m, fresh(), "head_out", metric=mean_only),
    lambda m: circuitcheck.ablate(m, fresh(), "L0H1", metric=mean_only),
    lambda m: circuitcheck.faithfulness(m, fresh(), ["L0H1"], metric=mean_only),
    lambda m: circuitcheck.path_patch(m, fresh(), ["L0H1"], ["L1H2"], receiver_input="q", metric=mean_only),
    lambda m: circuitcheck.attribution_patch(m, fresh(), "head_out", metric=mean_only),
])
def test_a_metric_that_returns_one_number_is_named_by_every_probe(tiny_llama, call):
    """It was a RuntimeError or IndexError from inside the sweep, or scored anyway."""
    with pytest.raises(ValueError, match=r"^metric 'mean_only' returned shape \(\) for \d+ rows of logits; a metric "
                                         "returns a tensor of one number per row"):
        call(tiny_llama)
