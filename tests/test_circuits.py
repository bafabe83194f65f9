"""Circuits on tiny models: batched evaluation equals one hooked run per circuit, a planted
circuit is faithful and beats random circuits, completeness and minimality, bad input."""

import numpy as np
import pytest
import torch

from circuitcheck.probes import PromptSet
from circuitcheck.probes import Circuit, completeness, faithfulness, minimality, random_circuit_test
from circuitcheck.probes.circuits.engine import setup

from .test_patching import PROMPTS

# The ABC form of PROMPTS: a third name in place of the repeated one (the mean-ablation reference).
OTHER = PromptSet(["When Mary and John went to the shops, Tom gave the bag to",
                   "When Tom and James went to the park, Mary gave the ball to"], name="ABC pair")


def reference_metric(model, prompts, circuit, reference, kind):
    """F(C) the plain way: one run_with_hooks, each head outside the circuit overwritten."""
    tokenized = prompts.tokenize(model)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    with torch.inference_mode():
        _, cache = model.run_with_cache(reference.tokenize(model).tokens)
    finals = tokenized.final_positions
    where = dict(circuit.positions)

    def hook(layer):
        def replace(z, hook):
            for head in range(n_heads):
                label = f"L{layer}H{head}"
                ablated = cache[hook.name].mean(0) if kind == "mean" else torch.zeros_like(z[0])
                for row in range(len(z)):
                    for pos in range(z.shape[1]):
                        spec = where.get(label)
                        kept = label in circuit.heads and (
                            spec is None or (spec == "end" and pos == finals[row]) or
                            (spec != "end" and pos in spec))
                        if not kept:
                            z[row, pos, head] = ablated[pos, head]
            return z
        return replace

    hooks = [(f"blocks.{l}.attn.hook_z", hook(l)) for l in range(n_layers)]
    if circuit.mlps is not None:
        def mlp(layer):
            def replace(out, hook):
                if layer not in circuit.mlps:
                    out[:] = cache[hook.name].mean(0) if kind == "mean" else 0
                return out
            return replace
        hooks += [(f"blocks.{l}.hook_mlp_out", mlp(l)) for l in range(n_layers)]
    with torch.inference_mode():
        logits = model.run_with_hooks(tokenized.tokens, fwd_hooks=hooks)
    final = logits[torch.arange(len(finals)), finals]
    answers = tokenized.answer_ids
    return (final.gather(1, answers[:, :1]) - final.gather(1, answers[:, 1:])).squeeze(1).numpy()


@pytest.mark.parametrize("kind", ["mean", "zero"])
def test_batched_circuits_equal_one_hooked_run_each(tiny_llama, kind):
    circuits = [Circuit(["L0H1", "L1H2"]), Circuit(["L1H0"], positions={"L1H0": "end"}),
                Circuit(["L0H0", "L0H3", "L1H3"], positions={"L0H0": [2, 5]}),
                Circuit(["L0H2"], mlps=[1]), Circuit([], mlps=[])]
    s = setup(tiny_llama, PROMPTS, kind, OTHER)
    batched = s.evaluate(circuits)
    one_by_one = s.evaluate(circuits, tokens_per_pass=1)  # one circuit per pass
    for circuit, row, single in zip(circuits, batched, one_by_one):
        expected = reference_metric(tiny_llama, PROMPTS, circuit, OTHER, kind)
        np.testing.assert_allclose(row, expected, atol=1e-4)
        np.testing.assert_allclose(single, expected, atol=1e-4)


def test_faithfulness_of_the_whole_model_is_the_model(tiny_gpt2):
    everything = Circuit.full(tiny_gpt2)
    result = faithfulness(tiny_gpt2, PROMPTS, everything)
    assert result.ratio == pytest.approx(1.0, abs=1e-4)
    assert result.gap < 1e-4
    assert result.summary()["F(C)/F(M)"] == pytest.approx(1.0, abs=1e-4)
    assert result.figure()["type"] == "bar" and list(result.df.columns) == ["prompt", "F(M)", "F(C)", "F(empty)"]


