"""The workflow-feasibility map on a tiny random-weight model: which prompts each step uses and
says it used, steps that cannot be measured, the neuron step's per-prompt answers, the report's
feasibility table, and subset labels. Random weights break most steps; the tests check what the
steps measure and report, not the verdicts, except the circuit step, which a planted circuit passes
and random weights fail."""

import numpy as np
import pytest

from circuitcheck.fixtures.families import ioi_prompts
from circuitcheck.probes import STEPS, PromptSet, evidence, feasibility, feasibility_step
from circuitcheck.probes.feasibility import patching_sample
from circuitcheck.probes.neurons import neuron_congruence, neuron_prediction_correlation
from circuitcheck.probes.prompts import index_label
from circuitcheck.reports.render import feasibility_table, render_html
from circuitcheck.reports.sample import synthetic_run

TEMPLATE = "When {A} and {B} went to the {place}, {S} gave the bag to"
# (indirect object, subject): every name is one token for tiny-llama; answers " Mary" ×4, " Tom" ×3.
PAIRS = [("Mary", "John"), ("Tom", "James"), ("Mary", "Sid"), ("Tom", "Dan"), ("Mary", "Paul"),
         ("Tom", "Kate"), ("Mary", "James")]


def ioi_like(pairs, places=None, name="tiny IOI") -> PromptSet:
    """IOI prompts from (indirect object, subject) pairs; corrupted by repeating the indirect object."""
    places = places or ["shops"] * len(pairs)
    fill = [dict(A=io, B=s, place=place) for (io, s), place in zip(pairs, places)]
    return PromptSet([TEMPLATE.format(S=f["B"], **f) for f in fill], [(f" {io}", f" {s}") for io, s in pairs],
                     corrupted_prompts=[TEMPLATE.format(S=f["A"], **f) for f in fill], name=name)


# Six prompts of one token length and a seventh, longer one.
FAMILY = ioi_like(PAIRS, places=["shops"] * 6 + ["big shops"], name="tiny IOI")


@pytest.fixture
def sink():
    evidence.start()
    yield evidence
    evidence.stop()


def test_the_family_has_six_prompts_of_one_length_and_one_longer(tiny_llama):
    lengths = FAMILY.tokenize(tiny_llama).lengths
    assert len(set(lengths[:6])) == 1 and lengths[6] > lengths[0]


def test_patching_uses_every_prompt_of_the_common_length_and_says_which(tiny_llama):
    assert patching_sample(tiny_llama, FAMILY).prompts == FAMILY.prompts[:6]
    assert patching_sample(tiny_llama, FAMILY.subset([0, 1])).prompts == FAMILY.prompts[:2]
    step = feasibility_step(tiny_llama, FAMILY, "patching")
    assert step.n_prompts == 6 and step.prompt_indices == (0, 1, 2, 3, 4, 5)
    assert "on 6 of 7 prompts [0-5]" in step.detail
    assert step.summary()["prompts used"] == "[0-5]"


def test_patching_spreads_its_limit_over_a_larger_family(tiny_llama):
    ten = ioi_like(PAIRS[:6] + PAIRS[:4])
    picked = patching_sample(tiny_llama, ten, limit=8)
    assert len(set(picked.prompts)) <= 8 and picked.name == "tiny IOI [0, 1, 3-6, 8, 9]"


def test_one_prompt_says_the_held_out_p_value_needs_two(tiny_llama):
    one = FAMILY.subset([0])
    for step in ("heads", "patching"):
        result = feasibility_step(tiny_llama, one, step)
        assert result.p_value is None and result.n_prompts == 1
        assert "p-value needs at least 2 prompts" in result.detail, result.detail
    assert "held-out p = " in feasibility_step(tiny_llama, FAMILY, "heads").detail


def test_multi_token_answers_break_at_answers_and_every_later_step_says_why(tiny_llama):
    ioi = ioi_prompts(8)  # ' Amy' is three tokens for tiny-llama
    result = feasibility(tiny_llama, ioi)
    assert STEPS[0] == "answers" and [s.step for s in result.steps] == list(STEPS)
    assert result.first_break == "answers"
    assert not any(s.passed for s in result.steps)
    assert all("' Amy' is 3 tokens" in s.detail for s in result.steps)
    assert all(s.detail.startswith("not measured") and np.isnan(s.value) for s in result.steps[1:])


def test_answers_scored_whole_break_at_answers_too(tiny_llama):
    whole = PromptSet(FAMILY.prompts[:2], [(" Amy", " John"), (" Tom", " James")],
                      corrupted_prompts=FAMILY.corrupted_prompts[:2], multi_token=True, name="whole")
    result = feasibility(tiny_llama, whole, steps=("answers", "task", "neuron"))
    assert result.first_break == "answers"
    assert all("multi-token answer" in s.detail for s in result.steps)
    assert all(s.detail.startswith("not measured") for s in result.steps[1:])


