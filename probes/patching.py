"""Activation patching: which activations carry the difference between two runs?

Run the model on a *target* input while replacing one activation (a *site*: a
layer's residual stream at one position, one head's output, …) with its value
from a *source* input, and measure a metric. Clean into corrupted ("denoising")
asks which sites suffice to restore the clean behaviour; corrupted into clean
("noising") asks which sites it needs. Normalised recovery
``(patched − target) / (source − target)`` puts every site on one scale.

Every sweep gives the same numbers as `transformer_lens.patching`, in a fraction of
the time: `probes.patch_runs` says how.
"""

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .evidence import probe
from .forward import has_hooks, memo
from .metrics import resolve_metric
from .patch_runs import run_sweep
from .results import Result
from .tokens import Tokenized, tokenize_pair

DEFAULT_MEMORY_BUDGET = 2 * 2**30  # bytes of activations one patched forward pass may hold
DIRECTIONS = ("clean_into_corrupted", "corrupted_into_clean")


@dataclass(frozen=True)
class Sweep:
    """What a sweep patches: a hook per layer, indexed by these axes."""

    name: str
    hook: str
    axes: tuple[str, ...]
    pattern: bool = False  # activation is batch × head × query × key
    kv: bool = False  # indexed by key/value head (grouped-query attention)


SWEEPS = {s.name: s for s in [
    Sweep("resid_pre", "blocks.{layer}.hook_resid_pre", ("layer", "pos")),
    Sweep("resid_mid", "blocks.{layer}.hook_resid_mid", ("layer", "pos")),
    Sweep("resid_post", "blocks.{layer}.hook_resid_post", ("layer", "pos")),
    Sweep("attn_out", "blocks.{layer}.hook_attn_out", ("layer", "pos")),
    Sweep("mlp_out", "blocks.{layer}.hook_mlp_out", ("layer", "pos")),
    Sweep("head_out", "blocks.{layer}.attn.hook_z", ("layer", "head")),
    Sweep("head_out_by_pos", "blocks.{layer}.attn.hook_z", ("layer", "pos", "head")),
    Sweep("head_q", "blocks.{layer}.attn.hook_q", ("layer", "head")),
    Sweep("head_q_by_pos", "blocks.{layer}.attn.hook_q", ("layer", "pos", "head")),
    Sweep("head_k", "blocks.{layer}.attn.hook_k", ("layer", "head"), kv=True),
    Sweep("head_k_by_pos", "blocks.{layer}.attn.hook_k", ("layer", "pos", "head"), kv=True),
    Sweep("head_v", "blocks.{layer}.attn.hook_v", ("layer", "head"), kv=True),
    Sweep("head_v_by_pos", "blocks.{layer}.attn.hook_v", ("layer", "pos", "head"), kv=True),
    Sweep("head_pattern", "blocks.{layer}.attn.hook_pattern", ("layer", "head"), pattern=True),
    Sweep("head_pattern_by_pos", "blocks.{layer}.attn.hook_pattern", ("layer", "head", "pos"),
          pattern=True),  # "pos" is the query (destination) position, as in TransformerLens
    Sweep("mlp_out_all_pos", "blocks.{layer}.hook_mlp_out", ("layer",)),  # a whole MLP layer
    Sweep("neuron", "blocks.{layer}.mlp.hook_post", ("layer", "neuron")),  # all positions
    Sweep("neuron_by_pos", "blocks.{layer}.mlp.hook_post", ("layer", "pos", "neuron")),
]}


def site_label(sweep: Sweep, site: tuple, tokens: tuple[str, ...]) -> str:
    """``resid_pre L5 pos 10 ' John'``, ``L9H6``, ``L9H6 q pos 3 ' and'``, ``L4KV1 v``, ``L25N1527``."""
    where = dict(zip(sweep.axes, site))
    parts = []
    if "neuron" in where:
        parts.append(f"L{where['layer']}N{where['neuron']}")
    elif "head" in where:
        head = f"L{where['layer']}{'KV' if sweep.kv else 'H'}{where['head']}"
        activation = sweep.name.removeprefix("head_").removesuffix("_by_pos")
        parts.append(head if activation == "out" else f"{head} {activation}")
    else:
        parts.append(f"{sweep.name} L{where['layer']}")
    if "pos" in where:
        parts.append(f"pos {where['pos']} {tokens[where['pos']]!r}")
    return " ".join(parts)


