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
import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .evidence import probe
from .metrics import resolve_metric
from .model_state import memo
from .patch_runs import run_sweep
from .renamed import older_name
from .results import Result, best_first
from .self_checks import require_trusted
from .sites import POST, RESID, SWEEPS, Site, Sweep, layer_label  # noqa: F401 - the sweep table, re-exported
from .tokens import Tokenized, tokenize_pair

DEFAULT_MEMORY_BUDGET = 2 * 2**30  # bytes of activations one patched forward pass may hold
DIRECTIONS = ("clean_into_corrupted", "corrupted_into_clean")
COMPONENT_SWEEPS = ("head_out", "mlp_out_all_pos")  # sweeps whose sites are whole components (heads, MLPs)


@dataclass(frozen=True, eq=False, repr=False)
class Patching(Result):
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
    ranked_by = "score"  # ranking(): components by normalised recovery, largest first (NaN last)
    score_names = ("recovery", "effect", "abs_effect")  # what `scores_over` can rank by

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

    @property
    def sparse(self) -> bool:
        """Whether the sites are a list, not every combination of their layers, units and positions."""
        return len(self.sites) < int(np.prod(self.shape))

    def grid(self, of: str = "recovery") -> np.ndarray:
        """The sweep's values in its axes' shape, e.g. layer × pos (NaN where a sparse
        list of sites has no site)."""
        out = np.full(self.shape, np.nan)
        where = [{v: i for i, v in enumerate(values)} for values in self.axis_values]
        out[tuple(np.array([[w[v] for w, v in zip(where, site)] for site in self.sites]).T)] = getattr(self, of)
        return out

    @property
    def df(self) -> pd.DataFrame:
        """One row per site: ``site`` (its full label), then, as in the other probes'
        tables, ``head`` (``L9H6``) or ``neuron`` (``L31N892``) with its ``layer`` and
        ``index``, or the ``layer``; ``pos``; then ``mean``, ``effect`` and ``recovery``."""
        frame = pd.DataFrame(self.sites, columns=list(self.axes))
        spec = SWEEPS[self.sweep]
        if spec.unit:
            frame = frame.rename(columns={spec.unit: "index"})
            frame.insert(0, spec.unit, [Site(layer, spec.unit_kind, index).label
                                        for layer, index in zip(frame["layer"], frame["index"])])
        frame.insert(0, "site", self.labels)
        frame["mean"], frame["effect"], frame["recovery"] = self.mean, self.effect, self.recovery
        return frame

    def top(self, k: int = 5) -> pd.DataFrame:
        """The k sites with the largest normalised recovery."""
        return self.df.nlargest(k, "recovery").reset_index(drop=True)

    def component_scores(self) -> pd.Series:
        """Each component's normalised recovery, in the table's order (index: its label); a
        ValueError for a sweep whose sites are not whole components (only `COMPONENT_SWEEPS`)."""
        if self.sweep not in COMPONENT_SWEEPS:
            raise ValueError(f"a {self.sweep} patching sweep ranks sites, not whole components; patch one of "
                             f"{', '.join(COMPONENT_SWEEPS)} (patch(model, prompts, 'head_out'))")
        how = "activation patching" if self.method == "exact" else "attribution patching"
        return pd.Series(np.asarray(self.recovery, float), index=list(self.labels),
                         name=f"{how} ({self.sweep}, recovery)")

    def ranking(self) -> list[str]:
        """Every component, by normalised recovery, largest first (ties in table order, NaN last):
        the order `faithfulness_curve` adds them in."""
        scores = self.component_scores()
        return [scores.index[i] for i in best_first(self.recovery)]

    @property
    def found_with(self):
        """How a circuit taken from this sweep was found (`probes.circuits.spec.FoundWith`):
        counterfactual ablation (``"patching"``: each prompt's corrupted twin) for a sweep over
        prompt pairs; None for one over Gaussian noise, which no circuit criterion runs."""
        from .ablation_values import COUNTERFACTUAL
        from .circuits.spec import FoundWith

        how = "activation patching" if self.method == "exact" else "attribution patching"
        return FoundWith.of_ranking(COUNTERFACTUAL if self.corruption == "prompt pairs" else None, None,
                                    self.prompt_set, f"{how} of {self.sweep} on {self.prompt_set!r}")

    def circuit(self, k: int):
        """The `Circuit` of the ``k`` components of largest normalised recovery: heads of a
        ``head_out`` sweep (every MLP left alone), MLP layers of an ``mlp_out_all_pos`` sweep
        (every head outside the circuit ablated, as `faithfulness_curve` does). It carries
        ``found_with`` (counterfactual ablation, for a sweep over prompt pairs), which the
        circuit criteria judge it with unless given ``ablation=``. A NaN recovery has no rank."""
        from .circuits.spec import Circuit
        from .input_errors import check_count

        k = check_count("k", k, 1, "how many components, e.g. 6")
        scores = self.component_scores()  # refuses a sweep whose sites are not whole components
        if k > len(scores):
            raise ValueError(f"k={k}: this {self.sweep} sweep patched {len(scores)} components")
        picks = best_first(self.recovery)[:k]
        if np.isnan(scores.to_numpy()[picks]).any():
            raise ValueError(f"k={k}: the top {k} components include one whose recovery is NaN (undefined: the "
                             "source and target runs score the same, or a NaN metric), and an undefined score has "
                             "no rank; .df shows every recovery")
        sites = [self.sites[i] for i in picks]
        if self.sweep == "head_out":
            return Circuit(sites, found_with=self.found_with)
        return Circuit([], mlps=[site[0] for site in sites], found_with=self.found_with)

    @property
    def n_prompts(self) -> int:
        return self.values.shape[1]

    def scores_over(self, prompts=None, by: str = "recovery") -> pd.Series:
        """Each site's score over the prompts at indices ``prompts`` (all when None; a repeated
        index counts twice, as in a bootstrap resample), exactly what a sweep on those prompts
        gives: ``"recovery"`` (mean patched − mean target) / (mean source − mean target) (NaN
        when the two runs score the same), ``"effect"`` mean patched − mean target, or
        ``"abs_effect"`` its size. Named by what ranks by what."""
        if by not in self.score_names:
            raise ValueError(f"score {by!r}: for a Patching choose one of {', '.join(self.score_names)}")
        rows = np.arange(self.n_prompts) if prompts is None else np.asarray(prompts)
        target = self.target_baseline[rows].mean()
        effect = self.values[:, rows].mean(axis=1) - target
        if by == "recovery":
            gap = self.source_baseline[rows].mean() - target
            scores = effect / gap if gap != 0 else np.full(len(effect), np.nan)
        else:
            scores = effect if by == "effect" else np.abs(effect)
        named = {"recovery": "normalised recovery", "effect": "effect", "abs_effect": "|effect|"}[by]
        return pd.Series(scores, index=list(self.labels), name=f"{self.sweep} sites by {named}")

    def share_of_top(self, k: int) -> float:
        """Fraction of the total absolute effect carried by the k sites with the largest one."""
        magnitude = np.sort(np.abs(self.effect))[::-1]
        return float(magnitude[:k].sum() / magnitude.sum()) if magnitude.sum() else float("nan")

    def summary(self) -> dict:
        ranked = self.top(1)  # empty when no site has a recovery (the two runs score the same)
        best = ranked.iloc[0] if len(ranked) else {"site": "none", "recovery": float("nan")}
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
        if self.sparse:  # a list of sites: one bar each
            return {"type": "bar", "x": list(self.labels),
                    "y": np.where(np.isfinite(self.recovery), self.recovery, None).tolist(),
                    "xlabel": "site", "ylabel": "normalised recovery", "title": f"normalised recovery, {self.sweep}"}
        grid = self.grid()
        if len(self.axes) == 3:  # layer × pos × unit: each unit's strongest position
            pos = self.axes.index("pos")
            index = np.expand_dims(np.nanargmax(np.abs(grid), axis=pos), pos)
            grid = np.take_along_axis(grid, index, axis=pos).squeeze(pos)
        elif len(self.axes) == 1:
            grid = grid[:, None]
        values = dict(zip(self.axes, self.axis_values))
        unit, prefix = SWEEPS[self.sweep].unit, SWEEPS[self.sweep].letter
        x = ([f"{prefix}{u}" for u in values[unit]] if unit else
             [self.position_labels[p] for p in values["pos"]] if "pos" in values else ["all positions"])
        return {"type": "heatmap", "z": np.where(np.isfinite(grid), grid, None).tolist(), "x": x,
                "y": [layer_label(layer) for layer in values["layer"]],
                "xlabel": unit or "position", "ylabel": "layer",
                "title": f"normalised recovery, {self.sweep}"}


