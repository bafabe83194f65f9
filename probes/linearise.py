"""Direct effects through the norms around a sublayer: what makes a decomposition add up.

A component's direct effect on the logit difference is linear in the residual stream
once every norm on the way has its scale fixed at the value cached in the same forward
pass (TransformerLens's ``apply_ln_to_stack`` does this for the final norm). Gemma 2 and
Gemma 3 put a second norm *after* each attention and MLP layer ("sandwich" norms): the
sublayer adds ``y = g ⊙ x / rms(x)`` to the stream, ``x`` being the sum of its heads'
outputs (or of its neurons' writes) and its bias. A head's raw output ``x_h`` is not
what it adds; with the cached ``rms(x)``, ``g ⊙ x_h / rms(x)`` is, and those add up to
``y`` exactly. Congruence (weights only, no pass) uses ``g ⊙ W_out[n]``: the direction a
neuron writes, up to the positive per-prompt ``1 / rms(x)``.

Final-logit soft-capping (Gemma 2: ``cap · tanh(logit / cap)``) is not linear: direct
effects add up to the logit difference before the cap, and the probes say so.
"""

import torch
from torch import Tensor

from .model_state import memo

POST_NORMS = {"attn": "ln1_post", "mlp": "ln2_post"}  # the bridge's names for Gemma's sandwich norms
_PROBE = 1e3  # rms(c · 1) = c up to eps / c²: a norm applied to c · 1 returns its gain


def post_norm_name(model, layer: int, sublayer: str) -> str | None:
    """``blocks.{layer}.ln1_post`` (after attention) or ``ln2_post`` (after the MLP) where the
    model has that norm, else None."""
    name = f"blocks.{layer}.{POST_NORMS[sublayer]}"
    return name if f"{name}.hook_scale" in model.hook_dict else None


def has_post_norms(model) -> bool:
    return any(post_norm_name(model, 0, sublayer) for sublayer in POST_NORMS)


def scale_hooks(model) -> list[str]:
    """The cached scales a decomposition divides by: the final norm's and every post-norm's."""
    names = ["ln_final.hook_scale"]
    for layer in range(model.cfg.n_layers):
        names += [f"{name}.hook_scale" for name in
                  (post_norm_name(model, layer, s) for s in POST_NORMS) if name is not None]
    return [n for n in names if n in model.hook_dict]


def _check_rms(model) -> None:
    if model.cfg.normalization_type not in ("RMS", "RMSPre"):
        raise NotImplementedError(
            f"{getattr(model.cfg, 'model_name', 'this model')}: norms after each sublayer of the "
            f"{model.cfg.normalization_type} kind are not linearised by circuitcheck (only RMSNorm, as in "
            "Gemma 2 and 3); direct attribution would not add up, so it is refused")


def post_norm_gain(model, layer: int, sublayer: str) -> Tensor | None:
    """The post-norm's elementwise gain ``g`` (float32, CPU), or None without one."""
    name = post_norm_name(model, layer, sublayer)
    if name is None:
        return None
    _check_rms(model)

    def compute() -> Tensor:
        norm = model.get_submodule(name)
        weight = next(norm.parameters())
        probe = torch.full((1, 1, model.cfg.d_model), _PROBE, device=weight.device, dtype=weight.dtype)
        with torch.inference_mode():
            return norm(probe)[0, 0].float().cpu()

    return memo(model, ("post_norm_gain", name), compute)


def through_post_norm(model, layer: int, sublayer: str, vectors: Tensor, final: dict) -> Tensor:
    """What ``vectors`` (``... batch d_model``, parts of the sublayer's output at each prompt's
    final position) add to the residual stream: themselves, or ``g ⊙ v / rms`` with the
    post-norm's cached scale from ``final`` (the observation's final-position activations)."""
    gain = post_norm_gain(model, layer, sublayer)
    if gain is None:
        return vectors
    scale = final[f"{post_norm_name(model, layer, sublayer)}.hook_scale"]  # batch 1
    return vectors * gain / scale


def soft_cap(model) -> float | None:
    """The final-logit soft-cap (Gemma 2: 30.0), or None."""
    cap = getattr(model.cfg, "output_logits_soft_cap", None)
    return float(cap) if cap is not None and cap > 0 else None


def capped(model, logits: Tensor) -> Tensor:
    """``logits`` as the model outputs them: soft-capped where it caps (Gemma 2), else unchanged."""
    cap = soft_cap(model)
    return logits if cap is None else cap * torch.tanh(logits / cap)


def soft_cap_note(model) -> list[str]:
    cap = soft_cap(model)
    if cap is None:
        return []
    return [f"the model soft-caps its final logits ({cap:g} · tanh(logit / {cap:g})), which is not linear: "
            "direct contributions add up to the logit difference before the cap, not to the model's"]


def post_norm_note(model) -> list[str]:
    if not has_post_norms(model):
        return []
    return ["each attention and MLP output is normalised again before it joins the residual stream "
            "(post-sublayer RMSNorm): parts are linearised with that norm's cached scale from the same pass, "
            "so heads add up to their layer's attention contribution"]
