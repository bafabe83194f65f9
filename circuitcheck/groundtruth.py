"""``circuitcheck-groundtruth``: compile a RASP program with Tracr into a known-circuit model.

    pip install 'circuitcheck[groundtruth]'          # tracr-pypi, jax, dm-haiku, chex
    circuitcheck-groundtruth my_program.py           # → fixtures/groundtruth/models/<name>/
    circuitcheck-groundtruth my_program.py --out DIR # anywhere; `load_model("DIR")` loads it

The program file is Python that defines ``program`` (a categorical RASP SOp), ``vocab`` (a set
of token values), ``max_seq_len`` and optionally ``name``, ``description``, ``distractors``
(SOps compiled into the same weights beside ``program`` but never read by it: active
components that are irrelevant to the output), ``prompts`` (``{"clean": [...], "corrupted":
[...], "answers": [[correct, wrong], ...]}``; made from the program's own outputs when absent)
and ``causal`` (default True). A program whose output at a position depends on later tokens is
refused unless ``causal = False`` (or ``--non-causal``), which compiles a bidirectional model
and marks it ``"causal": false`` (the probes that assume causal attention refuse it).

The folder it writes (read without JAX by `circuitcheck.fixtures.groundtruth`):

* ``tracr.npz``: Tracr's parameters, ``module|param`` → array (float32);
* ``tracr.json``: Tracr's config, residual labels, input and output encodings, the output label;
* ``truth.json``: the true circuit, from Tracr's compiled graph and craft model (which RASP
  operation each head and MLP implements, which residual subspaces it reads and writes);
* ``components.json``: every active component with its RASP operation, reads and writes;
* ``io_table.json``: inputs with Tracr's own output at every position (null where Tracr's
  output is not decisive), so a test can check the converted model without JAX.

Only this module needs Tracr and JAX, and only when it runs: importing it does not.
"""

import argparse
import itertools
import json
import random
import runpy
import sys
from pathlib import Path

import numpy as np

BOS, PAD = "BOS", "PAD"
CONSTANT_LABELS = ("one",)  # written by the embedding on every position: no counterfactual effect
EMBED_LABELS = ("tokens", "indices", "one")
IO_ROWS_PER_LENGTH = 120
DECISIVE = 0.5  # Tracr's best output logit beats the next by this much, or the row's entry is null
N_PROMPTS = 8


def _tracr():
    try:
        from tracr.compiler import (basis_inference, craft_graph_to_model, craft_model_to_transformer,
                                    expr_to_craft_graph, nodes, rasp_to_graph, validating)
        from tracr.craft import bases, transformers
        from tracr.rasp import rasp
    except ImportError as error:  # pragma: no cover - the extra is not installed
        raise SystemExit(f"circuitcheck-groundtruth needs Tracr and JAX ({error}): "
                         "pip install 'circuitcheck[groundtruth]'") from None
    return dict(basis_inference=basis_inference, craft_graph_to_model=craft_graph_to_model,
                craft_model_to_transformer=craft_model_to_transformer, expr_to_craft_graph=expr_to_craft_graph,
                nodes=nodes, rasp_to_graph=rasp_to_graph, validating=validating, bases=bases,
                transformers=transformers, rasp=rasp)


def default_models_folder() -> Path:
    return Path(__file__).resolve().parents[1] / "fixtures" / "groundtruth" / "models"


def compile_with_graph(program, vocab, max_seq_len, distractors=(), causal=True, mlp_exactness=100):
    """Tracr's `compile_rasp_to_model`, step by step, keeping the graph and the craft model;
    ``distractors`` are compiled into the same model as further sinks nobody reads."""
    import networkx as nx

    t = _tracr()
    for sop in (program, *distractors):
        if unsupported := t["validating"].static_validate(sop):
            raise SystemExit("Tracr cannot compile: " + "; ".join(f"{e.expr.name}: {e.reason}" for e in unsupported))
    extracted = t["rasp_to_graph"].extract_rasp_graph(program)
    graph, sources, sink = extracted.graph, list(extracted.sources), extracted.sink
    extra_sinks = []
    for sop in distractors:
        more = t["rasp_to_graph"].extract_rasp_graph(sop)
        graph = nx.compose(graph, more.graph)
        sources += [s for s in more.sources if s[t["nodes"].ID] not in {x[t["nodes"].ID] for x in sources}]
        extra_sinks.append(more.sink[t["nodes"].ID])
    sources = [graph.nodes[s[t["nodes"].ID]] for s in sources]
    sink = graph.nodes[sink[t["nodes"].ID]]
    for tip in [sink, *(graph.nodes[i] for i in extra_sinks)]:
        t["basis_inference"].infer_bases(graph, tip, vocab, max_seq_len)
    bos_dir = t["bases"].BasisDirection(t["rasp"].tokens.label, BOS)
    t["expr_to_craft_graph"].add_craft_components_to_rasp_graph(graph, bos_dir=bos_dir, mlp_exactness=mlp_exactness)
    craft_model = t["craft_graph_to_model"].craft_graph_to_model(graph, sources)
    assembled = t["craft_model_to_transformer"].craft_model_to_transformer(
        craft_model=craft_model, graph=graph, sink=sink, max_seq_len=max_seq_len, causal=causal,
        compiler_bos=BOS, compiler_pad=PAD)
    return assembled, graph, sink, craft_model


