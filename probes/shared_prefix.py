"""Compute a shared prompt prefix once: every patched run then runs only the suffix.

Attention is causal, so at positions before the first token where the clean and
corrupted prompts differ every activation is the same in both runs and in every
patched run. Their keys and values are kept from the unpatched run (a Hugging Face
``DynamicCache`` it fills); each patched run then feeds only the tokens from the
first difference on, and every attention layer reads the prefix's keys and values
from the cache. With the names repeated at position 10 of a 15-token IOI prompt, a
patched run computes 5 positions, not 15.

The bridge's attention reads the cache from a ``past_key_values`` argument, which
recent ``transformers`` pass down as ``cache``; `passing_the_cache` bridges the two.
(A bridge's own ``return_type="logits_and_cache"`` therefore returns an empty cache.)
Callers compare one unpatched suffix run with the full run and fall back to full
runs if they disagree (`agrees`), so a model whose attention ignores the cache
costs time, never correctness.
"""

import contextlib
import warnings

import torch
from transformers import DynamicCache


class PrefixKeysValues(DynamicCache):
    """Keys and values of a run, filled by a forward pass. `prefix` gives a group of its
    prompts' first positions as a frozen, read-only cache for a pass whose row r continues
    prompt r mod g (the pass may grow its batch: each new row copies one of the first g)."""

    frozen = False

    def prefix(self, prompts: list[int], positions: int) -> "PrefixKeysValues":
        cache = PrefixKeysValues()
        for i, layer in enumerate(self.layers):
            cache.update(layer.keys[prompts, :, :positions], layer.values[prompts, :, :positions], i)
        cache.frozen = True
        return cache

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        if not self.frozen:
            return super().update(key_states, value_states, layer_idx, *args, **kwargs)
        layer = self.layers[layer_idx]
        return self._after(layer.keys, key_states), self._after(layer.values, value_states)

    @staticmethod
    def _after(prefix: torch.Tensor, suffix: torch.Tensor) -> torch.Tensor:
        """Each row's prefix, then its suffix, along the position axis (-2)."""
        g, positions = len(prefix), prefix.shape[-2]
        rows = len(suffix)
        out = suffix.new_empty(rows // g, g, *suffix.shape[1:-2], positions + suffix.shape[-2], suffix.shape[-1])
        out[..., :positions, :] = prefix
        out[..., positions:, :] = suffix.view(rows // g, g, *suffix.shape[1:])
        return out.view(rows, *out.shape[2:])


@contextlib.contextmanager
def passing_the_cache(model):
    """Hand each attention block the cache under the name the bridge reads, and let a
    batch that grew during the pass share the causal mask built for its first rows."""

    def adapt(module, args, kwargs):
        if kwargs.get("past_key_values") is None and kwargs.get("cache") is not None:
            kwargs["past_key_values"] = kwargs["cache"]
        mask, hidden = kwargs.get("attention_mask"), kwargs.get("hidden_states", args[0] if args else None)
        if (mask is not None and hidden is not None and mask.ndim == 4
                and mask.shape[0] not in (1, hidden.shape[0]) and bool((mask == mask[:1]).all())):
            kwargs["attention_mask"] = mask[:1]  # unpadded prompts: one causal mask for every row
        return args, kwargs

    handles = [block.attn.register_forward_pre_hook(adapt, with_kwargs=True) for block in model.blocks]
    try:
        with warnings.catch_warnings():  # the bridge still passes the old name; transformers warns
            warnings.filterwarnings("ignore", "`past_key_values` is deprecated", FutureWarning)
            yield
    finally:
        for handle in handles:
            handle.remove()


def agrees(suffix_logits: torch.Tensor, full_logits: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether a suffix run reproduced the full run, up to rounding in the model's ``dtype``."""
    scale = 1 + full_logits.abs().max().item()
    tolerance = max(1e-4, 20 * torch.finfo(dtype).eps) * scale
    return (suffix_logits.float() - full_logits.float()).abs().max().item() <= tolerance
