"""Path patching (Wang et al. 2022): does the senders' signal reach the metric *through* the
receivers' query, key, value or residual input?

Activation patching of a head says how much its output matters, by every route at once.
Path patching isolates one route, sender → receiver input, in three runs:

1. the clean and the corrupted run, caching every head's output (``hook_z``);
2. the corrupted run with the senders' outputs set to their clean values and every other
   head's output frozen at its corrupted value (MLPs recomputed, or frozen too with
   ``freeze_mlps=True``), recording the receivers' input: their ``hook_q``/``hook_k``/``hook_v``
   (per head) or the residual stream entering their layer;
3. the corrupted run with only that input patched to its run-2 value, everything downstream
   recomputed; the metric of this run, normalised like patching:
   ``(patched − corrupted) / (clean − corrupted)``.

So the senders' clean output counts only where it reaches the receivers directly (or
through MLPs), and only through the named input.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .evidence import probe
from .forward import at_positions, input_device
from .metrics import resolve_metric
from .results import Result
from .self_checks import require_trusted
from .sites import head_label, hook_of, layer_label, parse_head
from .tokens import tokenize_pair

INPUTS = ("q", "k", "v", "resid")


class PatchedRuns:
    """The numbers of a Result that holds per-prompt ``clean``, ``corrupted`` and ``patched``
    metrics of one patch clean into corrupted (path patching, edge patching)."""

    @property
    def effect(self) -> float:
        """Mean patched − mean corrupted."""
        return float(self.patched.mean() - self.corrupted.mean())

    @property
    def recovery(self) -> float:
        """(patched − corrupted) / (clean − corrupted), on the means: 1 = the patch restores it all."""
        gap = self.clean.mean() - self.corrupted.mean()
        return float(self.effect / gap) if gap else float("nan")

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame({"prompt": self.prompts, "clean": self.clean, "corrupted": self.corrupted,
                             "patched": self.patched, "effect": self.patched - self.corrupted})

    def summary(self) -> dict:
        return {"recovery": self.recovery, "effect": self.effect, "clean": float(self.clean.mean()),
                "corrupted": float(self.corrupted.mean()), "patched": float(self.patched.mean())}


@dataclass(frozen=True, eq=False, repr=False)
class PathPatching(PatchedRuns, Result):
    """The metric per prompt with the senders → receivers path patched (clean into corrupted)."""

    senders: tuple[str, ...]
    receivers: tuple[str, ...]
    receiver_input: str
    positions: str
    freeze_mlps: bool
    metric: str
    prompts: tuple[str, ...]
    clean: np.ndarray
    corrupted: np.ndarray
    patched: np.ndarray

    kind = "path_patching"

    @property
    def title(self) -> str:
        return (f"Path patching: {', '.join(self.senders)} → {', '.join(self.receivers)} "
                f"({self.receiver_input}), clean into corrupted")

    def notes(self) -> list[str]:
        return [f"receivers' {self.receiver_input} input patched at {self.positions}; other heads frozen at their "
                f"corrupted outputs in run 2; MLPs {'frozen' if self.freeze_mlps else 'recomputed'}"]

    def figure(self) -> dict:
        return {"type": "bar", "x": ["corrupted", "path patched", "clean"],
                "y": [float(self.corrupted.mean()), float(self.patched.mean()), float(self.clean.mean())],
                "xlabel": "run", "ylabel": f"mean {self.metric}"}


def _receivers(model, receivers, receiver_input) -> list[tuple[int, int | None]]:
    """(layer, head) per receiver; head None for a residual receiver given as a layer."""
    receivers = [receivers] if isinstance(receivers, (str, int)) else list(receivers)
    if not receivers:
        raise ValueError("receivers=[] names no receiver; give heads such as ['L9H6']")
    out = []
    for r in receivers:
        if receiver_input == "resid" and (isinstance(r, int) or (isinstance(r, str) and r.strip().isdigit())):
            if not 0 <= int(r) < model.cfg.n_layers:
                raise ValueError(f"receiver layer {r}: the model has layers 0–{model.cfg.n_layers - 1}")
            out.append((int(r), None))
        else:
            out.append(parse_head(model, r))
    return sorted(set(out), key=lambda t: (t[0], -1 if t[1] is None else t[1]))


@probe
def path_patch(model, prompts, senders, receivers, *, receiver_input: str = "q", positions=None,
               freeze_mlps: bool = False, metric="logit_diff", prepend_bos: bool | None = None) -> PathPatching:
    """Patch the ``senders``' clean outputs (heads, ``"L9H6"``) into the corrupted run, reaching
    only the ``receivers``' ``receiver_input`` (``q``, ``k``, ``v``: those heads' inputs; ``resid``:
    the residual stream entering each receiver's layer, receivers given as heads or layer numbers).
    ``positions``: None (every position) or ``"end"`` (each prompt's final position only)."""
    if receiver_input not in INPUTS:
        raise ValueError(f"receiver_input {receiver_input!r}: choose one of {', '.join(INPUTS)}")
    if positions not in (None, "end"):
        raise ValueError(f"positions {positions!r}: None (every position) or 'end' (the final position)")
    require_trusted(model, "path_patch", "hooks", "clean_patch")
    metric_name, metric_fn = resolve_metric(metric)
    clean, corrupted = tokenize_pair(model, prompts, prepend_bos)
    clean.require_single_token("path_patch")
    senders = [senders] if isinstance(senders, str) else list(senders)
    if not senders:
        raise ValueError("senders=[] names no sender; give heads such as ['L5H5']")
    sent = sorted({parse_head(model, s) for s in senders})
    targets = _receivers(model, receivers, receiver_input)
    kv_heads = getattr(model.cfg, "n_key_value_heads", None) or model.cfg.n_heads
    if receiver_input in ("k", "v") and kv_heads != model.cfg.n_heads:
        raise ValueError(f"receiver_input {receiver_input!r}: this model shares each key/value head among "
                         f"{model.cfg.n_heads // kv_heads} query heads (grouped-query attention), so one head's "
                         "key or value cannot be patched alone; use 'q' or 'resid'")
    first = min(layer for layer, _ in targets)
    late = [head_label(*s) for s in sent if s[0] >= first]
    if late:
        raise ValueError(f"senders {late} are not before the first receiver layer L{first}: a head can only "
                         "send to later layers")
    device = input_device(model)
    n_layers, n = model.cfg.n_layers, len(clean.lengths)
    answers = clean.answer_ids  # scores are computed on the CPU
    z_names = [hook_of("head_out", l) for l in range(n_layers)]
    mlp_names = [hook_of("mlp_out", l) for l in range(n_layers)] if freeze_mlps else []

    def final(logits):
        return at_positions(logits, clean.final_positions).float().cpu()

    # Run 1: clean and corrupted, caching head (and MLP) outputs.
    with torch.inference_mode():
        clean_logits, clean_cache = model.run_with_cache(clean.tokens.to(device), names_filter=z_names)
        corrupt_logits, corrupt_cache = model.run_with_cache(corrupted.tokens.to(device),
                                                             names_filter=z_names + mlp_names)
    clean_final, corrupt_final = final(clean_logits), final(corrupt_logits)
    senders_at = {}
    for layer, head in sent:
        senders_at.setdefault(layer, []).append(head)

    def freeze(name, layer):  # hook points answer to several names: bind the one we asked for
        def hook(z, hook):
            out = corrupt_cache[name].clone()
            for head in senders_at.get(layer, []):
                out[:, :, head] = clean_cache[name][:, :, head]
            return out
        return hook

    def freeze_mlp(name):
        return lambda out, hook: corrupt_cache[name]

    receiver_sweep = "resid_pre" if receiver_input == "resid" else f"head_{receiver_input}"
    receiver_hooks = {l: hook_of(receiver_sweep, l) for l in sorted({l for l, _ in targets})}
    recorded = {}

    def record(name):
        def hook(activation, hook):
            recorded[name] = activation.clone()
            return activation
        return hook

    # Run 2: senders clean, every other head frozen at its corrupted output; record the inputs.
    with torch.inference_mode():
        model.run_with_hooks(corrupted.tokens.to(device),
                             fwd_hooks=[(n_, freeze(n_, l)) for l, n_ in enumerate(z_names)]
                             + [(n_, freeze_mlp(n_)) for n_ in mlp_names]
                             + [(n_, record(n_)) for n_ in receiver_hooks.values()])
    where = torch.zeros(n, corrupted.tokens.shape[1], dtype=torch.bool)
    if positions == "end":
        where[torch.arange(n), clean.final_positions] = True
    else:
        where[:] = True
    heads_of = {}
    for layer, head in targets:
        heads_of.setdefault(layer, set()).add(head)

    def patch_input(name, layer):
        def hook(activation, hook):
            new, here = recorded[name], where.to(activation.device)[..., None]  # its layer's GPU
            if receiver_input == "resid":
                return torch.where(here, new, activation)
            for head in heads_of[layer]:
                activation[:, :, head] = torch.where(here, new[:, :, head], activation[:, :, head])
            return activation
        return hook

    # Run 3: the corrupted run with only the receivers' input patched.
    with torch.inference_mode():
        patch_hooks = [(n_, patch_input(n_, l)) for l, n_ in receiver_hooks.items()]
        patched_final = final(model.run_with_hooks(corrupted.tokens.to(device), fwd_hooks=patch_hooks))
    score = lambda logits: metric_fn(logits, answers, clean_final).numpy()  # noqa: E731
    return PathPatching(model=clean.model_name, prompt_set=prompts.name,
                        senders=tuple(head_label(*s) for s in sent),
                        receivers=tuple(head_label(l, h) if h is not None else layer_label(l) for l, h in targets),
                        receiver_input=receiver_input, positions="every position" if positions is None
                        else "the final position", freeze_mlps=freeze_mlps, metric=metric_name,
                        prompts=prompts.prompts, clean=score(clean_final), corrupted=score(corrupt_final),
                        patched=score(patched_final))