def _space(space) -> list[str]:
    return [_direction(d) for d in space.basis]


def _direction(d) -> str:
    return d.name if d.value is None else f"{d.name}:{d.value}"


def _labels(space) -> set[str]:
    return {d.name for d in space.basis}


def components_of(graph, sink, craft_model) -> list[dict]:
    """Every compiled block: its TransformerLens label, the RASP operation it implements, the
    residual subspaces it reads (per receiving end) and writes, and whether it is on the output's
    path (an ancestor of the sink in the RASP graph)."""
    import networkx as nx

    t = _tracr()
    nodes, transformers = t["nodes"], t["transformers"]
    layer_of = t["craft_graph_to_model"]._allocate_modules_to_layers(  # noqa: SLF001 - Tracr's own allocation
        graph, [graph.nodes[n] for n in graph.nodes if graph.in_degree(n) == 0])
    on_path = set(nx.ancestors(graph, sink[nodes.ID])) | {sink[nodes.ID]}
    head_index = {}
    attn_blocks = [b for b in craft_model.blocks if not isinstance(b, transformers.MLP)]
    for block in attn_blocks:
        for index, head in enumerate(block.as_multi().heads()):
            head_index[id(head)] = index
    found = []
    for node_id, craft_layer in layer_of.items():
        node = graph.nodes[node_id]
        block = node.get(nodes.MODEL_BLOCK)
        expr = node[nodes.EXPR]
        parts = block.blocks if isinstance(block, transformers.SeriesWithResiduals) else [block]
        for offset, part in enumerate(parts):
            layer = (craft_layer + offset) // 2
            op = {"op": type(expr).__name__, "sop": expr.label, "on_path": node_id in on_path,
                  "rasp": _describe(expr)}
            if isinstance(part, transformers.MLP):
                found.append(dict(op, component=f"MLP{layer}", reads={"MLP": _space(part.fst.input_space)},
                                  writes=_space(part.snd.output_space)))
            else:
                heads = list(part.as_multi().heads())
                for head in heads:
                    index = head_index[id(head)]
                    found.append(dict(op, component=f"L{layer}H{index}",
                                      reads={"q": _space(head.w_qk.left_space), "k": _space(head.w_qk.right_space),
                                             "v": _space(head.w_ov.input_space)},
                                      writes=_space(head.w_ov.output_space)))
    return found


def _describe(expr) -> str:
    children = ", ".join(getattr(c, "label", str(c)) for c in expr.children)
    if type(expr).__name__ == "Aggregate":
        select = expr.selector
        return (f"Aggregate(Select(keys={select.keys.label}, queries={select.queries.label}, "
                f"{select.predicate}), {expr.sop.label})")
    return f"{type(expr).__name__}({children})"


