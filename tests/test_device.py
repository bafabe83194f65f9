"""On a CUDA machine the same probes run on the GPU and agree with the CPU within tolerance.

Skipped where torch sees no CUDA GPU (as on the CI machines); run it on a GPU machine with
``.venv/bin/pytest tests/test_device.py``, or with everything else the GPU check does:
``benchmarks/gpu_check.sh`` (``benchmarks/gpu_check.py``).
"""

import numpy as np
import pytest
import torch

from circuitcheck.probes import head_attribution, logit_diff, patch

from .test_device_map import PROBES, close
from .test_patching import PROMPTS, STAGGERED

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-gpt2"])
def pair(request):
    from circuitcheck.fixtures import load_model

    return load_model(request.param, device="cpu"), load_model(request.param, device="cuda")


def test_the_model_is_on_the_gpu(pair):
    _, gpu = pair
    assert next(gpu.parameters()).device.type == "cuda"


def test_observational_probes_agree(pair):
    cpu, gpu = pair
    np.testing.assert_allclose(logit_diff(gpu, PROMPTS).per_prompt, logit_diff(cpu, PROMPTS).per_prompt, atol=1e-4)
    np.testing.assert_allclose(head_attribution(gpu, PROMPTS).values, head_attribution(cpu, PROMPTS).values,
                               atol=1e-4)


@pytest.mark.parametrize("probe", list(PROBES))
def test_every_probe_agrees(pair, probe):
    """Every array of every probe's result, within 1e-4 (the results come back to the CPU)."""
    cpu, gpu = pair
    close(PROBES[probe](gpu), PROBES[probe](cpu))


@pytest.mark.parametrize("sweep", ["resid_pre", "head_out", "head_pattern_by_pos", "mlp_out_all_pos"])
@pytest.mark.parametrize("direction", ["clean_into_corrupted", "corrupted_into_clean"])
def test_patching_agrees(pair, sweep, direction):
    cpu, gpu = pair
    for prompts in (PROMPTS, STAGGERED):
        on_gpu, on_cpu = patch(gpu, prompts, sweep, direction=direction), patch(cpu, prompts, sweep, direction=direction)
        np.testing.assert_allclose(on_gpu.values, on_cpu.values, atol=1e-4)
