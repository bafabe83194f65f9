"""The masked-evaluation engine: many circuits judged in one forward pass.

The prompts are repeated along the batch, one block of rows per circuit. At each layer a
hook mixes the clean head output (``hook_z``, per head) and its ablation value by that
block's mask (`masks`): kept where the circuit names the head (at the positions it names),
ablated elsewhere; MLP outputs likewise when the circuit names MLPs. Only the final
positions are unembedded. `evaluate` returns the metric per circuit and prompt; `setup`
computes the ablation values once per model, prompt set and reference.

Ablations (`probes.ablation_values`, `CIRCUIT_ABLATIONS`): ``mean``, ``resample`` and ``zero``
over a reference, and ``patching``, counterfactual ablation: a component outside the circuit
takes its output on the prompt's corrupted twin at the same position, as an edge outside an
edge circuit does (`probes.edges.setup`). The input embedding is not a component and stays
clean under every ablation, so the empty circuit with ``mlps=[]`` under ``patching`` is the
corrupted run with the clean embedding's direct path to the logits (the edge circuit
``{embed → logits}``); where that path carries nothing it is the corrupted run.
"""

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..ablation_values import (CIRCUIT_ABLATIONS, COUNTERFACTUAL, AblationValues, ablation_values, check_ablation,
                               check_counterfactual)
from ..forward import final_logits, final_logits_with, input_device
from ..input_errors import check_count
from ..metrics import resolve_metric
from ..positions import resolve
from ..self_checks import require_trusted
from ..sites import hook_of, mlp_label, parse_site
from .curve import FaithfulnessCurve, circuit_of, full_order
from .faithful import Faithfulness, RandomCircuitTest
from .protocol import Kinds
from .spec import DEFAULT_ABLATION, Circuit, as_circuit

TOKENS_PER_PASS = 8192  # bounds the rows × positions of one batched pass


def setup(model, prompts, ablation: str = DEFAULT_ABLATION, reference=None, metric="logit_diff", seed: int = 0,
          prepend_bos: bool | None = None, probe_name: str = "circuit evaluation") -> "Setup":
    """Check the inputs and compute the ablation values of every head and MLP once (one pass
    over ``reference``, or over the corrupted prompts with ``ablation="patching"``)."""
    check_ablation(ablation, seed, CIRCUIT_ABLATIONS)
    if ablation == COUNTERFACTUAL:
        check_counterfactual(prompts, reference)
    require_trusted(model, probe_name, "hooks")
    metric_name, metric_fn = resolve_metric(metric)
    tokenized = prompts.tokenize(model, prepend_bos)
    tokenized.require_single_token(probe_name)
    n_layers = model.cfg.n_layers
    names = [head_hook(l) for l in range(n_layers)] + [mlp_hook(l) for l in range(n_layers)]
    values = ablation_values(model, prompts, names, ablation, reference, seed, prepend_bos)
    # the reference is often the prompts themselves: then its pass gave the clean logits too
    clean = values.reference_logits if values.reference_logits is not None else final_logits(model, tokenized)
    return Setup(model, tokenized, metric_name, metric_fn, values, clean)


@dataclass(frozen=True, eq=False)
class Setup:
    """Everything `evaluate` needs for one model, prompt set, reference and ablation: the node
    engine's `CircuitRun` (`probes.circuits.protocol`), its circuits `Circuit`s."""

    model: object
    tokenized: object
    metric_name: str
    metric_fn: object
    replacements: AblationValues  # what each ablated head or MLP output becomes
    clean_logits: torch.Tensor
    named: dict = field(default_factory=dict)  # named position -> token index per prompt

    results = Kinds(Faithfulness, RandomCircuitTest, FaithfulnessCurve)

    @property
    def ablation(self) -> str:
        return self.replacements.ablation

    @property
    def reference(self) -> str:
        return self.replacements.reference

    @property
    def seed(self) -> int | None:
        return self.replacements.seed

    @property
    def model_name(self) -> str:
        return self.tokenized.model_name

    def positions_of(self, name: str) -> torch.Tensor:
        """Each prompt's token index of a named position (``"end"``, ``"S2"``, ``"S1+1"``)."""
        if name not in self.named:
            self.named[name] = torch.tensor(resolve(self.model.tokenizer, self.tokenized, name))
        return self.named[name]

    @property
    def width(self) -> int:
        return self.tokenized.tokens.shape[1]

    @property
    def n_prompts(self) -> int:
        return len(self.tokenized.lengths)

    # the run protocol (`probes.circuits.protocol.CircuitRun`)
    @property
    def model_metric(self) -> np.ndarray:
        return self.metric_fn(self.clean_logits, self.tokenized.answer_ids, self.clean_logits).numpy()

    start = staticmethod(setup)  # the protocol's one constructor signature
    order = staticmethod(full_order)

    @staticmethod
    def check(model, circuit) -> Circuit:
        circuit = as_circuit(circuit)
        if not circuit.components:
            raise ValueError("the circuit is empty: name at least one head, e.g. Circuit(['L9H6']); "
                             "F of the fully ablated model is reported as 'F(empty)' by faithfulness")
        circuit.check(model, math.inf)  # its heads and MLPs; its positions against the prompts in `circuit`
        return circuit

    def circuit(self, circuit: Circuit) -> Circuit:
        circuit.check(self.model, self.width)
        for _, where in circuit.positions:  # resolve named positions now: a clear error before any pass
            for item in (where,) if isinstance(where, str) else where:
                if isinstance(item, str):
                    self.positions_of(item)
        return circuit

    def parts(self, circuit: Circuit) -> tuple[str, ...]:
        return circuit.components

    def label(self, circuit: Circuit) -> str:
        return circuit.label()

    def empty(self, circuit: Circuit) -> Circuit:
        return Circuit([], None if circuit.mlps is None else [])

    def without(self, circuit: Circuit, removed) -> Circuit:
        return circuit.without(removed)

    def model_without(self, circuit: Circuit, removed) -> Circuit:
        return Circuit.full(self.model, circuit.mlps is not None).without(removed)

    def random_like(self, circuit: Circuit, generator) -> Circuit:
        return circuit.random_like(self.model, generator)

    def top(self, universe, indices) -> Circuit:
        return circuit_of([universe[i] for i in indices], any(c.startswith("MLP") for c in universe))

    def evaluate(self, circuits: list[Circuit], tokens_per_pass: int = TOKENS_PER_PASS) -> np.ndarray:
        return evaluate(self, circuits, tokens_per_pass)


