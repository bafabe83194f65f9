"""One observation pass: the activations every observational probe needs, at once.

Logit lens, layer and head attribution all read the residual stream at each
prompt's final position only; attention probes read whole patterns. One forward
pass with hooks on exactly those activations (a names filter, no gradients)
keeps, per prompt, the final-position vectors and the attention patterns, and
the final logits (only the final positions unembedded, as `forward.final_logits` does). The result is cached per (model, prompts), so every probe on
the same prompt set in a pytest session shares that one pass.
"""

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from .forward import Stop, at_positions, batches, check_finite, input_device, unembed_final
from .linearise import scale_hooks
from .model_state import memo, remember
from .sites import hook_of
from .tokens import Tokenized


@dataclass(frozen=True, eq=False)
class Observation:
    """Final-position activations (``final[hook_name]``: batch × ...), patterns
    (``patterns[layer]``: batch × head × query × key) and final-position logits."""

    tokenized: Tokenized
    final: dict[str, Tensor]
    patterns: dict[int, Float[Tensor, "batch head query key"]]
    logits: Float[Tensor, "batch vocab"]


def final_position_hooks(model) -> list[str]:
    """Hook names whose final-position values the observational probes read."""
    names = ["hook_embed", "hook_pos_embed", *scale_hooks(model)]
    for layer in range(model.cfg.n_layers):
        names += [hook_of(sweep, layer) for sweep in
                  ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "head_out")]
    return [n for n in names if n in model.hook_dict]


def _run_batch(model, tokens: Tensor, positions: Tensor):
    final, patterns = {}, {}

    # Hook points answer to several names (aliases), so store under the name we asked for.
    def keep_final(name):
        def hook(activation, hook):
            final[name] = at_positions(activation, positions).float().cpu()
        return hook

    def keep_pattern(layer):
        def hook(activation, hook):
            patterns[layer] = activation.float().cpu()
        return hook

    def keep_unnormed(activation, hook):
        unnormed.append(at_positions(activation, positions))

    def stop(activation, hook):  # the final norm's scale is kept; the unembedding waits
        raise Stop

    unnormed = []
    hooks = [(name, keep_final(name)) for name in final_position_hooks(model)]
    hooks += [(hook_of("head_pattern", layer), keep_pattern(layer))
              for layer in range(model.cfg.n_layers)]
    hooks += [("ln_final.hook_in", keep_unnormed), ("ln_final.hook_out", stop)]
    with torch.inference_mode(), model.hooks(fwd_hooks=hooks):
        try:
            model(tokens, return_type="logits")
        except Stop:
            pass
    return final, patterns, unembed_final(model, unnormed[0]).cpu()


def observe(model, tokenized: Tokenized) -> Observation:
    """The (cached) observation pass over a tokenized prompt set."""

    def compute() -> Observation:
        device = input_device(model)
        parts = [_run_batch(model, tokens.to(device), positions.to(device))
                 for tokens, positions in batches(tokenized)]
        final = {name: torch.cat([p[0][name] for p in parts]) for name in parts[0][0]}
        patterns = {layer: torch.cat([p[1][layer] for p in parts]) for layer in parts[0][1]}
        logits = torch.cat([p[2] for p in parts])
        check_finite(logits, tokenized)
        remember(model, ("final_logits", tokenized.key), logits)
        return Observation(tokenized, final, patterns, logits)

    return memo(model, ("observe", tokenized.key), compute)

