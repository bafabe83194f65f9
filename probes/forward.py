"""Forward passes shared by every probe that needs them, cached per (model, prompts).

`final_logits_with` is the forward primitive every probe's logits come from: a (hooked) run
stopped at the final norm's input (`Stop`), whose final positions alone are unembedded
(`unembed_final`). The patching sweep (`probes.patch_runs`), ablation values, circuits and
edges build on it; this module imports only the pass cache (`probes.model_state`),
`probes.linearise` and `probes.shared_prefix` below it.

Probes that read the same tokenized prompts get the same tensors from the
model's pass cache (`probes.model_state`, bounded in bytes), so ``logit_diff``, ``top_k`` and the observational probes on
one prompt set cost one forward pass. While hooks are attached to the model (an
ablation, a patch) nothing is served from or stored in the cache. Passes run
without gradients, in batches that bound memory.

On a model split over several GPUs (``load_model(..., device_map=...)``) tokens go to
the embedding's device (`input_device`), each layer's activations stay on that layer's
GPU and the logits come out on the last one: a tensor combined with an activation is
moved to the activation's device where they meet (`at_positions`), and results come
back to the CPU.
"""

from contextlib import contextmanager

import torch
from jaxtyping import Float
from torch import Tensor

from .linearise import capped
from .model_state import forget_passes, has_hooks, memo, model_info, require_causal  # noqa: F401 - forget_passes
from .shared_prefix import passing_the_cache
from .tokens import Tokenized

TOKENS_PER_BATCH = 2048  # bounds the (batch × pos × vocab) logits of one pass
MAX_BATCH = 64


def input_device(model) -> torch.device:
    """Where a model's input tokens go: its embedding's device (a split model's first GPU)."""
    return torch.device(model.cfg.device)


def final_norm_device(model) -> torch.device:
    """Where the final norm runs (a split model's last GPU): a residual-stream vector read back
    from the CPU goes there before ``model.ln_final`` and ``model.unembed``."""
    weight = next(model.ln_final.parameters(), None)
    return (weight if weight is not None else model.W_U).device


def at_positions(values: Tensor, positions: Tensor) -> Tensor:
    """``values[i, positions[i]]`` for every row ``i`` (batch × pos × … → batch × …), indexed on
    ``values``' own device, which on a split model is its layer's GPU, not the input's."""
    return values[torch.arange(len(values), device=values.device), positions.to(values.device)]


def require_plain_model(model, probe: str) -> None:
    """Refuse to run ``probe`` while hooks are attached (its numbers would not be the model's) or on
    a bidirectional model (`NonCausalModelError`: every probe that checks this assumes causal attention)."""
    require_causal(model, probe)
    if has_hooks(model):
        raise RuntimeError(f"{probe} needs the plain model, but hooks are attached; call "
                           "model.reset_hooks() first")


