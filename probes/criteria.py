"""The circuit criteria, written once for node and edge circuits.

* `faithfulness` (Wang et al. 2022): F(C), the metric with everything outside the circuit
  ablated, against F(M), the plain model's, and F(∅);
* `random_circuit_test` (circuitry, Shi et al. 2024): C against random circuits of its size;
* `completeness` and `minimality` (Wang et al. 2022): knocking out subsets K of the circuit;
* `faithfulness_curve` (MIB's circuit track): the top k of a ranking over circuit sizes.

Each runs on the engine the circuit's type names, chosen once here (`engine_of`): a `Circuit` (or
heads ``"L9H6"``, MLPs ``"MLP5"``) on the node engine, `probes.circuits.engine`; an
`EdgeCircuit`, an `EdgeScores` ranking or edge labels ``"U → V"`` on the edge engine,
`probes.edges.setup`. Both implement one protocol (`probes.circuits.protocol.CircuitRun`), so a
criterion's steps, its random draws and its Result are the same for both.

Outside the circuit: ``ablation`` mean, resample or zero over ``reference``, or ``"patching"``
(counterfactual: each prompt's corrupted twin). With ``ablation=None`` a circuit taken from a
ranking (``scores.circuit(k)``, ``sweep.circuit(k)``), and the curve over a ranking Result, are
judged with the ablation they were found with, anything else with
`probes.circuits.spec.DEFAULT_ABLATION` (`judged_with`); the notes say which.
"""

import numpy as np

from .ablation_values import CIRCUIT_ABLATIONS  # noqa: F401 - the ablations they take (docs)
from .circuits.curve import FaithfulnessCurve, _normalised, curve_sizes
from .circuits.engine import Setup
from .circuits.faithful import P_BELOW_005, Faithfulness, RandomCircuitTest, rounding_floor, undefined_reason
from .circuits.knockouts import Completeness, Minimality, completeness_of, minimality_of
from .circuits.spec import Judged, judged_with
from .edges.attribution import EdgeScores
from .edges.graph import ARROW, EdgeCircuit
from .edges.setup import EdgeSetup
from .evidence import probe
from .input_errors import check_count

__all__ = ["completeness", "faithfulness", "faithfulness_curve", "minimality", "random_circuit_test"]


def is_edge_circuit(value) -> bool:
    """True for an `EdgeCircuit`, an edge-scoring result, or a list of edge labels (``"U → V"``)."""
    if isinstance(value, (EdgeCircuit, EdgeScores)):
        return True
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return all(ARROW in v or "->" in v for v in value)
    return False


def engine_of(subject):
    """The engine that judges ``subject`` (a circuit or a ranking): its run class (`CircuitRun`)."""
    return EdgeSetup if is_edge_circuit(subject) else Setup


def judging(model, prompts, circuit, reference, ablation, metric, seed, prepend_bos, probe_name):
    """The run that judges ``circuit`` the way it was found unless told otherwise, the circuit
    checked against it, and how it is judged."""
    engine = engine_of(circuit)
    circuit = engine.check(model, circuit)  # before any pass
    judged = judged_with(circuit.found_with, ablation, reference, prompts)
    run = engine.start(model, prompts, judged.ablation, judged.reference, metric, seed, prepend_bos, probe_name)
    return run, run.circuit(circuit), judged


def _faithfulness(run, prompts, circuit, judged: Judged, others=()):
    """The circuit's faithfulness, and the metric of ``others`` circuits from the same passes."""
    f_c, f_empty, *rest = run.evaluate([circuit, run.empty(circuit), *others])
    clean = run.model_metric
    return run.results.faithfulness(
        model=run.model_name, prompt_set=prompts.name, circuit=run.label(circuit), components=run.parts(circuit),
        ablation=run.ablation, reference=run.reference, metric=run.metric_name, prompts=prompts.prompts,
        model_metric=clean, circuit_metric=f_c, empty_metric=f_empty, rounding=rounding_floor(run.model, clean, f_empty),
        notes_text=(judged.note(run.reference),)), np.array(rest)


