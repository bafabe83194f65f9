"""Self-checks: cheap tests of the machinery every claim stands on, each with its number.

The failures users of hooked-model libraries report most are silent: numbers come out,
they are just not the model's. Four checks, on one fixed text (`self_check_ids`): the English
sentence `TEXT` where the model's tokenizer reads it (every word known, and it decodes back),
otherwise words drawn from the model's own vocabulary (a known-circuit model over a handful of
words reads no English: the sentence would be all unknown tokens, and zeroing the residual
stream could not change what the model says about them); either way cut to the model's context:

* **hugging_face**: the bridge's log-probabilities equal those of the Hugging Face model
  with the original weights (max |Δ log p| over every position). The bridge's own
  ``original_model`` cannot serve: compatibility mode rewrote its weights in place and its
  forward runs through the bridge's components, so it agrees by construction. The
  reference is taken from a separately loaded model (``self_checks(model,
  hugging_face=hf_model)``) or kept at load time (`keep_hugging_face_reference`); without
  one the check is not run (``passed`` None).
* **hooks**: zeroing the residual stream after block 0 changes the final logits (an
  inert hook, one that edits a copy, changes nothing).
* **gradients**: backward from a logit difference reaches the activations attribution
  patching reads (each layer's residual stream and summed head outputs): not None, not
  all zero.
* **clean_patch**: patching the clean run's own cached activations into the clean run,
  at every hook a patching sweep uses, changes nothing (a stale or aliased cache does).

`self_checks` runs once per model (memoised); `require_self_check` lets a probe refuse to
report numbers when the check it relies on failed.
"""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .evidence import probe
from .forward import final_logits_with, input_device, require_plain_model
from .linearise import post_norm_name
from .model_state import memo, model_name, state_of
from .results import Result
from .self_check_text import (REFERENCE_KEY, SERIAL_KEY, TEXT, english_ids, keep_hugging_face_reference,
                              require_model, text_tokens)
from .sites import SWEEPS, hook_of

CHECKS = {  # name: (what it checks, what a probe relying on it relies on)
    "hugging_face": ("the bridge's log-probabilities equal Hugging Face's on a fixed string",
                     "the bridge computing the Hugging Face model's logits"),
    "hooks": ("a hook that zeroes the residual stream after block 0 changes the logits",
              "hooks that edit activations"),
    "gradients": ("a logit difference's gradient reaches the hooked activations attribution patching reads",
                  "gradients reaching hooked activations"),  # not None, finite, not all zero
    "clean_patch": ("patching the clean run's own activations into it changes nothing",
                    "exact patching (the clean run patched with its own activations is unchanged)"),
}
FLOAT32_TOLERANCE = {"hugging_face": 1e-3, "clean_patch": 1e-4}  # max |difference|, float32
DTYPE_SCALE = {"float64": 1.0, "float32": 1.0, "float16": 50.0, "bfloat16": 500.0}
HOOK_EFFECT = 1e-4  # the least max |Δ logit| a live hook must make


@dataclass(frozen=True)
class SelfCheck:
    """One check: ``passed`` (None: not run), the ``measured`` number, the ``threshold`` it is
    held to, and ``detail``: what was measured, or why it failed."""

    name: str
    passed: bool | None
    measured: float
    threshold: float
    measure: str
    detail: str


@dataclass(frozen=True, eq=False, repr=False)
class SelfChecks(Result):
    """The self-checks of one model, one row each (`CHECKS`)."""

    checks: tuple[SelfCheck, ...]
    dtype: str
    text: str = TEXT  # the text the checks ran on (`self_check_ids`)

    kind = "self_checks"

    def check(self, name: str) -> SelfCheck:
        for check in self.checks:
            if check.name == name:
                return check
        raise ValueError(f"no self-check {name!r}: choose one of {', '.join(CHECKS)}")

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.checks if c.passed is False)

    @property
    def all_passed(self) -> bool:
        """True when no check failed (a check not run does not count against it)."""
        return not self.failed

    @property
    def title(self) -> str:
        ran = [c for c in self.checks if c.passed is not None]
        if self.failed:
            return f"Self-checks on {self.model}: {', '.join(map(repr, self.failed))} failed"
        return f"Self-checks on {self.model}: {len(ran)} of {len(self.checks)} run, all pass"

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame([{"check": c.name, "checks that": CHECKS[c.name][0], "measure": c.measure,
                              "measured": c.measured, "threshold": c.threshold, "passed": c.passed,
                              "detail": c.detail} for c in self.checks])

    def summary(self) -> dict:
        numbers = {f"{c.name}: {c.measure}": c.measured for c in self.checks}
        return {**numbers, "failed": len(self.failed), "all_passed": self.all_passed}

    def notes(self) -> list[str]:
        drawn = ("" if self.text == TEXT
                 else " (words of the model's own vocabulary: it does not read the English sentence)")
        return [f"on {self.text!r}{drawn} in {self.dtype}; thresholds scaled for the dtype",
                *(f"{c.name}: {c.detail}" for c in self.checks if c.passed is not True), *self.notes_text]