@dataclass(frozen=True, eq=False, repr=False)
class PatchingResult(Result):
    """A patching sweep: the metric with each site patched, per prompt.

    ``values``: site × prompt; ``mean``: per site; ``recovery``: normalised,
    ``(mean − target) / (source − target)``; ``effect``: ``mean − target``.
    """

    sweep: str
    direction: str
    metric: str
    axes: tuple[str, ...]
    sites: tuple[tuple[int, ...], ...]
    labels: tuple[str, ...]
    values: np.ndarray
    target_baseline: np.ndarray
    source_baseline: np.ndarray
    position_labels: tuple[str, ...]
    shape: tuple[int, ...]
    axis_values: tuple[tuple[int, ...], ...]
    rows_run: int
    rows_skipped: int
    method: str = "exact"  # or "attribution" (gradient approximation)
    corruption: str = "prompt pairs"
    exact_correlation: float | None = None  # attribution vs exact effects, when both were run

    kind = "patching"

    @property
    def title(self) -> str:
        how = "Activation patching" if self.method == "exact" else "Attribution patching (gradient estimate)"
        return f"{how}: {self.sweep}, {self.direction.replace('_', ' ')} ({self.metric})"

    @property
    def mean(self) -> np.ndarray:
        return self.values.mean(axis=1)

    @property
    def effect(self) -> np.ndarray:
        return self.mean - self.target_baseline.mean()

    @property
    def recovery(self) -> np.ndarray:
        gap = self.source_baseline.mean() - self.target_baseline.mean()
        return self.effect / gap if gap != 0 else np.full_like(self.effect, np.nan)

    def grid(self, of: str = "recovery") -> np.ndarray:
        """The sweep's values in its axes' shape, e.g. layer × pos."""
        return getattr(self, of).reshape(self.shape)

    @property
    def df(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.sites, columns=list(self.axes))
        frame.insert(0, "site", self.labels)
        frame["mean"], frame["effect"], frame["recovery"] = self.mean, self.effect, self.recovery
        return frame

    def top(self, k: int = 5) -> pd.DataFrame:
        """The k sites with the largest normalised recovery."""
        return self.df.nlargest(k, "recovery").reset_index(drop=True)

    def share_of_top(self, k: int) -> float:
        """Fraction of the total absolute effect carried by the k sites with the largest one."""
        magnitude = np.sort(np.abs(self.effect))[::-1]
        return float(magnitude[:k].sum() / magnitude.sum()) if magnitude.sum() else float("nan")

    def summary(self) -> dict:
        best = self.top(1).iloc[0]
        return {"top_site": best["site"], "top_recovery": float(best["recovery"]),
                "target_baseline": float(self.target_baseline.mean()),
                "source_baseline": float(self.source_baseline.mean()),
                "top_5_share": self.share_of_top(5), "rows_run": self.rows_run,
                "rows_skipped (identical activations)": self.rows_skipped,
                **({} if self.exact_correlation is None else
                   {"correlation with exact patching": self.exact_correlation})}

    def notes(self) -> list[str]:
        return [f"patched {self.direction.replace('_', ' ')}; corruption: {self.corruption}; metric {self.metric}; "
                "recovery = (patched − target) / (source − target); position labels use prompt 0's tokens"]

    def figure(self) -> dict:
        grid = self.grid()
        if len(self.axes) == 3:  # layer × pos × unit: each unit's strongest position
            pos = self.axes.index("pos")
            index = np.expand_dims(np.nanargmax(np.abs(grid), axis=pos), pos)
            grid = np.take_along_axis(grid, index, axis=pos).squeeze(pos)
        elif len(self.axes) == 1:
            grid = grid[:, None]
        values = dict(zip(self.axes, self.axis_values))
        unit = next((a for a in ("head", "neuron") if a in self.axes), None)
        prefix = {"head": "KV" if SWEEPS[self.sweep].kv else "H", "neuron": "N"}.get(unit)
        x = ([f"{prefix}{u}" for u in values[unit]] if unit else
             [self.position_labels[p] for p in values["pos"]] if "pos" in values else ["all positions"])
        return {"type": "heatmap", "z": np.where(np.isfinite(grid), grid, None).tolist(), "x": x,
                "y": [f"L{layer}" for layer in values["layer"]],
                "xlabel": unit or "position", "ylabel": "layer",
                "title": f"normalised recovery, {self.sweep}"}


def _axis_values(model, spec: Sweep, width: int, layers, positions, heads, neurons) -> dict:
    """Every index along each axis, or the chosen ones, checked against the model and prompts."""
    n_heads = model.cfg.n_key_value_heads if spec.kv and model.cfg.n_key_value_heads else model.cfg.n_heads
    full = {"layer": model.cfg.n_layers, "pos": width, "head": n_heads, "neuron": model.cfg.d_mlp}
    chosen = {"layer": layers, "pos": positions, "head": heads, "neuron": neurons}
    values = {}
    for axis in spec.axes:
        if chosen[axis] is None:
            values[axis] = tuple(range(full[axis]))
            continue
        values[axis] = tuple(sorted({int(v) for v in chosen[axis]}))
        bad = [v for v in values[axis] if not 0 <= v < full[axis]]
        if bad:
            raise ValueError(f"{axis} {bad[0]} does not exist: {spec.name} has {axis}s 0–{full[axis] - 1}")
    return values


