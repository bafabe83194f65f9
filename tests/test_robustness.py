"""Robustness of a claim: a planted circuit holds everywhere, a verdict that flips between mean
and zero ablation is caught and named, labels, the figure, and refused input."""

import json

import numpy as np
import pytest

from circuitcheck.probes import PromptSet, ablate, evidence, faithfulness, logit_diff
from circuitcheck.probes.robustness import MAX_VARIANTS, Robustness, robustness

from .test_circuits import OTHER, planted_model
from .test_patching import PROMPTS

SITE = "attn_out L0"  # on tiny_llama, mean and zero ablation of it move the logit difference apart


@pytest.fixture(scope="module")
def planted():
    return planted_model()


def planted_circuit_is_faithful(model, prompts, **options):
    """The planted heads alone give back what ablating everything removes."""
    return faithfulness(model, prompts, ["L0H3", "L1H5"], reference=OTHER, **options)


def test_a_planted_circuit_is_faithful_across_ablations_and_seeds(planted):
    evidence.start()
    result = robustness(planted, PROMPTS, planted_circuit_is_faithful,
                        over={"ablation": ["mean", "resample"], "seed": [0, 1]},
                        value="normalised", holds=lambda normalised: abs(normalised - 1) < 0.1)
    assert evidence.stop() == [result]  # the variants' Results are parts, not evidence of their own
    assert result.holds_everywhere and result.failing == (), result
    assert len(result.parts) == 4 and {p.ablation for p in result.parts} == {"mean", "resample"}
    np.testing.assert_allclose(result.values, [p.normalised for p in result.parts])
    assert result.spread == pytest.approx(result.values.max() - result.values.min()) and result.spread < 0.1
    assert list(result.df.columns) == ["ablation", "seed", "value", "holds"]
    assert result.title == "planted_circuit_is_faithful holds in all 4 variants"
    assert "every combination of ablation (2) × seed (2) evaluated: 4 variants" in result.notes()
    form = result.evidence()
    json.dumps(form, allow_nan=False)
    assert form["kind"] == "robustness" and len(form["parts"]) == 4
    assert form["summary"]["holds_everywhere"] is True and form["figures"][0]["type"] == "scatter"


def stays_negative_after_ablating(model, prompts, **options):
    return ablate(model, prompts, SITE, reference=OTHER, **options)


def test_a_verdict_that_flips_between_mean_and_zero_ablation_is_caught_and_named(tiny_llama):
    mean = ablate(tiny_llama, PROMPTS, SITE, ablation="mean", reference=OTHER).after.mean()
    zero = ablate(tiny_llama, PROMPTS, SITE, ablation="zero", reference=OTHER).after.mean()
    assert mean < zero - 0.05, (mean, zero)  # clearly apart: the verdict flips at the midpoint
    threshold = (mean + zero) / 2
    result = robustness(tiny_llama, PROMPTS, stays_negative_after_ablating,
                        over={"ablation": ["mean", "zero"]}, value="mean_after",
                        holds=lambda after: after < threshold)
    assert not result.holds_everywhere
    assert result.failing == ("ablation=zero",)
    np.testing.assert_allclose(result.values, [mean, zero], rtol=1e-6)
    assert result.spread == pytest.approx(zero - mean, rel=1e-6)
    frame = result.df  # the failing variant first
    assert frame["ablation"].tolist() == ["zero", "mean"] and frame["holds"].tolist() == [False, True]
    assert result.title == "stays_negative_after_ablating fails in 1 of 2 variants (first: ablation=zero)"
    assert "fails in: ablation=zero" in result.notes()
    figure = result.figure()
    assert figure["y"] == [0, 1] and figure["labels"][0] == "ablation=zero: fails"
    assert figure["x"] == pytest.approx([zero, mean], rel=1e-6)
    from circuitcheck.probes.figures import plotly_figure

    assert plotly_figure(figure)["data"][0]["mode"] == "markers"  # the report can draw it