def _outcome(name, measured, threshold, measure, passed, detail) -> SelfCheck:
    return SelfCheck(name, passed, float(measured), float(threshold), measure, detail)


def _check_hugging_face(model, reference, tolerance) -> SelfCheck:
    measure = "max |Δ log p|"
    if reference is None:
        return _outcome("hugging_face", math.nan, tolerance, measure, None,
                        "not run: no Hugging Face model with the original weights to compare with; give "
                        "self_checks(model, hugging_face=hf_model), or keep one at load time "
                        "(keep_hugging_face_reference)")
    tokens = torch.tensor([reference.tokens], device=input_device(model))
    with torch.inference_mode():
        ours = model(tokens, return_type="logits")[0].float().log_softmax(-1).cpu().numpy()
    if ours.shape != reference.log_probs.shape:
        return _outcome("hugging_face", math.nan, tolerance, measure, False,
                        f"the bridge gives logits of shape {ours.shape}, Hugging Face {reference.log_probs.shape}")
    difference = float(np.abs(ours - reference.log_probs).max())
    return _outcome("hugging_face", difference, tolerance, measure, difference <= tolerance,
                    f"max |Δ log p| = {difference:.3g} over {len(reference.tokens)} positions (at most {tolerance:g})")


def _check_hooks(model, tokens, positions, plain) -> SelfCheck:
    name, calls = hook_of("resid_post", 0), []

    def zero(activation, hook):
        calls.append(1)
        activation.zero_()
        return activation

    edited = final_logits_with(model, tokens, positions, [(name, zero)]).cpu()
    change = float((edited - plain).abs().max())
    if not calls:
        return _outcome("hooks", change, HOOK_EFFECT, "max |Δ logit|", False, f"the hook on {name} never ran")
    live = change > HOOK_EFFECT
    return _outcome("hooks", change, HOOK_EFFECT, "max |Δ logit|", live,
                    f"zeroing {name} changes the final logits by up to {change:.3g}"
                    + ("" if live else f" (at most {HOOK_EFFECT:g}: the hook's edit did not reach the output)"))


def gradient_sites(model) -> list[str]:
    """Where attribution patching reads gradients: each layer's residual stream (before the
    block) and summed head outputs (at the post-attention norm's input, if the model has one)."""
    sites = []
    for layer in range(model.cfg.n_layers):
        post_norm = post_norm_name(model, layer, "attn")
        sites += [hook_of("resid_pre", layer), f"{post_norm}.hook_in" if post_norm else hook_of("attn_out", layer)]
    return sites


def _check_gradients(model, tokens, position: int) -> SelfCheck:
    sites, activations = gradient_sites(model), {}

    def start_graph(activation, hook):  # parameters are frozen: gradients start here
        return activation.detach().requires_grad_(True)

    def track(name):
        def hook(activation, hook):
            activation.retain_grad()
            activations[name] = activation
        return hook

    try:
        with torch.enable_grad(), model.hooks(fwd_hooks=[("hook_embed", start_graph),
                                                         *[(name, track(name)) for name in sites]]):
            final = model(tokens, return_type="logits")[0, position].float()
            first, second = final.detach().topk(2).indices.tolist()
            (final[first] - final[second]).backward()
        sizes = {}
        for name in sites:
            activation = activations.get(name)
            kept = activation is not None and (activation.is_leaf or activation.retains_grad)
            grad = activation.grad if kept else None
            sizes[name] = None if grad is None else float(grad.abs().max())
    finally:
        model.zero_grad(set_to_none=True)
    problems = {"no gradient (None)": [n for n, size in sizes.items() if size is None],
                "a NaN or infinite gradient": [n for n, size in sizes.items() if size is not None
                                               and not math.isfinite(size)],
                "an all-zero gradient": [n for n, size in sizes.items() if size == 0]}
    problems = {what: names for what, names in problems.items() if names}
    smallest = min((s for s in sizes.values() if s is not None), default=math.nan)
    if problems:
        found = "; ".join(f"{what} at {', '.join(names)}" for what, names in problems.items())
        return _outcome("gradients", 0.0 if math.isfinite(smallest) else smallest, 0.0, "smallest max |grad|", False,
                        f"{found} after backward from the top-2 logit difference")
    return _outcome("gradients", smallest, 0.0, "smallest max |grad|", True,
                    f"gradients reach all {len(sites)} sites; the smallest max |grad| is {smallest:.3g}")


def patch_hooks(model) -> list[str]:
    """Every hook a patching sweep patches, at every layer, that the model has."""
    names = {spec.hook_at(layer) for spec in SWEEPS.values() for layer in range(model.cfg.n_layers)}
    return sorted(name for name in names if name in model.hook_dict)


