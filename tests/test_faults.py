"""Counts, sizes and seeds of the probes outside probes/circuits.py and probes/head_scores.py
(those are tested beside their probes): a negative or fractional one is refused before any
pass, in one line naming the argument, its value and the fix."""

import pytest

from circuitcheck.probes import GaussianNoise, PromptSet, ablate, feasibility, noise_corruption

from .test_patching import PROMPTS


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
    passes = []  # a hook on the embeddings: any pass would be counted here
    with tiny_llama.hooks(fwd_hooks=[("hook_embed", lambda x, hook: passes.append(1))]):
        with pytest.raises(ValueError) as refused:
            call(tiny_llama)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value), refused.value
    assert passes == []


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
