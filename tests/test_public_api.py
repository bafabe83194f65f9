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
    for name in SUBMODULES:
        module = getattr(circuitcheck, name)
        assert module.__all__ and all(getattr(module, n) is not None for n in module.__all__)


def test_the_top_level_namespace_is_its_all():
    """``dir(circuitcheck)`` lists the researcher names and nothing else; the machinery that
    offers them (`circuitcheck.exports`) keeps its helpers out of the package's namespace."""
    assert dir(circuitcheck) == sorted(circuitcheck.__all__)
    # (pytest's assertion rewriting adds names that are not identifiers: "@py_builtins")
    extra = {name for name, value in vars(circuitcheck).items()
             if name.isidentifier() and not name.startswith("_") and name not in circuitcheck.__all__
             and not (inspect.ismodule(value) and value.__name__ == f"circuitcheck.{name}")}
    assert not extra, f"the top-level namespace holds {sorted(extra)} beside its __all__"
    for helper in ("EXPORTS", "MOVED", "importlib", "warnings"):
        with pytest.raises(AttributeError):
            getattr(circuitcheck, helper)


# Each public module's ``__all__``: researcher names only, within a budget like the top level's
# (a name past the budget is engine plumbing until shown otherwise: import that from its module).
BUDGETS = {"circuitcheck.probes": (30, 40), "circuitcheck.probes.circuits": (1, 3),
           "circuitcheck.probes.edges": (8, 12), "circuitcheck.fixtures": (2, 4),
           "circuitcheck.fixtures.strategies": (3, 6), "circuitcheck.fixtures.families": (6, 10),
           "circuitcheck.edges": (8, 12), "circuitcheck.scrutiny": (8, 12), "circuitcheck.metrics": (3, 6),
           "circuitcheck.registries": (10, 16), "circuitcheck.errors": (10, 18), "circuitcheck.results": (30, 45)}
# The engine's plumbing, which the last release's subpackage lists exported: no ``__all__`` lists it.
PLUMBING = {"Setup", "setup", "evaluate", "masks", "head_hook", "mlp_hook", "TOKENS_PER_PASS", "P_BELOW_005",
            "random_needed", "as_circuit", "n_edges_formula", "mib_names", "is_edge_circuit"}
CRITERIA = ("faithfulness", "random_circuit_test", "completeness", "minimality", "faithfulness_curve")


@pytest.mark.parametrize("name", sorted(BUDGETS))
def test_each_public_module_lists_a_budget_of_researcher_names(name):
    import importlib

    module = importlib.import_module(name)
    low, high = BUDGETS[name]
    assert low <= len(module.__all__) <= high, f"{name}.__all__ has {len(module.__all__)} names: {module.__all__}"
    assert len(set(module.__all__)) == len(module.__all__)
    assert all(getattr(module, n) is not None for n in module.__all__)
    assert not PLUMBING & set(module.__all__), f"{name}.__all__ lists plumbing {sorted(PLUMBING & set(module.__all__))}"
    edge_criteria = {f"edge_{c}" for c in CRITERIA} & set(module.__all__)
    assert not edge_criteria, f"{name}.__all__ lists {sorted(edge_criteria)}: one name per criterion"


def test_every_public_module_has_a_budget():
    assert set(TOP_LEVEL) | set(SUBMODULES.values()) | {"circuitcheck.probes.circuits", "circuitcheck.probes.edges"} \
        == set(BUDGETS)


def test_the_subpackages_offer_one_name_per_concept():
    """The circuit criteria are one function each, for node and edge circuits, wherever they are
    offered; circuitcheck.edges is probes.edges' list; the strategies list every strategy."""
    import circuitcheck.fixtures.strategies as strategies
    import circuitcheck.probes.circuits as circuits
    import circuitcheck.probes.edges as edges

    from circuitcheck.probes import criteria

    assert set(circuits.__all__) <= set(circuitcheck.__all__)
    assert criteria.__all__ == sorted(CRITERIA)
    for name in CRITERIA:  # one function, wherever it is offered, the last release's edge_ name included
        with pytest.warns(DeprecationWarning):
            older = (getattr(circuits, name), getattr(edges, f"edge_{name}"))
        assert older[0] is older[1] is getattr(criteria, name) is getattr(circuitcheck.probes, name) \
            is getattr(circuitcheck, name)
    assert edges.__all__ == circuitcheck.edges.__all__
    assert all(getattr(edges, n) is getattr(circuitcheck.edges, n) for n in edges.__all__)
    drawn = {n for n, v in vars(strategies).items() if n.endswith("_prompt_sets") and callable(v)}
    assert drawn and drawn <= set(strategies.__all__)


# The last release's subpackage lists: each name is still importable from there, the ones no
# longer listed with a warning that names the one to use now.
LAST_RELEASE = {
    "circuitcheck.probes.circuits": [
        "Circuit", "Completeness", "Faithfulness", "FaithfulnessCurve", "Minimality", "P_BELOW_005",
        "RandomCircuitTest", "Setup", "TOKENS_PER_PASS", "as_circuit", "completeness", "evaluate", "faithfulness",
        "faithfulness_curve", "head_hook", "masks", "minimality", "mlp_hook", "random_circuit_test", "random_needed",
        "setup"],
    "circuitcheck.probes.edges": [
        "EdgeCircuit", "EdgeFaithfulness", "EdgeFaithfulnessCurve", "EdgeGraph", "EdgePatching",
        "EdgeRandomCircuitTest", "EdgeScores", "edge_attribution", "edge_completeness", "edge_faithfulness",
        "edge_faithfulness_curve", "edge_graph", "edge_minimality", "edge_patch", "edge_patch_scores",
        "edge_random_circuit_test", "from_mib", "is_edge_circuit", "mib_names", "n_edges_formula", "parse_edge",
        "to_mib"],
}
OLDER = [(package, name) for package, names in LAST_RELEASE.items() for name in names]


@pytest.mark.parametrize("package, name", OLDER, ids=[f"{p.rsplit('.', 1)[1]}.{n}" for p, n in OLDER])
def test_the_last_releases_subpackage_names_still_import(package, name):
    import importlib

    module = importlib.import_module(package)
    if name in vars(module):  # still offered here (a Result is also in circuitcheck.results)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert getattr(module, name) is not None
        return
    home, _, now_called = module.__getattr__.homes[name].partition(":")
    criterion = name.removeprefix("edge_")
    says = f"`from circuitcheck import {criterion}`" if criterion in CRITERIA else f"`from {home} import {name}`"
    with pytest.warns(DeprecationWarning, match=f"{package}.{name} is now {says}") as caught:
        value = getattr(module, name)
    assert caught[0].filename == __file__, caught[0].filename
    assert value is getattr(importlib.import_module(home), now_called or name)
    with pytest.warns(DeprecationWarning, match="next release"):
        exec(f"from {package} import {name}", {})
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        module.nothing


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
