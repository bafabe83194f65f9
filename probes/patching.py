"""Activation patching: which activations carry the difference between two runs?

Run the model on a *target* input while replacing one activation (a *site*: a
layer's residual stream at one position, one head's output, …) with its value
from a *source* input, and measure a metric. Clean into corrupted ("denoising")
asks which sites suffice to restore the clean behaviour; corrupted into clean
("noising") asks which sites it needs. Normalised recovery
``(patched − target) / (source − target)`` puts every site on one scale.

One engine serves every sweep. Exactly like `transformer_lens.patching`, each
site is patched alone, but:
  * a site at a position before the first token where the clean and corrupted
    prompt differ is skipped: its activations are identical in both runs (attention
    is causal), so its effect is exactly zero;
  * positions before that token are the same in every patched run, so their keys
    and values are computed once per prompt and each run computes only the
    positions from the first difference on (`probes.shared_prefix`);
  * layers before a site's layer are the same as the target run's, so they are
    computed once: the prompts that differ first at the same position start as one
    batch, and at the start of each layer the batch grows by a copy of their
    unpatched streams per site of that layer, which are then patched — many sites
    in one forward pass, as many as fit the memory budget;
  * each run stops before the unembedding, and only the final position is
    unembedded, since that is all the metric reads.
"""

import dataclasses
import itertools
import warnings
import weakref
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .forward import has_hooks, memo
from .metrics import resolve_metric
from .results import Result
from .shared_prefix import PrefixKeysValues, agrees, passing_the_cache
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


class _Stop(Exception):
    """Raised at the final norm's input: everything after it is computed by hand."""


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


def first_differences(clean: Tokenized, corrupted: Tokenized) -> list[int]:
    """Per prompt, the first position where clean and corrupted tokens differ."""
    out = []
    for a, b in zip(clean.tokens, corrupted.tokens):
        differ = (a != b).nonzero()
        out.append(int(differ[0]) if len(differ) else len(a))
    return out


def final_logits_with(model, tokens, positions, hooks, prefix=None, columns=None) -> torch.Tensor:
    """Final-position logits of a (patched) run, stopping before the full unembedding.
    With ``prefix`` (`probes.shared_prefix`), ``tokens`` continue the prefix's tokens.
    With ``columns`` (rows × k token ids), only those logits, rows × k."""
    captured = {}

    def stop(activation, hook):
        captured["resid"] = activation
        raise _Stop

    cached = {} if prefix is None else {"past_key_values": prefix}
    with (torch.inference_mode(), passing_the_cache(model),
          model.hooks(fwd_hooks=[*hooks, ("ln_final.hook_in", stop)])):
        try:
            model(tokens, return_type="logits", **cached)
        except _Stop:
            pass
    resid = captured["resid"]  # more rows than ``tokens`` when the batch grew mid-pass
    resid = resid[torch.arange(len(resid), device=resid.device), positions]
    with torch.inference_mode():
        normed = model.ln_final(resid[:, None])[:, 0]
        if columns is None:
            return model.unembed(normed[:, None])[:, 0].float()
        return (torch.einsum("rd,drk->rk", normed, model.W_U[:, columns]) + model.b_U[columns]).float()


def _patch_hook(sweep: Sweep, source: torch.Tensor, rows, prompts, pos, head):
    """Replace, in each row, the site's slice of the activation by the source prompt's.
    ``head`` indexes the unit axis after position: a head, or a neuron of ``mlp.hook_post``."""

    def hook(activation, hook):
        if sweep.pattern:  # batch head query key; "pos" is the query position
            if pos is None:
                activation[rows, head] = source[prompts, head]
            else:
                activation[rows, head, pos] = source[prompts, head, pos]
        elif head is None and pos is None:
            activation[rows] = source[prompts]
        elif head is None:
            activation[rows, pos] = source[prompts, pos]
        elif pos is None:
            activation[rows, :, head] = source[prompts, :, head]
        else:
            activation[rows, pos, head] = source[prompts, pos, head]
        return activation

    return hook