def batches(tokenized: Tokenized):
    """``(tokens, final_positions)`` slices of at most ~2048 tokens (and 64 prompts) each."""
    width = tokenized.tokens.shape[1]
    size = max(1, min(MAX_BATCH, TOKENS_PER_BATCH // width))
    for start in range(0, len(tokenized.lengths), size):
        yield (tokenized.tokens[start:start + size],
               tokenized.final_positions[start:start + size])


def check_finite(logits: Tensor, tokenized: Tokenized) -> None:
    """Raise a clear error naming the prompts whose logits are NaN or infinite."""
    bad = (~torch.isfinite(logits)).any(dim=-1).nonzero().flatten().tolist()
    if bad:
        raise FloatingPointError(
            f"{tokenized.model_name} produced NaN/inf logits for {len(bad)} prompt(s) of "
            f"{tokenized.prompt_set.name!r}, e.g. prompt {bad[0]} "
            f"{tokenized.prompt_set.prompts[bad[0]]!r}; in float16 this is usually overflow: "
            "rerun with --dtype float32 or bfloat16")


class Stop(Exception):
    """Raised at the final norm's input: everything after it is computed by hand."""


def final_logits_with(model, tokens, positions, hooks, prefix=None, columns=None, start: int = 0) -> torch.Tensor:
    """Final-position logits of a (patched) run, stopping before the full unembedding.
    With ``prefix`` (`probes.shared_prefix`), ``tokens`` continue the prefix's tokens.
    With ``columns`` (rows × k token ids), only those logits, rows × k. With ``start`` > 0,
    ``tokens`` is the residual stream entering block ``start`` (rows × pos × d_model) and only
    the blocks from it run (`resuming_at`). The logits are on ``tokens``' device (a split model
    computes them on its last GPU)."""
    captured = {}

    def stop(activation, hook):
        captured["resid"] = activation
        raise Stop

    cached = {} if prefix is None else {"past_key_values": prefix}
    resumed = {} if not start else {"start_at_layer": start}
    with (torch.inference_mode(), passing_the_cache(model), resuming_at(model, start),
          model.hooks(fwd_hooks=[*hooks, ("ln_final.hook_in", stop)])):
        try:
            model(tokens, return_type="logits", **cached, **resumed)
        except Stop:
            pass
    resid = captured["resid"]  # more rows than ``tokens`` when the batch grew mid-pass
    return unembed_final(model, at_positions(resid, positions), columns).to(tokens.device)


def _block_returns_tuple(model) -> bool:
    """Whether the model's loop over blocks receives a tuple from each block (a tensor on
    Hugging Face's current decoders), seen once on a one-token pass without hooks."""
    def seen():
        form = {}

        def note(module, inputs, out):  # returns None: the output is left as it is
            form.setdefault("tuple", isinstance(out, tuple))

        handle = model.blocks[0].register_forward_hook(note)
        try:
            with torch.inference_mode():
                model(torch.zeros((1, 1), dtype=torch.long, device=input_device(model)), return_type="logits")
        finally:
            handle.remove()
        return form["tuple"]

    return memo(model, ("block output is a tuple",), seen)


def can_resume(model) -> bool:
    """Whether a pass can resume at a later block (`resuming_at`): not on a model split over
    devices, whose blocks would hand a residual on without moving it between them."""
    return model_info(model).device_map is None


@contextmanager
def resuming_at(model, start: int):
    """A pass resumed at block ``start`` (the bridge's ``start_at_layer``: ``start``'s input is
    replaced by the residual given) that runs only the blocks from ``start``: each block before
    it hands its input on untouched (the bridge would run them and drop their output), so
    their hooks do not fire. The numbers are those of the whole pass, bit for bit (tested)."""
    if not start:
        yield
        return
    wrap = _block_returns_tuple(model)

    def hand_on(*args, **kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        return (hidden,) if wrap else hidden

    skipped = list(model.blocks)[:start]
    own = [block.__dict__.get("forward") for block in skipped]  # a forward of its own (a hook's), put back
    for block in skipped:  # the instance's own forward; the bridge's __setattr__ would reach inside
        object.__setattr__(block, "forward", hand_on)
    try:
        yield
    finally:
        for block, forward in zip(skipped, own):
            if forward is None:
                object.__delattr__(block, "forward")
            else:
                object.__setattr__(block, "forward", forward)


def unembed_final(model, resid: torch.Tensor, columns=None) -> torch.Tensor:
    """Logits (float32) from final-position residual vectors (rows × d_model, read at
    ``ln_final.hook_in``): the final norm, the unembedding (only ``columns``, rows × k, when
    given) and the model's soft-cap. Every probe's final logits come from here, so they do
    not depend on which probe ran first."""
    with torch.inference_mode():
        normed = model.ln_final(resid[:, None])[:, 0]
        if columns is None:
            return capped(model, model.unembed(normed[:, None])[:, 0].float())
        w_u, b_u = model.W_U, model.b_U
        columns = columns.to(w_u.device)
        picked = torch.einsum("rd,drk->rk", normed.to(w_u.device), w_u[:, columns]) + b_u.to(w_u.device)[columns]
        return capped(model, picked.float())


def final_logits(model, tokenized: Tokenized) -> Float[Tensor, "batch vocab"]:
    """Logits at each prompt's last real token, float32 on the CPU: the pass stops before the
    unembedding, and only the final positions are unembedded (a 262k-token vocabulary at
    every position would be most of the work)."""
    def compute():
        rows = []
        device = input_device(model)
        with torch.inference_mode():
            for tokens, positions in batches(tokenized):
                rows.append(final_logits_with(model, tokens.to(device), positions, []).cpu())
        logits = torch.cat(rows)
        check_finite(logits, tokenized)
        return logits

    return memo(model, ("final_logits", tokenized.key), compute)


def answer_logprobs(model, tokenized: Tokenized) -> Float[Tensor, "batch 2"]:
    """Summed log-probability of each prompt's (correct, incorrect) answer, all its tokens
    scored by teacher forcing: ``log P(a1 | prompt) + log P(a2 | prompt, a1) + …``."""

    def compute():
        pad = 0  # any id: padding sits after every scored position (causal attention)
        rows, spans = [], []
        for i, pair in enumerate(tokenized.answer_tokens):
            prompt = tokenized.tokens[i, :tokenized.lengths[i]].tolist()
            for answer in pair:
                rows.append(prompt + list(answer))
                spans.append((len(prompt), list(answer)))
        width = max(len(r) for r in rows)
        sequences = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        device = input_device(model)
        size = max(1, min(MAX_BATCH, TOKENS_PER_BATCH // width))
        scores = []
        with torch.inference_mode():
            for start in range(0, len(rows), size):
                logprobs = model(sequences[start:start + size].to(device)).float().log_softmax(-1).cpu()
                for row, (offset, answer) in zip(logprobs, spans[start:start + size]):
                    positions = torch.arange(offset - 1, offset - 1 + len(answer))
                    scores.append(row[positions, answer].sum())
        scores = torch.stack(scores).reshape(-1, 2)
        check_finite(scores, tokenized)
        return scores

    return memo(model, ("answer_logprobs", tokenized.key, tokenized.answer_tokens), compute)