def planted_model(heads=((0, 3), (1, 5)), factor=200.0):
    """A 2-layer, 8-head tiny Llama whose chosen heads write 200 × their usual output: they carry
    the logits, so the circuit of those heads is faithful and a random one is not."""
    from circuitcheck.fixtures.loading import boot_bridge
    from circuitcheck.fixtures.tiny import tiny_hf_model

    hf_model, tokenizer = tiny_hf_model("llama", seed=1, n_heads=8)
    d_head = hf_model.config.hidden_size // 8
    with torch.no_grad():
        for layer, head in heads:
            hf_model.model.layers[layer].self_attn.o_proj.weight[:, head * d_head:(head + 1) * d_head] *= factor
    return boot_bridge(hf_model, tokenizer, "tiny-llama-planted-circuit")


def test_a_planted_circuit_is_faithful_and_beats_random_circuits():
    model = planted_model()
    test = random_circuit_test(model, PROMPTS, ["L0H3", "L1H5"], n=60, reference=OTHER)
    [faithful] = test.parts
    assert faithful.normalised == pytest.approx(1.0, abs=0.1), faithful
    assert test.p_value < 0.05 and test.beats_random(0.95), test
    assert faithful.gap < np.median(test.random_gaps) / 10
    # a random circuit without the planted heads keeps almost none of it
    other = faithfulness(model, PROMPTS, ["L0H0", "L1H1"], reference=OTHER)
    assert other.gap > 5 * faithful.gap


def test_random_circuits_are_seeded_and_the_p_value_counts_ties(tiny_llama):
    a = random_circuit_test(tiny_llama, PROMPTS, ["L0H1"], n=8, seed=3)
    b = random_circuit_test(tiny_llama, PROMPTS, ["L0H1"], n=8, seed=3)
    assert a.random_circuits == b.random_circuits
    np.testing.assert_array_equal(a.random_metric, b.random_metric)
    ties = (a.random_gaps <= a.candidate_gap).sum()
    assert a.p_value == pytest.approx((1 + ties) / 9)
    assert all(len(Circuit([c.strip("{}")]).heads) == 1 for c in a.random_circuits)


def test_completeness_of_the_whole_model_is_exact_and_greedy_finds_the_worst_k(tiny_llama):
    full = completeness(tiny_llama, PROMPTS, Circuit.full(tiny_llama), n_random=3, greedy_steps=1)
    np.testing.assert_allclose(full.gaps, 0, atol=1e-4)  # C = M: every K gives the same model
    part = completeness(tiny_llama, PROMPTS, ["L0H1", "L1H2", "L1H0"], n_random=4, greedy_steps=2)
    assert part.sources[0] == "empty" and part.ks[0] == ()
    assert part.sources.count("greedy") == 2
    worst_k, worst_gap = part.worst
    assert worst_gap == pytest.approx(part.gaps.max())
    greedy = [i for i, s in enumerate(part.sources) if s == "greedy"]
    assert len(part.ks[greedy[1]]) == 2 and part.ks[greedy[1]][:1] == part.ks[greedy[0]]


def test_minimality_finds_the_component_that_is_not_needed():
    model = planted_model(heads=((0, 3),))
    result = minimality(model, PROMPTS, ["L0H3", "L1H1"], n_random=3, reference=OTHER)
    change = dict(zip(result.components, result.change))
    assert change["L0H3"] > 10 * change["L1H1"], result
    assert result.needed(0.5 * change["L0H3"]) == ["L0H3"]
    assert "L1H1" in result.not_needed(0.5 * change["L0H3"])


