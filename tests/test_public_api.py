"""The public API: researcher names at the top level, the rest one submodule away, options
keyword-only and named alike, and the last release's names still working, with a warning."""

import inspect
import subprocess
import sys
import warnings

import numpy as np
import pytest

import circuitcheck
import circuitcheck.probes
import circuitcheck.edges
import circuitcheck.scrutiny
from circuitcheck.exports import EXPORTS, MOVED, SUBMODULES, TOP_LEVEL, names_in

from .test_patching import PROMPTS


def probes_in(module) -> dict:
    return {name: getattr(module, name) for name in module.__all__ if getattr(getattr(module, name), "is_probe", False)}


TOP_PROBES = probes_in(circuitcheck.probes)
# and the scrutiny of a claim and edge circuits, one submodule away
PROBES = TOP_PROBES | probes_in(circuitcheck.scrutiny) | probes_in(circuitcheck.edges)
# They read weights only, or judge Results and numbers already made.
NO_PROMPTS = {"neuron_congruence", "exclusive_neuron_tokens", "published", "holm_family", "self_checks", "recovery",
              "selection_stability"}
# The feasibility workflow tokenizes each family as its builder meant it (it runs every other probe);
# stability hands the prompts to the selection it judges.
OWN_TOKENIZATION = {"feasibility", "feasibility_step", "stability"}


def test_the_top_level_is_a_few_dozen_researcher_names_read_from_the_packages():
    assert 35 <= len(circuitcheck.__all__) <= 55, circuitcheck.__all__  # 51 with ground_truth and recovery
    generated = {n for where in TOP_LEVEL.values() for n in names_in(where)} | set(SUBMODULES)
    assert set(circuitcheck.__all__) == generated == set(EXPORTS)
    assert set(TOP_PROBES) <= set(circuitcheck.__all__) and len(TOP_PROBES) >= 27
    every_probe = {n for n, v in vars(circuitcheck.probes).items() if getattr(v, "is_probe", False)}
    assert every_probe == set(TOP_PROBES), f"put {sorted(every_probe - set(TOP_PROBES))} in probes.__all__"
    assert len(PROBES) - len(TOP_PROBES) >= 9  # robustness, stability, …, edge_attribution, edge_patch, …
    for name in set(SUBMODULES) - {"strategies"}:
        module = getattr(circuitcheck, name)
        assert module.__all__ and all(getattr(module, n) is not None for n in module.__all__)


def test_importing_circuitcheck_imports_no_torch():
    code = "import circuitcheck, sys; circuitcheck.__all__; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_two_public_things_share_a_name():
    seen = {}
    for module in [circuitcheck, *(getattr(circuitcheck, n) for n in SUBMODULES)]:
        for name in module.__all__ if hasattr(module, "__all__") else [n for n in vars(module) if not n[0] == "_"]:
            value = getattr(module, name)
            if inspect.ismodule(value) or not (callable(value) or isinstance(value, (dict, tuple))):
                continue
            assert seen.setdefault(name, value) is value, f"two public things are called {name}"


@pytest.mark.parametrize("name", sorted(PROBES))
def test_options_are_keyword_only_and_named_alike(name):
    parameters = inspect.signature(PROBES[name]).parameters
    options = [p for p in parameters.values() if p.default is not inspect.Parameter.empty]
    keyword_only = {p.name for p in parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    subject = {"sweep", "prompts", "kind", "layers", "edges"}  # a default subject may still be given by position
    assert {p.name for p in options} - subject <= keyword_only, f"{name}: options must be keyword-only"
    assert not {"kind", "ablation_kind", "n_seed", "bos"} & keyword_only  # one spelling of each option
    if "prompts" in parameters and name not in OWN_TOKENIZATION:
        assert "prepend_bos" in keyword_only, f"{name} takes prompts, so it takes prepend_bos="
    if name not in NO_PROMPTS | OWN_TOKENIZATION:
        assert "prompts" in parameters


def test_the_last_releases_calls_still_work_and_say_what_to_write(tiny_llama):
    """Each older form gives the same result as the new one, warning at the caller's line."""
    from circuitcheck.probes import ablate, logit_lens, patch, token_lens

    def older(call, says):
        with pytest.warns(DeprecationWarning, match=says) as caught:
            result = call()
        assert caught[0].filename == __file__, caught[0].filename
        return result

    new = ablate(tiny_llama, PROMPTS, "L1H2", ablation="zero")
    for result in (older(lambda: ablate(tiny_llama, PROMPTS, "L1H2", "zero"), r"give ablation= by keyword"),
                   older(lambda: ablate(tiny_llama, PROMPTS, "L1H2", kind="zero"), r"ablate\(kind=...\) is now")):
        np.testing.assert_array_equal(result.after, new.after)
    np.testing.assert_array_equal(
        older(lambda: patch(tiny_llama, PROMPTS, "head_out", "corrupted_into_clean"), "direction=").values,
        patch(tiny_llama, PROMPTS, "head_out", direction="corrupted_into_clean").values)
    lens = older(lambda: logit_lens(tiny_llama, PROMPTS, token=" Mary"), r"now token_lens\(model, prompts, t\)")
    np.testing.assert_array_equal(lens.logit, token_lens(tiny_llama, PROMPTS, " Mary").logit)
    with pytest.raises(TypeError, match="got kind= and ablation="):
        ablate(tiny_llama, PROMPTS, "L1H2", kind="zero", ablation="mean")


@pytest.mark.parametrize("old", sorted(MOVED))
def test_a_moved_top_level_name_still_imports_and_names_its_new_home(old):
    module, new = MOVED[old]
    with pytest.warns(DeprecationWarning, match=f"from {module} import {new}"):
        value = getattr(circuitcheck, old)
    assert value is getattr(__import__(module, fromlist=[new]), new)


def test_renamed_results_and_strategies_keep_their_old_names_for_a_release():
    from circuitcheck.results import Ablation, Patching

    with pytest.warns(DeprecationWarning, match="is now circuitcheck.probes.patching.Patching"):
        from circuitcheck.probes.patching import PatchingResult
    with pytest.warns(DeprecationWarning, match="AblationResult is now"):
        from circuitcheck.probes.ablation import AblationResult
    assert (PatchingResult, AblationResult) == (Patching, Ablation)
    with pytest.warns(DeprecationWarning, match="ioi_prompt_sets"):
        assert circuitcheck.strategies.ioi_prompts is circuitcheck.strategies.ioi_prompt_sets
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert circuitcheck.PromptSet is circuitcheck.probes.PromptSet  # current names: no warning