def choose_sites(model, spec: Sweep, width: int, layers=None, positions=None, heads=None, neurons=None,
                 sites=None) -> list[tuple[int, ...]]:
    """The sites to patch, checked against the model and prompts: ``sites`` as listed, or every
    combination of ``layers``, ``positions``, ``heads`` and ``neurons`` (each default: all)."""
    n_heads = model.cfg.n_key_value_heads if spec.kv and model.cfg.n_key_value_heads else model.cfg.n_heads
    full = {"layer": model.cfg.n_layers, "pos": width, "head": n_heads, "neuron": model.cfg.d_mlp}
    if sites is not None:
        if any(x is not None for x in (layers, positions, heads, neurons)):
            raise ValueError("pass either sites= (a list of sites) or layers=/positions=/heads=/neurons= "
                             "(every combination of them), not both")
        chosen = list(dict.fromkeys(spec.site(s) for s in ([sites] if isinstance(sites, str) else sites)))
        if not chosen:
            raise ValueError(f"sites=[] lists no site; name {spec.name} sites such as "
                             f"{spec.label(tuple(0 for _ in spec.axes), ('',))!r}, or leave sites out for all")
    else:
        picked = {"layer": layers, "pos": positions, "head": heads, "neuron": neurons}
        chosen = list(itertools.product(*(range(full[a]) if picked[a] is None else sorted({int(v) for v in picked[a]})
                                          for a in spec.axes)))
    for site in chosen:
        for axis, value in zip(spec.axes, site):
            if not 0 <= value < full[axis]:
                raise ValueError(f"{axis} {value} does not exist: {spec.name} has {axis}s 0–{full[axis] - 1}"
                                 + ("" if axis != "pos" else " (the prompts' token positions, BOS counted)"))
    return chosen