def test_bad_input_gets_clear_errors(tiny_llama):
    with pytest.raises(ValueError, match="empty"):
        faithfulness(tiny_llama, PROMPTS, [])
    with pytest.raises(ValueError, match="L7H0 does not exist"):
        faithfulness(tiny_llama, PROMPTS, ["L7H0"])
    with pytest.raises(ValueError, match="write heads as"):
        Circuit(["head 3"])
    short = PromptSet(["When Mary went out"], name="short")
    with pytest.raises(ValueError, match="tokens wide.*same template"):
        faithfulness(tiny_llama, PROMPTS, ["L0H1"], reference=short)
    with pytest.raises(ValueError, match="not in the circuit"):
        Circuit(["L0H1"], positions={"L1H1": "end"})
    with pytest.raises(ValueError, match="positions 0–"):
        faithfulness(tiny_llama, PROMPTS, Circuit(["L0H1"], positions={"L0H1": [99]}))
    with pytest.raises(ValueError, match="ablation 'median'"):
        faithfulness(tiny_llama, PROMPTS, ["L0H1"], ablation="median")


def test_compensation_with_nothing_changed_is_head_attribution_and_ablated_heads_move(tiny_llama):
    from circuitcheck.probes import head_attribution
    from circuitcheck.probes.compensation import compensation

    result = compensation(tiny_llama, PROMPTS, ["L0H1"], ablation="zero")
    plain = head_attribution(tiny_llama, PROMPTS).per_head
    np.testing.assert_allclose(result.before, plain, atol=1e-5)
    assert result.after[0, 1] == pytest.approx(0.0, abs=1e-6)  # a zeroed head writes nothing
    assert "L0H1" not in set(result.top_risers(3)["head"])
    assert result.change_of("L1H2") == pytest.approx(result.after[1, 2] - plain[1, 2])
    with pytest.raises(ValueError, match="names no head"):
        compensation(tiny_llama, PROMPTS, [])


def test_mlps_are_named_by_layer_and_a_bad_name_is_explained():
    from circuitcheck.probes.circuits import Circuit

    assert Circuit(["L0H1"], mlps=["MLP1", 0]).components == ("L0H1", "MLP0", "MLP1")
    with pytest.raises(ValueError, match="write MLP layers as 'MLP5' or as the layer number 5"):
        Circuit(["L0H1"], mlps=["MLP"])


# The subject's second mention (S2) sits at a different token index in each prompt: the places
# differ in token length. Every name is one token for the tiny tokenizer.
def _varied():
    from dataclasses import replace

    from circuitcheck.fixtures.families import ioi_marks

    prompts = PromptSet.from_template(
        "When {A} and {B} went to the {place}, {S} gave the bag to",
        [dict(A="Mary", B="John", place="shops", S="John", IO="Mary"),
         dict(A="Tom", B="James", place="big park", S="James", IO="Tom"),
         dict(A="John", B="Mary", place="old town hall", S="John", IO="Mary")],
        answers=(" {IO}", " {S}"), name="varied IOI")
    return replace(prompts, marks=ioi_marks(prompts))  # S1, S2 and IO, as ioi_prompts names them


VARIED = _varied()


def second_mention(model, prompts) -> list[int]:
    """Each prompt's S2 found by reading its tokens: the subject token's second occurrence."""
    tokenized = prompts.tokenize(model)
    return [[i for i, t in enumerate(tokens) if t == f" {filler['S']}"][1]
            for tokens, filler in zip(tokenized.str_tokens, prompts.fillers)]


def test_a_template_marks_each_field_and_numbers_a_repeated_one():
    s = PromptSet.from_template("{S} met {IO}; {S} left", [{"S": "Ann", "IO": "Bob"}])
    assert s.marks[0] == {"S": 0, "S1": 0, "S2": 13, "IO": 8}
    assert s.subset([0]).marks == s.marks and s.corrupted_prompts is None


