"""What every edge probe starts from: the clean run, the run that replaces, their senders.

``ablation`` says what an edge that is switched off carries instead of its sender's output:

* ``"patching"``: the sender's output on the corrupted prompt (the prompt set's
  ``corrupted_prompts``): the edge is patched, as in EAP and MIB;
* ``"mean"``: the sender's output averaged over ``reference`` (default the prompts), position
  by position; ``"resample"``: on a reference prompt drawn per prompt (seeded); ``"zero"``: 0.
  The choices, the reference check, the mean and the draw are node circuits'
  (`probes.ablation_values`: `reference_tokens`, `replacement`, `resample_rows`), so one seed
  draws the same reference prompts for node and edge resample ablation.

Mean and resample average each *sender's output* (on Gemma, after its post-norm, with each
reference prompt's own scale), not ``hook_z``, so replacements add up like outputs do.
"""

from dataclasses import dataclass

import numpy as np
import torch

from ..ablation_values import CIRCUIT_ABLATIONS, check_ablation, reference_tokens, replacement
from ..forward import at_positions, final_norm_device, input_device, unembed_final
from ..metrics import metric_values, resolve_metric
from ..model_state import memo
from ..self_checks import require_trusted
from ..sites import hook_of
from ..tokens import tokenize_pair
from ..circuits.protocol import Kinds
from .circuits import (EdgeFaithfulness, EdgeFaithfulnessCurve, EdgeRandomCircuitTest, as_edge_circuit,
                       edge_order)
from .graph import EdgeCircuit, EdgeGraph, edge_graph
from .runs import capture, constants, masked_logits, sender_outputs, split_inputs, wide

EDGE_ABLATIONS = CIRCUIT_ABLATIONS  # patching, mean, resample, zero: node circuits' choices


def _run(model, tokenized):
    device = input_device(model)
    with split_inputs(model):
        acts = capture(model, tokenized.tokens.to(device))
    outs = sender_outputs(model, acts)
    final = unembed_final(model, at_positions(acts["ln_final.hook_in"], tokenized.final_positions)
                          .to(final_norm_device(model))).cpu()
    return acts, outs, final


def edge_setup(model, prompts, ablation: str = "patching", reference=None, metric="logit_diff", seed: int = 0,
               prepend_bos: bool | None = None, probe_name: str = "edge probe") -> "EdgeSetup":
    """Check the inputs; run the clean prompts and what replaces them; check the senders add up."""
    seed = check_ablation(ablation, seed, EDGE_ABLATIONS)
    relies_on = {"edge_attribution": ("gradients",), "edge_patch": ("clean_patch",),
                 "edge_patch_scores": ("clean_patch",)}.get(probe_name, ())
    require_trusted(model, probe_name, "hooks", *relies_on)
    metric_name, metric_fn = resolve_metric(metric)
    graph = edge_graph(model)
    if ablation == "patching":
        if reference is not None:
            raise ValueError("reference= is read by mean and resample ablation; with ablation='patching' the "
                             "replacement is the prompt set's corrupted prompts")
        clean, corrupted = tokenize_pair(model, prompts, prepend_bos)
    else:
        clean, corrupted = prompts.tokenize(model, prepend_bos), None
    clean.require_single_token(probe_name)
    clean_acts, clean_outs, clean_final = memo(model, ("edge run", clean.key), lambda: _run(model, clean))
    consts = constants(model, graph, clean_acts, clean_outs)
    target_logits, name = None, "corrupted prompts"
    if ablation == "patching":
        acts, target_outs, target_logits = memo(model, ("edge run", corrupted.key), lambda: _run(model, corrupted))
        constants(model, graph, acts, target_outs)  # the corrupted run must add up too
        start = wide(acts[hook_of("resid_pre", 0)])
    elif ablation == "zero":
        target_outs, start, name = torch.zeros_like(clean_outs), torch.zeros_like(clean_outs[:, :, 0]), "zero"
    else:
        reference, ref = reference_tokens(model, prompts, clean, ablation, reference, prepend_bos)
        acts, ref_outs, _ = memo(model, ("edge run", ref.key), lambda: _run(model, ref))
        constants(model, graph, acts, ref_outs)
        n, name = len(clean.lengths), reference.name
        target_outs = replacement(ablation, ref_outs, n, seed).contiguous()  # node circuits' mean and draw
        start = replacement(ablation, wide(acts[hook_of("resid_pre", 0)]), n, seed).contiguous()
    return EdgeSetup(model, graph, clean, corrupted, metric_name, metric_fn, ablation, name, clean_outs,
                     target_outs, start, consts, clean_final, target_logits, _residuals(model, clean_acts),
                     _residuals(model, acts) if ablation == "patching" else None)


def _residuals(model, acts: dict) -> list[torch.Tensor]:
    """A run's residual stream entering each block (prompt × pos × d_model per layer, the cached
    run's own tensors): where a masked pass over that run can resume (`probes.edges.runs.masked_logits`)."""
    return [acts[hook_of("resid_pre", layer)] for layer in range(model.cfg.n_layers)]