def rows_per_pass(model, positions: int, keys: int, budget: int) -> int:
    """How many runs of ``positions`` tokens (attending to ``keys``) one forward pass can
    hold in ``budget`` bytes. Per row it counts a layer's largest live activations: a few
    residual-stream-sized tensors, the MLP's hidden layer (gate, up, product), the
    attention scores, softmax and pattern, and the cached prefix's keys and values."""
    cfg = model.cfg
    item = next(model.parameters()).element_size()
    kv_width = 2 * (cfg.n_key_value_heads or cfg.n_heads) * cfg.d_head
    per_row = (positions * (8 * cfg.d_model + 4 * cfg.d_mlp + 3 * cfg.n_heads * keys) + keys * kv_width) * item
    return max(1, budget // per_row)


def _run_growing_batch(model, spec: Sweep, names, sites, chosen: list[int], source_acts, tokens,
                       offset: int, prefix, extra_hooks=(), columns=None) -> torch.Tensor:
    """Final-position logits of a group of g prompts: unpatched (rows 0..g−1), then for each
    site in ``chosen`` (ordered by layer) g rows, each prompt patched at that site.

    ``tokens`` are the prompts' tokens from position ``offset`` on (``prefix`` holds the keys
    and values before it) and ``source_acts`` the source run's activations over the same
    positions. At the start of each layer with sites, the batch grows by one copy of the g
    unpatched rows per site (layers before it are shared), and the copies are patched; so
    row r always belongs to prompt r mod g. ``columns``: per prompt, the only logits wanted.
    """
    device, g = tokens.device, len(tokens)
    by_layer: dict[int, list[int]] = {}
    for s in chosen:
        by_layer.setdefault(sites[s][0], []).append(s)
    hooks, next_row = list(extra_hooks), g  # extra hooks (noise) act before any growth
    for layer, members in by_layer.items():
        rows = torch.arange(next_row, next_row + g * len(members), device=device)
        next_row += len(rows)
        index = {axis: torch.tensor([sites[s][spec.axes.index(axis)] - (offset if axis == "pos" else 0)
                                     for s in members], device=device).repeat_interleave(g)
                 for axis in ("pos", "head", "neuron") if axis in spec.axes}
        patch_fn = _patch_hook(spec, source_acts[names[layer]], rows, rows % g,
                               index.get("pos"), index.get("head", index.get("neuron")))
        grow_at = f"blocks.{layer}.hook_resid_pre"

        def grow(activation, hook, copies=len(members), patch_fn=patch_fn, also_patch=names[layer] == grow_at):
            activation = torch.cat([activation, activation[:g].repeat(copies, *[1] * (activation.ndim - 1))])
            return patch_fn(activation, hook) if also_patch else activation

        hooks.append((grow_at, grow))
        if names[layer] != grow_at:
            hooks.append((names[layer], patch_fn))
    final = torch.full((next_row,), tokens.shape[1] - 1, device=device)
    return final_logits_with(model, tokens, final, hooks, prefix,
                             None if columns is None else columns.repeat(next_row // g, 1))


_IGNORES_PREFIX: "weakref.WeakSet" = weakref.WeakSet()  # models whose attention ignored the cache


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


def _sweep(model, spec: Sweep, clean: Tokenized, corrupted: Tokenized, direction: str, metric_fn,
           ranges: dict, memory_budget: int, noise=None):
    """Run a sweep: ``(sites, values (site × prompt), target baseline, source baseline, rows run)``.
    With ``noise`` (a `GaussianNoise`), the corrupted run is the clean prompts with noise on
    their embeddings, and every number is the mean over the noise samples."""
    if noise is not None:
        runs = [_sweep_once(model, spec, clean, corrupted, direction, metric_fn, ranges, memory_budget, draw,
                            noise)
                for draw in noise.draws(model, len(clean.lengths))]
        sites, rows_run = runs[0][0], runs[0][4]
        return (sites, *(np.mean([run[k] for run in runs], axis=0) for k in (1, 2, 3)), rows_run)
    return _sweep_once(model, spec, clean, corrupted, direction, metric_fn, ranges, memory_budget)


def _sweep_once(model, spec: Sweep, clean: Tokenized, corrupted: Tokenized, direction: str, metric_fn,
                ranges: dict, memory_budget: int, draw=None, noise=None):
    """One sweep; ``draw`` (prompt × position × d_model) is the noise of a noise corruption."""
    target, source = (corrupted, clean) if direction == "clean_into_corrupted" else (clean, corrupted)

    def corrupt(run: Tokenized, rows=slice(None), offset=0) -> list:  # hooks making a run the corrupted one
        return [noise.hook(draw[rows], offset)] if noise is not None and run is corrupted else []

    device = next(model.parameters()).device
    width, n = clean.tokens.shape[1], len(clean.lengths)
    final_positions = torch.full((n,), width - 1, device=device)
    answers = clean.answer_ids.to(device)

    # source activations at every hooked layer, and the three unpatched baselines
    source_acts = {}

    def keep(name):
        def hook(activation, hook):
            source_acts[name] = activation.detach().clone()
        return hook

    names = {layer: spec.hook.format(layer=layer) for layer in ranges["layer"]}
    source_logits = final_logits_with(model, source.tokens.to(device), final_positions,
                                      [*corrupt(source), *((name, keep(name)) for name in names.values())])
    target_keys_values = PrefixKeysValues()  # the target run's keys and values, for shared prefixes
    target_logits = final_logits_with(model, target.tokens.to(device), final_positions, corrupt(target),
                                      target_keys_values)
    clean_logits = source_logits if source is clean else target_logits
    source_baseline = metric_fn(source_logits, answers, clean_logits).cpu().numpy().astype(np.float64)
    target_baseline = metric_fn(target_logits, answers, clean_logits).cpu().numpy().astype(np.float64)

    sites = list(itertools.product(*(ranges[a] for a in spec.axes)))
    values = np.tile(target_baseline, (len(sites), 1))
    firsts = ([min(noise.positions)] * n if noise is not None else first_differences(clean, corrupted))
    pos_axis = spec.axes.index("pos") if "pos" in spec.axes else None
    rows_run = 0

    # A metric that reads only the two answers' logits gets just those: the sweep then
    # unembeds two columns per row instead of the whole vocabulary.
    columns = answers if getattr(metric_fn, "reads_answers_only", False) else None
    dtype = next(model.parameters()).dtype
    for first, group in _prompt_groups(firsts, width).items():
        chosen = [s for s, site in enumerate(sites) if pos_axis is None or site[pos_axis] >= first]
        offset = 0 if model in _IGNORES_PREFIX else first
        rows_run += len(chosen) * len(group)
        group_columns = None if columns is None else columns[group]

        def score(offset):
            prefix = None if not offset else target_keys_values.prefix(group, offset)
            return _score_group(model, spec, names, sites, chosen, source_acts, target, group, offset, prefix,
                                memory_budget, corrupt(target, group, offset), group_columns)

        expected = target_logits[group] if columns is None else target_logits[group].gather(1, group_columns)
        try:
            scored = score(offset)
            problem = None if agrees(scored[0][1][:len(group)], expected, dtype) else "did not reproduce"
        except RuntimeError as error:  # an architecture whose attention cannot take the cache
            problem = f"failed ({error})"
        if problem:
            warnings.warn(f"{type(model).__name__}: a run continuing a cached prompt prefix {problem} the "
                          "full run; patching this model with full runs (slower, same results)",
                          RuntimeWarning, stacklevel=4)
            _IGNORES_PREFIX.add(model)
            scored = score(0)
        for part, logits in scored:  # rows after the unpatched ones: site-major, prompt-minor
            patched = logits[len(group):].view(len(part), len(group), -1)
            for p, i in enumerate(group):
                picked = answers[i] if columns is None else torch.arange(2, device=device)
                values[part, i] = metric_fn(patched[:, p], picked.expand(len(part), 2),
                                            clean_logits[i].expand(len(part), -1)).cpu().numpy()

    return sites, values, target_baseline, source_baseline, rows_run


def _prompt_groups(firsts: list[int], width: int) -> dict[int, list[int]]:
    """Prompts by the first position where their clean and corrupted tokens differ: those
    share their sites and the length of their shared prefix, so they run together. Prompts
    without a difference are left out: patching them changes nothing."""
    groups: dict[int, list[int]] = {}
    for i, first in enumerate(firsts):
        if first < width:
            groups.setdefault(first, []).append(i)
    return groups


def _score_group(model, spec: Sweep, names, sites, chosen: list[int], source_acts, target: Tokenized,
                 group: list[int], offset: int, prefix, memory_budget: int, extra_hooks, columns=None) -> list:
    """``[(sites, logits)]``: the group's prompts patched at each of ``chosen``, in as many
    forward passes as the memory budget needs; logits as `_run_growing_batch`'s."""
    device = next(model.parameters()).device
    tokens = target.tokens[group, offset:].to(device)
    acts = {name: act[group, :, offset:] if spec.pattern else act[group, offset:]
            for name, act in source_acts.items()}
    rows = rows_per_pass(model, tokens.shape[1], target.tokens.shape[1], memory_budget)
    per_pass = max(1, rows // len(group) - 1)  # sites per pass: each adds a row per prompt
    ordered = sorted(chosen, key=lambda s: sites[s])
    return [(part, _run_growing_batch(model, spec, names, sites, part, acts, tokens, offset, prefix,
                                      extra_hooks, columns))
            for part in (ordered[start:start + per_pass] for start in range(0, len(ordered), per_pass))]


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
        lambda: _sweep(model, spec, clean, corrupted, direction, metric_fn, ranges, memory_budget, noise))

    return sweep_result(prompts, spec, direction, metric_name, clean, ranges, sites, values, target_baseline,
                        source_baseline, rows_run=rows_run, rows_skipped=len(sites) * n - rows_run,
                        corruption="prompt pairs" if noise is None else
                        f"Gaussian noise on positions {list(noise.positions)}, {noise.scale} × embedding std, "
                        f"{noise.samples} samples, seed {noise.seed}")
