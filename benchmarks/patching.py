"""Activation patching, ours against `transformer_lens.patching`, on the default model.

In one process, on eight IOI prompts (15 tokens), for the residual-stream sweep
(``resid_pre``: 30 layers × 15 positions) and the per-head sweep over all positions
(``head_out``: 30 layers × 9 heads), it runs the reference (one forward pass of the
batch per site) and ours, and prints wall time, the ratio and the largest absolute
difference of the per-site mean logit difference. Target: ≥ 10× faster, < 1e-4.

    .venv/bin/python benchmarks/patching.py [--prompts 8] [--sweeps resid_pre,head_out]
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo's packages, not benchmarks/probes.py

import torch  # noqa: E402
import transformer_lens.patching as tl_patching  # noqa: E402

from fixtures import load_model  # noqa: E402
from fixtures.families import ioi_prompts  # noqa: E402
from probes import patch  # noqa: E402

REFERENCE = {
    "resid_pre": tl_patching.get_act_patch_resid_pre,
    "resid_mid": tl_patching.get_act_patch_resid_mid,
    "attn_out": tl_patching.get_act_patch_attn_out,
    "mlp_out": tl_patching.get_act_patch_mlp_out,
    "head_out": tl_patching.get_act_patch_attn_head_out_all_pos,
    "head_pattern": tl_patching.get_act_patch_attn_head_pattern_all_pos,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--sweeps", default="resid_pre,head_out")
    args = parser.parse_args()
    model = load_model("smollm2-135m", device="cpu")
    prompts = ioi_prompts(args.prompts)
    clean, corrupted = prompts.tokenize(model), prompts.corrupted.tokenize(model)
    answers = clean.answer_ids

    def mean_logit_diff(logits):
        final = logits[:, -1]
        return (final.gather(1, answers[:, :1]) - final.gather(1, answers[:, 1:])).mean()

    with torch.inference_mode():
        _, clean_cache = model.run_with_cache(clean.tokens)
    print(f"SmolLM2-135M on CPU ({torch.get_num_threads()} threads), {args.prompts} IOI prompts of "
          f"{clean.tokens.shape[1]} tokens, clean into corrupted, metric: mean logit difference")
    print(f"{'sweep':12}{'sites':>7}{'reference (s)':>15}{'ours (s)':>10}{'ratio':>8}{'max |diff|':>12}")
    for sweep in args.sweeps.split(","):
        start = time.perf_counter()
        reference = REFERENCE[sweep](model, corrupted.tokens, clean_cache, mean_logit_diff)
        reference_seconds = time.perf_counter() - start
        start = time.perf_counter()
        ours = patch(model, prompts, sweep)
        our_seconds = time.perf_counter() - start
        diff = (torch.tensor(ours.grid("mean")) - reference.double()).abs().max().item()
        print(f"{sweep:12}{len(ours.sites):7d}{reference_seconds:15.1f}{our_seconds:10.1f}"
              f"{reference_seconds / our_seconds:7.1f}x{diff:12.1e}")


if __name__ == "__main__":
    main()
