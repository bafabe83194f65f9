"""Circuits judged as a whole: faithfulness, random circuits, completeness, minimality.

A *circuit* C is a set of components (attention heads, optionally MLP layers), each
optionally restricted to some positions. To run "only the circuit", every head
outside it has its output (``hook_z``, per head) replaced by an *ablation value*:
its mean over a reference prompt set at the same position (the IOI paper's
mean ablation over the "ABC" distribution: three different names), a resampled
reference prompt's value (seeded), or zero. The metric F (mean logit difference)
of the ablated model is F(C); F(M) is the plain model's.

* **faithfulness** (Wang et al. 2022): F(C) against F(M), as F(C)/F(M) and |F(M) − F(C)|.
* **random circuits** (circuitry, Shi et al. 2024): is C closer to the model than
  random circuits of the same size? An empirical quantile and a p-value
  ``(1 + #random at least as close) / (1 + N)``.
* **completeness**: |F(C \\ K) − F(M \\ K)| for subsets K of C (empty, random, and a
  greedy search for the worst K): a complete circuit behaves like the model when
  parts of it are knocked out.
* **minimality**: for each component v, the largest change |F(C \\ K) − F(C \\ (K ∪ {v}))|
  over the same Ks: a component whose removal never matters is not needed.

Many circuits are evaluated in one forward pass: the prompts are repeated along the
batch, one block of rows per circuit, and each layer's hook mixes the clean output
and the ablation value by that block's mask (`evaluate`).
"""

import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .evidence import probe
from .forward import at_positions, check_finite, final_logits, memo, require_plain_model
from .input_errors import check_count
from .metrics import resolve_metric
from .patch_runs import final_logits_with
from .positions import resolve
from .results import Result
from .sites import head_label, parse_head

ABLATIONS = ("mean", "resample", "zero")
TOKENS_PER_PASS = 8192  # bounds the rows × positions of one batched pass
P_BELOW_005 = 20  # random circuits: the fewest N whose smallest p-value, 1/(1+N) = 1/21, is below 0.05


def random_needed(fraction: float) -> int:
    """The fewest random circuits N for which beating ``fraction`` of them can be significant:
    the smallest p-value, 1/(1+N), is below 1 − ``fraction`` (20 for 0.95: p < 0.05)."""
    return math.floor(1 / (1 - fraction) + 1e-9)


def _mlp_number(mlp) -> int:
    """``5``, ``"5"``, ``"MLP5"``, ``"mlp_out L5"`` or ``"L5"`` → 5."""
    match = re.fullmatch(r"(?:MLP\s*|mlp_out L|L)?(\d+)(?:\s*MLP)?", str(mlp).strip(), re.IGNORECASE)
    if not match:
        raise ValueError(f"MLP {mlp!r}: write MLP layers as 'MLP5' or as the layer number 5")
    return int(match[1])


def _mlp_layer(model, mlp) -> int:
    """`_mlp_number`, checked against the model's layers."""
    layer = _mlp_number(mlp)
    if not 0 <= layer < model.cfg.n_layers:
        raise ValueError(f"MLP {mlp}: the model has layers 0–{model.cfg.n_layers - 1}")
    return layer