@pytest.mark.parametrize("kind", ["mean", "zero"])
def test_a_named_position_ablates_exactly_that_position_in_each_prompt(tiny_llama, kind):
    """Circuit(positions={head: "S2"}) equals, prompt by prompt, the hook reference with that
    prompt's S2 index given explicitly; one index for every prompt would not."""
    s2 = second_mention(tiny_llama, VARIED)
    assert VARIED.token_positions(tiny_llama, "S2") == s2 and len(set(s2)) == 3
    named = Circuit(["L0H1", "L1H2"], positions={"L0H1": "S2", "L1H2": ["S2", "end"]})
    s = setup(tiny_llama, VARIED, kind)
    [row] = s.evaluate([named])
    finals = VARIED.tokenize(tiny_llama).final_positions.tolist()
    for i, position in enumerate(s2):
        explicit = Circuit(["L0H1", "L1H2"], positions={"L0H1": [position], "L1H2": [position, finals[i]]})
        expected = reference_metric(tiny_llama, VARIED, explicit, VARIED, kind)[i]
        assert row[i] == pytest.approx(expected, abs=1e-4)
    fixed = Circuit(["L0H1", "L1H2"], positions={"L0H1": [s2[0]], "L1H2": [s2[0], finals[0]]})
    assert not np.allclose(s.evaluate([fixed])[0][1:], row[1:], atol=1e-4)


def test_ioi_prompts_name_io_s1_and_s2(tiny_llama):
    from circuitcheck.fixtures.families import ioi_prompts

    ioi = ioi_prompts(8).subset([0, 1, 2, 3])  # John/Mary and Tom/James: one token each here
    tokens = ioi.tokenize(tiny_llama).str_tokens
    for name, role in (("S1", "S"), ("S2", "S"), ("IO", "IO")):
        positions = ioi.token_positions(tiny_llama, name)
        assert [tokens[i][p] for i, p in enumerate(positions)] == [f" {f[role]}" for f in ioi.fillers], name
    s1, s2 = ioi.token_positions(tiny_llama, "S1"), ioi.token_positions(tiny_llama, "S2")
    assert ioi.token_positions(tiny_llama, "S1+1") == [p + 1 for p in s1] and all(a < b for a, b in zip(s1, s2))
    circuit = Circuit(["L0H1"], positions={"L0H1": "S1+1"})
    assert circuit.label() == "{L0H1@S1+1}"
    assert faithfulness(tiny_llama, ioi, circuit, ablation="zero").circuit == "{L0H1@S1+1}"


def test_a_position_the_prompts_cannot_name_is_explained(tiny_llama):
    with pytest.raises(ValueError, match=r"'IO' in PromptSet 'IOI pair': it marks no positions, so prompt 0 "
                                         r"'When Mary.*marks=\[\{'IO': <character offset>\}"):
        faithfulness(tiny_llama, PROMPTS, Circuit(["L0H1"], positions={"L0H1": "IO"}))
    with pytest.raises(ValueError, match=r"prompt 0 .* marks no 'S3'; named positions there: A, B, IO, S, "
                                         r"S1, S2, place, end"):
        faithfulness(tiny_llama, VARIED, Circuit(["L0H1"], positions={"L0H1": ["S3"]}))
    with pytest.raises(ValueError, match=r"'S2\+9'.*would be token"):
        VARIED.token_positions(tiny_llama, "S2+9")
    with pytest.raises(ValueError, match="give 'end', a named position"):
        Circuit(["L0H1"], positions={"L0H1": 2.5})
    with pytest.raises(ValueError, match="not a character offset inside the prompt"):
        PromptSet(["short"], marks=[{"S2": 40}])


def test_one_random_circuit_cannot_make_a_claim_pass(tiny_llama):
    """With n random circuits the p-value is at least 1/(n+1): n=1 gives 0.5 at best, so
    beats_random(0.95) is refused naming the n needed (20 for p < 0.05), up to n=19."""
    from circuitcheck.probes.circuits.faithful import random_needed

    one = random_circuit_test(tiny_llama, PROMPTS, ["L0H1"], n=1)
    assert one.p_value >= 1 / 2 and one.smallest_p_value == 0.5
    with pytest.raises(ValueError, match=r"^beats_random\(0.95\) on n=1 random circuits: the p-value can be no "
                                         r"smaller than 1/\(1\+n\) = 0.5.*n >= 20 \(n >= 20 for p < 0.05\)$"):
        one.beats_random(0.95)
    nineteen = random_circuit_test(tiny_llama, PROMPTS, ["L0H1"], n=19)
    assert nineteen.p_value >= 1 / 20
    with pytest.raises(ValueError, match="n >= 20"):
        nineteen.beats_random(0.95)
    with pytest.raises(ValueError, match=r"n >= 100 \(n >= 20 for p < 0.05\)"):
        random_circuit_test(tiny_llama, PROMPTS, ["L0H1"], n=20).beats_random(0.99)
    assert [random_needed(q) for q in (0.5, 0.9, 0.95, 0.99)] == [2, 10, 20, 100]
    assert isinstance(random_circuit_test(tiny_llama, PROMPTS, ["L0H1"], n=20).beats_random(0.95), bool)
    with pytest.raises(ValueError, match=r"^beats_random\(fraction=95\): give a share"):
        one.beats_random(95)


