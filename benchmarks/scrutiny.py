"""What scrutiny costs on the default model and eight IOI prompts: a 50-resample stability
check of the top 5 heads by patching (the table fast path, and the generic path that patches
every resample again) and faithfulness curves (MIB's grid, and ten explicit sizes, all in the
batched circuit passes, against one `faithfulness` call per point), each against one exact
``head_out`` patching sweep in the same run, in seconds and in forward passes.

A forward pass is one call of the model (counted by a PyTorch hook on its embedding module,
which is not a TransformerLens hook, so the probes still see the plain model); the rows are
the prompts, or prompts × circuits, of those passes. Every measurement starts with the
model's pass cache emptied (`forget_passes`), so nothing is reused from an earlier one.

    .venv/bin/python benchmarks/scrutiny.py [--model smollm2-135m] [--resamples 50] [--sample 50]
    .venv/bin/python benchmarks/scrutiny.py --quick   # tiny-llama, 2 prompts, 5 resamples: seconds

``--sample k`` times the generic path on the first k resamples only and scales it to all of
them (say so when you quote it). ``--quick`` checks that the script still matches the code
(tests/test_benchmarks.py runs it): a tiny random model (8 heads: the top 3, sizes 1, 2, 4),
2 IOI prompts, 5 resamples; its times and figures mean nothing.
"""

import argparse
import time

import numpy as np
import torch

from circuitcheck.fixtures import load_model
from circuitcheck.fixtures.families import ioi_abc_prompts, ioi_prompts
from circuitcheck.probes import logit_diff, patch
from circuitcheck.probes import faithfulness, faithfulness_curve
from circuitcheck.probes.forward import forget_passes
from circuitcheck.probes.stability import selection_stability, stability

K = 5
CURVE_SIZES = [1, 2, 3, 5, 10, 20, 40, 80, 160]  # and the full model: ten points
QUICK_K, QUICK_SIZES = 3, [1, 2, 4]  # --quick, on tiny-llama's 8 heads


class Passes:
    """Forward passes (and their rows) of ``model`` while it is being measured."""

    def __init__(self, model):
        self.model, self.rows = model, []

    def __enter__(self):
        forget_passes(self.model)
        self.handle = self.model.embed.register_forward_pre_hook(lambda m, args: self.rows.append(args[0].shape[0]))
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        self.handle.remove()

    def line(self, what: str, against: float | None = None) -> str:
        ratio = "" if against is None else f"  ({self.seconds / against:5.1f} × the sweep)"
        return (f"{what:<52} {self.seconds:8.2f} s {len(self.rows):6d} passes {sum(self.rows):7d} rows"
                + ratio)


def top_heads(k: int):
    def select(model, prompts):
        return patch(model, prompts, "head_out").top(k)["site"]
    return select


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="default smollm2-135m (--quick: tiny-llama)")
    parser.add_argument("--resamples", type=int, default=None, help="default 50 (--quick: 5)")
    parser.add_argument("--sample", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="tiny-llama, 2 prompts: a check that the script runs")
    args = parser.parse_args()
    quick = args.quick
    args.model = args.model or ("tiny-llama" if quick else "smollm2-135m")
    args.resamples = args.resamples or (5 if quick else 50)
    k, sizes, n_prompts = (QUICK_K, QUICK_SIZES, 2) if quick else (K, CURVE_SIZES, 8)
    model = load_model(args.model, device="cpu")
    prompts, reference = ioi_prompts(n_prompts), ioi_abc_prompts(n_prompts)
    logit_diff(model, prompts)  # warm up
    n_heads = model.cfg.n_layers * model.cfg.n_heads
    print(f"model {args.model} ({n_heads} heads), {len(prompts)} IOI prompts "
          f"({prompts.tokenize(model).tokens.shape[1]} tokens), torch threads {torch.get_num_threads()}")

    with Passes(model) as sweep_cost:
        sweep = patch(model, prompts, "head_out")
    base = sweep_cost.seconds
    print(sweep_cost.line("one exact head_out patching sweep"))

    with Passes(model) as fast_cost:
        fast = selection_stability(sweep, k=k, n=args.resamples)
    print(fast_cost.line(f"stability, fast path ({args.resamples} resamples, top {k})", base))

    sample = args.sample or args.resamples
    with Passes(model) as generic_cost:
        generic = stability(model, prompts, top_heads(k), n=sample)
    scale = (sample + 1) / (args.resamples + 1)  # the reference selection plus the resamples
    scaled = generic_cost.seconds / scale
    print(generic_cost.line(f"stability, generic path ({sample} resamples, patching each)", base)
          + ("" if sample == args.resamples else
             f"\n{'':<52} {scaled:8.2f} s scaled to {args.resamples} resamples ({scaled / base:5.1f} × the sweep)"))
    same = fast.selections[:sample] == generic.selections and fast.selected == generic.selected
    print(f"  Jaccard {fast.jaccard:.3f} (95% {fast.interval[0]:.2f}–{fast.interval[1]:.2f}); reference top {k}: "
          f"{', '.join(fast.selected)}; the two paths select the same on every resample: {same}")

    with Passes(model) as grid_cost:
        grid = faithfulness_curve(model, prompts, sweep, reference=reference)
    print(grid_cost.line(f"faithfulness curve, MIB's grid ({len(grid.sizes)} distinct sizes)", base))
    with Passes(model) as curve_cost:
        curve = faithfulness_curve(model, prompts, sweep, sizes=sizes, reference=reference)
    n_random = len(curve.random_runs)
    print(curve_cost.line(f"faithfulness curve, {len(curve.sizes)} sizes (+ {n_random} random orders)", base))
    with Passes(model) as each_cost:
        each = [faithfulness(model, prompts, list(curve.ranking[:k]), reference=reference).normalised
                for k in curve.sizes]
    print(each_cost.line(f"one faithfulness call per size ({len(curve.sizes)}, no random order)", base))
    print(f"  sizes {curve.sizes.tolist()}: f = {np.round(curve.faithfulness, 3).tolist()}; "
          f"CPR {curve.cpr:.3f}, CMD {curve.cmd:.3f} (random orders' mean {curve.random_cpr:.3f}, "
          f"{curve.random_cmd:.3f}; CMD p = {curve.p_value:.3f}); "
          f"largest difference from the per-size calls {np.abs(curve.faithfulness - np.array(each)).max():.1e}")
    print(f"  MIB's grid: sizes {grid.sizes.tolist()}, CPR {grid.cpr:.3f}, CMD {grid.cmd:.3f} "
          f"(random orders' mean {grid.random_cpr:.3f}, {grid.random_cmd:.3f}; CMD p = {grid.p_value:.3f})")


if __name__ == "__main__":
    main()