def prepare(model, prompts, sweep: str, direction: str, metric, prepend_bos, probe: str, noise=None,
            equal_lengths: bool | None = None):
    """Check a sweep request; return ``(spec, metric name, metric function, clean, corrupted)``.
    With ``noise`` the corrupted run is the clean tokens plus noise, so ``corrupted`` is ``clean``'s
    tokens under another name. ``equal_lengths``: whether prompts must all have one token length
    (default: for sweeps by position)."""
    if sweep not in SWEEPS:
        raise ValueError(f"sweep {sweep!r}: choose one of {', '.join(SWEEPS)}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r}: choose {' or '.join(DIRECTIONS)}")
    relies_on = ("hooks", "clean_patch") + (("gradients",) if probe == "attribution patching" else ())
    require_trusted(model, probe, *relies_on)
    metric_name, metric_fn = resolve_metric(metric)
    if noise is not None:
        clean = prompts.tokenize(model, prepend_bos)
        corrupted = dataclasses.replace(clean)  # the same tokens; the noise makes it corrupted
        if any(not 0 <= p < min(clean.lengths) for p in noise.positions):
            raise ValueError(f"noise positions {list(noise.positions)}: prompts have {min(clean.lengths)} tokens")
    else:
        clean, corrupted = tokenize_pair(model, prompts, prepend_bos)
    clean.require_single_token(probe)
    spec = SWEEPS[sweep]
    if (equal_lengths or equal_lengths is None and "pos" in spec.axes) and len(set(clean.lengths)) > 1:
        short, long = (next(i for i, n in enumerate(clean.lengths) if n == f(clean.lengths)) for f in (min, max))
        why = (f"{sweep} patches by position, and positions line up across prompts only when they have "
               "one length" if "pos" in spec.axes else f"{probe} reads every prompt at one final position")
        raise ValueError(
            f"{probe} ({sweep}) needs prompts of one token length, but {prompts.name!r} has prompts of "
            f"{sorted(set(clean.lengths))} tokens: prompt {short} is {clean.lengths[short]} tokens "
            f"{list(clean.str_tokens[short])}, prompt {long} is {clean.lengths[long]} tokens "
            f"{list(clean.str_tokens[long])}; {why}. Split the set by length (one template per sweep)"
            + ("" if "pos" not in spec.axes else
               ", or patch a sweep over all positions (head_out, head_pattern, neuron, mlp_out_all_pos), "
               "which takes prompts of any lengths"))
    return spec, metric_name, metric_fn, clean, corrupted