def test_negative_counts_are_refused_before_any_pass(tiny_llama):
    """n_random=-1 was taken as 0 random subsets; every count and seed of the circuit probes
    is now checked before the model runs, one line naming the argument, its value and the fix."""
    passes = []  # a hook on the embeddings: any pass would be counted here
    calls = [(completeness, dict(n_random=-1), "n_random=-1: give a whole number of at least 0"),
             (completeness, dict(greedy_steps=-2), "greedy_steps=-2: give a whole number of at least 0"),
             (completeness, dict(n_random=2.5), "n_random=2.5: give a whole number"),
             (minimality, dict(n_random=-1), "n_random=-1: give a whole number of at least 0"),
             (random_circuit_test, dict(n=0), "n=0: give a whole number of at least 1"),
             (random_circuit_test, dict(n=-3), "n=-3: give a whole number of at least 1"),
             (faithfulness, dict(seed=-1), "seed=-1: give a whole number of at least 0")]
    with tiny_llama.hooks(fwd_hooks=[("hook_embed", lambda x, hook: passes.append(1))]):
        for probe, kwargs, message in calls:
            with pytest.raises(ValueError) as refused:
                probe(tiny_llama, PromptSet(PROMPTS.prompts, PROMPTS.answers, name="fresh"), ["L0H1"], **kwargs)
            assert str(refused.value).startswith(message) and "\n" not in str(refused.value), refused.value
        assert passes == []
        # a probe that got as far as its passes would refuse the hooked model: the checks come first
        with pytest.raises(RuntimeError, match="needs the plain model"):
            faithfulness(tiny_llama, PROMPTS, ["L0H1"])
    from circuitcheck.probes.compensation import compensation

    with pytest.raises(ValueError, match="^seed=-1: give a whole number of at least 0"):
        compensation(tiny_llama, PROMPTS, ["L0H1"], seed=-1)
    with pytest.raises(ValueError, match="^tokens_per_pass=0: give a whole number of at least 1"):
        setup(tiny_llama, PROMPTS, "zero").evaluate([Circuit(["L0H1"])], tokens_per_pass=0)
    zero = completeness(tiny_llama, PROMPTS, ["L0H1", "L1H2"], n_random=0, greedy_steps=0)
    assert zero.ks == ((),) and zero.sources == ("empty",)  # 0 is a count: only K = ∅


# Counterfactual ablation (ablation="patching"): outside the circuit, each head's and MLP's
# output on the prompt's corrupted twin, at the same position, as for edge circuits.

def float32_tolerance(model, prompts) -> float:
    """How far two float32 computations of the same logit difference may differ when only the
    batching (the order of the sums) changes: 16 units in the last place of the largest logit."""
    from circuitcheck.probes.forward import final_logits

    largest = float(final_logits(model, prompts.tokenize(model)).abs().max())
    return 16 * float(np.finfo(np.float32).eps) * max(1.0, largest)


