"""The bridge plumbing of edge probes: sender outputs, receiving-end inputs, masked passes.

**Receiving ends.** The bridge can fork the residual stream per head before the attention's
input norm (``cfg.use_split_qkv_input``: ``hook_q_input`` is ``batch pos head d_model``,
``hook_k_input``/``hook_v_input`` one slice per *key/value* head) and expose the MLP's input
before its norm (``cfg.use_hook_mlp_in``); ``ln_final.hook_in`` is what the unembedding reads.
Each is the pre-norm residual, a plain sum of sender outputs (plus constant biases), on the
live path: what a hook returns there is what that head, MLP or the logits read, and nothing
else. `split_inputs` turns the flags on for a probe and restores them after.

Under grouped-query attention ``hook_k_input``/``hook_v_input`` have one slice per key/value
head, read by every query head of its group; `probes.edges.gradients` can also split that slice's
gradient by query head, for MIB's graph, which gives each query head its own k and v ends.

**Senders.** ``embed`` is the stream entering layer 0 (positions included); a head's output is
``z_h · W_O[h]`` (read at ``hook_z``); an MLP's is ``hook_mlp_out``. Gemma's "sandwich" norms
put ``g ⊙ x / rms(x)`` into the stream, ``x`` the sum of the heads' outputs: a head's output
is ``g ⊙ x_h / rms(x)`` with the same pass's ``rms`` (`probes.linearise`), and those add up to
the layer's contribution exactly. `check_additive` verifies, on every pass a probe starts
from, that each layer's residual is the sum of the senders before it plus a constant, and
refuses the model otherwise (a number that does not add up would be a quiet wrong number).

**Masked passes** (`masked_logits`). The prompts are repeated along the batch, one block of
rows per edge set. Each block names *replaced* edges ``A``: every receiving end ``V`` reads
``input_V − Σ_{U→V ∈ A} (out_U − R_U)``, ``out_U`` the sender's output in this very pass and
``R_U`` its replacement (the corrupted run's output, a mean, or the clean output when edges
are patched clean into a corrupted run). When ``A`` is most of the graph (a small circuit
kept), the same input is built the other way round, ``R-input_V + Σ_{U→V ∉ A} (out_U − R_U)``
with ``R-input_V`` the constant plus every sender's replacement, so only the senders a block
names cost memory. A block that leaves every input before block k as it is (exact edge patching
of an edge into layer k) resumes at block k from the run's own cached residual, its earlier
senders' outputs taken from the same cached run: only the layers from k run (`resume_layers`).
"""

from contextlib import contextmanager

import numpy as np
import torch

from ..forward import Stop, can_resume, final_logits_with
from ..linearise import post_norm_gain, post_norm_name
from ..sites import hook_of

BYTES_PER_PASS = 2 ** 30  # bounds the stored sender differences (rows × pos × senders × d_model) of one pass
REBUILD_ABOVE = 0.5  # a block replacing more than this share of the edges rebuilds its ends' inputs
ADDITIVE_RTOL = 1e-4


@contextmanager
def split_inputs(model):
    """The bridge's per-head q/k/v input forks and ``hook_mlp_in`` on; the flags restored after."""
    cfg = model.cfg
    saved = cfg.use_split_qkv_input, cfg.use_hook_mlp_in, bool(getattr(cfg, "use_attn_in", False))
    try:
        if saved[2]:
            model.set_use_attn_in(False)
        model.set_use_split_qkv_input(True)
        model.set_use_hook_mlp_in(True)
        yield
    finally:
        model.set_use_split_qkv_input(saved[0])
        model.set_use_hook_mlp_in(saved[1])
        if saved[2]:
            model.set_use_attn_in(True)


def end_hook(model, layer: int | None, kind: str) -> str:
    """The hook point of a group of receiving ends: a layer's ``q``/``k``/``v`` inputs, its
    ``mlp`` input, or the ``logits`` (the final residual)."""
    if kind == "logits":
        return "ln_final.hook_in"
    block = model.blocks[layer]
    return (block.hook_mlp_in if kind == "mlp" else getattr(block.attn, f"hook_{kind}_input")).name


def end_groups(graph):
    """``(layer, kind, first end, n ends)`` per hook point, in graph order."""
    groups, e = [], 0
    for layer in range(graph.n_layers):
        for kind, count in (("q", graph.n_heads), ("k", graph.n_kv), ("v", graph.n_kv), ("mlp", 1)):
            groups.append((layer, kind, e, count))
            e += count
    groups.append((None, "logits", e, 1))
    return groups


