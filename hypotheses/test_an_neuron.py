"""The 'an' neuron workflow, and how far it carries to numbers and days.

GPT-2 large reference (the original study): neuron L31.N892's output weights align
with the unembedding of " an", its activation tracks the model predicting " an",
and patching it alone recovers about half of the clean logit difference on
"I climbed up the pear tree and picked a pear. I climbed up the apple tree and picked".
"""

import pytest

from circuitcheck import (PromptSet, a_an_prompts, corruption_check, counting_prompts, day_prompts, logit_diff,
                          neuron_congruence, neuron_prediction_correlation, patch, top_k)
from circuitcheck.registries import parse_neuron
from circuitcheck.scrutiny import published

SEED_STUDY = "Miller & Neo 2023, 'We Found An Neuron in GPT-2' (the seed study)"
PEAR_APPLE = PromptSet(
    ["I climbed up the pear tree and picked a pear. I climbed up the apple tree and picked"],
    [(" an", " a")],
    corrupted_prompts=["I climbed up the pear tree and picked a pear. I climbed up the lemon tree and picked"],
    name="pear/apple")
A_AN = a_an_prompts()
AN_EXPECTED = PromptSet(*zip(*[(p, a, c) for p, a, c in zip(A_AN.prompts, A_AN.answers, A_AN.corrupted_prompts)
                               if a[0] == " an"]), name="a/an, ' an' expected")


@pytest.mark.fails_on("gemma3-270m", reason=(
    "Gemma 3 270M prefers ' a' on pear/apple: logit difference -2.63"))
def test_pear_apple_prefers_an(model):
    """On the pear/apple prompt the model prefers ' an' to ' a' (SmolLM2: about +0.7)."""
    result = logit_diff(model, PEAR_APPLE)
    assert result.per_prompt[0] > 0, result


@pytest.mark.fails_on("smollm2-135m", reason=(
    "it picks ' an' on only about a quarter of the vowel objects (pear/apple is one of them) and "
    "' a' on every consonant object; the a/an choice is weak here"))
@pytest.mark.fails_on("gemma3-270m", reason=(
    "its choice is right on 72 of the 126 prompts (57%); it leans to ' a' (on the ' an' prompts "
    "the mean logit difference is -3.0)"))
def test_the_article_follows_the_object_across_the_family(model):
    """Over the a/an family (126 prompts), the model's top choice between ' a' and ' an' is
    right on at least 90% of the prompts."""
    result = logit_diff(model, A_AN)
    assert (result.per_prompt > 0).mean() >= 0.9, result


def test_a_neuron_is_exceptionally_congruent_with_an(model, evidence):
    """Some MLP neuron's output weights align with ' an' far beyond the rest (z-score > 5),
    and ' an' is that neuron's most congruent token."""
    congruence = neuron_congruence(model, " an")
    evidence.number("z-score of the top neuron's congruence", congruence.summary()["z_score_of_top"],
                    threshold=5)
    assert congruence.summary()["z_score_of_top"] > 5 and congruence.token_rank[0] == 1, congruence


@pytest.mark.fails_on("gemma3-270m", reason=(
    "its most ' an'-congruent neuron, L16N1611 (congruence z = 19.6), is anti-correlated with the "
    "' an' logit over the a/an family: r = -0.67, 95% interval [-0.76, -0.56]"))
def test_the_an_neuron_fires_when_the_model_predicts_an(model):
    """The most ' an'-congruent neuron's activation correlates with the ' an' logit over the
    a/an family: r > 0.5, with the 95% bootstrap interval above 0."""
    neuron = neuron_congruence(model, " an").labels[0]
    result = neuron_prediction_correlation(model, A_AN, neuron, " an")
    assert result.r > 0.5 and result.ci[0] > 0, result


@pytest.mark.fails_on("gemma3-270m", reason=(
    "there is nothing to recover: the corruption flips none of the 54 ' an' prompts, on which it "
    "prefers ' a' already (mean logit difference -3.01 clean, -5.14 corrupted)"))
