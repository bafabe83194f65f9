"""MIB circuit files (`to_mib`, `from_mib`) given bad or foreign input: each is refused before
any pass, in one line naming the input, its value and the fix, never read as a different
circuit; and an export that fails half-way leaves the earlier file whole."""

import json
import sys

import numpy as np
import pytest

from circuitcheck.probes.edges import EdgeCircuit, edge_graph, from_mib, to_mib
from circuitcheck.probes.edges.attribution import EdgeScores

from .test_faults import refused_before_any_pass

KEPT = "input->a0.h0<q>"  # the one edge in_graph in `circuit`, embed → L0H0.q


def scores(model, name="tiny-llama", bad=None):
    """EdgeScores of tiny-llama's 110 edges as a probe of ``name`` would return them (no pass)."""
    labels = edge_graph(model).labels
    values = np.linspace(-1, 1, len(labels))
    if bad is not None:
        values[0] = bad
    return EdgeScores(model=name, prompt_set="fresh", method="eap-ig", ablation="patching", reference="fresh",
                      metric="logit_diff", labels=labels, scores=values, f_clean=1.0, f_target=0.0,
                      n_edges=len(labels))


def circuit(model, cfg=None, edge=None, node=None, **top):
    """to_mib's file of one kept edge, with ``cfg`` entries, ``KEPT``'s entry or the input
    node's entry replaced, or top-level keys replaced."""
    form = to_mib(model, EdgeCircuit(["embed → L0H0.q"]))
    form["cfg"].update(cfg or {})
    form["edges"][KEPT] = form["edges"][KEPT] if edge is None else edge
    form["nodes"]["input"].update(node or {})
    return form | top


def cfg_without(model, key):
    form = circuit(model)
    del form["cfg"][key]
    return form


HALF = [True] * 32 + [False] * 32


@pytest.mark.parametrize("call, message", [
    (lambda m: to_mib(m, scores(m, name="tiny-gpt2")),
     "ranking: these EdgeScores are for tiny-gpt2 (110 edges), not tiny-llama (110 edges); "),
    (lambda m: to_mib(m, scores(m), circuit=True),
     "circuit=True: give a whole number of at least 1; or an EdgeCircuit"),
    (lambda m: to_mib(m, scores(m), circuit=2.0), "circuit=2.0: give a whole number of at least 1; "),
    (lambda m: to_mib(m, scores(m, bad=np.nan)),
     "ranking: 1 edge score(s) are NaN or infinite, e.g. 'embed → L0H0.q'; "),
    (lambda m: from_mib(m, circuit(m, {"n_key_value_heads": 2})),
     "the MIB circuit is for a model with n_key_value_heads=2; tiny-llama has n_key_value_heads=4: "),
    (lambda m: from_mib(m, circuit(m, {"parallel_attn_mlp": True})),
     "the MIB circuit is for a model with parallel_attn_mlp=True; tiny-llama has parallel_attn_mlp=False: "),
    (lambda m: from_mib(m, circuit(m, {"d_model": 768})),
     "the MIB circuit is for a model with d_model=768; tiny-llama has d_model=64: "),
    (lambda m: from_mib(m, circuit(m, {"original_architecture": "GPT2LMHeadModel"})),
     "the MIB circuit is for a model with original_architecture='GPT2LMHeadModel'; tiny-llama has "
     "original_architecture='LlamaForCausalLM': "),
    (lambda m: from_mib(m, circuit(m, {"n_layers": None})),
     "the MIB circuit: cfg.n_layers=None: give a whole number (tiny-llama has 2)"),
    (lambda m: from_mib(m, circuit(m, {"n_heads": "4"})), "the MIB circuit: cfg.n_heads='4': give a whole number"),
    (lambda m: from_mib(m, circuit(m, {"parallel_attn_mlp": "false"})),
     "the MIB circuit: cfg.parallel_attn_mlp='false': give true or false"),
    (lambda m: from_mib(m, cfg_without(m, "d_model")), "the MIB circuit: cfg lacks 'd_model' "),
    (lambda m: from_mib(m, circuit(m, edge={"score": 1.0, "in_graph": "false"})),
     f"the MIB circuit: edge {KEPT!r} has in_graph 'false'; give true or false, a JSON boolean"),
    (lambda m: from_mib(m, circuit(m, edge={"score": 1.0, "in_graph": 1})),
     f"the MIB circuit: edge {KEPT!r} has in_graph 1; give true or false"),
    (lambda m: from_mib(m, circuit(m, edge={"score": None, "in_graph": True})),
     f"the MIB circuit: edge {KEPT!r} has score None; give a finite number"),
    (lambda m: from_mib(m, circuit(m, edge={"score": "0.5", "in_graph": True})),
     f"the MIB circuit: edge {KEPT!r} has score '0.5'; give a finite number"),
    (lambda m: from_mib(m, circuit(m, edge={"score": float("nan"), "in_graph": True})),
     f"the MIB circuit: edge {KEPT!r} has score nan; give a finite number"),
    (lambda m: from_mib(m, circuit(m, edge=0.5)), f"the MIB circuit: edge {KEPT!r} is 0.5; each edge is "),
    (lambda m: from_mib(m, circuit(m, edges=[KEPT])), "the MIB circuit: 'edges' is a list; "),
    (lambda m: from_mib(m, circuit(m, node={"neurons": HALF})),
     "the MIB circuit: node 'input' keeps 32 of its 64 neurons (d_model 64); circuitcheck's edge circuits "
     "keep whole components"),
    (lambda m: from_mib(m, circuit(m, node={"neurons": "all"})), "the MIB circuit: node 'input' has neurons all; "),
    (lambda m: from_mib(m, [circuit(m)]), "source=[{"),
    (lambda m: from_mib(m, circuit(m), kv="mean"), "kv='mean': choose one of any, all, exact "),
])
def test_bad_mib_input_is_refused_before_any_pass(tiny_llama, call, message):
    refused_before_any_pass(tiny_llama, call, message)


