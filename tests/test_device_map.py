"""A model split by a device map gives the same results as the model on one device.

This machine has no GPU, so the maps here are all on the CPU: ``{"": "cpu"}`` (what ``auto``
gives without GPUs) and an explicit per-layer map, which accelerate dispatches with the same
hooks as a real split (each module's inputs moved to its device). A split over several GPUs,
or a GPU and the CPU, is checked by ``benchmarks/gpu_check.py`` on a GPU machine
(`test_split_over_devices_agrees` below, skipped here). The refusal of maps that offload
layers, and the parsing of ``--device-map``/``--max-memory``, need no GPU.
"""

import dataclasses
import json

import numpy as np
import pytest
import torch

from circuitcheck.fixtures import DeviceUnavailable, load_model
from circuitcheck.fixtures.device_maps import DeviceMapRefused, check_device_map, parse_max_memory
from circuitcheck.probes import (Circuit, PromptSet, ablate, attention, attention_to, attribution_patch,
                                 compensation, completeness, corruption_check, exclusive_neuron_tokens,
                                 faithfulness, faithfulness_curve, feasibility, feasibility_step, head_attribution, head_scores,
                                 layer_attribution, logit_diff, logit_lens, minimality, neuron_activations,
                                 neuron_congruence, neuron_prediction_correlation, noise_corruption, patch,
                                 path_patch, random_circuit_test, token_lens, top_k)
from circuitcheck.probes.model_state import model_info
from circuitcheck import recovery
from circuitcheck.edges import edge_attribution, edge_patch, edge_patch_scores
from circuitcheck.scrutiny import holm_family, published, robustness, selection_stability, self_checks, stability

from .test_patching import PROMPTS, STAGGERED

LAYERS = {"llama": ["model.embed_tokens", "model.rotary_emb", "model.layers.0", "model.layers.1", "model.norm",
                    "lm_head"],
          "gpt2": ["transformer.wte", "transformer.wpe", "transformer.drop", "transformer.h.0", "transformer.h.1",
                   "transformer.ln_f", "lm_head"]}


def per_layer_map(arch: str, layer_1: str = "cpu", rest: str = "cpu") -> dict:
    """Every top-level module of a tiny model named, the second layer (and what follows it) on
    ``layer_1``; except GPT-2's unembedding, which shares its weights with the embedding and so
    stays with it."""
    later = False
    placed = {}
    for name in LAYERS[arch]:
        later = later or name.endswith(".1")
        placed[name] = layer_1 if later and not (arch == "gpt2" and name == "lm_head") else rest
    return placed


def same(a, b, path="result", atol: float = 0.0) -> None:
    """Assert two probe results are equal field by field: their arrays and numbers exactly, or
    within ``atol``."""
    if dataclasses.is_dataclass(a):
        assert type(a) is type(b), path
        for f in dataclasses.fields(a):
            same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}", atol)
    elif isinstance(a, (np.ndarray, torch.Tensor)):
        a, b = np.asarray(a), np.asarray(b)
        if atol and a.dtype.kind == "f":
            np.testing.assert_allclose(b, a, atol=atol, rtol=0, err_msg=path)
        else:
            np.testing.assert_array_equal(b, a, err_msg=path)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{path}[{i}]", atol)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            same(a[k], b[k], f"{path}[{k!r}]", atol)
    elif isinstance(a, float) and atol:
        assert abs(a - b) <= atol or (a != a and b != b), f"{path}: {a!r} != {b!r}"
    else:
        assert a == b or (a != a and b != b), f"{path}: {a!r} != {b!r}"  # NaN equals NaN here


def close(a, b) -> None:
    """`same`, within 1e-4: results computed on different devices round differently."""
    same(a, b, atol=1e-4)