@probe
def faithfulness(model, prompts, circuit, *, reference=None, ablation: str | None = None, metric="logit_diff",
                 seed: int = 0, prepend_bos: bool | None = None) -> Faithfulness:
    """F(C) with everything outside ``circuit`` ablated, against F(M) (the plain model) and F(∅).
    ``circuit``: a `Circuit` or a list of heads, or an `EdgeCircuit` (every edge outside it
    carries its replacement). ``reference``: the prompt set mean and resample ablation read
    (same token width as ``prompts``; default ``prompts`` itself; for IOI the paper's ABC set,
    ``ioi_abc_prompts(n)``). ``ablation="patching"``: counterfactual ablation, each component
    outside the circuit takes its output on the prompt's corrupted twin
    (``prompts.corrupted_prompts``; no reference). ``ablation=None``: a circuit taken from a
    ranking (``scores.circuit(k)``, ``sweep.circuit(k)``) is judged with the ablation it was
    found with, any other with mean ablation (`spec.DEFAULT_ABLATION`); the notes say which."""
    run, circuit, judged = judging(model, prompts, circuit, reference, ablation, metric, seed, prepend_bos,
                                 "faithfulness")
    return _faithfulness(run, prompts, circuit, judged)[0]


@probe
def random_circuit_test(model, prompts, circuit, *, n: int = 100, seed: int = 0, reference=None,
                        ablation: str | None = None, metric="logit_diff",
                        prepend_bos: bool | None = None) -> RandomCircuitTest:
    """Faithfulness of ``circuit`` against ``n`` seeded random circuits of the same size (as many
    heads and MLPs, or edges), all evaluated in batched passes; ``.p_value``, ``.quantile``,
    ``.beats_random(0.95)``. The p-value is at least 1/(1 + n): p < 0.05 needs n ≥ 20 (100 is
    usual). ``ablation=None``: the one the circuit was found with, or the default, as in
    `faithfulness`."""
    n = check_count("n", n, 1, f"compare against random circuits: 100 is usual, and p < 0.05 needs n >= {P_BELOW_005}")
    run, circuit, judged = judging(model, prompts, circuit, reference, ablation, metric, seed, prepend_bos,
                                 "random_circuit_test")
    generator = np.random.default_rng(seed)
    randoms = [run.random_like(circuit, generator) for _ in range(n)]
    candidate, values = _faithfulness(run, prompts, circuit, judged, randoms)  # all in the same batched passes
    return run.results.random_test(
        model=candidate.model, prompt_set=prompts.name, circuit=candidate.circuit, f_model=candidate.f_model,
        f_candidate=candidate.f_circuit, random_circuits=tuple(run.label(r) for r in randoms),
        random_metric=values.mean(axis=1), seed=seed, parts=(candidate,), notes_text=candidate.notes_text)


@probe
def completeness(model, prompts, circuit, *, reference=None, ablation: str | None = None, metric="logit_diff",
                 n_random: int = 10, greedy_steps: int | None = None, seed: int = 0,
                 prepend_bos: bool | None = None) -> Completeness:
    """|F(C \\ K) − F(M \\ K)| for K = ∅, ``n_random`` random subsets of C (each component, or
    edge, in with probability ½, seeded) and a greedy search for the worst K (``greedy_steps``
    additions, default up to half the circuit), as in the IOI paper. M \\ K is the model with K
    ablated. ``ablation=None``: the one the circuit was found with, or the default, as in
    `faithfulness`."""
    n_random = check_count("n_random", n_random, 0, "the number of random subsets K to try (10 is the default)")
    if greedy_steps is not None:
        greedy_steps = check_count("greedy_steps", greedy_steps, 0,
                                   "the greedy search's additions (0: no search; None: half the circuit)")
    run, circuit, judged = judging(model, prompts, circuit, reference, ablation, metric, seed, prepend_bos,
                                 "completeness")
    found = completeness_of(run.parts(circuit), n_random, greedy_steps, np.random.default_rng(seed),
                            lambda ks: run.evaluate([c for k in ks for c in (run.without(circuit, k),
                                                                            run.model_without(circuit, k))]))
    return Completeness(model=run.model_name, prompt_set=prompts.name, circuit=run.label(circuit), **found,
                        notes_text=(judged.note(run.reference),))


