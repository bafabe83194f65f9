"""Integration: every patching sweep equals `transformer_lens.patching` on the real default
model, both directions, within 1e-4, on a grid of sites (first, middle and last layer; the
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


@pytest.mark.parametrize("direction", ["clean_into_corrupted", "corrupted_into_clean"])
@pytest.mark.parametrize("sweep", list(SWEEPS))
def test_sweep_equals_transformer_lens_on_smollm2(smollm2, sweep, direction):
    first = min(first_differences(IOI.tokenize(smollm2), IOI.corrupted.tokenize(smollm2)))
    width = IOI.tokenize(smollm2).tokens.shape[1]
    last_head = (smollm2.cfg.n_key_value_heads if SWEEPS[sweep].kv else smollm2.cfg.n_heads) - 1
    ours = patch(smollm2, IOI, sweep, direction, layers=[0, 23, 29], positions=[first - 1, first, width - 1],
                 heads=[0, last_head], neurons=[0, 1527])
    expected = reference_patch(smollm2, IOI, sweep, direction, ours.sites).numpy()
    np.testing.assert_allclose(ours.mean, expected, atol=1e-4)