def _check_clean_patch(model, tokens, positions, plain, tolerance) -> SelfCheck:
    names = patch_hooks(model)
    with torch.inference_mode():
        _, cache = model.run_with_cache(tokens, names_filter=names)

    def put(name):
        def hook(activation, hook):
            activation[...] = cache[name].to(activation.device)
            return activation
        return hook

    patched = final_logits_with(model, tokens, positions, [(name, put(name)) for name in names]).cpu()
    change = float((patched - plain).abs().max())
    return _outcome("clean_patch", change, tolerance, "max |Δ logit|", change <= tolerance,
                    f"patching {len(names)} hooks with the clean run's own activations moves the logits by up "
                    f"to {change:.3g} (at most {tolerance:g})")


def _run(model, reference) -> "SelfChecks":
    dtype = str(model.cfg.dtype).removeprefix("torch.")
    scale = DTYPE_SCALE.get(dtype, DTYPE_SCALE["bfloat16"])
    tolerance = {name: value * scale for name, value in FLOAT32_TOLERANCE.items()}
    device = input_device(model)
    ids = text_tokens(model)
    tokens = torch.tensor([ids], device=device)
    positions = torch.tensor([tokens.shape[1] - 1])
    plain = final_logits_with(model, tokens, positions, []).cpu()
    checks = []
    for name, run in (("hugging_face", lambda: _check_hugging_face(model, reference, tolerance["hugging_face"])),
                      ("hooks", lambda: _check_hooks(model, tokens, positions, plain)),
                      ("gradients", lambda: _check_gradients(model, tokens, tokens.shape[1] - 1)),
                      ("clean_patch", lambda: _check_clean_patch(model, tokens, positions, plain,
                                                                 tolerance["clean_patch"]))):
        try:
            checks.append(run())
        except Exception as error:  # noqa: BLE001 - a check that cannot run has failed, and says why
            first_line = (str(error).splitlines() or [""])[0]
            checks.append(_outcome(name, math.nan, math.nan, "", False, f"raised {type(error).__name__}: {first_line}"))
    english = english_ids(model.tokenizer)
    text = TEXT if english is not None and ids[-len(english):] == english else _decoded(model, ids)
    return SelfChecks(model=model_name(model), prompt_set="self-check text", checks=tuple(checks), dtype=dtype,
                      text=text)


def _decoded(model, ids) -> str:
    try:
        return model.tokenizer.decode(ids)
    except Exception:  # noqa: BLE001 - shown only
        return " ".join(map(str, ids))


@probe
def self_checks(model, *, hugging_face=None) -> SelfChecks:
    """Run the four self-checks (`CHECKS`) on ``model``, once per model (memoised with the
    model's passes: a new reference runs them again, and so does ``forget_passes(model)``
    after its weights were changed on purpose). ``model``: the loaded model (its name is refused:
    ``self_checks(load_model(name))``). ``hugging_face``: a Hugging Face model with the original
    weights, loaded apart from the bridge (kept for later calls), or a `HuggingFaceReference`
    (not a second ``load_model(...)``: a bridge, its weights rewritten by compatibility mode);
    default: the one kept at load time, if any. The checks run on the English sentence `TEXT`
    where the tokenizer reads it, else on words of the model's own vocabulary, cut to its
    context (`self_check_ids`); ``.text`` is the text they ran on."""
    require_model(model, "self_checks")
    require_plain_model(model, "self_checks")
    if hugging_face is not None:
        keep_hugging_face_reference(model, hugging_face)
    capabilities = state_of(model).capabilities
    reference = capabilities.get(REFERENCE_KEY)
    return memo(model, ("self_checks", capabilities.get(SERIAL_KEY, 0)), lambda: _run(model, reference))


class SelfCheckFailed(RuntimeError):
    """A probe refused to run: the self-check its numbers rely on failed on this model."""


def require_self_check(model, name: str, probe_name: str) -> SelfCheck:
    """Raise `SelfCheckFailed`, naming the check and its number, when self-check ``name``
    failed on ``model`` (one not run passes); call it at the top of a probe that relies on it."""
    if name not in CHECKS:
        raise ValueError(f"require_self_check({name!r}): choose one of {', '.join(CHECKS)}")
    require_model(model, "require_self_check")
    check = self_checks(model).check(name)
    if check.passed is False:
        number = f" ({check.measure} = {check.measured:.3g})" if check.measure else ""
        raise SelfCheckFailed(f"{probe_name} relies on {CHECKS[name][1]}, but self-check {name!r} failed on "
                              f"{model_name(model)}: {check.detail}{number}")
    return check


def require_trusted(model, probe_name: str, *checks: str) -> None:
    """What a probe that edits activations calls first: the plain model (no hooks attached),
    and every self-check in ``checks`` (plus ``hugging_face``) passed or not run."""
    require_model(model, probe_name)
    require_plain_model(model, probe_name)
    for name in ("hugging_face", *checks):
        require_self_check(model, name, probe_name)