def counterfactual_reference(model, prompts, circuit):
    """F(C) the plain way: one run_with_hooks on the clean prompts, each head (and MLP, when the
    circuit judges MLPs) outside the circuit overwritten with the corrupted run's output."""
    tokenized, corrupted = prompts.tokenize(model), prompts.corrupted.tokenize(model)
    with torch.inference_mode():
        _, cache = model.run_with_cache(corrupted.tokens)
    finals = tokenized.final_positions
    where = dict(circuit.positions)

    def kept(label, row, pos):
        spec = where.get(label)
        if spec is None:
            return True
        items = (spec,) if isinstance(spec, str) else spec
        return any((item == "end" and pos == finals[row]) or item == pos for item in items)

    def heads(layer):
        def replace(z, hook):
            for head in range(model.cfg.n_heads):
                label = f"L{layer}H{head}"
                for row in range(len(z)):
                    for pos in range(z.shape[1]):
                        if not (label in circuit.heads and kept(label, row, pos)):
                            z[row, pos, head] = cache[hook.name][row, pos, head]
            return z
        return replace

    def mlp(layer):
        def replace(out, hook):
            if layer not in circuit.mlps:
                out[:] = cache[hook.name]
            return out
        return replace

    hooks = [(f"blocks.{l}.attn.hook_z", heads(l)) for l in range(model.cfg.n_layers)]
    if circuit.mlps is not None:
        hooks += [(f"blocks.{l}.hook_mlp_out", mlp(l)) for l in range(model.cfg.n_layers)]
    with torch.inference_mode():
        logits = model.run_with_hooks(tokenized.tokens, fwd_hooks=hooks)
    final = logits[torch.arange(len(finals)), finals]
    answers = tokenized.answer_ids
    return (final.gather(1, answers[:, :1]) - final.gather(1, answers[:, 1:])).squeeze(1).numpy()


def test_counterfactual_ablation_is_one_hooked_run_with_the_corrupted_outputs(tiny_llama):
    circuits = [Circuit(["L0H1", "L1H2"]), Circuit(["L1H0"], positions={"L1H0": "end"}),
                Circuit(["L0H0", "L0H3", "L1H3"], positions={"L0H0": [2, 5]}),
                Circuit(["L0H2"], mlps=[1]), Circuit([], mlps=[])]
    s = setup(tiny_llama, PROMPTS, "patching")
    assert s.ablation == "patching" and s.reference == "IOI pair (corrupted)"
    batched, one_by_one = s.evaluate(circuits), s.evaluate(circuits, tokens_per_pass=1)
    for circuit, row, single in zip(circuits, batched, one_by_one):
        expected = counterfactual_reference(tiny_llama, PROMPTS, circuit)
        np.testing.assert_allclose(row, expected, atol=1e-4, err_msg=circuit.label())
        np.testing.assert_allclose(single, expected, atol=1e-4, err_msg=circuit.label())


def test_under_counterfactual_ablation_the_whole_model_is_the_clean_run_and_nothing_the_corrupted(tiny_llama):
    """F(M) with every component kept is the clean metric, and with every head and MLP given its
    corrupted output (``Circuit([], mlps=[])``) the corrupted metric: the input embedding stays
    clean, and its only direct path to the logits is at the final token, which the clean and
    corrupted prompts share. Both to float32 precision."""
    from circuitcheck.probes import logit_diff

    tolerance = float32_tolerance(tiny_llama, PROMPTS)
    clean, corrupted = logit_diff(tiny_llama, PROMPTS).per_prompt, logit_diff(tiny_llama, PROMPTS.corrupted).per_prompt
    assert np.abs(clean - corrupted).max() > 100 * tolerance  # the test can tell them apart
    whole = faithfulness(tiny_llama, PROMPTS, Circuit.full(tiny_llama, with_mlps=True), ablation="patching")
    np.testing.assert_allclose(whole.model_metric, clean, rtol=0, atol=tolerance)
    np.testing.assert_allclose(whole.circuit_metric, clean, rtol=0, atol=tolerance)
    np.testing.assert_allclose(whole.empty_metric, corrupted, rtol=0, atol=tolerance)
    assert whole.normalised == pytest.approx(1.0, abs=tolerance / abs(whole.f_model - whole.f_empty))
    assert whole.ablation == "patching" and "corrupted twin ('IOI pair (corrupted)')" in whole.notes()[0]
    heads_only = faithfulness(tiny_llama, PROMPTS, Circuit.full(tiny_llama), ablation="patching")
    np.testing.assert_allclose(heads_only.circuit_metric, clean, rtol=0, atol=tolerance)