def test_prompt_sets_and_models_are_axes_labelled_by_name(tiny_llama, tiny_gpt2):
    other_template = PromptSet.from_template("Then {IO} and {S} had a long day, and {S} gave a drink to",
                                             [{"IO": "Mary", "S": "John"}, {"IO": "Tom", "S": "James"}],
                                             answers=(" {IO}", " {S}"), name="drink template")
    result = robustness(None, None, logit_diff, over={"model": [tiny_llama, tiny_gpt2],
                                                      "prompts": [PROMPTS, other_template]},
                        holds=lambda mean: bool(np.isfinite(mean)))
    assert result.holds_everywhere and len(result.values) == 4
    assert result.df[["model", "prompts"]].values.tolist() == [
        ["tiny-llama", "IOI pair"], ["tiny-llama", "drink template"],
        ["tiny-gpt2", "IOI pair"], ["tiny-gpt2", "drink template"]]
    assert result.model == "tiny-llama, tiny-gpt2" and result.prompt_set == "IOI pair, drink template"
    assert result.value_name == "mean"  # a LogitDiff's usual number
    np.testing.assert_allclose(result.values[0], logit_diff(tiny_llama, PROMPTS).mean)
    assert result.variants[1] == "model=tiny-llama, prompts=drink template"


def test_a_number_is_its_own_value_and_equal_labels_are_told_apart(tiny_llama):
    renamed = PromptSet(PROMPTS.prompts, PROMPTS.answers, name=PROMPTS.name)
    result = robustness(tiny_llama, None, lambda model, prompts, scale: scale * logit_diff(model, prompts).mean,
                        over={"prompts": [PROMPTS, renamed], "scale": [1.0, -1.0]}, holds=lambda v: v > 0)
    assert isinstance(result, Robustness) and result.parts == ()
    assert sorted(set(result.df["prompts"])) == ["IOI pair", "IOI pair #2"]
    assert len(result.failing) == 2 and result.claim == "the claim"


def test_an_error_in_a_variant_says_which_variant(tiny_llama):
    with pytest.raises(ValueError, match="ablation") as caught:
        robustness(tiny_llama, PROMPTS, stays_negative_after_ablating, over={"ablation": ["mean", "median"]},
                   value="mean_after", holds=lambda v: v < 0)
    assert "(in robustness, variant ablation=median)" in caught.value.__notes__


@pytest.mark.parametrize("kwargs, says", [
    (dict(over={}), "give the variants as a dict"),
    (dict(over={"seed": 0}), r"over\['seed'\]=0: give a list of values"),
    (dict(over={"ablation": "mean"}), r"over\['ablation'\]='mean': give a list"),
    (dict(over={"seed": []}), r"over\['seed'\] is empty"),
    (dict(over={"prompts": ["not a prompt set"]}), "give PromptSets"),
    (dict(over={"seed": list(range(9)), "ablation": ["mean"] * 8}), f"9 seed × 8 ablation = 72 variants.*at most "
                                                                    f"{MAX_VARIANTS}"),
    (dict(holds=0.8), "holds=0.8: give a predicate"),
    (dict(value=3), "value=3: give a function"),
    (dict(claim="faithfulness"), "claim='faithfulness': give a function"),
])
def test_bad_input_is_refused_before_any_pass(tiny_llama, kwargs, says):
    arguments = dict(claim=stays_negative_after_ablating, over={"ablation": ["mean"]}, holds=lambda v: v < 0) | kwargs
    claim = arguments.pop("claim")
    with pytest.raises(ValueError, match=says):
        robustness(tiny_llama, PROMPTS, claim, **arguments)


def test_a_predicate_or_value_that_is_not_usable_is_explained(tiny_llama):
    over = {"ablation": ["mean"]}
    with pytest.raises(ValueError, match="returned None.*True or False"):
        robustness(tiny_llama, PROMPTS, stays_negative_after_ablating, over=over, value="mean_after",
                   holds=lambda v: None)
    with pytest.raises(ValueError, match=r"which number of Ablation.*'mean_after'"):
        robustness(tiny_llama, PROMPTS, stays_negative_after_ablating, over=over, holds=lambda v: v < 0)
    with pytest.raises(ValueError, match="value='no_such': Ablation has no such attribute"):
        robustness(tiny_llama, PROMPTS, stays_negative_after_ablating, over=over, value="no_such",
                   holds=lambda v: v < 0)
    with pytest.raises(ValueError, match="model=None, and over= has no 'model' axis"):
        robustness(None, PROMPTS, stays_negative_after_ablating, over=over, holds=lambda v: v < 0)
