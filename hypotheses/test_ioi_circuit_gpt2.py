"""The IOI circuit of GPT-2 small, with the values Wang et al. (2022) report ("Interpretability
in the Wild: a Circuit for Indirect Object Identification in GPT-2 small", arXiv:2211.00593).

Every claim is limited to GPT-2 small by ``@pytest.mark.models("gpt2")``: run them with
``--model gpt2`` (from the Hugging Face hub, or a local copy); on any other model they skip
with the marker's reason. The heads are the paper's circuit (its Figure 2), each class kept
at the positions where the paper finds it acting: name movers and S-inhibition heads at END,
induction and duplicate-token heads at S2, previous-token heads at S1+1 (positions that
`ioi_prompts` names per prompt). Everything outside the circuit is mean-ablated over the ABC
prompts, as in the paper.

The prompts are the eight of the TransformerLens demo, not the paper's fifteen templates, so
the claims test the paper's findings with stated margins (ranks, a range), not its decimals.
"""

import pytest

from circuitcheck import (Circuit, PromptSet, attention_to, faithfulness, head_attribution, head_scores,
                          ioi_abc_prompts, ioi_prompts, logit_diff, path_patch)
from circuitcheck.scrutiny import published

pytestmark = pytest.mark.models("gpt2")

IOI, ABC = ioi_prompts(8), ioi_abc_prompts(8)
# Path patching from the ABC distribution, as the paper does: the clean IOI prompts against
# their ABC twins (a third name in place of S2), which carry no information about the answer.
IOI_VS_ABC = PromptSet(IOI.prompts, IOI.answers, corrupted_prompts=ABC.prompts, name="IOI against ABC",
                       marks=IOI.marks)

NAME_MOVERS = ["L9H9", "L9H6", "L10H0"]
S_INHIBITION = ["L7H3", "L7H9", "L8H6", "L8H10"]
INDUCTION = ["L5H5", "L6H9"]
DUPLICATE_TOKEN = ["L0H1", "L3H0"]
PREVIOUS_TOKEN = ["L2H2", "L4H11"]

# The whole circuit of Figure 2, class by class: (heads, the position where the class acts).
CIRCUIT = {
    "name mover": (NAME_MOVERS, "end"),
    "backup name mover": (["L10H10", "L10H6", "L10H2", "L10H1", "L11H2", "L9H7", "L9H0", "L11H9"], "end"),
    "negative name mover": (["L10H7", "L11H10"], "end"),
    "S-inhibition": (S_INHIBITION, "end"),
    "induction": (INDUCTION + ["L5H8", "L5H9"], "S2"),
    "duplicate token": (DUPLICATE_TOKEN + ["L0H10"], "S2"),
    "previous token": (PREVIOUS_TOKEN, "S1+1"),
}
PAPER = "Wang et al. 2022 (arXiv:2211.00593)"
PAPER_LOGIT_DIFF = 3.56  # §2: GPT-2 small's mean logit difference on the IOI distribution
PAPER_FAITHFULNESS = 0.87  # §4.1: F(C) / F(M), the circuit keeps 87% of GPT-2 small's logit difference
FAITHFULNESS_MARGIN = 0.15  # our eight prompts are not the paper's distribution


def test_the_logit_difference_is_the_papers(model):
    """§2: GPT-2 small's mean logit difference, IO over S, is 3.56 on the paper's distribution;
    on the demo's eight prompts it replicates within 25%."""
    measured = published(logit_diff(model, IOI).mean, reported=PAPER_LOGIT_DIFF, band="25%",
                         source=f"{PAPER}, §2", what="mean logit difference", model=model)
    assert measured.replicates, measured


def top_heads(ranked, k: int) -> set[str]:
    return set(ranked.top(k)["head"])


def test_name_movers_write_the_answer_and_attend_to_the_indirect_object(model):
    """Section 3.1 (Name Mover Heads): 9.9, 9.6 and 10.0 are among the five heads with the
    largest direct effect on the logit difference, and at END each attends more to the
    indirect object than to the subject (they copy the name they attend to)."""
    direct = head_attribution(model, IOI)
    assert set(NAME_MOVERS) <= top_heads(direct, 5), direct
    to_io = attention_to(model, IOI, NAME_MOVERS, target="correct")
    to_s = attention_to(model, IOI, NAME_MOVERS, target="incorrect")
    assert (to_io.mean > to_s.mean).all(), (to_io, to_s)


def test_s_inhibition_heads_reach_the_name_movers_through_their_queries(model):
    """Section 3.2 (S-Inhibition Heads): path patching each head before layer 9 into the name
    movers' queries at END (from the ABC prompts), 7.3, 7.9, 8.6 and 8.10 are among the six
    senders with the largest effect on the logit difference."""
    n_heads = model.cfg.n_heads
    effects = {}
    for layer in range(9):
        for head in range(n_heads):
            sender = f"L{layer}H{head}"
            effects[sender] = path_patch(model, IOI_VS_ABC, [sender], NAME_MOVERS, receiver_input="q", positions="end").effect
    top = sorted(effects, key=effects.get, reverse=True)[:6]
    assert set(S_INHIBITION) <= set(top), {head: f"{effects[head]:.3g}" for head in top + S_INHIBITION}


def test_induction_heads(model):
    """Section 3.3 (Induction Heads): 5.5 and 6.9 are among the six heads with the largest
    induction score (attention to the token after the previous copy of the current token, on
    repeated random tokens; TransformerLens's detect_head pattern)."""
    scores = head_scores(model, kind="induction")
    assert set(INDUCTION) <= top_heads(scores, 6), scores


def test_duplicate_token_heads(model):
    """Section 3.3 (Duplicate Token Heads): on the IOI prompts, 0.1 and 3.0 are among the five
    heads that attend most to earlier copies of the current token (S2 to S1)."""
    scores = head_scores(model, IOI, "duplicate_token")
    assert set(DUPLICATE_TOKEN) <= top_heads(scores, 5), scores


def test_previous_token_heads(model):
    """Section 3.3 (Previous Token Heads): on the IOI prompts, 2.2 and 4.11 are among the five
    heads that attend most to the previous token."""
    scores = head_scores(model, IOI, "previous_token")
    assert set(PREVIOUS_TOKEN) <= top_heads(scores, 5), scores


def test_the_papers_circuit_keeps_87_percent_of_the_logit_difference(model):
    """Section 4.1 (faithfulness): with only the circuit of Figure 2 left, each class at its
    positions and everything else mean-ablated over ABC, F(C)/F(M) is about 0.87 (within 0.15)."""
    heads = [h for members, _ in CIRCUIT.values() for h in members]
    positions = {h: where for members, where in CIRCUIT.values() for h in members}
    result = faithfulness(model, IOI, Circuit(heads, positions=positions), reference=ABC)
    assert len(result.components) == 26, result
    measured = published(result.ratio, reported=PAPER_FAITHFULNESS, band=FAITHFULNESS_MARGIN,
                         source=f"{PAPER}, §4.1", what="F(C)/F(M) of the Figure 2 circuit", model=model)
    assert measured.replicates, (measured, result)