def test_a_node_circuit_under_counterfactual_ablation_is_the_edge_circuit_of_its_routes(tiny_llama):
    """Node circuit {L1H2} with every MLP judged: L1H2 reads the clean embedding and the corrupted
    layer-0 outputs, and only its direct path reaches the logits (everything after it is
    replaced). That is the edge circuit of those routes under the edge engine's ablation="patching"."""
    from circuitcheck.probes.edges import EdgeCircuit

    node = faithfulness(tiny_llama, PROMPTS, Circuit(["L1H2"], mlps=[]), ablation="patching")
    routes = EdgeCircuit(["embed → L1H2.q", "embed → L1H2.k", "embed → L1H2.v", "L1H2 → logits", "embed → logits"])
    edge = faithfulness(tiny_llama, PROMPTS, routes, ablation="patching")
    np.testing.assert_allclose(node.circuit_metric, edge.circuit_metric, rtol=0, atol=1e-5)
    np.testing.assert_allclose(node.empty_metric, edge.empty_metric, rtol=0, atol=1e-5)


def test_every_circuit_criterion_takes_counterfactual_ablation():
    model = planted_model()
    planted = ["L0H3", "L1H5"]
    test = random_circuit_test(model, PROMPTS, planted, n=20, ablation="patching")
    [faithful] = test.parts
    assert faithful.ablation == "patching" and faithful.normalised == pytest.approx(1.0, abs=0.1), faithful
    assert test.beats_random(0.95), test
    full = completeness(model, PROMPTS, Circuit.full(model), ablation="patching", n_random=3, greedy_steps=1)
    np.testing.assert_allclose(full.gaps, 0, atol=1e-4)
    needed = minimality(model, PROMPTS, ["L0H3", "L1H1"], ablation="patching", n_random=2)
    change = dict(zip(needed.components, needed.change))
    assert change["L0H3"] > 10 * change["L1H1"], needed
    from circuitcheck.probes import faithfulness_curve

    curve = faithfulness_curve(model, PROMPTS, planted, ablation="patching", sizes=[1, 2])
    assert curve.ablation == "patching" and curve.faithfulness[-1] == pytest.approx(1.0, abs=1e-4)
    assert curve.faithfulness[1] == pytest.approx(faithful.normalised, abs=1e-4)  # the top 2: the planted pair


def test_counterfactual_ablation_needs_the_corrupted_prompts_and_no_reference(tiny_llama):
    from circuitcheck.probes.ablation_values import MissingCorruptedPromptsError
    from circuitcheck.probes.tokens import PromptLengthError

    no_twins = PromptSet(PROMPTS.prompts, PROMPTS.answers, name="no twins")
    for probe in (faithfulness, random_circuit_test, completeness, minimality):
        with pytest.raises(MissingCorruptedPromptsError, match=r"PromptSet 'no twins' has no corrupted prompts; "
                                                              r"give it corrupted_prompts="):
            probe(tiny_llama, no_twins, ["L0H1"], ablation="patching")
    with pytest.raises(ValueError, match="reference= is read by mean and resample ablation"):
        faithfulness(tiny_llama, PROMPTS, ["L0H1"], ablation="patching", reference=OTHER)
    uneven = PromptSet(PROMPTS.prompts, PROMPTS.answers, corrupted_prompts=["When Mary went out", PROMPTS.prompts[1]],
                       name="uneven")
    with pytest.raises(PromptLengthError, match="differ in token length"):
        faithfulness(tiny_llama, uneven, ["L0H1"], ablation="patching")
    with pytest.raises(ValueError, match=r"ablation 'median': choose one of patching, mean, resample, zero"):
        faithfulness(tiny_llama, PROMPTS, ["L0H1"], ablation="median")
