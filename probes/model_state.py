"""Everything circuitcheck keeps about one loaded model, in one object on the model.

``state_of(model)`` is a `ModelState`: the model's `ModelInfo` (what the report
says about it), a cache of forward passes bounded in bytes, and what the
patching engine has learnt the model can do. It lives as ``model.circuitcheck``
(created on first use for a model circuitcheck did not load), so it goes away
with the model, and ``release()`` frees the passes at fixture teardown. No
module-level registry is keyed by the model.

The pass cache's helpers live here with it (`memo`, `remember`, `forget_passes`): while
hooks are attached to the model (`has_hooks`: an ablation, a patch) nothing is served
from or stored in the cache. This module imports no other probe module at load time (only
`tokens.bos_to_prepend`, inside `state_of` for a model circuitcheck did not load), so every
module that runs passes (`probes.forward` and up) sits above it.
"""

from collections import OrderedDict
from dataclasses import dataclass, field, fields, is_dataclass

import numpy as np

DEFAULT_PASS_CACHE_BYTES = 1 << 30  # 1 GiB of cached activations per model
STATE_ATTRIBUTE = "circuitcheck"


@dataclass(frozen=True)
class ModelInfo:
    """What the report says about a loaded model."""

    name: str
    source: str
    device: str
    dtype: str
    n_layers: int
    n_heads: int
    d_model: int
    sha256: str | None = None
    prepended: str | None = None  # the token put before every prompt, if any (`bos_to_prepend`)
    device_map: dict | None = None  # a split model: module name -> device, as placed; None: one device


def nbytes(value) -> int:
    """Bytes held by the tensors and arrays inside ``value`` (dataclasses, dicts, sequences)."""
    if hasattr(value, "element_size") and hasattr(value, "nelement"):  # a torch tensor
        return value.element_size() * value.nelement()
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v) for v in value)
    if is_dataclass(value) and not isinstance(value, type):
        return sum(nbytes(getattr(value, f.name)) for f in fields(value))
    return 0


class PassCache:
    """Least-recently-used forward passes, holding at most ``max_bytes`` of tensors.

    An entry larger than the whole budget is computed and returned but not kept."""

    def __init__(self, max_bytes: int = DEFAULT_PASS_CACHE_BYTES):
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict = OrderedDict()
        self._sizes: dict = {}

    @property
    def bytes(self) -> int:
        return sum(self._sizes.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key) -> bool:
        return key in self._entries

    def get(self, key):
        self._entries.move_to_end(key)
        return self._entries[key]

    def put(self, key, value) -> None:
        size = nbytes(value)
        self.pop(key)
        if size > self.max_bytes:
            return
        self._entries[key], self._sizes[key] = value, size
        while self.bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self.pop(oldest)

    def pop(self, key) -> None:
        self._entries.pop(key, None)
        self._sizes.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
        self._sizes.clear()


@dataclass
class ModelState:
    """circuitcheck's per-model state: info, pass cache, learnt capabilities."""

    info: ModelInfo
    passes: PassCache = field(default_factory=PassCache)
    capabilities: dict = field(default_factory=dict)  # e.g. {"prefix_cache": False}

    def release(self) -> None:
        """Free the cached passes (the model itself is left as it is)."""
        self.passes.clear()
        self.capabilities.clear()


def has_hooks(model) -> bool:
    """True while a TransformerLens hook (or a hook on the model itself) is attached:
    results then differ from the plain model's. (The bridge wires private capture
    hooks of its own into the wrapped model; those do not count.)"""
    points = [model, *model.hook_dict.values()]
    return any(p._forward_hooks or p._forward_pre_hooks for p in points)


def remember(model, key, value) -> None:
    """Keep ``value`` in the model's pass cache under ``key``, unless hooks are attached."""
    if not has_hooks(model):
        state_of(model).passes.put(key, value)


def forget_passes(model) -> None:
    """Drop every pass cached for ``model`` (to time a probe again, or to free memory)."""
    state_of(model).passes.clear()


def memo(model, key, compute):
    """``compute()`` once per (model, key) while the model is unhooked."""
    passes = state_of(model).passes
    if key in passes and not has_hooks(model):
        return passes.get(key)
    value = compute()
    remember(model, key, value)
    return value


def info_from_config(model, prepended: str | None = None) -> ModelInfo:
    """A `ModelInfo` from the bridge's config, with ``prepended`` as decided by the caller."""
    cfg = model.cfg
    return ModelInfo(getattr(cfg, "model_name", None) or "model", "unknown", str(cfg.device),
                     str(cfg.dtype).removeprefix("torch."), cfg.n_layers, cfg.n_heads, cfg.d_model,
                     prepended=prepended)


def _info_from_bridge(model) -> ModelInfo:
    """For a bridge circuitcheck did not boot: `bos_to_prepend` reads the bridge's tokenizer,
    which TransformerLens rebuilt to add BOS, so its BOS is prepended (boot models with
    ``circuitcheck.fixtures.load_model`` or ``boot_bridge`` to follow the model's own tokenizer)."""
    from .tokens import bos_to_prepend

    return info_from_config(model, bos_to_prepend(model.tokenizer) if model.tokenizer else None)


def state_of(model) -> ModelState:
    """The model's `ModelState`, created from its config on first use."""
    state = model.__dict__.get(STATE_ATTRIBUTE)
    if state is None:
        state = ModelState(_info_from_bridge(model))
        attach_state(model, state)
    return state


def attach_state(model, state: ModelState) -> None:
    """Put ``state`` on the model (as a plain attribute, not a submodule or buffer)."""
    object.__setattr__(model, STATE_ATTRIBUTE, state)


def model_info(model) -> ModelInfo:
    """The `ModelInfo` of a model (``load_model`` fills it in; others get it from their config)."""
    return state_of(model).info


def model_name(model) -> str:
    return model_info(model).name


class NonCausalModelError(RuntimeError):
    """A probe that assumes causal attention met a bidirectional model (e.g. a Tracr model compiled
    with ``causal=False``): right padding, shared prefixes and per-position patching would be wrong."""


def is_causal(model) -> bool:
    """False for a model whose attention is bidirectional (``model.cfg.attention_dir``)."""
    return getattr(model.cfg, "attention_dir", "causal") != "bidirectional"


def require_causal(model, probe: str) -> None:
    """Raise `NonCausalModelError`, naming the model and the probe, on a bidirectional model."""
    if not is_causal(model):
        raise NonCausalModelError(
            f"{probe} assumes causal attention (each position reads only the tokens before it), but "
            f"{model_name(model)} attends in both directions (cfg.attention_dir = "
            f"{model.cfg.attention_dir!r}); its numbers would be wrong, so it refuses. Compile the model "
            "causal (circuitcheck-groundtruth without --non-causal) to probe it")