@dataclass(frozen=True, eq=False)
class EdgeSetup:
    model: object
    graph: EdgeGraph
    tokenized: object  # the clean prompts
    corrupted: object | None  # the corrupted prompts (ablation="patching")
    metric_name: str
    metric_fn: object
    ablation: str
    reference: str
    clean_outs: torch.Tensor  # prompt × pos × sender × d_model
    target_outs: torch.Tensor  # the replacement of each sender's output
    target_start: torch.Tensor  # the stream entering layer 0 that integrated gradients start from
    consts: dict
    clean_logits: torch.Tensor
    target_logits: torch.Tensor | None  # the corrupted run's (patching)
    clean_resid: list | None = None  # per layer, prompt × pos × d_model: where passes resume
    target_resid: list | None = None  # the corrupted run's (patching)

    @property
    def n_prompts(self) -> int:
        return len(self.tokenized.lengths)

    @property
    def answers(self) -> torch.Tensor:
        return self.tokenized.answer_ids

    def metric_of(self, logits: torch.Tensor, answers: torch.Tensor | None = None) -> torch.Tensor:
        """The metric per row of final logits (rows: blocks of prompts), checked to be one finite
        number per row (`metric_values`); ``answers``: per row, default each prompt's."""
        blocks = len(logits) // self.n_prompts
        answers = self.answers.repeat(blocks, 1) if answers is None else answers
        clean = self.clean_logits.repeat(blocks, 1).to(logits.device)
        values = self.metric_fn(logits, answers.to(logits.device), clean)
        return metric_values(values, len(logits), self.metric_name, self.tokenized.prompt_set)

    def metric(self, logits: torch.Tensor) -> np.ndarray:
        """The metric per row of final logits (rows: blocks of prompts)."""
        return self.metric_of(logits).numpy()

    @property
    def clean_metric(self) -> np.ndarray:
        return self.metric(self.clean_logits)

    @property
    def target_metric(self) -> np.ndarray | None:
        return None if self.target_logits is None else self.metric(self.target_logits)

    def metric_with(self, kept: np.ndarray, on: str = "clean") -> np.ndarray:
        """The metric (edge set × prompt) with each row of ``kept`` (a boolean mask over the
        graph's edges) carrying the clean run's signal, in batched passes over the ``on``
        prompts: on the clean run every other edge carries the ablation's value (circuits); on
        the ``corrupted`` run every other edge is left corrupted (edge patching)."""
        tokenized = self.tokenized if on == "clean" else self.corrupted
        replacement = self.target_outs if on == "clean" else self.clean_outs
        own, resid = (self.clean_outs, self.clean_resid) if on == "clean" else (self.target_outs, self.target_resid)
        own = None if resid is None else own  # no residuals: whole passes
        kept = torch.as_tensor(np.asarray(kept, dtype=bool).reshape(-1, self.graph.n_edges))
        replaced = ~kept if on == "clean" else kept
        device = input_device(self.model)
        answers_only = getattr(self.metric_fn, "reads_answers_only", False)
        rows = []
        step = 256  # blocks handed to the pass builder at a time
        with split_inputs(self.model):
            for start in range(0, len(replaced), step):
                chunk = replaced[start:start + step]
                columns = self.answers.to(device) if answers_only else None
                logits = masked_logits(self.model, self.graph, tokenized.tokens.to(device),
                                       tokenized.final_positions.to(device), chunk, replacement, self.consts, columns,
                                       own, resid)
                pair = torch.tensor([[0, 1]]).expand(len(logits), 2) if answers_only else None
                rows.append(self.metric_of(logits, pair).numpy())
        return np.concatenate(rows).reshape(len(replaced), self.n_prompts)

    # the run protocol (`probes.circuits.protocol.CircuitRun`): circuits are `EdgeCircuit`s, and
    # index arrays for the ones the criteria make (Ks removed, random sets, the curve's top k)
    results = Kinds(EdgeFaithfulness, EdgeRandomCircuitTest, EdgeFaithfulnessCurve)

    @property
    def model_name(self) -> str:
        return self.tokenized.model_name

    @property
    def model_metric(self) -> np.ndarray:
        return self.clean_metric

    start = staticmethod(edge_setup)  # the protocol's one constructor signature
    order = staticmethod(edge_order)

    @staticmethod
    def check(model, circuit) -> EdgeCircuit:
        circuit = as_edge_circuit(circuit).on(model)  # two names of one edge are one edge
        if not len(circuit):
            raise ValueError("the edge circuit is empty: name at least one edge, e.g. EdgeCircuit(['L0H1 → logits'])")
        return circuit

    def circuit(self, circuit: EdgeCircuit) -> EdgeCircuit:
        return circuit  # `check` saw everything: an edge circuit does not depend on the prompts

    def _indices(self, circuit) -> np.ndarray:
        return circuit.indices(self.model) if isinstance(circuit, EdgeCircuit) else np.asarray(circuit, dtype=int)

    def parts(self, circuit) -> tuple[str, ...]:
        return circuit.edges

    def label(self, circuit) -> str:
        return (circuit if isinstance(circuit, EdgeCircuit) else EdgeCircuit.from_indices(self.graph, circuit)).label()

    def empty(self, circuit) -> np.ndarray:
        return np.array([], dtype=int)

    def without(self, circuit, removed) -> np.ndarray:
        return np.setdiff1d(self._indices(circuit), self.graph.indices(removed))

    def model_without(self, circuit, removed) -> np.ndarray:
        return np.setdiff1d(np.arange(self.graph.n_edges), self.graph.indices(removed))

    def random_like(self, circuit, generator) -> np.ndarray:
        return np.sort(generator.choice(self.graph.n_edges, size=len(circuit), replace=False))

    def top(self, universe, indices) -> np.ndarray:
        return np.asarray(indices, dtype=int)

    def evaluate(self, circuits: list) -> np.ndarray:
        kept = np.zeros((len(circuits), self.graph.n_edges), dtype=bool)
        for row, circuit in enumerate(circuits):
            kept[row, self._indices(circuit)] = True
        return self.metric_with(kept)
