"""Gradients at every receiving end's input, for EAP and EAP-IG (`probes.edges.attribution`).

One forward and backward pass per call, its stream entering layer 0 set to a given start (the
clean or corrupted run, or a point between them). Under grouped-query attention the gradient
at a shared key/value input is the sum over the group's query heads of what each sends back;
`expanded_kv` lets `gradients` keep each query head's part as well, for MIB's graph, which
gives each query head its own k and v ends.
"""

from contextlib import contextmanager, nullcontext

import torch

from ..forward import Stop, at_positions
from ..linearise import capped
from ..sites import hook_of
from .runs import end_groups, end_hook, wide


@contextmanager
def expanded_kv(calls: list):
    """Under grouped-query attention the bridge's attention expands each key/value head's key
    and value to its query heads with transformers' ``repeat_kv`` (after the projection, norm and
    rotary embedding); while this is on, each expansion done with gradients enabled adds a zero
    leaf to its output (the same values) and appends ``(input, leaf)`` to ``calls``, so the
    gradient at the leaf is each query head's own, before ``repeat_kv``'s backward sums them."""
    import transformers.models.llama.modeling_llama as llama

    original = llama.repeat_kv

    def repeat_kv(hidden_states, n_rep):
        out = original(hidden_states, n_rep)
        if n_rep > 1 and torch.is_grad_enabled():
            leaf = torch.zeros_like(out, requires_grad=True)
            calls.append((hidden_states, leaf))
            return out + leaf
        return out

    llama.repeat_kv = repeat_kv
    try:
        yield calls
    finally:
        llama.repeat_kv = original


def gradients(model, graph, tokens, finals, metric, start: torch.Tensor,
              kv_copies: bool = False) -> tuple[dict, dict | None, torch.Tensor]:
    """∂(Σ metric)/∂(input of every receiving end), one tensor per `end_groups` hook point
    (``prompt × pos × end × d_model``), from one forward and backward pass whose stream
    entering layer 0 is ``start``; per key/value hook point, where ``kv_copies`` is asked and
    the model shares key/value heads, its per-query-head parts (``prompt × pos × kv head ×
    query head of the group × d_model``, summing to the shared gradient; None where the
    attention does not expand through ``repeat_kv``, `expanded_kv`); and the metric per prompt.
    ``metric(final logits)``.

    The shared input's gradient is the sum over the group's query heads of what each sends
    back through its copy of the expanded key or value; each part is that copy's gradient
    carried back through the key/value path alone (norm, projection, rotary embedding) to the
    shared input, the gradient the input would get if only that query head read it."""
    leaves, kept, calls = {}, {}, []
    group = graph.n_heads // graph.n_kv
    split = kv_copies and group > 1

    def begin(activation, hook):
        return start.to(activation.device, activation.dtype).detach().requires_grad_(True)

    def probe(key):
        def hook(activation, hook):
            leaf = torch.zeros_like(activation, requires_grad=True)
            leaves[key] = leaf
            if key[1] == "v":  # the layer's k, v expansions come after its q, k, v inputs
                calls.append(key[0])
            return activation + leaf
        return hook

    def stop(activation, hook):
        kept["resid"] = activation
        raise Stop

    hooks = [(hook_of("resid_pre", 0), begin)]
    hooks += [(end_hook(model, layer, kind), probe((layer, kind))) for layer, kind, _, _ in end_groups(graph)]
    with torch.enable_grad():
        with model.hooks(fwd_hooks=[*hooks, ("ln_final.hook_in", stop)]), \
                (expanded_kv(calls) if split else nullcontext()):
            try:
                model(tokens)
            except Stop:
                pass
        resid = at_positions(kept["resid"], finals)
        logits = capped(model, wide(model.unembed(model.ln_final(resid[:, None]))[:, 0]))
        values = metric(logits)
        order = list(leaves)
        expanded = _expansions(calls, graph) if split else None
        extra = [] if expanded is None else [leaf for _, leaf in expanded.values()]
        grads = torch.autograd.grad(values.sum(), [leaves[k] for k in order] + extra, allow_unused=True,
                                    retain_graph=bool(extra))
        copies = None
        if expanded is not None:
            copies = {}
            for (key, (source, _)), grad in zip(expanded.items(), grads[len(order):]):
                copies[key] = _per_query_head(source, leaves[key], grad, group)
    out = {}
    for key, grad in zip(order, grads):
        grad = torch.zeros_like(leaves[key]) if grad is None else grad
        out[key] = (grad if key[1] in ("q", "k", "v") else grad[:, :, None]).detach().float().cpu()
    return out, copies, values.detach().float().cpu()


def _expansions(calls: list, graph) -> dict | None:
    """``{(layer, "k" | "v"): (repeat_kv's input, its output's leaf)}`` from `expanded_kv`'s
    record (each layer's number, then its key's and its value's expansion), or None unless every
    layer expanded exactly a key and a value (an attention that expands otherwise)."""
    found, layer, seen = {}, None, []
    for call in [*calls, None]:
        if call is None or isinstance(call, int):
            if layer is not None:
                if len(seen) != 2:
                    return None
                found[(layer, "k")], found[(layer, "v")] = seen
            layer, seen = call, []
        else:
            if layer is None:
                return None
            seen.append(call)
    return found if len(found) == 2 * graph.n_layers else None


def _per_query_head(source: torch.Tensor, leaf: torch.Tensor, grad: torch.Tensor | None, group: int) -> torch.Tensor:
    """Each query head's part of the gradient at a shared key/value input ``leaf`` (``prompt ×
    pos × kv head × d_model``): the gradient at its copy of the expansion (``grad``, ``prompt ×
    kv head · group × pos × d_head``, query head ``kv · group + j``) carried back to ``leaf``
    through ``source`` (the key or value before expansion), one vector-Jacobian product per
    position ``j`` in the group. ``prompt × pos × kv head × group × d_model``."""
    if grad is None:
        return torch.zeros(*leaf.shape[:3], group, leaf.shape[3])
    per_head = grad.reshape(grad.shape[0], -1, group, *grad.shape[2:])  # prompt × kv head × group × pos × d_head
    parts = []
    for j in range(group):
        (part,) = torch.autograd.grad(source, leaf, grad_outputs=per_head[:, :, j].to(source.dtype),
                                      retain_graph=True, allow_unused=True)
        parts.append(torch.zeros_like(leaf) if part is None else part)
    return torch.stack(parts, dim=3).detach().float().cpu()