def test_a_neuron_mask_on_a_node_outside_the_circuit_or_keeping_all_is_read(tiny_llama):
    form = circuit(tiny_llama, node={"neurons": [True] * 64})
    form["nodes"]["a1.h0"]["neurons"] = HALF  # sends no kept edge: the mask changes nothing
    assert from_mib(tiny_llama, form)[0] == EdgeCircuit(["embed → L0H0.q"])


@pytest.mark.parametrize("text, message", [
    ("", "is empty: write it again (to_mib, or EAP-IG's Graph.to_json)"),
    ("  \n", "is empty: "),
    ('{"cfg": {"n_layers": 2, "n_heads"',
     "is not JSON (Expecting ':' delimiter: line 1 column 34 (char 33)): a truncated or damaged file; "),
    ("[1, 2]", "holds a JSON list, not an MIB circuit: an object with 'cfg', 'nodes' and 'edges'"),
    ('"circuit"', "holds a JSON string, not an MIB circuit"),
    ("null", "holds a JSON null, not an MIB circuit"),
    (b"\xff\xfe\x00{", "is not JSON ("),
])
def test_unreadable_mib_files_are_named(tiny_llama, tmp_path, text, message):
    path = tmp_path / "circuit.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValueError) as refused:
        from_mib(tiny_llama, path)
    assert str(refused.value).startswith(f"the MIB circuit {str(path)!r} {message}"), refused.value
    assert "\n" not in str(refused.value)


def test_circuit_true_was_not_one_edge_and_k_still_is(tiny_llama):
    form = to_mib(tiny_llama, scores(tiny_llama), circuit=1)
    assert [name for name, e in form["edges"].items() if e["in_graph"]] == [KEPT]  # score −1: the largest |score|


def test_from_mib_scores_go_back_to_to_mib_on_the_same_model(tiny_llama):
    """from_mib's EdgeScores are this model's: exported again, the same file."""
    form = to_mib(tiny_llama, scores(tiny_llama), circuit=3)
    circuit_read, read = from_mib(tiny_llama, form)
    assert to_mib(tiny_llama, read, circuit=circuit_read) == form


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_an_export_that_fails_half_way_leaves_the_earlier_file_whole(tiny_llama, tmp_path):
    """A disk that fills during `to_mib` (here: a file-size limit below the new file's size)
    raises, and the earlier export is still there and valid JSON, with no temporary left."""
    import resource
    import signal

    path = tmp_path / "circuit.json"
    to_mib(tiny_llama, scores(tiny_llama), path, circuit=3)
    before = path.read_text()
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of a signal
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) // 2, limit[1]))
        with pytest.raises(OSError):
            to_mib(tiny_llama, scores(tiny_llama), path, circuit=5)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, handler)
    assert path.read_text() == before and json.loads(before)["cfg"]["n_layers"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["circuit.json"]