PROBES = {
    "logit_diff": lambda m: logit_diff(m, PROMPTS),
    "top_k": lambda m: top_k(m, PROMPTS),
    "logit_lens": lambda m: logit_lens(m, PROMPTS),
    "token_lens": lambda m: token_lens(m, PROMPTS, " Mary"),
    "layer_attribution": lambda m: layer_attribution(m, PROMPTS),
    "head_attribution": lambda m: head_attribution(m, PROMPTS),
    "attention": lambda m: attention(m, PROMPTS, ["L1H2"]),
    "attention_to": lambda m: attention_to(m, PROMPTS, ["L1H2", "L0H0"]),
    "head_scores": lambda m: head_scores(m, PROMPTS, "previous_token"),
    "neuron_activations": lambda m: neuron_activations(m, PROMPTS, ["L1N7", "L0N3"], all_positions=True),
    "neuron_congruence": lambda m: neuron_congruence(m, " Mary"),
    "ablate": lambda m: ablate(m, PROMPTS, ["L1H2", "L0N3"], ablation="resample"),
    "noise_corruption": lambda m: noise_corruption(m, PROMPTS, [1], samples=2),
    "patch resid_pre, clean into corrupted": lambda m: patch(m, STAGGERED, "resid_pre"),
    "patch head_out, corrupted into clean": lambda m: patch(m, STAGGERED, "head_out", direction="corrupted_into_clean"),
    "patch head_pattern_by_pos": lambda m: patch(m, PROMPTS, "head_pattern_by_pos", layers=[1]),
    "attribution_patch": lambda m: attribution_patch(m, PROMPTS, "head_out"),
    "path_patch": lambda m: path_patch(m, PROMPTS, ["L0H1"], ["L1H2"], positions="end"),
    "faithfulness": lambda m: faithfulness(m, PROMPTS, Circuit(["L1H2", "L0H1"], positions={"L0H1": "end"})),
    "compensation": lambda m: compensation(m, PROMPTS, ["L1H2"]),
    "random_circuit_test": lambda m: random_circuit_test(m, PROMPTS, ["L1H2"], n=3, ablation="resample"),
    "completeness": lambda m: completeness(m, PROMPTS, Circuit(["L1H2", "L0H1"], mlps=[1]), n_random=2),
    "minimality": lambda m: minimality(m, PROMPTS, ["L1H2", "L0H1"], n_random=2),
    "corruption_check": lambda m: corruption_check(m, PROMPTS),
    "exclusive_neuron_tokens": lambda m: exclusive_neuron_tokens(m, k=5),
    "neuron_prediction_correlation": lambda m: neuron_prediction_correlation(m, PROMPTS, "L1N7", " Mary"),
    "feasibility": lambda m: feasibility(m, PROMPTS, steps=["answers", "task", "corruption"]),
    "feasibility_step": lambda m: feasibility_step(m, PROMPTS, "patching"),
    "faithfulness_curve": lambda m: faithfulness_curve(m, PROMPTS, ["L1H2", "L0H1"], sizes=[1, 2, 4]),
    "robustness": lambda m: robustness(m, PROMPTS, lambda m, p, **o: faithfulness(m, p, ["L1H2"], **o),
                                       over={"ablation": ["mean", "zero"]}, holds=lambda ratio: ratio > 0),
    "stability": lambda m: stability(m, PROMPTS, lambda m, p: head_attribution(m, p).top(2)["head"], n=3),
    "selection_stability": lambda m: selection_stability(head_attribution(m, PROMPTS), k=2, n=3),
    "published": lambda m: published(logit_diff(m, PROMPTS).mean, reported=0.0, band=1.0, source="none", model=m),
    "holm_family": lambda m: holm_family(random_circuit_test(m, PROMPTS, ["L1H2"], n=3),
                                         neuron_prediction_correlation(m, PROMPTS, "L1N7", " Mary")),
    "self_checks": lambda m: self_checks(m),
    "edge_attribution": lambda m: edge_attribution(m, PROMPTS, method="eap-ig", ig_steps=2),
    "edge_patch": lambda m: edge_patch(m, PROMPTS, ["L0H1 → L1H2.q", "embed → logits"]),
    "edge_patch_scores": lambda m: edge_patch_scores(m, PROMPTS, ["L0H1 → L1H2.q", "MLP0 → logits"]),
    "faithfulness of an edge circuit": lambda m: faithfulness(m, PROMPTS, edge_attribution(m, PROMPTS).circuit(6)),
    "recovery": lambda m: recovery(patch(m, PROMPTS, "head_out"), {"name": "a stated truth", "nodes": ["L1H2", "L0H1"],
                                                                   "edges": [], "distractors": []}),
}


