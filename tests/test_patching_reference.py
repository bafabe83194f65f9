"""Integration: every patching sweep equals `transformer_lens.patching` on each real embedded
model (SmolLM2, Gemma 3 270M), both directions, within 1e-4, on a grid of sites (first, middle and last layer; the
positions around the first differing token and the last; a few heads)."""

import os

import numpy as np
import pytest

from circuitcheck.fixtures.families import ioi_prompts
from circuitcheck.probes import SWEEPS, patch
from circuitcheck.probes.patch_runs import first_differences

from .patching_reference import reference_patch

pytestmark = pytest.mark.integration
os.environ.setdefault("TQDM_DISABLE", "1")
IOI = ioi_prompts(2)


# SmolLM2: every sweep, both directions. Gemma (each run unembeds 262k tokens): one sweep per
# kind of hook, one direction, ~35 s of CI; tiny-gemma3 covers every one both ways
# (tests/test_architectures.py).
GEMMA_SWEEPS = ("resid_mid", "attn_out", "mlp_out", "head_out_by_pos", "head_k", "head_v_by_pos",
                "head_pattern_by_pos", "neuron")
CASES = [pytest.param("smollm2-135m", sweep, direction, id=f"smollm2-135m-{sweep}-{direction}")
         for sweep in SWEEPS for direction in ("clean_into_corrupted", "corrupted_into_clean")]
CASES += [pytest.param("gemma3-270m", sweep, "clean_into_corrupted", id=f"gemma3-270m-{sweep}-clean_into_corrupted")
          for sweep in GEMMA_SWEEPS]


@pytest.mark.parametrize(("embedded_model", "sweep", "direction"), CASES, indirect=["embedded_model"])
def test_sweep_equals_transformer_lens(embedded_model, sweep, direction):
    model, cfg = embedded_model, embedded_model.cfg
    first = min(first_differences(IOI.tokenize(model), IOI.corrupted.tokenize(model)))
    width = IOI.tokenize(model).tokens.shape[1]
    last_head = ((cfg.n_key_value_heads or cfg.n_heads) if SWEEPS[sweep].kv else cfg.n_heads) - 1
    layers = [0, cfg.n_layers * 4 // 5, cfg.n_layers - 1]
    ours = patch(model, IOI, sweep, direction=direction, layers=layers, positions=[first - 1, first, width - 1],
                 heads=[0, last_head], neurons=[0, cfg.d_mlp - 1])
    expected = reference_patch(model, IOI, sweep, direction, ours.sites).numpy()
    np.testing.assert_allclose(ours.mean, expected, atol=1e-4)
