"""Attribution patching: every site of a sweep from two forward passes and one backward pass.

Exact patching reruns the model once per site. Attribution patching (Nanda 2023;
Syed et al. 2023) linearises instead: the change in the metric from patching an
activation is estimated as ``(source − target) · ∂metric/∂activation``, with the
gradient taken on the target run. It is cheap and good for a first map of a large
sweep; it can be poor where the metric saturates or the patch is large (attention
patterns, early residual stream), so confirm the top sites with exact `patch`.
Pass ``exact=`` a `Patching` of the same sweep to record the correlation.

In the bridge, the q/k/v/z hook points observe copies that gradients do not flow
through; a head output's gradient is therefore taken at the attention output and
carried back through ``W_O`` (exact, as the output is linear in z), and q/k/v
sweeps are left to exact patching.
"""

import numpy as np
import torch

from .evidence import probe
from .forward import Stop, input_device
from .linearise import capped, post_norm_name
from .patching import SWEEPS, Patching, Sweep, choose_sites, prepare, sweep_result
from .sites import hook_of


def _estimate(spec: Sweep, delta: torch.Tensor, grad: torch.Tensor, site: tuple) -> torch.Tensor:
    """Per prompt, ``delta · grad`` summed over the site's slice of the activation."""
    where = {axis: value for axis, value in zip(spec.axes, site) if axis != "layer"}
    product = (delta * grad)[spec.index(slice(None), where)]  # batch × ...
    return product.reshape(len(product), -1).sum(-1)


@probe
def attribution_patch(model, prompts, sweep: str = "resid_pre", *, direction: str = "clean_into_corrupted",
                      metric="logit_diff", exact: Patching | None = None, layers=None,
                      positions=None, heads=None, neurons=None, sites=None,
                      prepend_bos: bool | None = None) -> Patching:
    """Estimate every site of ``sweep`` (or those chosen, as in `patch`) by attribution patching;
    same result type as `patch`. Prompts must have one token length."""
    if sweep in SWEEPS and SWEEPS[sweep].hook.endswith(("hook_q", "hook_k", "hook_v")):
        raise ValueError(f"attribution patching has no gradient for {sweep} (query/key/value hooks "
                         "are observation-only in the bridge); use exact patch(..., sweep=...)")
    spec, metric_name, metric_fn, clean, corrupted = prepare(model, prompts, sweep, direction, metric,
                                                             prepend_bos, "attribution patching",
                                                             equal_lengths=True)
    target, source = (corrupted, clean) if direction == "clean_into_corrupted" else (clean, corrupted)
    device = input_device(model)
    width, n = clean.tokens.shape[1], len(clean.lengths)
    sites = choose_sites(model, spec, width, layers, positions, heads, neurons, sites)
    names = {layer: spec.hook_at(layer) for layer in sorted({site[0] for site in sites})}

    with torch.inference_mode():  # forward pass 1: the source activations
        source_logits, source_cache = model.run_with_cache(source.tokens.to(device),
                                                           names_filter=list(names.values()))
    answers = clean.answer_ids.to(source_logits.device)  # a split model's last GPU
    target_acts, grad_at = {}, {}
    head_output = spec.hook.endswith("hook_z")
    for layer, name in names.items():  # where each activation's gradient is read: a head's z
        # through W_O, at the sum of the heads' outputs (before a post-attention norm, if any)
        post_norm = post_norm_name(model, layer, "attn")
        heads_sum = f"{post_norm}.hook_in" if post_norm else hook_of("attn_out", layer)
        grad_at[name] = heads_sum if head_output else name

    def track(name, needs_grad):
        def hook(activation, hook):
            if needs_grad:
                activation.retain_grad()
            target_acts[name] = activation
        return hook

    def start_graph(activation, hook):  # parameters are frozen: let gradients start here
        return activation.detach().requires_grad_(True)

    def stop_before_unembedding(activation, hook):  # only the final position is unembedded
        target_acts["unnormed"] = activation[:, -1]
        raise Stop

    with torch.enable_grad():  # forward pass 2 and the backward pass: the target run
        hooks = [("hook_embed", start_graph)]
        hooks += [(name, track(name, not head_output)) for name in names.values()]
        hooks += [(grad_at[name], track(grad_at[name], True)) for name in names.values() if head_output]
        with model.hooks(fwd_hooks=[*hooks, ("ln_final.hook_in", stop_before_unembedding)]):
            try:
                model(target.tokens.to(device))
            except Stop:
                pass
        final = capped(model, model.unembed(model.ln_final(target_acts.pop("unnormed")[:, None]))[:, 0].float())
        clean_final = (source_logits[:, -1].float() if source is clean else final).detach()
        scores = metric_fn(final, answers, clean_final)
        scores.sum().backward()
    target_baseline = scores.detach().cpu().numpy()
    source_baseline = metric_fn(source_logits[:, -1].float(), answers, clean_final).cpu().numpy()

    grads = {}
    for layer, name in names.items():
        grad = target_acts[grad_at[name]].grad
        if head_output:  # ∂m/∂z_h = ∂m/∂(Σ_h z_h W_O[h]) · W_O[h]ᵀ
            w_o = model.blocks[layer].attn.W_O.detach().to(grad.device)  # head d_head d_model
            grad = torch.einsum("bpm,hdm->bphd", grad, w_o)
        grads[name] = grad
    values = np.empty((len(sites), n))
    with torch.no_grad():
        for s, site in enumerate(sites):
            name = names[site[0]]
            delta = source_cache[name] - target_acts[name].detach()
            estimate = _estimate(spec, delta, grads[name], site)
            values[s] = target_baseline + estimate.float().cpu().numpy()
    model.zero_grad(set_to_none=True)

    correlation = None
    if exact is not None:
        if exact.sites != tuple(sites):
            raise ValueError("exact= must be a patch() result of the same sweep and sites")
        correlation = float(np.corrcoef(values.mean(axis=1) - target_baseline.mean(), exact.effect)[0, 1])
    return sweep_result(prompts, spec, direction, metric_name, clean, sites, values, target_baseline,
                        source_baseline, rows_run=2, rows_skipped=0, method="attribution",
                        exact_correlation=correlation)