def test_the_table_has_every_public_probe():
    """A new probe is added here too: it must give the same numbers on a model split by a map."""
    import circuitcheck.edges
    import circuitcheck.probes
    import circuitcheck.scrutiny

    modules = (circuitcheck.probes, circuitcheck.scrutiny, circuitcheck.edges)
    public = {name for module in modules for name in module.__all__
              if getattr(getattr(module, name), "is_probe", False)}
    missing = public - {key.split()[0] for key in PROBES}
    assert len(public) >= 25 and not missing, f"add {sorted(missing)} to PROBES"


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def arch(request):
    return request.param


@pytest.fixture(scope="module")
def plain(arch):
    return load_model(f"tiny-{arch}", "cpu")


@pytest.fixture(scope="module")
def split(arch):
    """Every module named, each with accelerate's hooks, as in a split over GPUs."""
    return load_model(f"tiny-{arch}", device_map=per_layer_map(arch))


@pytest.mark.parametrize("probe", list(PROBES))
def test_every_probe_gives_the_same_result_on_a_split_model(plain, split, probe):
    same(PROBES[probe](split), PROBES[probe](plain))


def test_a_split_model_reports_its_map(arch, split):
    info = model_info(split)
    assert info.device == "cpu" and info.name == f"tiny-{arch}"
    assert info.device_map == per_layer_map(arch)
    json.dumps(vars(info))  # the report's evidence.json takes it as it is
    assert hasattr(split.original_model.lm_head, "_hf_hook")  # accelerate moves its inputs


def test_the_whole_model_on_the_cpu_as_a_map_gives_the_same_results(arch, plain):
    whole = load_model(f"tiny-{arch}", device_map={"": "cpu"})
    assert model_info(whole).device_map == {"": "cpu"}
    for probe in ("logit_diff", "logit_lens", "head_attribution", "patch resid_pre, clean into corrupted",
                  "patch head_out, corrupted into clean"):
        same(PROBES[probe](whole), PROBES[probe](plain), probe)


def test_auto_without_gpus_puts_everything_on_the_cpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: auto would use it")
    model = load_model("tiny-gpt2", device_map="auto", dtype="bfloat16")
    assert model_info(model).device_map == {"": "cpu"} and model_info(model).dtype == "bfloat16"
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_a_hugging_face_folder_loads_straight_onto_its_map(tmp_path, arch, plain):
    """``from_pretrained(device_map=...)``: the map is planned on empty weights first."""
    from circuitcheck.fixtures.tiny import tiny_hf_model

    hf_model, tokenizer = tiny_hf_model(arch)
    hf_model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    folder = load_model(str(tmp_path), "cpu")
    split = load_model(str(tmp_path), device_map=per_layer_map(arch))
    assert model_info(split).device_map == per_layer_map(arch) and model_info(split).source == "folder"
    same(logit_lens(split, PROMPTS), logit_lens(folder, PROMPTS))
    same(patch(split, PROMPTS, "head_out").values, patch(folder, PROMPTS, "head_out").values)


# -- maps that are refused --------------------------------------------------------------------


def test_a_gpu_and_cpu_map_is_refused_naming_the_offloaded_modules_and_the_fix():
    with pytest.raises(DeviceMapRefused) as refused:
        check_device_map(per_layer_map("llama", layer_1="cpu", rest=0))
    message = str(refused.value)
    assert "model.layers.1, model.norm, lm_head (3 of 6 modules) on cpu while the rest is on cuda:0" in message
    assert "cannot fold" in message and "--max-memory 0=" in message and "--device cuda" in message
    assert isinstance(refused.value, DeviceUnavailable)  # the plugin reports it in one line


