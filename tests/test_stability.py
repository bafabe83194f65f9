"""Stability of a selection under bootstrap resampling of the prompts, on tiny models: a planted
circuit is selected on every resample, a random model's top heads are not, the table fast path
equals selecting again through patching, seeds reproduce, bad input."""

import json

import numpy as np
import pytest

from circuitcheck.probes import PromptSet, head_attribution, logit_diff, patch
from circuitcheck.probes.stability import jaccard, resamples, selection_stability, stability

from .test_circuits import planted_model
from .test_patching import PROMPTS

TEMPLATE = "When {IO} and {S} went to the shops, {S} gave the bag to"


def ioi(pairs, name):
    return PromptSet.from_template(TEMPLATE, [{"IO": a, "S": b} for a, b in pairs], answers=(" {IO}", " {S}"),
                                   corrupted_template=TEMPLATE.replace(", {S} gave", ", {IO} gave"), name=name)


NAMES = ["Mary", "John", "Tom", "James", "Paul", "Sarah", "Alice", "Bob", "Kate", "Luke", "Rachel", "Anne"]
# twelve name pairs, one template: on a random model the corruption moves the logit difference
# by a few hundredths, either way, so a top-k read off a patching sweep is mostly the sample
NOISY = ioi([(NAMES[i], NAMES[(i + 5) % 12]) for i in range(12)], "noisy IOI")
# name pairs on which the planted model's two heads each move the logit difference more than any
# other head, in the clean direction (checked below): its circuit does the task on every prompt
PLANTED = ioi([("Mary", "Tom"), ("Mary", "James"), ("Mary", "Sarah"), ("John", "Tom"), ("John", "Bob"),
               ("Tom", "Mary"), ("Tom", "Sarah"), ("James", "John")], "planted IOI")


def top_heads(k):
    def select(model, prompts):
        return patch(model, prompts, "head_out").top(k)["site"]
    return select


def test_a_planted_circuit_is_selected_on_every_resample():
    model = planted_model()  # L0H3 and L1H5 write 200 × their usual output
    sweep = patch(model, PLANTED, "head_out")
    effect, gap = sweep.values - sweep.target_baseline, sweep.source_baseline - sweep.target_baseline
    planted = [sweep.labels.index("L0H3"), sweep.labels.index("L1H5")]
    others = np.delete(effect, planted, axis=0)
    # on every prompt: a positive gap, and both planted heads above every other head, so the top 2
    # by recovery over any resample (means of these columns) are the planted heads
    assert (gap > 0).all() and (effect[planted].min(axis=0) > others.max(axis=0)).all()
    fast = selection_stability(sweep, k=2, n=50)
    assert set(fast.selected) == {"L0H3", "L1H5"}
    assert fast.jaccard == 1.0 and fast.interval == (1.0, 1.0) and fast.summary()["always selected"] == 2
    generic = stability(model, PLANTED, top_heads(2), n=4)
    assert generic.jaccard >= 0.8 and generic.jaccard == 1.0
    assert list(fast.df["frequency"]) == [1.0, 1.0] and fast.df["in reference"].all()


def test_a_random_models_top_heads_by_patching_on_noisy_prompts_are_unstable(tiny_llama):
    sweep = patch(tiny_llama, NOISY, "head_out")
    result = selection_stability(sweep, k=3, n=50, seed=0)
    # measured: Jaccard 0.368 (interval 0.0–1.0), no head selected on every resample; a selection
    # that were the model's would be 1.0, and Méloux et al. report 0.67 for GPT-2 small's IOI circuit
    assert 0 < result.jaccard < 0.9, result
    assert result.summary()["always selected"] == 0 and result.interval[0] < 0.5
    assert result.jaccard == pytest.approx(np.mean([jaccard(result.selected, s) for s in result.selections]))
    frequency = list(result.df["frequency"])
    assert frequency == sorted(frequency, reverse=True) and len(frequency) > 3
    assert result.figure()["type"] == "bar" and result.figure()["x"] == list(result.df["component"])
    form = json.loads(json.dumps(result.evidence()))  # what the report shows
    assert form["kind"] == "stability" and form["summary"]["jaccard"] == pytest.approx(result.jaccard)


