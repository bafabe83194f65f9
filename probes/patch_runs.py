"""How a patching sweep runs: exactly like `transformer_lens.patching`, each site is
patched alone, but the work that cannot change is not redone.

  * A site at a position before the first token where the clean and corrupted
    prompt differ is skipped: its activations are identical in both runs (attention
    is causal), so its effect is exactly zero.
  * Positions before that token are the same in every patched run, so their keys
    and values are kept from the unpatched run and each run computes only the
    positions from the first difference on (`probes.shared_prefix`).
  * Layers before a site's layer are the same as the target run's, so they are
    computed once: the prompts that differ first at the same position start as one
    batch, and at the start of each layer the batch grows by a copy of their
    unpatched streams per site of that layer, which are then patched; many sites
    share one forward pass, as many as fit the memory budget. Prompts of each token
    length run as a batch of their own (no padding), so a set may mix lengths.
  * Each run stops before the unembedding, and only the final position is
    unembedded (for a metric that reads only the answers, only their two columns).
"""

import dataclasses
import warnings

import numpy as np
import torch

from .forward import final_logits_with, input_device
from .model_state import state_of
from .shared_prefix import PrefixKeysValues, agrees
from .sites import hook_of
from .tokens import Tokenized


def first_differences(clean: Tokenized, corrupted: Tokenized) -> list[int]:
    """Per prompt, the first position where clean and corrupted tokens differ."""
    out = []
    for a, b in zip(clean.tokens, corrupted.tokens):
        differ = (a != b).nonzero()
        out.append(int(differ[0]) if len(differ) else len(a))
    return out


def _patch_hook(spec, source: torch.Tensor, rows, prompts, where: dict):
    """Replace, in each row, the site's slice of the activation (`Sweep.index`) by the source
    prompt's; ``where``: per axis after the layer, one index per row. (The indices move to the
    activation's device: on a split model, its layer's GPU.)"""

    def hook(activation, hook):
        here = activation.device
        at = {axis: index.to(here) for axis, index in where.items()}
        activation[spec.index(rows.to(here), at)] = source[spec.index(prompts.to(here), at)]
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