def sweep_result(prompts, spec: Sweep, direction: str, metric_name: str, clean: Tokenized, sites,
                 values, target_baseline, source_baseline, **extra) -> Patching:
    """A `Patching` with its labels, axes and position names filled in."""
    tokens = clean.str_tokens[0]
    axis_values = tuple(tuple(sorted({site[i] for site in sites})) for i in range(len(spec.axes)))
    return Patching(
        model=clean.model_name, prompt_set=prompts.name, sweep=spec.name, direction=direction,
        metric=metric_name, axes=spec.axes, sites=tuple(sites),
        labels=tuple(spec.label(site, tokens) for site in sites), values=values,
        target_baseline=target_baseline, source_baseline=source_baseline,
        position_labels=tuple(f"{p} {t!r}" for p, t in enumerate(tokens)),
        shape=tuple(len(v) for v in axis_values), axis_values=axis_values, **extra)


@probe
def patch(model, prompts, sweep: str = "resid_pre", *, direction: str = "clean_into_corrupted",
          metric="logit_diff", layers=None, positions=None, heads=None, neurons=None, sites=None,
          noise=None, memory_budget: int = DEFAULT_MEMORY_BUDGET,
          prepend_bos: bool | None = None) -> Patching:
    """Patch every site of ``sweep`` (see `SWEEPS`) from one run into the other, one site
    at a time, and measure ``metric`` (a name in `probes.metrics.METRICS` or a function).
    ``layers``, ``positions``, ``heads`` and ``neurons`` restrict the sweep to every
    combination of those indices (a neuron sweep over every neuron of every layer is large);
    ``sites`` patches just the sites listed, as labels (``["L9H6", "L10H0"]``,
    ``"resid_pre L5 pos 10"``) or index tuples in the order of the sweep's ``axes``
    (``(layer, head)``, ``(layer, pos)``, ``(layer, head, pos)``).
    Prompts may differ in token length (each length runs as its own batch), except in
    sweeps by position: a position is a prompt's token index, so those need one length.
    ``noise``: a `probes.ablation.GaussianNoise`; the corrupted run is then the clean prompts
    with noise on their embeddings (causal tracing), averaged over its seeded samples.
    ``memory_budget``: bytes of activations one forward pass may hold (default 2 GiB);
    sites are split over as many passes as that needs. Results do not depend on it."""
    spec, metric_name, metric_fn, clean, corrupted = prepare(model, prompts, sweep, direction, metric,
                                                             prepend_bos, "patching", noise)
    n = len(clean.lengths)
    chosen = choose_sites(model, spec, min(clean.lengths), layers, positions, heads, neurons, sites)
    key = ("patch", clean.key, corrupted.key, clean.answer_tokens, sweep, direction, metric_fn, tuple(chosen),
           noise)
    values, target_baseline, source_baseline, rows_run = memo(
        model, key,
        lambda: run_sweep(model, spec, clean, corrupted, direction, metric_fn, chosen, memory_budget, noise))

    return sweep_result(prompts, spec, direction, metric_name, clean, chosen, values, target_baseline,
                        source_baseline, rows_run=rows_run, rows_skipped=len(chosen) * n - rows_run,
                        corruption="prompt pairs" if noise is None else
                        f"Gaussian noise on positions {list(noise.positions)}, {noise.scale} × embedding std, "
                        f"{noise.samples} samples, seed {noise.seed}")


def __getattr__(name: str):
    return older_name(__name__, name, {"PatchingResult": Patching})