@pytest.mark.parametrize("device_map", [{"": "disk"}, {"model.layers.0": "cpu", "model.layers.1": "disk"},
                                        {"model.layers.0": "cuda:0", "model.layers.1": "disk"}])
def test_disk_offload_is_refused(device_map):
    with pytest.raises(DeviceMapRefused, match="on disk"):
        check_device_map(device_map)


@pytest.mark.parametrize("device_map", [{"": "cpu"}, per_layer_map("gpt2"), {"a": 0, "b": "cuda:1", "c": 1}])
def test_maps_that_offload_nothing_pass(device_map):
    check_device_map(device_map)


def test_a_planned_map_that_would_spill_to_disk_is_refused_before_loading():
    """With the CPU capped at 100 kB, accelerate plans everything onto disk."""
    with pytest.raises(DeviceMapRefused, match=r"\(the whole model\)"):
        load_model("tiny-llama", device_map="sequential", max_memory={"cpu": "100KB"})


# -- bad input ---------------------------------------------------------------------------------


def test_max_memory_parses_gpu_indices_cpu_and_units():
    assert parse_max_memory("0=20GiB, cuda:1=1.5GB,cpu=0") == {0: 20 * 2**30, 1: 1_500_000_000, "cpu": 0}
    assert parse_max_memory("disk=512MiB,mps=100") == {"disk": 512 * 2**20, "mps": 100}


@pytest.mark.parametrize("text, problem", [
    ("0:20GiB", "'0:20GiB' is not DEVICE=SIZE; write DEVICE=SIZE pairs"),
    ("gpu=1GB", "device 'gpu' is not a GPU index (0, 1, cuda:0), cpu, disk, mps"),
    ("0=20 gigs", "size '20 gigs' of '0=20 gigs' is not bytes or a number with KB"),
    ("0=1GiB,0=2GiB", "device 0 is given twice"),
    ("0=", "'0=' is not DEVICE=SIZE"),
])
def test_bad_max_memory_is_explained(text, problem):
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parse_max_memory(text)


def test_conflicting_or_unknown_placement_is_named():
    with pytest.raises(ValueError, match="device_map 'everywhere': choose one of auto, balanced, balanced_low_0"):
        load_model("tiny-llama", device_map="everywhere")
    with pytest.raises(ValueError, match="device='cpu' and device_map='auto': a device map places the model"):
        load_model("tiny-llama", "cpu", device_map="auto")
    with pytest.raises(ValueError, match=r"max_memory=\{0: '1GiB'\} caps the devices of a split model: add"):
        load_model("tiny-llama", max_memory={0: "1GiB"})


def test_the_options_reach_load_model(pytester):
    pytester.makepyfile(test_split='''
from circuitcheck.probes import logit_diff, PromptSet
from circuitcheck.probes.model_state import model_info

def test_split(model):
    assert model_info(model).device_map == {"": "cpu"}
    logit_diff(model, PromptSet(["When John and Mary went to the shops, John gave it to"], [(" Mary", " John")]))
''')
    result = pytester.runpytest("--model", "tiny-llama", "--device-map", "auto", "--no-report", "-q")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("args, line", [
    (["--max-memory", "0=1GiB"], "*--max-memory 0=1GiB caps the devices of a split model: add --device-map auto*"),
    (["--device-map", "auto", "--max-memory", "0=lots"], "*size 'lots' of '0=lots' is not bytes*"),
    (["--device", "cpu", "--device-map", "auto"], "*--device cpu and --device-map auto: a device map places*"),
    (["--device-map", "everywhere"], "*argument --device-map: invalid choice: 'everywhere'*"),
])
def test_bad_placement_options_stop_the_session_in_one_line(pytester, args, line):
    pytester.makepyfile(test_nothing="def test_nothing(model): pass")
    stopped = pytester.runpytest("--model", "tiny-llama", "--no-report", *args)  # stops before loading
    assert stopped.ret == pytest.ExitCode.USAGE_ERROR
    stopped.stderr.fnmatch_lines([line])