@probe
def minimality(model, prompts, circuit, *, reference=None, ablation: str | None = None, metric="logit_diff",
               n_random: int = 5, seed: int = 0, prepend_bos: bool | None = None) -> Minimality:
    """For each component (or edge) v of ``circuit``: the largest |F(C \\ K) − F(C \\ (K ∪ {v}))|
    over K = ∅ and ``n_random`` random subsets of C \\ {v} (seeded), all in batched passes.
    ``ablation=None``: the one the circuit was found with, or the default, as in `faithfulness`."""
    n_random = check_count("n_random", n_random, 0, "the number of random subsets K to try (5 is the default)")
    run, circuit, judged = judging(model, prompts, circuit, reference, ablation, metric, seed, prepend_bos,
                                 "minimality")
    found = minimality_of(run.parts(circuit), n_random, np.random.default_rng(seed),
                          lambda ks: run.evaluate([run.without(circuit, k) for k in ks]).mean(axis=1))
    return Minimality(model=run.model_name, prompt_set=prompts.name, circuit=run.label(circuit), **found,
                      notes_text=(judged.note(run.reference),))


@probe
def faithfulness_curve(model, prompts, ranking, *, sizes=None, reference=None, ablation: str | None = None,
                       metric="logit_diff", seed: int = 0, n_random: int = 20,
                       prepend_bos: bool | None = None) -> FaithfulnessCurve:
    """Normalised faithfulness f of the top-k of ``ranking`` at each size, with MIB's CPR (area
    under f) and CMD (area under |1 − f|), and the same for ``n_random`` seeded random orders.
    ``ranking``: components best first (``["L9H6", "L10H0", "MLP9", ...]``; components it leaves
    out follow in the model's order), a `Patching` of ``head_out`` (by recovery), a
    `HeadAttribution` (by mean contribution), or edges: an `EdgeScores` (by |score|) or edge
    labels best first. ``sizes``: fractions of all components or edges (default MIB's grid,
    0.001 to 1) or counts; the full model is always the last point. MLPs are judged only when
    the ranking names one. ``n_random``: random orders of the model's components (20 by
    default, the fewest for p < 0.05: ``.p_value``, ``.beats_random()``), the same orders for
    every ranking with one seed; ``random_cmd``/``random_cpr`` are their means and
    ``random_cmds``/``random_cprs`` each. f is NaN, with the reason in ``undefined``, when
    F(M) − F(∅) is within float rounding of the metric. ``reference``, ``ablation``, ``seed`` as
    in `faithfulness`; ``ablation=None``: a ranking Result's own ablation (a `Patching` over
    prompt pairs: counterfactual; an `EdgeScores`: its ``ablation``), otherwise the default."""
    n_random = check_count("n_random", n_random, 1, "the random orders the curve is compared with, e.g. 20")
    engine = engine_of(ranking)
    universe, order, n_ranked = engine.order(model, ranking)
    counts = curve_sizes(sizes, len(universe))  # every input checked before the reference pass
    judged = judged_with(getattr(ranking, "found_with", None), ablation, reference, prompts)
    run = engine.start(model, prompts, judged.ablation, judged.reference, metric, seed, prepend_bos, "faithfulness_curve")
    generator = np.random.default_rng(seed)
    orders = [order] + [generator.permutation(len(universe)) for _ in range(n_random)]
    circuits = [run.top(universe, [])] + [run.top(universe, o[:k]) for o in orders for k in counts]
    per_prompt = run.evaluate(circuits).astype(float)  # every circuit in the same batched passes
    values, clean = per_prompt.mean(axis=1), run.model_metric
    f_model, f_empty = float(clean.mean()), float(values[0])
    undefined = undefined_reason(model, f_model, f_empty, clean, per_prompt[0])
    curves = _normalised(values[1:], f_model, f_empty, undefined).reshape(1 + n_random, len(counts))
    return run.results.curve(
        model=run.model_name, prompt_set=prompts.name, ranking=tuple(universe[i] for i in order), n_ranked=n_ranked,
        ablation=run.ablation, reference=run.reference, metric=run.metric_name, sizes=np.array(counts),
        fractions=np.array(counts) / len(universe), circuit_metric=values[1:1 + len(counts)],
        faithfulness=curves[0], random_faithfulness=curves[1:].mean(axis=0), random_runs=curves[1:],
        f_model=f_model, f_empty=f_empty, seed=seed, undefined=undefined, notes_text=(judged.note(run.reference),))