def truth_from_components(components: list[dict], output_label: str, bos: str = BOS) -> dict:
    """True nodes and edges (circuitcheck's edge-graph labels) and distractors.

    A component's operand is a residual label it reads; the sender of a label is ``embed`` for
    ``tokens`` and ``indices`` and the component that writes it otherwise. The constant ``one``
    direction and the ``tokens:BOS`` direction (every head's default attention to BOS) are the
    same on every prompt, so they are no edges. A component is true when it implements an
    operation on the output's path; an active one that implements none is a distractor."""
    writers = {label: [(-1, "embed")] for label in EMBED_LABELS}
    for c in components:
        for label in {w.rpartition(":")[0] or w for w in c["writes"]}:
            writers.setdefault(label, []).append((_position(c["component"]), c["component"]))
    edges = []
    for c in components:
        if not c["on_path"]:
            continue
        here = _position(c["component"])
        for end, reads in c["reads"].items():
            senders = set()
            for direction in reads:
                label = direction.rpartition(":")[0] if ":" in direction else direction
                if label in CONSTANT_LABELS or direction == f"tokens:{bos}":
                    continue
                # who wrote it before this component reads it (Tracr's selector-width MLP also
                # writes the direction its head wrote, to clean it up; that is no edge into itself)
                senders |= {name for position, name in writers[label] if position < here}
            receiving = c["component"] if end == "MLP" else f"{c['component']}.{end}"
            edges += [f"{s} → {receiving}" for s in sorted(senders)]
    last = {name for _, name in writers[output_label]}
    edges += [f"{name} → logits" for name in sorted(last)]
    nodes = sorted({c["component"] for c in components if c["on_path"]}, key=_order)
    distractors = sorted({c["component"] for c in components} - set(nodes), key=_order)
    return {"nodes": nodes, "edges": sorted(set(edges), key=lambda e: [_order(p.strip()) for p in e.split("→")]),
            "distractors": distractors}


def _position(component: str) -> int:
    """Where a component runs: embed, then per layer its heads, then its MLP."""
    if component.startswith("MLP"):
        return 2 * int(component[3:]) + 1
    return 2 * int(component[1:].split("H")[0])


def _order(label: str):
    label, _, end = label.partition(".")
    suffix = "qkv".index(end) if end else 0
    if label == "embed":
        return (-1, 0, 0, 0)
    if label == "logits":
        return (10 ** 6, 0, 0, 0)
    if label.startswith("MLP"):
        return (int(label[3:]), 1, 0, 0)
    layer, head = label[1:].split("H")
    return (int(layer), 0, int(head), suffix)


_JITTED = {}


def _tracr_logits(model, inputs: list[list]):
    """Tracr's output logits (over the output encoding) for equal-length inputs, batched."""
    import jax.numpy as jnp

    import jax

    ids = jnp.array([model.input_encoder.encode([BOS, *x]) for x in inputs])
    forward = _JITTED.setdefault(id(model), jax.jit(lambda p, i: model.forward(p, i).transformer_output.output))
    residual = np.asarray(forward(model.params, ids))
    return residual


def _unembed(model, output_label: str) -> np.ndarray:
    index = {label: i for i, label in enumerate(model.residual_labels)}
    encoding = model.output_encoder.encoding_map
    unembed = np.zeros((len(index), len(encoding)), dtype=np.float32)
    for value, column in encoding.items():
        unembed[index[f"{output_label}:{value}"], column] = 1
    return unembed


def all_inputs(vocab, max_seq_len, per_length=IO_ROWS_PER_LENGTH, seed=0):
    """Every input of each length while there are at most ``per_length``, then a seeded sample."""
    rng = random.Random(seed)
    values = sorted(vocab, key=str)
    for length in range(1, max_seq_len + 1):
        if len(values) ** length <= per_length:
            yield from (list(x) for x in itertools.product(values, repeat=length))
        else:
            seen = set()
            while len(seen) < per_length:
                seen.add(tuple(rng.choice(values) for _ in range(length)))
            yield from (list(x) for x in sorted(seen, key=lambda x: [str(v) for v in x]))


def io_table(model, program, vocab, max_seq_len, output_label, per_length=IO_ROWS_PER_LENGTH):
    """Inputs, Tracr's decoded output per position (null where not decisive) and RASP's value."""
    decode = {column: value for value, column in model.output_encoder.encoding_map.items()}
    unembed = _unembed(model, output_label)
    rows = list(all_inputs(vocab, max_seq_len, per_length))
    by_length = {}
    for row in rows:
        by_length.setdefault(len(row), []).append(row)
    table = []
    for length, group in sorted(by_length.items()):
        logits = _tracr_logits(model, group) @ unembed  # batch × (1 + length) × outputs
        for row, row_logits in zip(group, logits):
            outputs = []
            for position in range(1, length + 1):
                ordered = np.sort(row_logits[position])[::-1]
                decisive = len(ordered) == 1 or ordered[0] - ordered[1] > DECISIVE
                outputs.append(str(decode[int(np.argmax(row_logits[position]))]) if decisive else None)
            expected = evaluate(program, row)
            table.append({"input": [str(v) for v in row], "tracr": outputs,
                          "rasp": [None if v is None else str(v) for v in expected]})
    return table


