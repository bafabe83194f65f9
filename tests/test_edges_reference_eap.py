"""`edge_attribution`'s EAP against hannamw/EAP-IG's own scores (the code behind MIB's circuit
track), on the random 3-layer GPT-2 whose weights are in tests/data/eapig/ (see its README).

``method="eap"`` is the EAP of Syed et al., EAP-IG's ``method="EAP"`` and MIB's EAP baseline:
the gradient taken on the clean run (``P_eap_...``). ``method="eap-corrupted"`` takes it on
the corrupted run, as ``method="eap"`` did before: EAP-IG with one step (``P_ig1_...``). EAP-IG
with ``loss=True`` has circuitcheck's sign; with ``mean=True`` it divides by the batch size."""

import json
import runpy
from pathlib import Path

import numpy as np
import pytest

from circuitcheck.probes import PromptSet
from circuitcheck.probes.edges import edge_attribution
from circuitcheck.probes.edges.mib import mib_names

DATA = Path(__file__).parent / "data" / "eapig"
REFERENCE = runpy.run_path(str(DATA / "prompts.py"), run_name="eapig_prompts")  # set A, as EAP-IG ran it
PROMPTS = PromptSet(REFERENCE["CLEAN"], REFERENCE["ANSWERS"], corrupted_prompts=REFERENCE["CORRUPTED"],
                    name="EAP-IG reference, set A")
SCORES = json.loads((DATA / "gpt2-3l_eapig_scores.json").read_text())
BATCH = len(PROMPTS.prompts)  # EAP-IG ran all 6 prompts in one batch


@pytest.fixture(scope="module")
def gpt2_3l():
    from circuitcheck.fixtures import load_model

    model = load_model(str(DATA / "gpt2-3l"), device="cpu")
    tokenized = PROMPTS.tokenize(model)  # the tokens EAP-IG scored (its BOS, token 0, prepended)
    assert tokenized.tokens.tolist() == SCORES["tokens"] and tokenized.answer_ids.tolist() == SCORES["answer_ids"]
    return model


def theirs(model, key: str, times: float = 1.0) -> np.ndarray:
    """EAP-IG's scores under ``key`` in circuitcheck's edge order (one MIB edge per edge here:
    each query head has its own key/value head)."""
    return np.array([sum(SCORES[key][name] for name in names) * times for names in mib_names(model)])


def tolerance(model, scale: float) -> float:
    """How far two correct float32 computations of one EAP score may differ.

    Each score is, on both sides, a float32 sum of N = prompts × positions × d_model products
    (sender difference × gradient), whose factors reach it through the forward and backward
    passes: per layer an attention and an MLP sublayer each way, 4 × n_layers chained inner
    products, the longest of length k = d_mlp. A float32 inner product of length k rounds with a
    relative error of at most k × eps (Higham's γ_k, the worst case whatever order of summation
    a CPU's kernels choose), and the relative errors of chained products add: the two sides
    differ by at most (4 × n_layers × k + N) × eps × Σ|terms|, with the largest |score| (``scale``)
    standing in for Σ|terms|. About 1e-3 of the largest score: a gradient on the other run moves
    scores by tens of percent."""
    cfg = model.cfg
    n_terms = BATCH * len(SCORES["tokens"][0]) * cfg.d_model
    return float(np.finfo(np.float32).eps) * (4 * cfg.n_layers * max(cfg.d_mlp, cfg.d_model) + n_terms) * scale


def test_eap_takes_the_gradient_on_the_clean_run_as_eapig_and_mib_do(gpt2_3l):
    """EAP-IG's ``method="EAP"`` (``loss=True``, ``mean=True``) × batch size = ``method="eap"``;
    the corrupted-run form is another ranking (Spearman about 0.6 here), not a rounding away."""
    expected = theirs(gpt2_3l, "P_eap_loss_mean_all", BATCH)  # EAP-IG averages over the batch twice
    atol = tolerance(gpt2_3l, np.abs(expected).max())
    np.testing.assert_allclose(theirs(gpt2_3l, "P_eap_loss_sum_all"), expected, rtol=0, atol=atol)  # mean=False
    eap = edge_attribution(gpt2_3l, PROMPTS)
    np.testing.assert_allclose(eap.scores, expected, rtol=0, atol=atol)
    corrupted = edge_attribution(gpt2_3l, PROMPTS, method="eap-corrupted")
    assert np.abs(corrupted.scores - expected).max() > 100 * atol


def test_eap_on_the_corrupted_run_is_eapig_with_one_step(gpt2_3l):
    corrupted = edge_attribution(gpt2_3l, PROMPTS, method="eap-corrupted")
    expected = theirs(gpt2_3l, "P_ig1_loss_sum_all")
    np.testing.assert_allclose(corrupted.scores, expected, rtol=0, atol=tolerance(gpt2_3l, np.abs(expected).max()))
    one_step = edge_attribution(gpt2_3l, PROMPTS, method="eap-ig", ig_steps=1)
    np.testing.assert_array_equal(corrupted.scores, one_step.scores)  # the same passes, the same numbers
    assert "on the corrupted run" in corrupted.title and corrupted.title != one_step.title
