"""Self-checks: all pass on the tiny models; each fails, with its number, when the mechanism it
checks is broken, and `require_self_check` then refuses with the reason."""

import json

import pytest
import torch
from transformer_lens.hook_points import HookPoint

from circuitcheck.fixtures import load_model
from circuitcheck.fixtures.tiny import tiny_hf_model
from circuitcheck.probes.model_state import state_of
from circuitcheck.probes.self_check_text import (REFERENCE_KEY, HuggingFaceReference, hugging_face_reference,
                                                 keep_hugging_face_reference, text_tokens)
from circuitcheck.probes.self_checks import CHECKS, SelfCheckFailed, require_self_check, self_checks


@pytest.fixture
def fresh():
    """A tiny Llama of its own, with its Hugging Face reference kept: a test that breaks it
    (and memoises the failed checks on it) leaves the session's models alone."""
    model = load_model("tiny-llama", device="cpu")
    keep_hugging_face_reference(model, tiny_hf_model("llama")[0])
    return model


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_every_check_passes_on_the_tiny_models(arch, request):
    model = request.getfixturevalue(f"tiny_{arch}")
    checks = self_checks(model, hugging_face=tiny_hf_model(arch)[0])  # same seed: the original weights
    assert checks.all_passed and checks.failed == (), checks
    assert [c.name for c in checks.checks] == list(CHECKS) and all(c.passed for c in checks.checks)
    assert checks.check("hugging_face").measured < 1e-5
    assert checks.check("hooks").measured > 0.1 and checks.check("gradients").measured > 0
    assert checks.check("clean_patch").measured < 1e-6
    assert self_checks(model) is checks  # memoised per model (and reference)
    assert require_self_check(model, "gradients", "attribution_patch").passed
    form = checks.evidence()
    json.dumps(form, allow_nan=False)
    assert form["kind"] == "self_checks" and form["title"] == f"Self-checks on tiny-{arch}: 4 of 4 run, all pass"


def test_the_loader_keeps_hugging_faces_numbers_from_before_compatibility_mode():
    """Taken before the bridge rewrote the weights, so the check compares two computations."""
    model = load_model("tiny-llama", device="cpu")
    kept = state_of(model).capabilities[REFERENCE_KEY]
    assert list(kept.tokens) == text_tokens(model)  # tokenized as the probes tokenize
    checks = self_checks(model)
    assert checks.check("hugging_face").passed and checks.check("hugging_face").measured < 1e-5, checks


def test_without_a_reference_the_hugging_face_check_is_not_run_and_blocks_nothing():
    model = load_model("tiny-gpt2", device="cpu")
    del state_of(model).capabilities[REFERENCE_KEY]  # as for a bridge built by hand
    checks = self_checks(model)
    hf = checks.check("hugging_face")
    assert hf.passed is None and "not run" in hf.detail and checks.all_passed
    assert require_self_check(model, "hugging_face", "logit_diff").passed is None
    with pytest.raises(ValueError, match="the model the bridge wraps"):
        self_checks(model, hugging_face=model.original_model)  # agrees by construction: refused
    with pytest.raises(ValueError, match=r"require_self_check\('hook'\): choose one of hugging_face, hooks"):
        require_self_check(model, "hook", "patch")


def test_wrong_weights_fail_the_hugging_face_check(fresh):
    with torch.no_grad():  # as a wrong fold of a norm into the next weights would
        fresh.blocks[1].mlp.out.weight.mul_(1.5)
    checks = self_checks(fresh)
    assert checks.failed == ("hugging_face",), checks
    assert checks.check("hugging_face").measured > 1e-3
    with pytest.raises(SelfCheckFailed, match=r"logit_diff relies on the bridge computing the Hugging Face "
                                              r"model's logits, but self-check 'hugging_face' failed on tiny-llama: "
                                              r"max \|Δ log p\| = "):
        require_self_check(fresh, "hugging_face", "logit_diff")