def computes_the_program(table) -> tuple[bool, str]:
    """Whether the compiled model gives the program's value at the last position of every input
    (where RASP's value is defined): a causal model cannot when the program needs later tokens
    there, and the compiled model would then be wrong at the very position probes read."""
    for row in table:
        expected, got = row["rasp"][-1], row["tracr"][-1]
        if expected is not None and got != expected:
            return False, (f"on input {' '.join(row['input'])} RASP gives {expected!r} at the last position "
                           f"but the compiled model {'is not decisive' if got is None else repr(got)}")
    return True, ""


_VOCAB = {}


def evaluate(program, row: list) -> list:
    """RASP's value of ``program`` on ``row``, where a comparison with a missing value (None, as
    ``shift_by`` leaves at the start) selects nothing, and a categorical aggregate over several
    equal values gives that value (several different ones: None), as in the compiled model,
    instead of raising."""
    rasp = _tracr()["rasp"]
    table, mean = rasp._comparison_table, rasp._mean  # noqa: SLF001
    call = rasp.Comparison.__call__

    def categorical_mean(xs, default):
        if len(xs) > 1 and not all(isinstance(x, (int, bool, float)) for x in xs):
            return xs[0] if all(x == xs[0] for x in xs) else None
        return mean(xs, default)

    rasp.Comparison.__call__ = lambda self, key, query: (
        False if key is None or query is None else table[self](key, query))
    rasp._mean = categorical_mean  # noqa: SLF001
    try:
        return rasp.evaluate(program, row)
    finally:
        rasp.Comparison.__call__, rasp._mean = call, mean  # noqa: SLF001


def _typed(strings, program):
    return [_VOCAB.get(s, s) for s in strings]


def task_prompts(table, n=N_PROMPTS, seed=0) -> dict:
    """Clean and corrupted prompts of the same length that differ in as few tokens as possible,
    whose last-position answers (Tracr's and RASP's, agreed) differ: answers ``(clean's, corrupted's)``."""
    rng = random.Random(seed)
    usable = [r for r in table if r["tracr"][-1] is not None and r["tracr"][-1] == r["rasp"][-1]
              and len(r["input"]) >= 2]
    longest = max((len(r["input"]) for r in usable), default=0)
    pairs = []
    for length in sorted({len(r["input"]) for r in usable}, reverse=True):
        group = [r for r in usable if len(r["input"]) == length]
        rng.shuffle(group)
        for clean in group:
            best = None
            for other in group:
                if other["tracr"][-1] == clean["tracr"][-1]:
                    continue
                distance = sum(a != b for a, b in zip(clean["input"], other["input"]))
                if best is None or distance < best[0]:
                    best = (distance, other)
            if best is not None and all(clean["input"] != p[0]["input"] for p in pairs):
                pairs.append((clean, best[1]))
            if len(pairs) >= n:
                break
        if len(pairs) >= n or length < longest - 1:
            break
    return {"clean": [" ".join(c["input"]) for c, _ in pairs],
            "corrupted": [" ".join(d["input"]) for _, d in pairs],
            "answers": [[" " + c["tracr"][-1], " " + d["tracr"][-1]] for c, d in pairs]}