def test_the_neuron_step_checks_every_answer_and_is_judged_on_the_best(tiny_llama):
    """Per distinct answer: its most congruent neuron against its logit over every prompt
    (not the first prompt's answer for all); the step's value is the best answer's r."""
    step = feasibility_step(tiny_llama, FAMILY, "neuron")
    rs, shown = [], []
    for answer, count in ((" Mary", 4), (" Tom", 3)):
        neuron = neuron_congruence(tiny_llama, answer).labels[0]
        r = neuron_prediction_correlation(tiny_llama, FAMILY, neuron, answer).r
        rs.append(r)
        shown.append(f"{answer!r}: {neuron} r = {r:.2f} ({count} prompts)")
    assert step.value == pytest.approx(max(rs))
    assert all(line in step.detail for line in shown), step.detail
    assert step.ci[0] <= step.value <= step.ci[1]
    backwards = FAMILY.subset(range(6, -1, -1))  # now ' Mary' and ' Tom' swap places in order
    assert feasibility_step(tiny_llama, backwards, "neuron").value == pytest.approx(step.value, abs=1e-6)


def test_one_feasibility_call_is_one_report_row(tiny_llama, sink):
    result = feasibility(tiny_llama, FAMILY, family="tiny family")
    [item] = sink.drain()
    assert item is result
    form = evidence.to_evidence(item)
    assert form["kind"] == "feasibility"
    assert [(p["kind"], p["summary"]["step"]) for p in form["parts"]] == [
        ("feasibility_step", step) for step in STEPS]
    run = synthetic_run(0)
    run["tests"].append({"nodeid": "hypotheses/test_mine.py::test_map[tiny-llama]",
                         "hypothesis": "hypotheses/test_mine.py::test_map", "model": "tiny-llama",
                         "claim": "", "outcome": "passed", "message": "", "details": "", "duration": 0.0,
                         "evidence": [form]})
    steps, rows = feasibility_table(run)
    assert steps == list(STEPS)
    assert [(r["model"], r["family"], r["first_break"]) for r in rows] == [
        ("tiny-llama", "tiny family", result.first_break)]
    assert [c["outcome"] == "passed" for c in rows[0]["cells"]] == [s.passed for s in result.steps]
    html = render_html(run)
    assert "<td>tiny-llama</td><td>tiny family</td>" in html
    assert html.count("◀") == 1 + 1  # the first break, and the legend


def test_subsets_are_named_by_their_indices():
    ioi = ioi_prompts(8)
    assert ioi.subset([2]).name == "IOI [2]"
    assert ioi.subset([0, 2, 5]).name == "IOI [0, 2, 5]"
    assert ioi.subset([0, 1, 2, 3, 7]).name == "IOI [0-3, 7]"
    assert ioi.subset([1, 0]).name == "IOI [1, 0]" and ioi.subset([0, 1]).name == "IOI [0, 1]"
    assert ioi.subset([3]).name != ioi.subset([2]).name


def test_long_index_labels_are_short_and_still_tell_lists_apart():
    evens, odds = list(range(0, 100, 2)), list(range(1, 101, 2))
    assert len(index_label(evens)) < 60
    assert index_label(evens).startswith("[0, 2, 4, …, 96, 98: 50 prompts #")
    labels = {index_label(evens), index_label(odds), index_label(evens[:-1] + [97]),
              index_label(list(reversed(evens)))}
    assert len(labels) == 4
    assert index_label(range(200)) == "[0-199]"


def test_the_circuit_step_finds_a_planted_circuit_faithful_on_held_out_prompts():
    """A tiny model whose heads L0H3 and L1H5 carry the logits (×200): head patching on the even
    prompts finds them, and on the odd prompts they keep the logit difference and beat every
    random circuit of five heads."""
    from .test_circuits import planted_model

    model = planted_model()
    step = feasibility_step(model, FAMILY, "circuit")
    assert step.passed and step.value >= 0.5, step.detail
    assert step.p_value == pytest.approx(1 / 21), step.detail  # no random circuit comes as close
    assert "L0H3" in step.detail and "L1H5" in step.detail and "on prompts [0, 2, 4]" in step.detail
    assert step.prompt_indices == (0, 1, 2, 3, 4, 5) and step.n_prompts == 6


def test_the_circuit_step_judges_heads_chosen_on_other_prompts(tiny_llama):
    """On random weights: the step's value is F(C)/F(M) on the odd prompts of the heads that
    head patching ranks first on the even ones, and the step holds only when random circuits
    do worse. (The random model prefers the subject, so the answers are swapped to give it a
    positive logit difference to keep.)"""
    from circuitcheck.probes import faithfulness, patch

    swapped = PromptSet(FAMILY.prompts, [(b, a) for a, b in FAMILY.answers],
                        corrupted_prompts=FAMILY.corrupted_prompts, name="tiny IOI, answers swapped")
    step = feasibility_step(tiny_llama, swapped, "circuit")
    sample = swapped.subset(range(6))
    sweep = patch(tiny_llama, sample, "head_out")
    even = np.abs((sweep.values - sweep.target_baseline)[:, 0::2].mean(axis=1))
    heads = [f"L{layer}H{head}" for layer, head in (sweep.sites[i] for i in even.argsort()[::-1][:5])]
    expected = faithfulness(tiny_llama, swapped.subset([1, 3, 5]), heads)
    assert expected.f_model > 0
    assert step.value == pytest.approx(expected.ratio, abs=1e-6), step.detail
    assert step.passed == (step.value >= 0.5 and step.p_value < 0.05)
    # here the ratio holds (0.78), but random circuits of five heads come as close: no circuit
    assert step.value >= 0.5 and step.p_value >= 0.05 and not step.passed, step.detail


def test_one_prompt_chooses_and_judges_the_circuit_on_it(tiny_llama):
    step = feasibility_step(tiny_llama, FAMILY.subset([0]), "circuit")
    assert "chosen and judged on the same prompt" in step.detail and step.n_prompts == 1