def test_the_fast_path_equals_selecting_again_through_patching(tiny_llama):
    sweep = patch(tiny_llama, NOISY, "head_out")
    fast = selection_stability(sweep, k=3, n=8, seed=4)
    generic = stability(tiny_llama, NOISY, top_heads(3), n=8, seed=4)
    np.testing.assert_array_equal(fast.indices, generic.indices)
    np.testing.assert_array_equal(fast.indices, resamples(len(NOISY), 8, 4))  # the shared seeded draw
    assert fast.selected == generic.selected == tuple(sweep.top(3)["site"])
    assert fast.selections == generic.selections
    np.testing.assert_array_equal(fast.jaccards, generic.jaccards)
    assert fast.counts == generic.counts


def test_seeds_reproduce_and_resamples_follow_the_prompts(tiny_llama):
    sweep = patch(tiny_llama, NOISY, "head_out")
    a, b = selection_stability(sweep, k=3, seed=7), selection_stability(sweep, k=3, seed=7)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.selections == b.selections and a.jaccard == b.jaccard
    assert not np.array_equal(a.indices, selection_stability(sweep, k=3, seed=8).indices)
    assert a.indices.shape == (50, 12) and a.indices.min() >= 0 and a.indices.max() < 12
    seen = []

    def select(model, prompts):
        seen.append(prompts)
        return ["L0H1"]

    result = stability(tiny_llama, NOISY, select, n=3, seed=7)
    assert seen[0] is NOISY and result.jaccard == 1.0
    for rows, resample in zip(a.indices[:3], seen[1:]):  # with replacement: repeats kept, twins follow
        assert resample.prompts == tuple(NOISY.prompts[i] for i in rows)
        assert resample.corrupted_prompts == tuple(NOISY.corrupted_prompts[i] for i in rows)
        assert resample.answers == tuple(NOISY.answers[i] for i in rows)


def test_head_attribution_tables_resample_too(tiny_llama):
    attribution = head_attribution(tiny_llama, NOISY)
    result = selection_stability(attribution, k=2, n=20)
    assert result.selected == tuple(attribution.top(2)["head"])
    by_size = selection_stability(attribution, k=2, n=20, score="abs_mean")
    assert len(by_size.selected) == 2 and 0 <= by_size.jaccard <= 1
    rows = result.indices[0]
    again = head_attribution(tiny_llama, NOISY.subset(rows))
    assert result.selections[0] == tuple(again.top(2)["head"])  # what attribution on the resample gives


def test_bad_input_gets_clear_errors(tiny_llama):
    sweep = patch(tiny_llama, PROMPTS, "head_out")
    with pytest.raises(ValueError, match="select=.*give a function"):
        stability(tiny_llama, PROMPTS, ["L0H1"])
    with pytest.raises(ValueError, match="^n=0: give a whole number of at least 1"):
        stability(tiny_llama, PROMPTS, top_heads(2), n=0)
    with pytest.raises(ValueError, match="^seed=-1: give a whole number of at least 0"):
        selection_stability(sweep, seed=-1)
    with pytest.raises(ValueError, match="a bootstrap of 1 prompt"):
        stability(tiny_llama, PROMPTS.subset([0]), top_heads(2))
    with pytest.raises(ValueError, match="select returned 'L0H1' on all the prompts; return a list"):
        stability(tiny_llama, PROMPTS, lambda model, prompts: "L0H1")
    with pytest.raises(ValueError, match="select returned a table with columns"):
        stability(tiny_llama, PROMPTS, lambda model, prompts: patch(model, prompts, "head_out").top(2)[["mean"]])
    with pytest.raises(ValueError, match="needs a Result with per-prompt values.*not LogitDiff"):
        selection_stability(logit_diff(tiny_llama, PROMPTS))
    with pytest.raises(ValueError, match="^k=0: give a whole number of at least 1"):
        selection_stability(sweep, k=0)
    with pytest.raises(ValueError, match="k=9: Patching has 8 components"):
        selection_stability(sweep, k=9)
    with pytest.raises(ValueError, match="score 'mean': for a Patching choose one of recovery, effect, abs_effect"):
        selection_stability(sweep, score="mean")