def prepare(model, prompts, sweep: str, direction: str, metric, prepend_bos, probe: str, noise=None):
    """Check a sweep request; return ``(spec, metric name, metric function, clean, corrupted)``.
    With ``noise`` the corrupted run is the clean tokens plus noise, so ``corrupted`` is ``clean``'s
    tokens under another name."""
    if sweep not in SWEEPS:
        raise ValueError(f"sweep {sweep!r}: choose one of {', '.join(SWEEPS)}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r}: choose {' or '.join(DIRECTIONS)}")
    if has_hooks(model):
        raise RuntimeError(f"{probe} needs the plain model, but hooks are attached; call "
                           "model.reset_hooks() first")
    metric_name, metric_fn = resolve_metric(metric)
    if noise is not None:
        clean = prompts.tokenize(model, prepend_bos)
        corrupted = dataclasses.replace(clean)  # the same tokens; the noise makes it corrupted
        if any(not 0 <= p < min(clean.lengths) for p in noise.positions):
            raise ValueError(f"noise positions {list(noise.positions)}: prompts have {min(clean.lengths)} tokens")
    else:
        clean, corrupted = tokenize_pair(model, prompts, prepend_bos)
    clean.require_single_token(probe)
    if len(set(clean.lengths)) > 1:
        raise ValueError(f"{probe} lines up prompts position by position, but {prompts.name!r} has "
                         f"prompts of {sorted(set(clean.lengths))} tokens; use prompts of one length "
                         "(one template) per sweep")
    return SWEEPS[sweep], metric_name, metric_fn, clean, corrupted


def sweep_result(prompts, spec: Sweep, direction: str, metric_name: str, clean: Tokenized, ranges: dict,
                 sites, values, target_baseline, source_baseline, **extra) -> PatchingResult:
    """A `PatchingResult` with its labels, axes and position names filled in."""
    tokens = clean.str_tokens[0]
    return PatchingResult(
        model=clean.model_name, prompt_set=prompts.name, sweep=spec.name, direction=direction,
        metric=metric_name, axes=spec.axes, sites=tuple(sites),
        labels=tuple(site_label(spec, site, tokens) for site in sites), values=values,
        target_baseline=target_baseline, source_baseline=source_baseline,
        position_labels=tuple(f"{p} {t!r}" for p, t in enumerate(tokens)),
        shape=tuple(len(ranges[a]) for a in spec.axes), axis_values=tuple(ranges[a] for a in spec.axes),
        **extra)


@probe
def patch(model, prompts, sweep: str = "resid_pre", direction: str = "clean_into_corrupted",
          metric="logit_diff", layers=None, positions=None, heads=None, neurons=None,
          noise=None, memory_budget: int = DEFAULT_MEMORY_BUDGET,
          prepend_bos: bool | None = None) -> PatchingResult:
    """Patch every site of ``sweep`` (see `SWEEPS`) from one run into the other, one site
    at a time, and measure ``metric`` (a name in `probes.metrics.METRICS` or a function).
    ``layers``, ``positions``, ``heads`` and ``neurons`` restrict the sweep to those indices
    (a neuron sweep over every neuron of every layer is large: pass ``layers``/``neurons``).
    ``noise``: a `probes.ablation.GaussianNoise`; the corrupted run is then the clean prompts
    with noise on their embeddings (causal tracing), averaged over its seeded samples.
    ``memory_budget``: bytes of activations one forward pass may hold (default 2 GiB);
    sites are split over as many passes as that needs. Results do not depend on it."""
    spec, metric_name, metric_fn, clean, corrupted = prepare(model, prompts, sweep, direction, metric,
                                                             prepend_bos, "patching", noise)
    width, n = clean.tokens.shape[1], len(clean.lengths)
    ranges = _axis_values(model, spec, width, layers, positions, heads, neurons)
    key = ("patch", clean.key, corrupted.key, sweep, direction, metric_fn, tuple(ranges.items()), noise)
    sites, values, target_baseline, source_baseline, rows_run = memo(
        model, key,
        lambda: run_sweep(model, spec, clean, corrupted, direction, metric_fn, ranges, memory_budget, noise))

    return sweep_result(prompts, spec, direction, metric_name, clean, ranges, sites, values, target_baseline,
                        source_baseline, rows_run=rows_run, rows_skipped=len(sites) * n - rows_run,
                        corruption="prompt pairs" if noise is None else
                        f"Gaussian noise on positions {list(noise.positions)}, {noise.scale} × embedding std, "
                        f"{noise.samples} samples, seed {noise.seed}")
