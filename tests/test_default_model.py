"""Integration: the real default model, SmolLM2-135M-Instruct, loaded offline from its GGUF."""

import numpy as np
import pytest
import torch

from circuitcheck.probes.model_state import model_info
from circuitcheck.fixtures.families import ioi_prompts
from circuitcheck.fixtures.gguf_models import SMOLLM2, load_embedded
from circuitcheck.probes import AnswerTokenError, PromptSet, logit_diff, top_k

pytestmark = pytest.mark.integration
IOI = ioi_prompts()


def test_default_model_shape_and_provenance(smollm2):
    info = model_info(smollm2)
    assert (info.n_layers, info.n_heads, info.d_model) == (30, 9, 576)
    assert info.sha256 == SMOLLM2.sha256 and info.source == "embedded"
    assert smollm2.compatibility_mode


def test_bridge_predicts_what_transformers_predicts(smollm2):
    """Compatibility mode folds norms and centres weights; next-token log-probs must not move."""
    hf_model, _, _ = load_embedded(SMOLLM2)
    tokens = smollm2.to_tokens(list(IOI.prompts[:2]))
    with torch.inference_mode():
        ours = smollm2(tokens).log_softmax(-1)
        theirs = hf_model.eval()(tokens).logits.log_softmax(-1)
    assert (ours - theirs).abs().max().item() < 1e-3


def test_default_logits_are_what_hugging_face_gives_for_the_same_prompt_string(smollm2):
    """SmolLM2's tokenizer adds no BOS (its BOS <|im_start|> opens a chat turn), so by
    default nothing is prepended and the logits are Hugging Face's for the same string,
    up to the centring of the unembedding (compared as log-probabilities and differences)."""
    assert model_info(smollm2).prepended is None
    hf_model, tokenizer, _ = load_embedded(SMOLLM2)
    prompt = "Then, Alice and Bob had a long argument. Afterwards Bob said to"
    alice, bob = smollm2.to_single_token(" Alice"), smollm2.to_single_token(" Bob")
    ids = torch.tensor([tokenizer(prompt).input_ids])
    with torch.inference_mode():
        theirs = hf_model.eval()(ids).logits[0, -1]
    ours = top_k(smollm2, PromptSet([prompt], [(" Alice", " Bob")]), k=5)
    result = logit_diff(smollm2, PromptSet([prompt], [(" Alice", " Bob")]))
    assert result.per_prompt[0] == pytest.approx((theirs[alice] - theirs[bob]).item(), abs=1e-4)
    assert result.correct_logprob[0] == pytest.approx(theirs.log_softmax(-1)[alice].item(), abs=1e-4)
    np.testing.assert_allclose(ours.probs[0], theirs.softmax(-1).topk(5).values.numpy(), atol=1e-5)
    with_bos = logit_diff(smollm2, PromptSet([prompt], [(" Alice", " Bob")]), prepend_bos=True)
    assert abs(with_bos.per_prompt[0] - result.per_prompt[0]) > 0.1  # BOS would move it


def test_ioi_behaviour_matches_what_the_design_notes_report(smollm2):
    """' Mary' over ' John' by about 5 logits; the corrupted prompt flips it."""
    clean, corrupt = logit_diff(smollm2, IOI), logit_diff(smollm2, IOI.corrupted)
    assert clean.per_prompt.min() > 1 and clean.mean > 3
    assert corrupt.per_prompt.max() < -1
    assert top_k(smollm2, IOI).correct_rank.max() <= 3


def test_smollm2_digit_tokenisation_gets_an_explanation_not_a_crash(smollm2):
    with pytest.raises(AnswerTokenError) as error:
        logit_diff(smollm2, PromptSet(["1 2 3 4"], [(" 5", " 6")]))
    assert ("answer ' 5' is 2 tokens [' ', '5'] for smollm2-135m; the space is a token of its own "
            "for smollm2-135m, so end the prompt with ' ' and use the answer '5'") in str(error.value)
    fixed = logit_diff(smollm2, PromptSet(["1 2 3 4 "], [("5", "6")]))
    assert fixed.per_prompt[0] > 0


def test_bfloat16_keeps_the_ioi_preference():
    from circuitcheck.fixtures import load_model

    model = load_model("smollm2-135m", "cpu", "bfloat16")
    assert (logit_diff(model, IOI).per_prompt > 0).all()
