"""The IOI circuit as a whole (Wang et al. 2022; circuitry, Shi et al. 2024).

The circuit: the six heads whose outputs, patched clean into corrupted, restore most
of the logit difference. Everything outside it is mean-ablated over the ABC prompts
(a third name in place of the repeated one). Claims: it is faithful, also under resample
ablation and on a paraphrased template it was not chosen on (robustness); it is found again
on bootstrap resamples of the prompts (stability); it beats random circuits of its size on
both templates, after correcting for the two tests (Holm); it is complete and minimal, its
top head reads earlier circuit heads through its query, and ablating the top head brings up
backup heads.
"""

import pytest

from circuitcheck import (Circuit, compensation, completeness, faithfulness, ioi_abc_prompts, ioi_prompts,
                          minimality, patch, path_patch, random_circuit_test)
from circuitcheck.scrutiny import holm_family, robustness, selection_stability

IOI, ABC = ioi_prompts(8), ioi_abc_prompts(8)
FUN, FUN_ABC = ioi_prompts(8, template="fun"), ioi_abc_prompts(8, template="fun")
TEMPLATES = [IOI, FUN]
ABC_OF = {IOI.name: ABC, FUN.name: FUN_ABC}  # each template's reference for ablation
ABLATIONS = ["mean", "resample"]
SIZE = 6


def at_least_half(ratio: float) -> bool:
    return ratio >= 0.5


@pytest.fixture(scope="module")
def circuit(model):
    """The SIZE heads with the largest recovery when patched clean into corrupted."""
    sweep = patch(model, IOI, "head_out")
    return Circuit(list(sweep.top(SIZE)["head"]))


def test_the_circuit_is_faithful(model, circuit):
    """With only the circuit left (the rest mean-ablated over ABC) the model keeps at least
    half its logit difference: F(C)/F(M) ≥ 0.5."""
    result = faithfulness(model, IOI, circuit, reference=ABC)
    assert result.ratio >= 0.5, result


@pytest.mark.fails_on("smollm2-135m", reason=(
    "SmolLM2: under resample ablation the circuit keeps F(C)/F(M) = 0.36 on IOI and 0.23 on the 'fun' "
    "template (mean ablation: 0.66 and 0.50): its faithfulness depends on the ablation"))
def test_the_circuit_is_faithful_across_ablations_and_templates(model, circuit):
    """F(C)/F(M) ≥ 0.5 in all four variants: mean and resample ablation (over each template's
    ABC prompts), on the demo's template and on a paraphrase the circuit was not chosen on."""
    def kept_by_the_circuit(model, prompts, *, ablation):
        return faithfulness(model, prompts, circuit, reference=ABC_OF[prompts.name], ablation=ablation)

    result = robustness(model, None, kept_by_the_circuit, over={"prompts": TEMPLATES, "ablation": ABLATIONS},
                        value="ratio", holds=at_least_half)
    assert result.holds_everywhere, result


@pytest.mark.fails_on("gemma3-270m", reason=(
    "Gemma 3 270M: mean Jaccard 0.75 (95% interval 0.71-1.00) over 50 resamples: four of the six heads are "
    "picked in every resample, the last two trade places with others (L5H2 is picked in 18)"))
def test_the_circuit_is_found_again_on_resampled_prompts(model):
    """Stability: on 50 bootstrap resamples of the prompts the top six heads by patching
    overlap the circuit chosen on all of them with a mean Jaccard index of at least 0.8."""
    result = selection_stability(patch(model, IOI, "head_out"), k=SIZE, n=50)
    assert result.jaccard >= 0.8, result


def test_the_circuit_beats_random_circuits_on_both_templates(model, circuit):
    """On each template the circuit is closer to the model than random six-head circuits,
    p < 0.05 over 100 of them after Holm's correction for the two tests."""
    family = holm_family(*(random_circuit_test(model, prompts, circuit, n=100, reference=ABC_OF[prompts.name])
                           for prompts in TEMPLATES))
    assert family.all_significant, family


@pytest.mark.models("smollm2-135m")  # the expected failure quotes its numbers
@pytest.mark.xfail(strict=True, reason="SmolLM2: knocking out L23H3 leaves |F(C\\K) - F(M\\K)| = 3.86 "
                   "(1.77 at K = empty), above 0.3 x F(M) = 1.55: the model compensates for L23H3, the circuit does not")
def test_the_circuit_is_complete(model, circuit):
    """For every K tried (∅, random, greedy), |F(C \\ K) − F(M \\ K)| stays under 30% of F(M)."""
    result = completeness(model, IOI, circuit, reference=ABC, n_random=4, greedy_steps=2)
    f_model = faithfulness(model, IOI, circuit, reference=ABC).f_model
    assert result.worst[1] < 0.3 * f_model, result


@pytest.mark.models("smollm2-135m")  # the expected failure quotes its numbers
@pytest.mark.xfail(strict=True, reason="SmolLM2: removing L19H2 changes F(C\\K) by at most 0.069, under "
                   "5% of F(C) = 3.41 (0.17); the other five heads change it by up to 4.64")
def test_every_head_of_the_circuit_is_needed(model, circuit):
    """Minimality: removing any one head changes F(C \\ K) by at least 5% of F(C) for some K."""
    result = minimality(model, IOI, circuit, reference=ABC, n_random=2)
    assert result.not_needed(0.05 * abs(result.f_circuit)) == [], result


@pytest.mark.models("smollm2-135m")  # the expected failure quotes its numbers
@pytest.mark.xfail(strict=True, reason="SmolLM2: the earlier circuit heads restore -1.5% (effect -0.16 of a "
                   "clean - corrupted gap of 10.4) through the top head's query")
def test_the_top_head_reads_earlier_circuit_heads_through_its_query(model, circuit):
    """Path patching: the circuit's heads before the top head, patched clean, restore at least
    10% of the logit difference through the top head's query alone."""
    top = patch(model, IOI, "head_out").top(1)["head"][0]
    layer = int(top[1:].split("H")[0])
    senders = [h for h in circuit.heads if int(h[1:].split("H")[0]) < layer]
    if not senders:
        pytest.skip(f"no circuit head comes before the top head {top}")
    result = path_patch(model, IOI, senders, [top], receiver_input="q")
    assert result.recovery >= 0.1, result


def test_ablating_the_top_head_brings_up_a_backup_head(model, circuit):
    """With the top head mean-ablated, some other head's direct effect rises by more than 0.1."""
    top = patch(model, IOI, "head_out").top(1)["head"][0]
    result = compensation(model, IOI, [top], reference=ABC)
    assert result.top_risers(1)["change"][0] > 0.1, result