def _run_growing_batch(model, spec, names, sites, chosen: list[int], source_acts, tokens,
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
        where = {axis: torch.tensor([sites[s][a] - (offset if axis == "pos" else 0) for s in members],
                                    device=device).repeat_interleave(g)
                 for a, axis in enumerate(spec.axes) if axis != "layer"}
        patch_fn = _patch_hook(spec, source_acts[names[layer]], rows, rows % g, where)
        grow_at = hook_of("resid_pre", layer)

        def grow(activation, hook, copies=len(members), patch_fn=patch_fn, also_patch=names[layer] == grow_at):
            activation = torch.cat([activation, activation[:g].repeat(copies, *[1] * (activation.ndim - 1))])
            return patch_fn(activation, hook) if also_patch else activation

        hooks.append((grow_at, grow))
        if names[layer] != grow_at:
            hooks.append((names[layer], patch_fn))
    final = torch.full((next_row,), tokens.shape[1] - 1, device=device)
    return final_logits_with(model, tokens, final, hooks, prefix,
                             None if columns is None else columns.repeat(next_row // g, 1))




def length_groups(lengths) -> dict[int, list[int]]:
    """Prompts by token length: each length runs as a batch of its own, without padding."""
    groups: dict[int, list[int]] = {}
    for i, length in enumerate(lengths):
        groups.setdefault(length, []).append(i)
    return groups


def _rows(tokenized: Tokenized, group: list[int], length: int) -> Tokenized:
    """The prompts ``group`` (all ``length`` tokens long) as a batch of their own: every
    per-prompt field (a tensor or tuple with one entry per prompt) keeps their entries."""
    n = len(tokenized.lengths)

    def pick(name: str, value):
        if name == "tokens":
            return value[group, :length]
        if isinstance(value, torch.Tensor) and value.ndim and len(value) == n:
            return value[group]
        return tuple(value[i] for i in group) if isinstance(value, tuple) and len(value) == n else value

    return dataclasses.replace(tokenized, **{f.name: pick(f.name, getattr(tokenized, f.name))
                                             for f in dataclasses.fields(tokenized) if f.init})


def run_sweep(model, spec, clean: Tokenized, corrupted: Tokenized, direction: str, metric_fn,
              sites: list[tuple], memory_budget: int, noise=None):
    """Run a sweep over ``sites``: ``(values (site × prompt), target baseline, source baseline,
    rows run)``. Prompts of each token length run as a batch of their own. With ``noise`` (a
    `GaussianNoise`), the corrupted run is the clean prompts with noise on their embeddings,
    and every number is the mean over the noise samples."""
    n = len(clean.lengths)
    draws = [None] if noise is None else noise.draws(model, n)
    values, target_baseline, source_baseline = np.zeros((len(sites), n)), np.zeros(n), np.zeros(n)
    rows_run = 0
    for length, group in length_groups(clean.lengths).items():
        clean_rows, corrupted_rows = _rows(clean, group, length), _rows(corrupted, group, length)
        for draw in draws:
            v, t, s, rows = _sweep_once(model, spec, clean_rows, corrupted_rows, direction, metric_fn, sites,
                                        memory_budget, None if draw is None else draw[group], noise)
            values[:, group] += v / len(draws)
            target_baseline[group] += t / len(draws)
            source_baseline[group] += s / len(draws)
        rows_run += rows
    return values, target_baseline, source_baseline, rows_run


def _sweep_once(model, spec, clean: Tokenized, corrupted: Tokenized, direction: str, metric_fn,
                sites: list[tuple], memory_budget: int, draw=None, noise=None):
    """One sweep over prompts of one length; ``draw`` (prompt × position × d_model) is the
    noise of a noise corruption."""
    target, source = (corrupted, clean) if direction == "clean_into_corrupted" else (clean, corrupted)

    def corrupt(run: Tokenized, rows=slice(None), offset=0) -> list:  # hooks making a run the corrupted one
        return [noise.hook(draw[rows], offset)] if noise is not None and run is corrupted else []

    device = input_device(model)
    width, n = clean.tokens.shape[1], len(clean.lengths)
    final_positions = torch.full((n,), width - 1, device=device)
    answers = clean.answer_ids.to(device)

    # source activations at every hooked layer, and the three unpatched baselines
    source_acts = {}

    def keep(name):
        def hook(activation, hook):
            source_acts[name] = activation.detach().clone()
        return hook

    names = {layer: spec.hook_at(layer) for layer in sorted({site[0] for site in sites})}
    source_logits = final_logits_with(model, source.tokens.to(device), final_positions,
                                      [*corrupt(source), *((name, keep(name)) for name in names.values())])
    target_keys_values = PrefixKeysValues()  # the target run's keys and values, for shared prefixes
    target_logits = final_logits_with(model, target.tokens.to(device), final_positions, corrupt(target),
                                      target_keys_values)
    clean_logits = source_logits if source is clean else target_logits
    source_baseline = metric_fn(source_logits, answers, clean_logits).cpu().numpy().astype(np.float64)
    target_baseline = metric_fn(target_logits, answers, clean_logits).cpu().numpy().astype(np.float64)

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
        offset = first if state_of(model).capabilities.get("prefix_cache", True) else 0
        rows_run += len(chosen) * len(group)
        group_columns = None if columns is None else columns[group]

        def score(offset):
            prefix = None if not offset else target_keys_values.prefix(group, offset)
            return _score_group(model, spec, names, sites, chosen, source_acts, target, group, offset, prefix,
                                memory_budget, corrupt(target, group, offset), group_columns)

        expected = target_logits[group] if columns is None else target_logits[group].gather(1, group_columns)
        try:  # the first pass's unpatched rows must reproduce the full run
            passes = score(offset)
            scored = [next(passes)]
            problem = None if agrees(scored[0][1][:len(group)], expected, dtype) else "did not reproduce"
            scored += passes if problem is None else []
        except RuntimeError as error:  # an architecture whose attention cannot take the cache
            problem = f"failed ({error})"
        if problem:
            warnings.warn(f"{type(model).__name__}: a run continuing a cached prompt prefix {problem} the "
                          "full run; patching this model with full runs (slower, same results)",
                          RuntimeWarning, stacklevel=4)
            state_of(model).capabilities["prefix_cache"] = False  # its attention ignored the cache
            scored = score(0)
        for part, logits in scored:  # rows after the unpatched ones: site-major, prompt-minor
            patched = logits[len(group):].view(len(part), len(group), -1)
            for p, i in enumerate(group):
                picked = answers[i] if columns is None else torch.arange(2, device=device)
                values[part, i] = metric_fn(patched[:, p], picked.expand(len(part), 2),
                                            clean_logits[i].expand(len(part), -1)).cpu().numpy()

    return values, target_baseline, source_baseline, rows_run


def _prompt_groups(firsts: list[int], width: int) -> dict[int, list[int]]:
    """Prompts by the first position where their clean and corrupted tokens differ: those
    share their sites and the length of their shared prefix, so they run together. Prompts
    without a difference are left out: patching them changes nothing."""
    groups: dict[int, list[int]] = {}
    for i, first in enumerate(firsts):
        if first < width:
            groups.setdefault(first, []).append(i)
    return groups


def _score_group(model, spec, names, sites, chosen: list[int], source_acts, target: Tokenized,
                 group: list[int], offset: int, prefix, memory_budget: int, extra_hooks, columns=None):
    """``(sites, logits)`` per forward pass, lazily: the group's prompts patched at each of
    ``chosen``, in as many passes as the memory budget needs; logits as `_run_growing_batch`'s."""
    device = input_device(model)
    tokens = target.tokens[group, offset:].to(device)
    from_offset = (group, *[slice(None)] * spec.dims.index("pos"), slice(offset, None))
    acts = {name: act[from_offset] for name, act in source_acts.items()}
    rows = rows_per_pass(model, tokens.shape[1], target.tokens.shape[1], memory_budget)
    per_pass = max(1, rows // len(group) - 1)  # sites per pass: each adds a row per prompt
    ordered = sorted(chosen, key=lambda s: sites[s])
    for start in range(0, len(ordered), per_pass):
        part = ordered[start:start + per_pass]
        yield part, _run_growing_batch(model, spec, names, sites, part, acts, tokens, offset, prefix,
                                       extra_hooks, columns)