def test_a_reference_can_be_kept_as_numbers(fresh):
    reference = hugging_face_reference(tiny_hf_model("llama", seed=1)[0], text_tokens(fresh))  # other weights
    assert isinstance(reference, HuggingFaceReference) and reference.log_probs.shape[0] == len(reference.tokens)
    assert self_checks(fresh).all_passed
    assert self_checks(fresh, hugging_face=reference).failed == ("hugging_face",)  # a new reference: run again


def make_hooks_inert(monkeypatch) -> None:
    """Every hook sees a copy of its activation, so its edit goes nowhere."""
    add_hook = HookPoint.add_hook

    def inert(self, hook, *args, **kwargs):
        def edits_a_copy(activation, *a, **k):
            hook(activation.clone(), *a, **k)
        return add_hook(self, edits_a_copy, *args, **kwargs)

    monkeypatch.setattr(HookPoint, "add_hook", inert)


def test_inert_hooks_fail_the_hooks_check(fresh, monkeypatch):
    """Every hook sees a copy of its activation, so its edit goes nowhere (as with a hook point
    that observes a copy): the hooks check fails, and so do gradients, which hooks start."""
    make_hooks_inert(monkeypatch)
    checks = self_checks(fresh)
    assert checks.failed == ("hooks", "gradients") and checks.check("hooks").measured == 0
    assert checks.check("gradients").detail.startswith("raised RuntimeError")  # a check that cannot run fails
    assert checks.check("hugging_face").passed  # no hooks involved
    with pytest.raises(SelfCheckFailed, match=r"patch relies on hooks that edit activations, but self-check 'hooks' "
                                              r"failed on tiny-llama: zeroing blocks.0.hook_resid_post changes the "
                                              r"final logits by up to 0 .*\(max \|Δ logit\| = 0\)"):
        require_self_check(fresh, "hooks", "patch")


def test_gradients_that_do_not_reach_the_activations_fail_the_gradients_check(fresh, monkeypatch):
    monkeypatch.setattr(torch.Tensor, "retain_grad", lambda self: None)  # hooked activations keep no gradient
    checks = self_checks(fresh)
    assert checks.failed == ("gradients",), checks
    with pytest.raises(SelfCheckFailed, match=r"attribution_patch relies on gradients reaching hooked activations, "
                                              r"but self-check 'gradients' failed on tiny-llama: no gradient \(None\) "
                                              r"at blocks.0.hook_attn_out, blocks.1.hook_resid_pre"):
        require_self_check(fresh, "gradients", "attribution_patch")


def test_nan_gradients_fail_the_gradients_check(fresh, monkeypatch):
    """As a float16 model whose backward overflows (tiny Gemma 3 in float16 on the CPU does)."""
    retain_grad = torch.Tensor.retain_grad

    def poisoned(self):
        retain_grad(self)
        self.register_hook(lambda grad: grad * float("nan"))

    monkeypatch.setattr(torch.Tensor, "retain_grad", poisoned)
    checks = self_checks(fresh)
    assert checks.failed == ("gradients",), checks
    assert "a NaN or infinite gradient at blocks.0.hook_resid_pre" in checks.check("gradients").detail


def test_a_stale_activation_cache_fails_the_clean_patch_check(fresh, monkeypatch):
    run_with_cache = fresh.run_with_cache

    def stale(tokens, **kwargs):  # the activations of another string
        return run_with_cache(torch.roll(tokens, 1, dims=1), **kwargs)

    monkeypatch.setattr(fresh, "run_with_cache", stale)
    checks = self_checks(fresh)
    assert checks.failed == ("clean_patch",), checks
    assert checks.check("clean_patch").measured > 1e-3
    with pytest.raises(SelfCheckFailed, match="self-check 'clean_patch' failed on tiny-llama: patching 22 hooks"):
        require_self_check(fresh, "clean_patch", "patch")


def test_self_checks_need_the_plain_model(fresh):
    with fresh.hooks(fwd_hooks=[("hook_embed", lambda activation, hook: activation)]):
        with pytest.raises(RuntimeError, match="hooks are attached"):
            self_checks(fresh)
