"""The reference for our patching sweeps: `transformer_lens.patching`, one site per forward pass."""

import pandas as pd
import torch
import transformer_lens.patching as tl_patching

from circuitcheck.probes.patching import SWEEPS

VECTOR_ALL, VECTOR_BY_POS = tl_patching.layer_head_vector_patch_setter, tl_patching.layer_pos_head_vector_patch_setter
REFERENCE = {  # our sweep -> (TransformerLens activation name, patch setter)
    "resid_pre": ("resid_pre", tl_patching.layer_pos_patch_setter),
    "resid_mid": ("resid_mid", tl_patching.layer_pos_patch_setter),
    "resid_post": ("resid_post", tl_patching.layer_pos_patch_setter),
    "attn_out": ("attn_out", tl_patching.layer_pos_patch_setter),
    "mlp_out": ("mlp_out", tl_patching.layer_pos_patch_setter),
    "head_out": ("z", VECTOR_ALL), "head_out_by_pos": ("z", VECTOR_BY_POS),
    "head_q": ("q", VECTOR_ALL), "head_q_by_pos": ("q", VECTOR_BY_POS),
    "head_k": ("k", VECTOR_ALL), "head_k_by_pos": ("k", VECTOR_BY_POS),
    "head_v": ("v", VECTOR_ALL), "head_v_by_pos": ("v", VECTOR_BY_POS),
    "head_pattern": ("pattern", tl_patching.layer_head_pattern_patch_setter),
    "head_pattern_by_pos": ("pattern", tl_patching.layer_head_pos_pattern_patch_setter),
    # beyond TransformerLens's named functions, through its generic engine:
    "neuron": ("post", VECTOR_ALL),  # mlp.hook_post is batch × pos × neuron
    "neuron_by_pos": ("post", VECTOR_BY_POS),
    "mlp_out_all_pos": ("mlp_out", lambda activation, index, clean: clean.clone()),
}
assert set(REFERENCE) == set(SWEEPS)


def reference_patch(model, prompts, sweep: str, direction: str, sites) -> torch.Tensor:
    """Mean logit difference with each of ``sites`` patched, computed by TransformerLens."""
    clean = prompts.tokenize(model)
    corrupted = prompts.corrupted.tokenize(model)
    target, source = ((corrupted, clean) if direction == "clean_into_corrupted" else (clean, corrupted))
    answers = clean.answer_ids

    def metric(logits):
        final = logits[:, -1]
        return (final.gather(1, answers[:, :1]) - final.gather(1, answers[:, 1:])).mean()

    with torch.inference_mode():
        _, source_cache = model.run_with_cache(source.tokens)
    name, setter = REFERENCE[sweep]
    axes = SWEEPS[sweep].axes  # ours: layer, unit, pos; TransformerLens's vector setters: layer, pos, head
    order = ["layer", "pos", axes[1]] if setter is VECTOR_BY_POS else list(axes)
    columns = [{"head": "head_index", "neuron": "head_index", "pos": "dest_pos" if name == "pattern" else "pos"}
               .get(a, a) for a in order]
    index_df = pd.DataFrame([[dict(zip(axes, site))[a] for a in order] for site in sites], columns=columns)
    return tl_patching.generic_activation_patch(model, target.tokens, source_cache, metric,
                                                patch_setter=setter, activation_name=name,
                                                index_df=index_df)