def generate(program_file: Path, out: Path | None = None, non_causal: bool = False, quiet: bool = False) -> Path:
    """Compile ``program_file`` and write the model folder; return it."""
    spec = runpy.run_path(str(program_file))
    program, vocab, max_seq_len = spec["program"], set(spec["vocab"]), int(spec["max_seq_len"])
    for value in vocab:
        if not str(value) or any(ch.isspace() for ch in str(value)) or str(value) in (BOS, PAD):
            raise SystemExit(f"vocabulary value {value!r}: tokens are words, so a value must be a non-empty "
                             f"string without spaces, and not {BOS!r} or {PAD!r}")
    _VOCAB.clear()
    _VOCAB.update({str(v): v for v in vocab})
    name = spec.get("name") or program_file.stem.replace("_", "-")
    causal = bool(spec.get("causal", True)) and not non_causal
    distractors = list(spec.get("distractors", ()))
    t = _tracr()
    if not t["rasp"].is_categorical(program):
        raise SystemExit(f"{program_file}: the program's output must be categorical (rasp.categorical(...)): "
                         "a known-circuit model's answer is a token")
    model, graph, sink, craft_model = compile_with_graph(program, vocab, max_seq_len, distractors, causal)
    output_label = program.label
    table = io_table(model, program, vocab, max_seq_len, output_label)
    right, why = computes_the_program(table)
    if not right:
        raise SystemExit(f"{program_file}: the {'causal' if causal else 'bidirectional'} model does not compute "
                         f"the program ({why}); " + ("the program reads later tokens: set causal = False in the "
                         "file (or pass --non-causal) to compile a bidirectional model, which circuitcheck marks "
                         "\"causal\": false and its causal probes refuse" if causal else "Tracr cannot compile it exactly"))
    components = components_of(graph, sink, craft_model)
    truth = truth_from_components(components, output_label)
    prompts = spec.get("prompts") or task_prompts(table)
    if not prompts["clean"]:
        raise SystemExit(f"{program_file}: no pair of inputs with different decisive answers at the last "
                         "position; give prompts = {'clean': [...], 'corrupted': [...], 'answers': [...]}")
    out = Path(out) if out else default_models_folder() / name
    out.mkdir(parents=True, exist_ok=True)
    params = {f"{module}|{param}": np.asarray(value, dtype=np.float32)
              for module, group in model.params.items() for param, value in group.items()}
    np.savez_compressed(out / "tracr.npz", **params)
    config = model.model_config
    tracr_json = {
        "format": 1, "compiler": "tracr", "max_seq_len": max_seq_len, "bos": BOS, "pad": PAD,
        "model_config": {"num_layers": config.num_layers, "num_heads": config.num_heads,
                         "key_size": config.key_size, "mlp_hidden_size": config.mlp_hidden_size,
                         "layer_norm": bool(config.layer_norm), "causal": bool(config.causal)},
        "residual_labels": list(model.residual_labels),
        "input_encoding": {str(k): int(v) for k, v in model.input_encoder.encoding_map.items()},
        "output_encoding": {str(k): int(v) for k, v in model.output_encoder.encoding_map.items()},
        "output_label": output_label,
    }
    source = program_file.read_text()
    truth_json = {"name": name, "description": spec.get("description") or (program.__doc__ or name),
                  "source": source, **truth, "prompts": prompts, "causal": causal}
    _write_json(out / "tracr.json", tracr_json)
    _write_json(out / "truth.json", truth_json)
    _write_json(out / "components.json", components)
    write_io_table(out / "io_table.json", table)
    if not quiet:
        print(f"{name}: {config.num_layers} layers × {config.num_heads} heads, d_model "
              f"{len(model.residual_labels)}, {len(table)} io rows → {out}")
        print(f"  nodes {truth['nodes']}\n  edges {truth['edges']}\n  distractors {truth['distractors']}")
    return out


def write_io_table(path: Path, rows: list[dict]) -> None:
    """One row a line: inputs without BOS; ``tracr``: Tracr's output at each position (null where
    its best output logit is not ahead by `DECISIVE`); ``rasp``: the RASP program's value."""
    note = (f"inputs without BOS; 'tracr': Tracr's output at each position (null where its best output logit "
            f"is not ahead by {DECISIVE}); 'rasp': the RASP program's value")
    lines = ",\n".join(json.dumps(row, ensure_ascii=False, separators=(",", ":")) for row in rows)
    path.write_text(f'{{"note": {json.dumps(note)},\n"rows": [\n{lines}\n]}}\n')


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=1, ensure_ascii=False) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="circuitcheck-groundtruth",
        description="Compile causal, categorical RASP programs with Tracr into known-circuit models "
                    "(weights, tokenizer vocabulary, truth.json, io_table.json).")
    parser.add_argument("programs", nargs="+", type=Path, help="Python files defining program, vocab, max_seq_len")
    parser.add_argument("--out", type=Path, help="the model folder (one program only); default "
                        "fixtures/groundtruth/models/<name>/, where load_model('<name>') finds it")
    parser.add_argument("--non-causal", action="store_true", help="compile a bidirectional model, marked causal: false")
    args = parser.parse_args(argv)
    if args.out and len(args.programs) > 1:
        parser.error("--out takes one program")
    for program_file in args.programs:
        generate(program_file, args.out, args.non_causal)
    return 0


if __name__ == "__main__":
    sys.exit(main())