@dataclass(frozen=True)
class Circuit:
    """Heads (``"L9H6"``) and optionally MLP layers (``"MLP5"`` or 5), each optionally
    restricted to ``positions``: ``{"L9H6": "end"}`` (each prompt's final position), a
    position the prompt set names, resolved per prompt (``"S2"``, ``"IO"``, ``"S1+1"``: see
    `probes.positions`; `ioi_prompts` names IO, S1 and S2), ``{"L9H6": [3, 10]}`` (token
    indices, BOS counted) or a list mixing both (``["S2", "end"]``); components not named
    there keep every position. ``mlps=None`` leaves every MLP alone (only heads are judged);
    ``mlps=[...]`` ablates the MLPs not listed.

    >>> Circuit(["L9H6", "L10H0"], positions={"L9H6": "end", "L10H0": "S2"}).label()
    '{L9H6@end, L10H0@S2}'
    """

    heads: tuple = ()
    mlps: tuple | None = None
    positions: tuple = field(default=(), compare=True)  # ((label, "end" | (ints)), ...)

    def __post_init__(self):
        heads = (self.heads,) if isinstance(self.heads, str) else tuple(self.heads)
        labels = []
        for h in heads:
            if isinstance(h, str):
                match = re.match(r"^L(\d+)H(\d+)$", h.strip())
                if not match:
                    raise ValueError(f"head {h!r}: write heads as 'L<layer>H<head>', e.g. 'L9H6'")
                labels.append(head_label(int(match[1]), int(match[2])))
            else:
                labels.append(head_label(*(int(x) for x in h)))
        object.__setattr__(self, "heads", tuple(sorted(set(labels), key=_order)))
        if self.mlps is not None:
            mlps = (self.mlps,) if isinstance(self.mlps, (str, int)) else tuple(self.mlps)
            layers = sorted({_mlp_number(m) for m in mlps})
            object.__setattr__(self, "mlps", tuple(layers))
        positions = dict(self.positions.items() if isinstance(self.positions, dict) else self.positions)
        normal = []
        for label, where in positions.items():
            if label not in self.components:
                raise ValueError(f"positions names {label!r}, which is not in the circuit "
                                 f"{list(self.components)}")
            normal.append((label, _position_spec(label, where)))
        object.__setattr__(self, "positions", tuple(sorted(normal)))

    @property
    def components(self) -> tuple[str, ...]:
        """Head labels, then ``MLP{layer}`` labels."""
        return self.heads + tuple(f"MLP{m}" for m in (self.mlps or ()))

    def __len__(self) -> int:
        return len(self.components)

    def without(self, removed) -> "Circuit":
        """The circuit minus the components labelled in ``removed`` (C \\ K)."""
        removed = set(removed)
        return Circuit([h for h in self.heads if h not in removed],
                       None if self.mlps is None else [m for m in self.mlps if f"MLP{m}" not in removed],
                       [(k, v) for k, v in self.positions if k not in removed])

    def label(self) -> str:
        where = dict(self.positions)
        parts = [c + (f"@{_spec_label(where[c])}" if c in where else "") for c in self.components]
        return "{" + ", ".join(parts) + "}"

    @staticmethod
    def full(model, with_mlps: bool = False) -> "Circuit":
        """The whole model M: every head (and every MLP with ``with_mlps``)."""
        n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
        return Circuit([(l, h) for l in range(n_layers) for h in range(n_heads)],
                       list(range(n_layers)) if with_mlps else None)

    def check(self, model, width: int) -> None:
        """Raise a clear error for heads, MLPs or positions the model or prompts do not have."""
        for h in self.heads:
            parse_head(model, h)
        for m in self.mlps or ():
            _mlp_layer(model, m)
        for label, where in self.positions:
            indices = [] if isinstance(where, str) else [p for p in where if isinstance(p, int)]
            if any(not 0 <= p < width for p in indices):
                raise ValueError(f"positions of {label}: {_spec_label(where)}, but the prompts have "
                                 f"positions 0–{width - 1} (BOS counted)")

    def random_like(self, model, generator: np.random.Generator) -> "Circuit":
        """A random circuit of the same size: as many heads (and MLPs), drawn uniformly without
        replacement; the i-th random head takes the i-th head's position restriction."""
        n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
        picks = generator.choice(n_layers * n_heads, size=len(self.heads), replace=False)
        heads = [head_label(int(p) // n_heads, int(p) % n_heads) for p in picks]
        mlps = None if self.mlps is None else sorted(generator.choice(n_layers, len(self.mlps), replace=False).tolist())
        where = dict(self.positions)
        positions = [(new, where[old]) for old, new in zip(self.heads, heads) if old in where]
        return Circuit(heads, mlps, positions)


def _position_spec(label: str, where):
    """A position restriction as stored: a name (``"end"``, ``"S2"``, ``"S1+1"``) or a tuple of
    token indices and names."""
    if isinstance(where, str):
        return where.strip()
    if isinstance(where, (int, np.integer)):
        return (int(where),)
    try:
        items = tuple(where)
    except TypeError:
        items = None
    if not items or not all(isinstance(p, (str, int, np.integer)) for p in items):
        raise ValueError(f"positions of {label}: {where!r}; give 'end', a named position such as 'S2', "
                         "token indices such as [3, 10] (BOS counted), or a list of these")
    return tuple(p.strip() if isinstance(p, str) else int(p) for p in items)


def _spec_label(where) -> str:
    return where if isinstance(where, str) else "[" + ", ".join(map(str, where)) + "]"


def _order(label: str) -> tuple[int, int]:
    layer, head = label[1:].split("H")
    return int(layer), int(head)


def as_circuit(circuit) -> Circuit:
    return circuit if isinstance(circuit, Circuit) else Circuit(circuit)


@dataclass(frozen=True, eq=False)
class Setup:
    """Everything `evaluate` needs for one model, prompt set, reference and ablation."""

    model: object
    tokenized: object
    metric_name: str
    metric_fn: object
    ablation: str
    reference_name: str
    values: dict  # hook name -> ablation value, prompt × pos × ... (rows of the prompts)
    clean_logits: torch.Tensor
    seed: int | None
    named: dict = field(default_factory=dict)  # named position -> token index per prompt

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


def z_hook(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def mlp_hook(layer: int) -> str:
    return f"blocks.{layer}.hook_mlp_out"


def _reference_pass(model, tokenized, names) -> tuple[dict, torch.Tensor]:
    """The activations at hook points ``names`` for ``tokenized`` and its final-position logits
    (CPU), from one pass that unembeds only the final positions."""
    kept = {}

    def keep(name):  # a hook point answers to several names: keep the one asked for
        def hook(activation, hook):
            kept[name] = activation.clone()
            return activation
        return hook

    device = next(model.parameters()).device
    logits = final_logits_with(model, tokenized.tokens.to(device), tokenized.final_positions.to(device),
                               [(name, keep(name)) for name in names]).cpu()
    check_finite(logits, tokenized)
    return kept, logits


def setup(model, prompts, reference=None, ablation: str = "mean", metric="logit_diff", seed: int = 0,
          probe_name: str = "circuit evaluation", mlps: bool = False) -> Setup:
    """Check the inputs and compute the ablation values once (one pass over ``reference``)."""
    seed = check_count("seed", seed, 0, "a seed is a whole number from 0 up, e.g. seed=0")
    if ablation not in ABLATIONS:
        raise ValueError(f"ablation {ablation!r}: choose one of {', '.join(ABLATIONS)}")
    require_plain_model(model, probe_name)
    metric_name, metric_fn = resolve_metric(metric)
    tokenized = prompts.tokenize(model)
    tokenized.require_single_token(probe_name)
    device = next(model.parameters()).device
    n_layers = model.cfg.n_layers
    names = [z_hook(l) for l in range(n_layers)] + ([mlp_hook(l) for l in range(n_layers)] if mlps else [])
    n, width = len(tokenized.lengths), tokenized.tokens.shape[1]
    values = {}
    reference = reference if reference is not None else prompts
    if ablation == "zero":
        reference_name = "zero"
    else:
        ref = reference.tokenize(model)
        reference_name = reference.name
        if ref.tokens.shape[1] != width:
            raise ValueError(
                f"{ablation} ablation reads the reference at the same positions as the prompts, but "
                f"reference {reference.name!r} is {ref.tokens.shape[1]} tokens wide "
                f"({list(ref.str_tokens[0])}) and {prompts.name!r} is {width} "
                f"({list(tokenized.str_tokens[0])}); use a reference set made from the same "
                "template (for IOI: ioi_abc_prompts(n)), so each position holds the same kind of token")
        cache, ref_logits = memo(model, ("circuit reference", ref.key, tuple(names)),
                                 lambda: _reference_pass(model, ref, names))
        draw = torch.randint(len(ref.lengths), (n,), generator=torch.Generator().manual_seed(seed))
        for name in names:
            acts = cache[name]
            values[name] = (acts.mean(0, keepdim=True).expand(n, *acts.shape[1:]) if ablation == "mean"
                            else acts[draw.to(acts.device)])
    # the reference is often the prompts themselves: then its pass gave the clean logits too
    same = ablation != "zero" and ref.key == tokenized.key
    clean = ref_logits if same else final_logits(model, tokenized)
    return Setup(model, tokenized, metric_name, metric_fn, ablation, reference_name, values, clean,
                 None if ablation == "zero" else seed)


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
        layer, head = parse_head(model, label)
        heads[:, layer, :, head] = position_mask(label)
    if circuit.mlps is None:
        return heads, None
    mlps = torch.zeros(n, model.cfg.n_layers, width, dtype=torch.bool)
    for layer in circuit.mlps:
        mlps[:, layer] = position_mask(f"MLP{layer}")
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
    device = next(model.parameters()).device
    n, n_layers = s.n_prompts, model.cfg.n_layers
    per_pass = max(1, tokens_per_pass // (n * s.width))
    answers = tok.answer_ids
    answers_only = getattr(s.metric_fn, "reads_answers_only", False)
    out = []
    for start in range(0, len(circuits), per_pass):
        chunk = circuits[start:start + per_pass]
        pairs = [masks(s, c) for c in chunk]
        heads = torch.cat([h for h, _ in pairs])  # (blocks·prompt) × layer × pos × head
        hooks = [(z_hook(l), _mix_hook(heads[:, l], s.values.get(z_hook(l)), len(chunk)))
                 for l in range(n_layers) if not heads[:, l].all()]
        if any(m is not None for _, m in pairs):
            mlps = torch.cat([m if m is not None else torch.ones(n, n_layers, s.width, dtype=torch.bool)
                              for _, m in pairs])
            hooks += [(mlp_hook(l), _mix_hook(mlps[:, l], s.values.get(mlp_hook(l)), len(chunk)))
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


def _prompts_metric(s: Setup) -> np.ndarray:
    """F(M) per prompt: the plain model."""
    answers = s.tokenized.answer_ids
    return s.metric_fn(s.clean_logits, answers, s.clean_logits).numpy()


def _checked(model, prompts, circuit, s: Setup) -> Circuit:
    circuit = as_circuit(circuit)
    if not circuit.components:
        raise ValueError("the circuit is empty: name at least one head, e.g. Circuit(['L9H6']); "
                         "F of the fully ablated model is reported as 'F(empty)' by faithfulness")
    circuit.check(model, s.width)
    for _, where in circuit.positions:  # resolve named positions now: a clear error before any pass
        for item in (where,) if isinstance(where, str) else where:
            if isinstance(item, str):
                s.positions_of(item)
    return circuit


@dataclass(frozen=True, eq=False, repr=False)
class Faithfulness(Result):
    """The metric with only the circuit left (everything else ablated) against the full model.

    ``model_metric`` F(M), ``circuit_metric`` F(C) and ``empty_metric`` F(∅) (everything
    ablated) per prompt. A faithful circuit has F(C)/F(M) near 1 and |F(M) − F(C)| small;
    ``normalised`` = (F(C) − F(∅)) / (F(M) − F(∅)) is how much of what the ablation removes
    the circuit gives back.
    """

    circuit: str
    components: tuple[str, ...]
    ablation: str
    reference: str
    metric: str
    prompts: tuple[str, ...]
    model_metric: np.ndarray
    circuit_metric: np.ndarray
    empty_metric: np.ndarray

    kind = "circuit_faithfulness"

    @property
    def title(self) -> str:
        return f"Faithfulness of {self.circuit} ({self.ablation} ablation, {self.metric})"

    @property
    def f_model(self) -> float:
        return float(self.model_metric.mean())

    @property
    def f_circuit(self) -> float:
        return float(self.circuit_metric.mean())

    @property
    def f_empty(self) -> float:
        return float(self.empty_metric.mean())

    @property
    def ratio(self) -> float:
        """F(C) / F(M)."""
        return self.f_circuit / self.f_model if self.f_model else float("nan")

    @property
    def gap(self) -> float:
        """|F(M) − F(C)|."""
        return abs(self.f_model - self.f_circuit)

    @property
    def normalised(self) -> float:
        gap = self.f_model - self.f_empty
        return (self.f_circuit - self.f_empty) / gap if gap else float("nan")

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame({"prompt": self.prompts, "F(M)": self.model_metric,
                             "F(C)": self.circuit_metric, "F(empty)": self.empty_metric})

    def summary(self) -> dict:
        return {"F(M)": self.f_model, "F(C)": self.f_circuit, "F(empty)": self.f_empty,
                "F(C)/F(M)": self.ratio, "|F(M)-F(C)|": self.gap, "normalised": self.normalised,
                "components": len(self.components)}

    def notes(self) -> list[str]:
        return [f"outside the circuit: {self.ablation} ablation"
                + ("" if self.ablation == "zero" else f" over {self.reference!r}")
                + "; heads by their hook_z output, MLPs by hook_mlp_out"]

    def figure(self) -> dict:
        return {"type": "bar", "x": ["F(M)", "F(C)", "F(empty)"], "y": [self.f_model, self.f_circuit, self.f_empty],
                "xlabel": "model", "ylabel": f"mean {self.metric}"}


def _faithfulness(s: Setup, prompts, circuit: Circuit, others=()) -> tuple["Faithfulness", np.ndarray]:
    """The circuit's faithfulness, and the metric of ``others`` circuits from the same passes."""
    empty = Circuit([], None if circuit.mlps is None else [])
    f_c, f_empty, *rest = evaluate(s, [circuit, empty, *others])
    return Faithfulness(model=s.tokenized.model_name, prompt_set=prompts.name, circuit=circuit.label(),
                        components=circuit.components, ablation=s.ablation, reference=s.reference_name,
                        metric=s.metric_name, prompts=prompts.prompts, model_metric=_prompts_metric(s),
                        circuit_metric=f_c, empty_metric=f_empty), np.array(rest)


@probe
def faithfulness(model, prompts, circuit, reference=None, ablation: str = "mean", metric="logit_diff",
                 seed: int = 0) -> Faithfulness:
    """F(C) with everything outside ``circuit`` ablated, against F(M) (the plain model).
    ``circuit``: a `Circuit` or a list of heads. ``reference``: the prompt set mean and
    resample ablation read (same token width as ``prompts``; default ``prompts`` itself;
    for IOI the paper's ABC set, ``ioi_abc_prompts(n)``)."""
    circuit = as_circuit(circuit)
    s = setup(model, prompts, reference, ablation, metric, seed, "faithfulness", circuit.mlps is not None)
    return _faithfulness(s, prompts, _checked(model, prompts, circuit, s))[0]


@dataclass(frozen=True, eq=False, repr=False)
class RandomCircuitTest(Result):
    """The circuit against ``N`` random circuits of the same size (circuitry's test).

    Score: closeness to the model, −|F(M) − F(circuit)|. ``quantile``: the share of random
    circuits the candidate beats (strictly closer); ``p_value`` = (1 + #random at least as
    close) / (1 + N), the chance that a random circuit does as well. It is never below
    1/(1 + N): p < 0.05 needs N ≥ 20, and `beats_random` refuses an N too small to tell.
    """

    circuit: str
    f_model: float
    f_candidate: float
    random_circuits: tuple[str, ...]
    random_metric: np.ndarray  # mean metric per random circuit
    seed: int

    kind = "random_circuit_test"

    @property
    def title(self) -> str:
        return f"{self.circuit} against {len(self.random_circuits)} random circuits of its size"

    @property
    def random_gaps(self) -> np.ndarray:
        return np.abs(self.f_model - self.random_metric)

    @property
    def candidate_gap(self) -> float:
        return abs(self.f_model - self.f_candidate)

    @property
    def quantile(self) -> float:
        return float((self.random_gaps > self.candidate_gap).mean())

    @property
    def p_value(self) -> float:
        return float((1 + (self.random_gaps <= self.candidate_gap).sum()) / (1 + len(self.random_gaps)))

    @property
    def smallest_p_value(self) -> float:
        """1/(1 + N): the p-value when the candidate beats every random circuit."""
        return 1 / (1 + len(self.random_gaps))

    def beats_random(self, fraction: float = 0.95) -> bool:
        """True when the candidate is closer to the model than ``fraction`` of random circuits.
        A ValueError when N is too small for that to mean anything: the smallest p-value,
        1/(1 + N), must be below 1 − ``fraction`` (for 0.95, p < 0.05: N ≥ 20)."""
        if not 0 < fraction < 1:
            raise ValueError(f"beats_random(fraction={fraction!r}): give a share of random circuits "
                             "between 0 and 1, e.g. 0.95")
        needed, n = random_needed(fraction), len(self.random_gaps)
        if n < needed:
            raise ValueError(f"beats_random({fraction}) on n={n} random circuits: the p-value can be no smaller "
                             f"than 1/(1+n) = {self.smallest_p_value:.3g}, not below {1 - fraction:.3g}; run "
                             f"random_circuit_test with n >= {needed} (n >= {P_BELOW_005} for p < 0.05)")
        return self.quantile >= fraction

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame({"circuit": self.random_circuits, "F": self.random_metric,
                             "|F(M)-F|": self.random_gaps}).sort_values("|F(M)-F|").reset_index(drop=True)

    def summary(self) -> dict:
        return {"F(M)": self.f_model, "F(C)": self.f_candidate, "|F(M)-F(C)|": self.candidate_gap,
                "median random |F(M)-F|": float(np.median(self.random_gaps)), "quantile": self.quantile,
                "p_value": self.p_value, "n_random": len(self.random_gaps)}

    def notes(self) -> list[str]:
        return [f"random circuits: same number of heads (and MLPs), uniform without replacement, seed {self.seed}"]

    def figure(self) -> dict:
        gaps = np.sort(self.random_gaps)
        return {"type": "line", "x": list(range(1, len(gaps) + 1)), "xlabel": "random circuit (sorted)",
                "ylabel": "|F(M) − F|", "series": {"random circuits": gaps.tolist(),
                                                  "candidate": [self.candidate_gap] * len(gaps)}}


@probe
def random_circuit_test(model, prompts, circuit, n: int = 100, seed: int = 0, reference=None,
                        ablation: str = "mean", metric="logit_diff") -> RandomCircuitTest:
    """Faithfulness of ``circuit`` against ``n`` seeded random circuits of the same size, all
    evaluated in batched passes; ``.p_value``, ``.quantile``, ``.beats_random(0.95)``. The
    p-value is at least 1/(1 + n): p < 0.05 needs n ≥ 20 (100 is usual)."""
    n = check_count("n", n, 1, f"compare against random circuits: 100 is usual, and p < 0.05 needs n >= {P_BELOW_005}")
    circuit = as_circuit(circuit)
    s = setup(model, prompts, reference, ablation, metric, seed, "random_circuit_test", circuit.mlps is not None)
    circuit = _checked(model, prompts, circuit, s)
    generator = np.random.default_rng(seed)
    randoms = [circuit.random_like(model, generator) for _ in range(n)]
    candidate, values = _faithfulness(s, prompts, circuit, randoms)  # all in the same batched passes
    return RandomCircuitTest(model=candidate.model, prompt_set=prompts.name, circuit=circuit.label(),
                             f_model=candidate.f_model, f_candidate=candidate.f_circuit,
                             random_circuits=tuple(r.label() for r in randoms),
                             random_metric=values.mean(axis=1), seed=seed, parts=(candidate,))


def _random_subsets(components, n: int, generator, exclude=()) -> list[tuple[str, ...]]:
    pool = [c for c in components if c not in exclude]
    subsets = []
    for _ in range(n):
        pick = generator.random(len(pool)) < 0.5
        subsets.append(tuple(c for c, p in zip(pool, pick) if p))
    return subsets


@dataclass(frozen=True, eq=False, repr=False)
class Completeness(Result):
    """|F(C \\ K) − F(M \\ K)| for each K tried: the empty set, random subsets of C, and the
    greedy search's Ks (each step adds the component that widens the gap most). A complete
    circuit keeps the gap small for every K; ``worst`` is the K with the largest gap found."""

    circuit: str
    ks: tuple[tuple[str, ...], ...]
    sources: tuple[str, ...]
    f_circuit: np.ndarray  # mean F(C \ K) per K
    f_model: np.ndarray  # mean F(M \ K) per K

    kind = "circuit_completeness"

    @property
    def title(self) -> str:
        return f"Completeness of {self.circuit}: |F(C \\ K) − F(M \\ K)|"

    @property
    def gaps(self) -> np.ndarray:
        return np.abs(self.f_circuit - self.f_model)

    @property
    def worst(self) -> tuple[tuple[str, ...], float]:
        i = int(np.argmax(self.gaps))
        return self.ks[i], float(self.gaps[i])

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame({"K": ["{" + ", ".join(k) + "}" for k in self.ks], "size": [len(k) for k in self.ks],
                             "source": self.sources, "F(C\\K)": self.f_circuit, "F(M\\K)": self.f_model,
                             "gap": self.gaps})

    def summary(self) -> dict:
        k, gap = self.worst
        return {"worst K": "{" + ", ".join(k) + "}", "worst gap": gap, "gap at K=empty": float(self.gaps[0]),
                "Ks tried": len(self.ks)}

    def figure(self) -> dict:
        return {"type": "bar", "x": list(self.df["K"]), "y": self.gaps.tolist(), "xlabel": "K",
                "ylabel": "|F(C\\K) − F(M\\K)|"}


@probe
def completeness(model, prompts, circuit, reference=None, ablation: str = "mean", metric="logit_diff",
                 n_random: int = 10, greedy_steps: int | None = None, seed: int = 0) -> Completeness:
    """|F(C \\ K) − F(M \\ K)| for K = ∅, ``n_random`` random subsets of C (each component in
    with probability ½, seeded) and a greedy search for the worst K (``greedy_steps`` additions,
    default up to half the circuit), as in the IOI paper. M \\ K is the model with K ablated."""
    n_random = check_count("n_random", n_random, 0, "the number of random subsets K to try (10 is the default)")
    if greedy_steps is not None:
        greedy_steps = check_count("greedy_steps", greedy_steps, 0,
                                   "the greedy search's additions (0: no search; None: half the circuit)")
    circuit = as_circuit(circuit)
    s = setup(model, prompts, reference, ablation, metric, seed, "completeness", circuit.mlps is not None)
    circuit = _checked(model, prompts, circuit, s)
    full = Circuit.full(model, circuit.mlps is not None)
    generator = np.random.default_rng(seed)
    ks = list(dict.fromkeys([()] + _random_subsets(circuit.components, n_random, generator)))
    sources = ["empty"] + ["random"] * (len(ks) - 1)
    values = evaluate(s, [c for k in ks for c in (circuit.without(k), full.without(k))]).mean(axis=1)
    f_c, f_m = list(values[0::2]), list(values[1::2])
    k: tuple = ()
    steps = greedy_steps if greedy_steps is not None else max(1, len(circuit) // 2)
    for _ in range(min(steps, len(circuit))):
        options = [c for c in circuit.components if c not in k]
        trial = evaluate(s, [x for v in options for x in (circuit.without(k + (v,)), full.without(k + (v,)))])
        trial = trial.mean(axis=1)
        best = int(np.argmax(np.abs(trial[0::2] - trial[1::2])))
        k = k + (options[best],)
        ks.append(k)
        sources.append("greedy")
        f_c.append(trial[2 * best])
        f_m.append(trial[2 * best + 1])
    return Completeness(model=s.tokenized.model_name, prompt_set=prompts.name, circuit=circuit.label(),
                        ks=tuple(ks), sources=tuple(sources), f_circuit=np.array(f_c), f_model=np.array(f_m))


@dataclass(frozen=True, eq=False, repr=False)
class Minimality(Result):
    """For each component v, the largest change |F(C \\ K) − F(C \\ (K ∪ {v}))| over the Ks
    tried (∅ and random subsets of C without v). A component whose largest change is small
    is not needed: the circuit does as well without it."""

    circuit: str
    f_circuit: float
    components: tuple[str, ...]
    change: np.ndarray  # largest |F(C \ K) − F(C \ (K ∪ {v}))| per component
    best_k: tuple[tuple[str, ...], ...]
    with_v: np.ndarray  # F(C \ K) at the best K
    without_v: np.ndarray  # F(C \ (K ∪ {v})) at the best K

    kind = "circuit_minimality"

    @property
    def title(self) -> str:
        return f"Minimality of {self.circuit}: what removing each component changes"

    @property
    def relative(self) -> np.ndarray:
        """The change as a fraction of |F(C)|."""
        return self.change / abs(self.f_circuit) if self.f_circuit else np.full_like(self.change, np.nan)

    def needed(self, threshold: float) -> list[str]:
        """Components whose removal changes F by more than ``threshold`` for some K."""
        return [c for c, x in zip(self.components, self.change) if x > threshold]

    def not_needed(self, threshold: float) -> list[str]:
        return [c for c, x in zip(self.components, self.change) if x <= threshold]

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame({"component": self.components, "change": self.change, "relative": self.relative,
                             "K": ["{" + ", ".join(k) + "}" for k in self.best_k],
                             "F(C\\K)": self.with_v, "F(C\\(K+v))": self.without_v})

    def summary(self) -> dict:
        i = int(np.argmin(self.change))
        return {"F(C)": self.f_circuit, "least needed": self.components[i], "its change": float(self.change[i]),
                "largest change": float(self.change.max())}

    def figure(self) -> dict:
        return {"type": "bar", "x": list(self.components), "y": self.change.tolist(), "xlabel": "component",
                "ylabel": "max |F(C\\K) − F(C\\(K∪{v}))|"}


@probe
def minimality(model, prompts, circuit, reference=None, ablation: str = "mean", metric="logit_diff",
               n_random: int = 5, seed: int = 0) -> Minimality:
    """For each component v of ``circuit``: the largest |F(C \\ K) − F(C \\ (K ∪ {v}))| over
    K = ∅ and ``n_random`` random subsets of C \\ {v} (seeded), all in batched passes."""
    n_random = check_count("n_random", n_random, 0, "the number of random subsets K to try (5 is the default)")
    circuit = as_circuit(circuit)
    s = setup(model, prompts, reference, ablation, metric, seed, "minimality", circuit.mlps is not None)
    circuit = _checked(model, prompts, circuit, s)
    generator = np.random.default_rng(seed)
    plan = {v: [()] + _random_subsets(circuit.components, n_random, generator, exclude=(v,))
            for v in circuit.components}
    wanted = list(dict.fromkeys(k2 for v, ks in plan.items() for k in ks for k2 in (k, k + (v,))))
    index = {k: i for i, k in enumerate(wanted)}
    values = evaluate(s, [circuit.without(k) for k in wanted]).mean(axis=1)
    change, best_k, with_v, without_v = [], [], [], []
    for v, ks in plan.items():
        diffs = [abs(values[index[k]] - values[index[k + (v,)]]) for k in ks]
        i = int(np.argmax(diffs))
        change.append(diffs[i])
        best_k.append(ks[i])
        with_v.append(values[index[ks[i]]])
        without_v.append(values[index[ks[i] + (v,)]])
    return Minimality(model=s.tokenized.model_name, prompt_set=prompts.name, circuit=circuit.label(),
                      f_circuit=float(values[index[()]]), components=circuit.components,
                      change=np.array(change), best_k=tuple(best_k), with_v=np.array(with_v),
                      without_v=np.array(without_v))


@dataclass(frozen=True, eq=False, repr=False)
class Compensation(Result):
    """Backup heads: every head's direct effect on the metric (direct logit attribution,
    `head_attribution`) in the plain model and with the ``ablated`` heads ablated.

    ``before`` and ``after``: layer × head (means over prompts). A head whose direct effect
    rises when another is ablated compensates for it, as the IOI paper's backup name movers
    do for the name movers: ``.top_risers(k)``, ``.change_of("L10H2")``.
    """

    ablated: tuple[str, ...]
    ablation: str
    before: np.ndarray
    after: np.ndarray

    kind = "compensation"

    @property
    def title(self) -> str:
        return f"Compensation: direct effects with {', '.join(self.ablated)} {self.ablation}-ablated"

    @property
    def change(self) -> np.ndarray:
        return self.after - self.before

    def change_of(self, head: str) -> float:
        layer, index = _order(head)
        return float(self.change[layer, index])

    @property
    def df(self) -> pd.DataFrame:
        n_layers, n_heads = self.before.shape
        return pd.DataFrame({"head": [head_label(l, h) for l in range(n_layers) for h in range(n_heads)],
                             "before": self.before.flatten(), "after": self.after.flatten(),
                             "change": self.change.flatten(),
                             "ablated": [head_label(l, h) in self.ablated for l in range(n_layers)
                                         for h in range(n_heads)]})

    def top_risers(self, k: int = 5) -> pd.DataFrame:
        """The k heads (not ablated) whose direct effect rises most."""
        k = check_count("k", k, 0, "the number of heads to list, e.g. top_risers(5)")
        return self.df[~self.df["ablated"]].nlargest(k, "change").reset_index(drop=True)

    def summary(self) -> dict:
        top = self.top_risers(1).iloc[0]
        return {"top riser": top["head"], "its change": float(top["change"]),
                "sum of direct effects before": float(self.before.sum()),
                "after": float(self.after.sum())}

    def figure(self) -> dict:
        n_layers, n_heads = self.before.shape
        return {"type": "heatmap", "z": self.change.tolist(), "x": [f"H{h}" for h in range(n_heads)],
                "y": [f"L{l}" for l in range(n_layers)], "xlabel": "head", "ylabel": "layer", "diverging": True,
                "title": "change in direct effect (after − before)"}


@probe
def compensation(model, prompts, ablated, ablation: str = "mean", reference=None, seed: int = 0) -> Compensation:
    """Per-head direct effects with the ``ablated`` heads ablated (every position; ``mean`` over
    ``reference``, ``resample`` or ``zero``) against the plain model's."""
    from .attribution import head_attribution, head_results, project
    from .linearise import scale_hooks
    from .observe import Observation

    ablated = [ablated] if isinstance(ablated, str) else list(ablated)
    if not ablated:
        raise ValueError("ablated=[] names no head; give the heads to knock out, e.g. ['L9H6']")
    heads = sorted({parse_head(model, h) for h in ablated})
    s = setup(model, prompts, reference, ablation, "logit_diff", seed, "compensation")
    before = head_attribution(model, prompts)
    device = next(model.parameters()).device
    tok = s.tokenized
    finals = tok.final_positions  # indexed on each activation's own device (`at_positions`)
    final = {}

    def ablate_and_keep(name, layer):
        def hook(z, hook):
            for l, h in heads:
                if l == layer:
                    z[:, :, h] = 0 if ablation == "zero" else s.values[name][:, :, h].to(z.dtype)
            final[name] = at_positions(z, finals).float().cpu()
            return z
        return hook

    def keep(name):
        def hook(a, hook):
            final[name] = at_positions(a, finals).float().cpu()
            return a
        return hook

    hooks = [(z_hook(l), ablate_and_keep(z_hook(l), l)) for l in range(model.cfg.n_layers)]
    hooks += [(name, keep(name)) for name in scale_hooks(model)]  # final and post-norm scales
    with torch.inference_mode():
        logits = at_positions(model.run_with_hooks(tok.tokens.to(device), fwd_hooks=hooks), finals).float().cpu()
    observation = Observation(tok, final, {}, logits)
    stack = head_results(model, observation)
    after = project(model, stack.flatten(0, 1), observation).reshape(*stack.shape[:2], -1).mean(-1)
    return Compensation(model=tok.model_name, prompt_set=prompts.name, ablated=tuple(head_label(*h) for h in heads),
                        ablation=ablation, before=before.per_head, after=after, parts=(before,))