MISSING_GPU = max(5, torch.cuda.device_count())  # GPU 5 on this machine (it has none); always one not here


def test_a_gpu_the_machine_lacks_stops_the_session_in_one_line(pytester):
    """--max-memory 5=1GiB on a machine without GPU 5 once failed every test with accelerate's
    'Cannot access accelerator device' and its traceback (about 235 lines each)."""
    pytester.makepyfile(test_two="def test_a(model): pass\ndef test_b(model): pass")
    stopped = pytester.runpytest("--model", "tiny-llama", "--no-report", "--device-map", "auto",
                                 "--max-memory", f"{MISSING_GPU}=1GiB,cpu=4GiB")
    assert stopped.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in stopped.stderr.lines if line.strip()]
    assert len(errors) == 1, errors
    count = torch.cuda.device_count()
    assert errors[0].startswith(f"ERROR: --max-memory {MISSING_GPU}=1GiB,cpu=4GiB: GPU {MISSING_GPU} "
                                f"(cuda:{MISSING_GPU}) is not on this machine, which has "
                                + ("no GPU" if count == 0 else "")), errors[0]
    assert "Cannot access accelerator" not in str(stopped.outlines)


def test_a_script_naming_a_gpu_the_machine_lacks_is_refused_before_loading():
    with pytest.raises(DeviceUnavailable, match=rf"^max_memory=\{{{MISSING_GPU}: '1GiB'\}}: GPU {MISSING_GPU} "
                                                r"\(cuda:\d+\) is not on this machine, which has "):
        load_model("tiny-llama", device_map="auto", max_memory={MISSING_GPU: "1GiB"})


# -- on a GPU machine --------------------------------------------------------------------------


def _splits_to_try() -> list:
    """Two GPUs: layer 1 onwards on the second. One GPU: layer 1 onwards on the CPU, run there
    (not offloaded) — a test-only split through accelerate with the CPU as a second device."""
    if not torch.cuda.is_available():
        return [pytest.param(None, marks=pytest.mark.skip(reason="no CUDA GPU on this machine"))]
    if torch.cuda.device_count() >= 2:
        return ["two GPUs"]
    return ["GPU and CPU"]


@pytest.fixture(scope="module", params=_splits_to_try())
def across_devices(request, arch):
    if request.param == "two GPUs":
        return load_model(f"tiny-{arch}", device_map=per_layer_map(arch, layer_1=1, rest=0))
    return gpu_and_cpu_split(arch)


def gpu_and_cpu_split(arch: str):
    """Layer 0 and before on ``cuda:0``, the rest on the CPU where it is computed (accelerate's
    main device set to the CPU, so nothing is offloaded): every hand-over between devices a
    two-GPU split has, on a machine with one GPU. The bridge is not shown the map (it refuses
    any map naming the CPU next to a GPU); its config is told the model spans two devices."""
    from accelerate import dispatch_model

    from circuitcheck.fixtures.loading import boot_bridge
    from circuitcheck.fixtures.tiny import tiny_hf_model

    hf_model, tokenizer = tiny_hf_model(arch)
    device_map = per_layer_map(arch, layer_1="cpu", rest=0)
    hf_model = dispatch_model(hf_model, device_map, main_device="cpu", force_hooks=True)
    del hf_model.hf_device_map
    bridge = boot_bridge(hf_model, tokenizer, f"tiny-{arch}", device=None)
    bridge.cfg.device, bridge.cfg.n_devices = "cuda:0", 2
    return bridge


@pytest.mark.parametrize("probe", list(PROBES))
def test_split_over_devices_agrees(plain, across_devices, probe):
    """Within 1e-4 (different devices round differently), every array of every probe."""
    assert len({p.device for p in across_devices.original_model.parameters()}) == 2
    close(PROBES[probe](across_devices), PROBES[probe](plain))
