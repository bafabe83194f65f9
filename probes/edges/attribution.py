"""Edge attribution patching: a score for every edge from a few forward and backward passes.

Corrupting one edge ``U → V`` of the clean run (V reads U's corrupted output) changes V's input
by ``out_U(corrupted) − out_U(clean)`` and nothing upstream of V. To first order the metric
drops by that change's opposite dotted with the gradient of the metric with respect to V's
input, taken on the clean run (EAP: Syed, Rager & Conmy 2023; hannamw/EAP-IG's
``method="EAP"``, MIB's EAP baseline):

    score(U → V) = (out_U(clean) − out_U(corrupted)) · ∂metric/∂input_V,

summed over positions and averaged over prompts: one forward pass per run and one backward
pass score every edge at once (each receiving end's gradient is read at its own input, the
bridge's per-head q/k/v forks: `probes.edges.runs`). ``method="eap-corrupted"`` takes the
gradient on the corrupted run instead: the first-order change of patching the edge clean into
the corrupted run (`edge_patch_scores`). Where the metric saturates, the gradient at one
point says little; EAP-IG (Hanna et al. 2024, hannamw/EAP-IG's "EAP-IG-inputs") averages the
gradient over ``ig_steps`` runs whose input embeddings (the stream entering layer 0) are
``corrupted + (k / ig_steps) · (clean − corrupted)``, k = 0 … ig_steps − 1 (so one step is
``"eap-corrupted"``), the same sender differences times that mean gradient.

``ablation="mean"`` (or ``"resample"``, ``"zero"``): the differences are against each
sender's replacement (`probes.edges.setup`), and ``"eap-corrupted"`` and EAP-IG take the
gradient on the run of the replacement's input embedding (the reference's mean embedding,
position by position), which plays the corrupted run's part. A score is in the metric's
units: the estimated change of the mean metric; `edge_patch_scores` gives the exact change for
the edges that matter.

Grouped-query attention: an edge into a shared key/value head's ``.k``/``.v`` end is scored
with the gradient at the shared input, the sum over the query heads sharing it of what each
sends back; ``EdgeScores.kv_copies`` keeps each query head's part (`probes.edges.gradients`),
the score EAP-IG gives that query head's own k or v end on MIB's ungrouped graph (`to_mib`
writes them).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..circuits.spec import FoundWith
from ..evidence import probe
from ..forward import input_device
from ..input_errors import check_count
from ..results import Result
from ..sites import edge_parts, is_kv_label
from .figure import edge_graph_figure
from .graph import EdgeCircuit, edge_label, is_query_heads_kv, kv_end, parse_edge
from .gradients import gradients
from .runs import end_groups, split_inputs
from .setup import EDGE_ABLATIONS, edge_setup  # noqa: F401 - the ablations it takes (docs)

METHODS = ("eap", "eap-corrupted", "eap-ig")
SHOWN_EDGES = 40  # the figure shows the senders and ends of the top edges
EVIDENCE_ROWS = 200  # the report's table: the top edges


@dataclass(frozen=True, eq=False, repr=False)
class EdgeScores(Result):
    """A score per edge (``labels``, ``scores``: the change of the mean metric), estimated
    (``method`` ``"eap"``, ``"eap-corrupted"``, ``"eap-ig"``) or exact (``"exact"``:
    `edge_patch_scores`). ``f_clean``, ``f_target``: the mean metric of the clean run and of the
    run it replaces (corrupted), so ``normalised = scores / (f_clean − f_target)``.

    ``kv_copies``: under grouped-query attention (``kv_group`` > 1), for the gradient methods,
    each key/value edge's score split by the query heads sharing the key/value head (one row
    per edge into a ``.k``/``.v`` end, in ``labels`` order: `kv_positions`; column j: query
    head ``kv · kv_group + j``): the edge's score through that query head's use of the shared
    key or value alone, what EAP-IG scores on MIB's graph, where every query head has its own k
    and v ends. The row sums to ``scores`` at that edge (up to float32 rounding). `from_mib`
    keeps a file's copies here. None where there is no such split: exact patching (patching the
    shared input patches it for every query head at once), one query head per key/value head,
    an attention that does not expand keys and values with transformers' ``repeat_kv``
    (`probes.edges.gradients.expanded_kv`)."""

    method: str
    ablation: str
    reference: str
    metric: str
    labels: tuple[str, ...]
    scores: np.ndarray
    f_clean: float
    f_target: float
    ig_steps: int = 1
    n_edges: int = 0  # edges in the model's graph
    kv_group: int = 0  # query heads per key/value head on the model (0: not known)
    kv_copies: np.ndarray | None = None  # kv edges × kv_group: each query head's part (see the class)

    kind = "edge_scores"
    extremes_column = "score"
    ranked_by = "|score|"  # ranking(): edges by |score|, largest first (a NaN score is refused)

    @property
    def title(self) -> str:
        what = {"eap": "EAP", "eap-corrupted": "EAP on the corrupted run", "eap-ig": f"EAP-IG ({self.ig_steps} steps)",
                "exact": "exact edge patching"}
        return f"Edge scores by {what.get(self.method, self.method)} ({self.ablation}, {self.metric})"

    @property
    def kv_positions(self) -> np.ndarray:
        """The positions in ``labels`` of the edges into a shared key or value end (``…KV0.k``,
        ``…KV0.v``): the rows of ``kv_copies``."""
        return np.array([i for i, label in enumerate(self.labels) if is_kv_label(label)], dtype=int)

    @property
    def normalised(self) -> np.ndarray:
        gap = self.f_clean - self.f_target
        return self.scores / gap if gap else np.full(self.scores.shape, np.nan)

    def order(self) -> np.ndarray:
        """Edge positions by |score|, largest first (NaN last)."""
        return np.argsort(-np.nan_to_num(np.abs(self.scores), nan=-1.0), kind="stable")

    def top(self, k: int = 10) -> pd.DataFrame:
        """The ``k`` edges of largest |score|, one row each (``edge``, ``sender``, ``receiver``,
        ``score``, ``normalised``): ``list(scores.top(10)["edge"])``."""
        k = check_count("k", k, 1, "how many edges, e.g. 10")
        return self.df.iloc[self.ranked()[:k]].reset_index(drop=True)

    def ranking(self) -> list[str]:
        """Every scored edge, by |score|."""
        return [self.labels[i] for i in self.ranked()]

    def component_scores(self) -> pd.Series:
        """Each edge's score, in the table's order (index: its label; NaN kept)."""
        return pd.Series(np.asarray(self.scores, float), index=list(self.labels), name=f"EdgeScores ({self.method})")

    def ranked(self) -> np.ndarray:
        """`order`, refusing NaN scores: an undefined score has no rank, and wherever it was put
        the top k would be arbitrary edges (`top`, `ranking` and `circuit` go through this)."""
        undefined = np.flatnonzero(np.isnan(self.scores))
        if len(undefined):
            raise ValueError(f"{len(undefined)} of {len(self.labels)} edge scores are NaN (e.g. "
                             f"{self.labels[undefined[0]]!r}), and an undefined score has no rank: find where they "
                             "come from (a NaN metric or model output) and score again; .df shows every score")
        return self.order()

    @property
    def found_with(self) -> FoundWith | None:
        """How these scores were found: their ablation (and a reference set other than the scored
        prompts, by name), what the curve over them is judged with unless given ``ablation=``."""
        return FoundWith.of_ranking(self.ablation, self.reference, self.prompt_set,
                                    f"{self.method} edge scores on {self.prompt_set!r}")

    def circuit(self, k: int) -> EdgeCircuit:
        """The `EdgeCircuit` of the top ``k`` edges by |score|. It carries ``found_with``: these
        scores' ablation (and a reference set other than the scored prompts, by name), which
        the circuit criteria judge it with unless given ``ablation=``: the top edges of
        ``edge_attribution(model, prompts)`` are judged with counterfactual ablation, as found."""
        found = FoundWith.of_ranking(self.ablation, self.reference, self.prompt_set,
                                     f"the top {k} of {self.method} edge scores on {self.prompt_set!r}")
        return EdgeCircuit(list(self.top(k)["edge"]), found_with=found)

    def score_of(self, edge) -> float:
        """One edge's score (a label, ``->`` also read; a query head's ``L1H3.k`` is its key/value
        head's ``L1KV3.k`` where each query head has its own, as in the model's `EdgeGraph`)."""
        sender, end = parse_edge(edge)
        if is_query_heads_kv(end) and self.kv_group:
            end = kv_end(end, self.kv_group, self.model, repr(edge))
        label = edge_label(sender, end)
        if label not in self.labels:
            raise ValueError(f"edge {edge!r} was not scored here; scored edges are e.g. {self.labels[:3]}")
        return float(self.scores[self.labels.index(label)])

    @property
    def df(self) -> pd.DataFrame:
        senders, ends = zip(*(edge_parts(label) for label in self.labels)) if self.labels else ((), ())
        return pd.DataFrame({"edge": self.labels, "sender": senders, "receiver": ends, "score": self.scores,
                             "normalised": self.normalised})

    def summary(self) -> dict:
        first = self.order()[0] if len(self.labels) else None
        return {"edges scored": len(self.labels), "top edge": "" if first is None else self.labels[first],
                "top score": np.nan if first is None else float(self.scores[first]),
                "sum of scores": float(np.nansum(self.scores)), "F(clean)": self.f_clean, "F(target)": self.f_target}

    def notes(self) -> list[str]:
        notes = {"eap": "EAP: (clean − replaced sender output) · ∂metric/∂receiver input on the clean run, "
                        "summed over positions, mean over prompts (first order)",
                 "eap-corrupted": "EAP on the corrupted run: (clean − replaced sender output) · "
                                  "∂metric/∂receiver input on the replaced run (first order of patching the edge "
                                  "clean into it)",
                 "eap-ig": f"EAP-IG: the gradient averaged over {self.ig_steps} input embeddings from the replaced "
                           "run's toward the clean run's",
                 "exact": "exact: each edge patched clean into the corrupted run alone, everything downstream "
                          "recomputed; score = mean patched − mean corrupted metric"}
        shown = ([f"table: the {EVIDENCE_ROWS} edges of largest |score| of {len(self.labels)}"]
                 if len(self.labels) > EVIDENCE_ROWS else [])
        return [notes.get(self.method, self.method), f"ablation {self.ablation} ({self.reference})", *shown,
                *self.notes_text]

    def evidence_table(self) -> pd.DataFrame:
        """The `EVIDENCE_ROWS` edges of largest |score| (a model has tens of thousands; ``.df``
        has them all)."""
        return self.df.iloc[self.order()[:EVIDENCE_ROWS]]

    def figure(self) -> list[dict]:
        """The top edges as a layer-ordered graph, and as a senders × receiving ends heatmap."""
        picks = self.order()[:SHOWN_EDGES]
        graph = edge_graph_figure([self.labels[i] for i in picks], self.scores[picks],
                                  f"top {len(picks)} edges by |score|: green helps the metric, red hurts it")
        pairs = [edge_parts(self.labels[i]) for i in picks]
        senders = list(dict.fromkeys(s for s, _ in pairs))
        ends = list(dict.fromkeys(e for _, e in pairs))
        z = [[None] * len(ends) for _ in senders]
        for (s, e), i in zip(pairs, picks):
            z[senders.index(s)][ends.index(e)] = float(self.scores[i])
        return [graph, {"type": "heatmap", "z": z, "x": ends, "y": senders, "diverging": True,
                        "xlabel": "receiving end", "ylabel": "sender", "title": f"top {len(picks)} edges by |score|"}]


@probe
def edge_attribution(model, prompts, *, method: str = "eap", ig_steps: int = 5, ablation: str = "patching",
                     reference=None, metric="logit_diff", seed: int = 0, prepend_bos: bool | None = None) -> EdgeScores:
    """A score for every edge of the model's `EdgeGraph`: EAP (``method="eap"``, the gradient on
    the clean run), ``"eap-corrupted"`` (on the corrupted run) or EAP-IG (``"eap-ig"``,
    ``ig_steps`` gradients along the input embeddings); see the module. ``.top(k)``,
    ``.circuit(k)``; ``ablation``: ``"patching"`` (the corrupted prompts) or ``"mean"`` over
    ``reference`` (``"resample"``, ``"zero"`` as in `faithfulness`)."""
    if method not in METHODS:
        raise ValueError(f"method {method!r}: choose one of {', '.join(METHODS)} (eap: the gradient on the clean "
                         "run; eap-corrupted: on the corrupted run; eap-ig: integrated gradients)")
    steps = check_count("ig_steps", ig_steps, 1, "interpolation steps, e.g. 5") if method == "eap-ig" else 1
    s = edge_setup(model, prompts, ablation, reference, metric, seed, prepend_bos, "edge_attribution")
    graph, n = s.graph, s.n_prompts
    run = s.corrupted if s.corrupted is not None else s.tokenized
    device = input_device(model)
    clean_start = s.clean_outs[:, :, 0]
    grads, copies = {}, {}
    for k in range(steps):
        if method == "eap":  # the gradient on the clean run
            on, start = s.tokenized, clean_start
        else:  # k / steps of the way from the replaced run's input embedding to the clean run's
            on, start = run, s.target_start + (k / steps) * (clean_start - s.target_start)
        with split_inputs(model):
            found, parts, _ = gradients(model, graph, on.tokens.to(device), on.final_positions, s.metric_of, start,
                                        kv_copies=True)
        for key, grad in found.items():
            grads[key] = grad if key not in grads else grads[key] + grad
        if parts is None or copies is None:  # no per-query-head split on this model (or group 1)
            copies = None
            continue
        for key, part in parts.items():
            copies[key] = part if key not in copies else copies[key] + part
    deltas = s.clean_outs - s.target_outs  # prompt × pos × sender × d_model
    scores = np.empty(graph.n_edges)
    kv_copies = []
    with torch.no_grad():
        for layer, kind, first_end, count in end_groups(graph):
            available = int(graph.available[first_end])
            mean_grad = grads[(layer, kind)] / steps
            values = torch.einsum("nsud,nsed->eu", deltas[:, :, :available], mean_grad) / n
            start = int(graph.offsets[first_end])
            scores[start:start + count * available] = values.reshape(-1).double().numpy()
            if copies and kind in ("k", "v"):  # end × sender × query head of the group, in graph order
                parts = torch.einsum("nsud,nsegd->eug", deltas[:, :, :available], copies[(layer, kind)] / steps) / n
                kv_copies.append(parts.reshape(count * available, -1).double().numpy())
    target = s.target_metric if s.target_metric is not None else s.metric_with(np.zeros((1, graph.n_edges), bool))
    return EdgeScores(model=s.tokenized.model_name, prompt_set=prompts.name, method=method, ablation=s.ablation,
                      reference=s.reference, metric=s.metric_name, labels=graph.labels, scores=scores,
                      f_clean=float(s.clean_metric.mean()), f_target=float(np.mean(target)),
                      ig_steps=steps, n_edges=graph.n_edges, kv_group=graph.n_heads // graph.n_kv,
                      kv_copies=np.concatenate(kv_copies) if kv_copies else None)


__all__ = ["EdgeScores", "edge_attribution"]