def capture_names(model) -> list[str]:
    """The hook points a pass's sender outputs are computed from."""
    names = []
    for layer in range(model.cfg.n_layers):
        names += [hook_of("head_out", layer), hook_of("mlp_out", layer), hook_of("resid_pre", layer)]
        norm = post_norm_name(model, layer, "attn")
        if norm:
            names.append(f"{norm}.hook_scale")
    return names + ["ln_final.hook_in"]


def wide(tensor: torch.Tensor) -> torch.Tensor:
    """At least float32 (half-precision activations are summed in float32), float64 kept: a
    float64 model gives float64 edge sums, the reference the float32 ones are tested against."""
    return tensor if tensor.dtype == torch.float64 else tensor.float()


def head_outputs(model, layer: int, z: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """Each head's output into the residual stream, ``batch pos head d_model``."""
    w_o = model.blocks[layer].attn.W_O.to(z.device)  # activations are kept on the CPU
    out = torch.einsum("bshd,hdm->bshm", z.to(w_o.dtype), w_o)
    gain = post_norm_gain(model, layer, "attn")
    if gain is not None:
        out = out * gain.to(out.device, out.dtype) / scale[..., None, :].to(out.dtype)
    return out


def sender_outputs(model, acts: dict) -> torch.Tensor:
    """Every sender's output, ``batch pos sender d_model`` (the `EdgeGraph`'s sender order),
    from a pass's captured activations (`capture_names`)."""
    parts = [acts[hook_of("resid_pre", 0)][:, :, None]]
    for layer in range(model.cfg.n_layers):
        norm = post_norm_name(model, layer, "attn")
        scale = acts[f"{norm}.hook_scale"] if norm else None
        parts += [head_outputs(model, layer, acts[hook_of("head_out", layer)], scale),
                  acts[hook_of("mlp_out", layer)][:, :, None]]
    return wide(torch.cat(parts, dim=2))


def capture(model, tokens) -> dict:
    """One pass (split inputs on) up to the final norm, its activations at `capture_names`
    (on the CPU, where the edge probes' sums are made)."""
    kept = {}

    def keep(name):
        def hook(activation, hook):
            kept[name] = activation.detach().cpu().clone()
            return activation
        return hook

    def stop(activation, hook):
        raise Stop

    hooks = [(name, keep(name)) for name in capture_names(model)]
    with torch.inference_mode(), model.hooks(fwd_hooks=[*hooks, ("ln_final.hook_in", stop)]):
        try:
            model(tokens)
        except Stop:
            pass
    return kept


def constants(model, graph, acts: dict, outs: torch.Tensor) -> dict:
    """Each receiving end's input minus the senders reaching it (its biases): one vector per
    hook point, checked to be the same at every row and position (`check_additive`)."""
    found = {}
    for layer in range(graph.n_layers):
        before = graph.first_sender(layer)
        found[layer] = check_additive(model, acts[hook_of("resid_pre", layer)], outs[:, :, :before],
                                      f"the residual stream entering layer {layer}")
    found[None] = check_additive(model, acts["ln_final.hook_in"], outs, "the final residual stream")
    return found


def check_additive(model, resid: torch.Tensor, outs: torch.Tensor, where: str) -> torch.Tensor:
    remainder = wide(resid) - outs.sum(dim=2)
    constant = remainder.mean(dim=(0, 1))
    spread = float((remainder - constant).norm() / wide(resid).norm().clamp_min(1e-30))
    if spread > ADDITIVE_RTOL:
        raise NotImplementedError(
            f"{getattr(model.cfg, 'model_name', 'this model')}: {where} is not the sum of the senders' outputs "
            f"plus a constant (off by {spread:.2g} of its norm), so an edge's share of it is not defined "
            "exactly on this architecture; edge probes refuse it rather than report numbers that do not add up")
    return constant


def mlp_constant(graph, consts: dict, layer: int) -> torch.Tensor:
    """The constant in MLP ``layer``'s input: the next layer's residual minus the MLP's share
    is the same bias sum (the attention biases of layers ≤ layer, or < layer when parallel)."""
    nxt = consts[layer + 1] if layer + 1 < graph.n_layers else consts[None]
    return consts[layer] if graph.parallel else nxt


class MaskedPass:
    """Hooks for one pass of ``blocks`` edge sets over ``n`` prompts (see the module), resumed at
    block ``start``: the senders before it send what they do in the run itself (``own``)."""

    def __init__(self, model, graph, coefficients: torch.Tensor, rebuild: torch.Tensor, replacement: torch.Tensor,
                 consts: dict, n: int, start: int = 0, own: torch.Tensor | None = None):
        self.model, self.graph, self.n = model, graph, n
        self.blocks = len(coefficients)
        self.coefficients = coefficients  # blocks × edge: −1 replaced (subtract), +1 kept (rebuild), 0
        self.rebuild = rebuild  # blocks: rebuild the input from the replacement instead of subtracting
        self.active = torch.nonzero(coefficients.abs().sum(0) > 0)[:, 0]
        self.active_senders = torch.unique(torch.as_tensor(graph.sender_of)[self.active]).tolist()
        self.replacement, self.consts = replacement, consts  # prompt × pos × sender × d_model
        self.cumulative = torch.cat([torch.zeros_like(replacement[:, :, :1]), replacement.cumsum(2)], dim=2)
        self.position = {s: i for i, s in enumerate(self.active_senders)}
        self.deltas = None  # block × active sender × (prompt · pos · d_model), filled as senders run
        self.z, self.scale = {}, {}
        early = [s for s in self.active_senders if s < graph.first_sender(start)] if start else []
        if early:  # their hooks do not fire: they send the run's own outputs
            self._buffer()[:, [self.position[s] for s in early]] = \
                (wide(own[:, :, early]) - replacement[:, :, early]).permute(2, 0, 1, 3).reshape(len(early), -1)

    def _buffer(self) -> torch.Tensor:
        if self.deltas is None:  # a sender's deltas contiguous per block: the end hooks' matrix product reads them
            _, width, _, d_model = self.replacement.shape
            self.deltas = torch.empty(self.blocks, len(self.active_senders), self.n * width * d_model,
                                      dtype=self.replacement.dtype)
        return self.deltas

    def _store(self, senders: list[int], outputs: torch.Tensor) -> None:
        keep = [(i, s) for i, s in enumerate(senders) if s in self.position]
        if not keep:
            return
        width = outputs.shape[1]
        self._buffer()
        for i, s in keep:
            value = wide(outputs[:, :, i]).cpu().view(self.blocks, self.n, width, -1)
            replaced = self.replacement[:, :, s].view(1, self.n, width, -1)
            self.deltas[:, self.position[s]] = (value - replaced).reshape(self.blocks, -1)

    def hooks(self) -> list:
        model, graph = self.model, self.graph
        hooks = [(hook_of("resid_pre", 0), self._sender_hook(lambda a: ([0], a[:, :, None])))]
        for layer in range(graph.n_layers):
            first = graph.first_sender(layer)
            hooks.append((hook_of("head_out", layer), self._keep(self.z, layer)))
            norm = post_norm_name(model, layer, "attn")
            if norm:
                hooks.append((f"{norm}.hook_scale", self._keep(self.scale, layer)))
            hooks.append((hook_of("mlp_out", layer),
                          self._sender_hook(lambda a, f=first: ([f + graph.n_heads], a[:, :, None]))))
        for layer, kind, first_end, count in end_groups(graph):
            hooks.append((end_hook(model, layer, kind), self._end_hook(layer, kind, first_end, count)))
        return hooks

    def _keep(self, store, layer):
        def hook(activation, hook):
            store[layer] = activation
            return activation
        return hook

    def _sender_hook(self, senders_of):
        def hook(activation, hook):
            self._store(*senders_of(activation))
            return activation
        return hook

    def _heads_done(self, upto: int) -> None:
        """Store the outputs of the heads of layers < ``upto`` (computed once, when first needed)."""
        for layer in sorted(list(self.z)):
            if layer < upto:
                z = self.z.pop(layer)
                first = self.graph.first_sender(layer)
                senders = list(range(first, first + self.graph.n_heads))
                if any(s in self.position for s in senders):
                    self._store(senders, head_outputs(self.model, layer, z, self.scale.get(layer)))

    def _end_hook(self, layer, kind, first_end, count):
        graph = self.graph
        available = int(graph.available[first_end])
        start = int(graph.offsets[first_end])
        coefficients = self.coefficients[:, start:start + count * available].view(self.blocks, count, available)
        if kind == "logits":
            constant, mlp_layer = self.consts[None], None
        elif kind == "mlp":
            constant, mlp_layer = mlp_constant(graph, self.consts, layer), layer
        else:
            constant, mlp_layer = self.consts[layer], None
        used = [s for s in self.active_senders if s < available]  # a prefix of the active senders
        weights = coefficients[:, :, used]
        touched = bool(self.rebuild.any()) or bool(weights.abs().sum() > 0)

        def hook(activation, hook):
            self._heads_done(graph.n_layers if kind == "logits" else layer + (1 if mlp_layer is not None
                                                                                 and not graph.parallel else 0))
            if not touched:  # no block replaces an edge into these ends
                return activation
            shaped = activation if kind in ("q", "k", "v") else activation[:, :, None]
            rows, width = shaped.shape[:2]
            out = wide(shaped).cpu().view(self.blocks, self.n, width, count, -1)
            if self.rebuild.any():
                base = (constant + self.cumulative[:, :, available])[:, :, None]  # prompt × pos × 1 × d
                out = torch.where(self.rebuild.view(-1, 1, 1, 1, 1), base[None].expand_as(out), out)
            if used:  # Σ over the used senders of coefficient × delta: one matrix product per block
                added = torch.bmm(weights, self.deltas[:, :len(used)])  # block × end × (prompt · pos · d)
                out = out + added.view(self.blocks, count, self.n, width, -1).permute(0, 2, 3, 1, 4)
            out = out.reshape(rows, width, count, -1).to(activation.device, activation.dtype)
            return out if kind in ("q", "k", "v") else out[:, :, 0]
        return hook


def resume_layers(graph, replaced: torch.Tensor, rebuild: torch.Tensor) -> np.ndarray:
    """Per block of edge sets, the first block of the model whose input it changes: the earliest
    receiving end among its replaced edges (0 where it rebuilds every input; the last block
    where it replaces nothing), where its pass can resume from the run's own residual."""
    rows = replaced.numpy()
    layers = np.where(rows.any(axis=1), graph.read_at[rows.argmax(axis=1)], graph.n_layers)  # read_at never falls
    return np.where(rebuild.numpy(), 0, np.minimum(layers, graph.n_layers - 1))


def masked_logits(model, graph, tokens, finals, replaced: torch.Tensor, replacement: torch.Tensor, consts: dict,
                  columns=None, own: torch.Tensor | None = None, resid: list | None = None) -> torch.Tensor:
    """Final-position logits (blocks·prompt rows) with each block's ``replaced`` edges (a
    boolean mask over the graph, one row per block) given their replacement, in passes whose
    stored sender differences stay within `BYTES_PER_PASS`. Given the run's own sender outputs
    ``own`` and its residual entering each block ``resid`` (per layer, prompt × pos × d_model),
    blocks that leave the first k layers' inputs as they are run from block k only
    (`resume_layers`, `probes.forward.resuming_at`): patching an edge into a late layer costs
    the layers after it."""
    n, width = tokens.shape
    d_model = model.cfg.d_model
    rebuild_all = replaced.sum(1) > replaced.shape[1] * REBUILD_ABOVE  # mostly replaced: rebuild from the replacement
    if (own is None) != (resid is None):
        raise ValueError("masked_logits resumes a pass given both the run's own sender outputs and its residuals")
    resumes = resid is not None and can_resume(model)
    starts = resume_layers(graph, replaced, rebuild_all) if resumes else np.zeros(len(replaced), int)
    order = np.argsort(starts, kind="stable")
    out, start = [None] * len(replaced), 0
    while start < len(order):
        stop, senders, layer = start, set(), int(starts[order[start]])
        while stop < len(order) and starts[order[stop]] == layer:
            row = ~replaced[order[stop]] if rebuild_all[order[stop]] else replaced[order[stop]]
            grown = senders | set(graph.sender_of[row.numpy()].tolist())
            if stop > start and (stop - start + 1) * n * width * max(1, len(grown)) * d_model * 4 > BYTES_PER_PASS:
                break
            senders, stop = grown, stop + 1
        picked = torch.as_tensor(order[start:stop])
        chunk, rebuild = replaced[picked], rebuild_all[picked]
        coefficients = torch.where(rebuild[:, None], (~chunk).to(replacement.dtype), -chunk.to(replacement.dtype))
        masked = MaskedPass(model, graph, coefficients, rebuild, replacement, consts, n, layer, own)
        blocks = stop - start
        given = tokens if not layer else resid[layer].to(tokens.device)
        logits = final_logits_with(model, given.repeat(blocks, *[1] * (given.dim() - 1)), finals.repeat(blocks),
                                   masked.hooks(), columns=None if columns is None else columns.repeat(blocks, 1),
                                   start=layer).cpu()
        for i, rows in zip(picked.tolist(), logits.view(blocks, n, -1)):
            out[i] = rows
        start = stop
    return torch.cat(out)