def test_patching_the_an_neuron_recovers_most_of_its_layer(model):
    """Patching the top ' an' neuron alone (clean into corrupted, all positions) recovers at
    least 30% of the logit difference on the ' an' prompts, and at least 80% of what
    patching its whole MLP layer recovers."""
    assert corruption_check(model, AN_EXPECTED).fraction_flipped > 0
    layer, index = parse_neuron(model, neuron_congruence(model, " an").labels[0])
    alone = patch(model, AN_EXPECTED, "neuron", layers=[layer], neurons=[index])
    whole = patch(model, AN_EXPECTED, "mlp_out_all_pos", layers=[layer])
    assert alone.recovery[0] >= 0.3, alone
    assert alone.recovery[0] >= 0.8 * whole.recovery[0], (alone, whole)


@pytest.mark.models("smollm2-135m")
def test_l25n1527_is_the_an_neuron_on_smollm2(model):
    """On SmolLM2-135M the ' an' neuron is L25N1527; on pear/apple it recovers about as much
    of the logit difference as GPT-2 large's L31N892 does in the study: half, within 0.2."""
    assert neuron_congruence(model, " an").labels[0] == "L25N1527"
    result = patch(model, PEAR_APPLE, "neuron", layers=[25], neurons=[1527])
    measured = published(result.recovery[0], reported=0.5, band=0.2, model=model, what="recovery of the ' an' neuron "
                         "alone", source=SEED_STUDY, reported_on="GPT-2 large (L31N892)")
    assert measured.replicates, (measured, result)


@pytest.mark.models("gpt2-large")
def test_gpt2_large_reference_an_neuron(model):
    """GPT-2 large: L31N892 is the most ' an'-congruent neuron and patching it recovers
    roughly half of the pear/apple logit difference."""
    assert neuron_congruence(model, " an").labels[0] == "L31N892"
    result = patch(model, PEAR_APPLE, "neuron", layers=[31], neurons=[892])
    measured = published(result.recovery[0], reported=0.5, band=0.2, model=model, what="recovery of L31N892 alone",
                         source=SEED_STUDY)
    assert measured.replicates, (measured, result)


@pytest.mark.fails_on("smollm2-135m", reason=(
    "the analogy breaks for numbers: the most '5'-congruent neuron (L29N1454) is exceptional in "
    "its weights (z ≈ 9) but its activation does not track the '5' logit over the counting "
    "prompts (r ≈ 0.05, interval spanning 0)"))
@pytest.mark.fails_on("gemma3-270m", reason=(
    "the analogy breaks for numbers: the most '5'-congruent neuron (L16N1891, z = 29) does not "
    "track the '5' logit over the 8 counting prompts (r = 0.04, interval [-0.72, 0.79])"))
def test_a_congruent_neuron_predicts_the_next_number(model):
    """The most congruent neuron for the answer digit '5' fires when the model predicts it:
    r > 0.5 over the counting prompts, interval above 0."""
    counting = counting_prompts(model)
    token = counting.answers[0][0]
    neuron = neuron_congruence(model, token).labels[0]
    result = neuron_prediction_correlation(model, counting, neuron, token)
    assert result.r > 0.5 and result.ci[0] > 0, result


@pytest.mark.fails_on("smollm2-135m", reason=(
    "the analogy breaks for days at the first step: after 'Monday, Tuesday,' it mostly predicts "
    "months (' April', ' January'); the next day is its top choice on only about a fifth of the "
    "prompts, so there is no behaviour for a neuron to carry"))
@pytest.mark.fails_on("gemma3-270m", reason=(
    "nearly: the next day is its top choice on 10 of 14 prompts (71%) and second on the rest"))
def test_the_model_continues_the_days_of_the_week(model):
    """The next day is the top prediction on at least 80% of the day prompts."""
    result = top_k(model, day_prompts())
    assert (result.correct_rank == 1).mean() >= 0.8, result