def head_hook(layer: int) -> str:
    return hook_of("head_out", layer)


def mlp_hook(layer: int) -> str:
    return hook_of("mlp_out", layer)


def masks(s: Setup, circuit: Circuit) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Where ``circuit`` keeps the clean output: heads ``prompt × layer × pos × head`` and
    MLPs ``prompt × layer × pos`` (None: every MLP kept)."""
    model = s.model
    n, width = s.n_prompts, s.width
    where = dict(circuit.positions)

    def position_mask(label):
        spec = where.get(label)
        keep = torch.full((n, width), spec is None, dtype=torch.bool)
        for item in () if spec is None else (spec,) if isinstance(spec, str) else spec:
            if isinstance(item, str):
                keep[torch.arange(n), s.positions_of(item)] = True
            else:
                keep[:, item] = True
        return keep

    heads = torch.zeros(n, model.cfg.n_layers, width, model.cfg.n_heads, dtype=torch.bool)
    for label in circuit.heads:
        site = parse_site(label)
        heads[:, site.layer, :, site.index] = position_mask(label)
    if circuit.mlps is None:
        return heads, None
    mlps = torch.zeros(n, model.cfg.n_layers, width, dtype=torch.bool)
    for layer in circuit.mlps:
        mlps[:, layer] = position_mask(mlp_label(layer))
    return heads, mlps


def _mix_hook(keep: torch.Tensor, value: torch.Tensor | None, blocks: int):
    """Per block of rows (one circuit each), keep the clean activation where ``keep`` and the
    ablation ``value`` (prompt × ...) elsewhere."""

    def hook(activation, hook):
        shaped = activation.view(blocks, -1, *activation.shape[1:])
        mask = keep.to(activation.device).view(blocks, -1, *keep.shape[1:])
        while mask.dim() < shaped.dim():
            mask = mask[..., None]
        replacement = torch.zeros((), dtype=activation.dtype, device=activation.device) if value is None \
            else value.to(activation.dtype)[None]
        return torch.where(mask, shaped, replacement).view(activation.shape)

    return hook


def evaluate(s: Setup, circuits: list[Circuit], tokens_per_pass: int = TOKENS_PER_PASS) -> np.ndarray:
    """The metric (circuit × prompt) with only each circuit left, many circuits per forward pass."""
    check_count("tokens_per_pass", tokens_per_pass, 1, f"it bounds one batched pass ({TOKENS_PER_PASS} by default)")
    model, tok = s.model, s.tokenized
    device = input_device(model)
    n, n_layers = s.n_prompts, model.cfg.n_layers
    per_pass = max(1, tokens_per_pass // (n * s.width))
    answers = tok.answer_ids
    answers_only = getattr(s.metric_fn, "reads_answers_only", False)
    out = []
    for start in range(0, len(circuits), per_pass):
        chunk = circuits[start:start + per_pass]
        pairs = [masks(s, c) for c in chunk]
        heads = torch.cat([h for h, _ in pairs])  # (blocks·prompt) × layer × pos × head
        hooks = [(head_hook(l), _mix_hook(heads[:, l], s.replacements.values.get(head_hook(l)), len(chunk)))
                 for l in range(n_layers) if not heads[:, l].all()]
        if any(m is not None for _, m in pairs):
            mlps = torch.cat([m if m is not None else torch.ones(n, n_layers, s.width, dtype=torch.bool)
                              for _, m in pairs])
            hooks += [(mlp_hook(l), _mix_hook(mlps[:, l], s.replacements.values.get(mlp_hook(l)), len(chunk)))
                      for l in range(n_layers) if not mlps[:, l].all()]
        tokens = tok.tokens.repeat(len(chunk), 1).to(device)
        finals = tok.final_positions.repeat(len(chunk)).to(device)
        rows_answers = answers.repeat(len(chunk), 1)
        logits = final_logits_with(model, tokens, finals, hooks,
                               columns=rows_answers.to(device) if answers_only else None).cpu()
        metric_answers = torch.tensor([[0, 1]]).expand(len(logits), 2) if answers_only else rows_answers
        values = s.metric_fn(logits, metric_answers, s.clean_logits.repeat(len(chunk), 1))
        out.append(values.reshape(len(chunk), n).numpy())
    return np.concatenate(out)
