"""Recovery: how well a probe's ranking finds a circuit known by construction.

A *known-circuit model* (a Tracr-compiled program, a hand-planted circuit) carries its true
circuit, written into the weights: `ground_truth` reads it (nodes: heads ``L0H0`` and MLPs
``MLP1``; edges in the edge graph's labels, ``L0H0 → L1H0.k``). `recovery` scores any ranking
a probe returns against it:

* **AUROC** (MIB's InterpBench metric): the chance that a true component is ranked above a
  component outside the truth, ties counting one half: the Mann–Whitney U of the true
  components' ranks over (true × other), ranks averaged over ties (the midrank, as
  ``scipy.stats.rankdata`` and scikit-learn's ``roc_auc_score`` give);
* **precision and recall at k = |truth|**: the share of the top k that is true, and of the
  truth that is in the top k (k is the truth's size, so the two are equal: MIB's and
  InterpBench's "R-precision"); a tie across the k-th place counts its expected share, as a
  random order of the tied would give;
* **the rank of the last true component**: how many components one must take, best first
  (a tie taken whole), to have every true one.

What orders the ranking: a ranking with scores (a `Patching` of ``head_out`` or
``mlp_out_all_pos``, exact or attribution patching, a `HeadAttribution`, an `EdgeScores` of
EAP, EAP-IG or exact edge patching: any Result with ``component_scores()``, `probes.results`;
a ``{component: score}`` dict) is ranked by |score|, as
MIB does (a large effect of either sign marks a component that matters; ``by="score"`` ranks
by the signed score instead); a ranking without scores (a `FaithfulnessCurve`'s order, a list
best first) by its own order. Node rankings are compared with the truth's nodes, edge rankings
with its edges; a true component the ranking does not score (an MLP in a ranking of heads)
counts as ranked last, tied with anything else unscored.

``ground_truth(model)`` reads the registry of known-circuit models
(``circuitcheck.fixtures.groundtruth.truth_of``), looked up by name at call time, the one
place the core asks the fixtures for something: it imports nothing from them.
"""

import importlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .evidence import probe
from .results import Result
from .sites import Site, edge_label, head_label, mlp_label, parse_edge, parse_mlp, parse_site

REGISTRY = "circuitcheck.fixtures.groundtruth"  # known_models(), truth_of(name_or_model) -> dict
ORDERS = ("abs", "score")  # how a ranking with scores is ordered: by |score| (MIB) or the signed score


class NoGroundTruthError(LookupError):
    """`ground_truth` was given a model (or name) whose circuit is not known by construction."""


class RankingMismatchError(ValueError):
    """`recovery` was given a ranking over things the truth does not mention (neurons,
    positions, residual layers), or edges against a truth without edges (or nodes without nodes)."""


@dataclass(frozen=True)
class GroundTruth:
    """The true circuit of a known-circuit model: ``nodes`` (heads ``L0H0``, MLPs ``MLP1``),
    ``edges`` (the edge graph's labels, ``L0H0 → L1KV0.k``), ``distractors`` (components active
    but irrelevant to the output), the prompts it is true on. ``circuit`` and ``edge_circuit``
    give them as the `Circuit` and `EdgeCircuit` the criteria judge."""

    name: str
    nodes: tuple[str, ...]
    edges: tuple[str, ...]
    distractors: tuple[str, ...] = ()
    description: str = ""
    source: str = ""
    causal: bool = True
    prompts: dict | None = None  # {"clean": [...], "corrupted": [...], "answers": [[correct, incorrect], ...]}
    heads_per_kv: int = 1  # query heads per key/value head: "L1H0.k" is "L1KV0.k" when 1

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(n for n in self.nodes if not n.startswith("MLP"))

    @property
    def mlps(self) -> tuple[int, ...]:
        return tuple(parse_mlp(n) for n in self.nodes if n.startswith("MLP"))

    @property
    def circuit(self):
        """The true nodes as a `Circuit` that judges every MLP (those outside the truth ablated)."""
        from .circuits.spec import Circuit

        return Circuit(self.heads, list(self.mlps))

    @property
    def edge_circuit(self):
        from .edges.graph import EdgeCircuit

        return EdgeCircuit(self.edges)

    @property
    def prompt_set(self):
        """The truth's prompts as a `PromptSet` (clean, corrupted twins, answers)."""
        from .prompts import PromptSet

        if not self.prompts:
            raise ValueError(f"the ground truth of {self.name!r} names no prompts")
        return PromptSet(self.prompts["clean"], [tuple(a) for a in self.prompts["answers"]],
                         corrupted_prompts=self.prompts.get("corrupted"), name=f"{self.name} prompts")


def _node(item) -> str:
    """A head or MLP label in its canonical form; a RankingMismatchError for anything else."""
    if isinstance(item, tuple) and len(item) == 2 and all(isinstance(x, (int, np.integer)) for x in item):
        return head_label(int(item[0]), int(item[1]))
    text = str(item).strip()
    try:
        site = parse_site(text)
    except ValueError:
        site = None
    if site is not None and site.pos is None:
        if site.unit == "head" and not site.activation:
            return site.label
        if site.unit is None and site.activation == "mlp_out":
            return mlp_label(site.layer)
    raise RankingMismatchError(f"{item!r} is not a component the ground truth names: it names heads ('L0H0'), "
                               "MLPs ('MLP1') and edges ('L0H0 → L1H0.k'), not neurons, positions or "
                               "residual layers")


def _edge(item, heads_per_kv: int) -> str:
    """An edge label as the edge graph writes it: a head's own key/value end as its KV head's."""
    from .edges.graph import is_query_heads_kv

    sender, end = parse_edge(item)
    if is_query_heads_kv(end):  # the key/value head it reads through
        end = Site(end.layer, "kv", end.index // heads_per_kv, activation=end.activation)
    return edge_label(sender, end)


def _is_edge(item) -> bool:
    return isinstance(item, str) and ("→" in item or "->" in item)


def ground_truth(model_or_truth) -> GroundTruth:
    """The true circuit of a known-circuit model: ``model_or_truth`` is the model (or its name),
    which the registry of known-circuit models (``circuitcheck.fixtures.groundtruth``) knows,
    a truth dict as the models' ``truth.json`` holds it (``name``, ``nodes``, ``edges``,
    ``distractors``, ``prompts``, ...), the path of such a file (or of its folder), or a
    `GroundTruth`. A `NoGroundTruthError` for a model whose circuit is not known."""
    source = model_or_truth
    if isinstance(source, GroundTruth):
        return source
    if isinstance(source, dict):
        return _from_dict(source)
    if isinstance(source, Path) or (isinstance(source, str) and (source.endswith(".json")
                                                                 or (Path(source) / "truth.json").is_file())):
        path = Path(source)
        path = path / "truth.json" if path.is_dir() else path
        if not path.is_file():
            raise NoGroundTruthError(f"{str(source)!r}: no such truth file")
        return _from_dict(json.loads(path.read_text()))
    return _from_dict(_registry_truth(source), _heads_per_kv(source))


def _heads_per_kv(model) -> int:
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        return 1
    kv = getattr(cfg, "n_key_value_heads", None) or cfg.n_heads
    return max(1, cfg.n_heads // kv)


def _registry_truth(model) -> dict:
    name = model if isinstance(model, str) else getattr(getattr(model, "cfg", None), "model_name", repr(model))
    if importlib.util.find_spec(REGISTRY) is None:
        raise NoGroundTruthError(f"{name!r} has no ground truth: this circuitcheck has no known-circuit models "
                                 f"({REGISTRY} is missing); give ground_truth a truth dict or a truth.json path")
    registry = importlib.import_module(REGISTRY)
    try:
        truth = registry.truth_of(model)
    except (LookupError, ValueError) as error:
        known = ", ".join(registry.known_models())
        raise NoGroundTruthError(f"{name!r} has no ground truth: its circuit is not known by construction. "
                                 f"The known-circuit models are {known}; load one with load_model(name) "
                                 f"({error})") from None
    if truth is None:
        raise NoGroundTruthError(f"{name!r} has no ground truth; the known-circuit models are "
                                 f"{', '.join(registry.known_models())}")
    return truth


def _from_dict(truth: dict, heads_per_kv: int | None = None) -> GroundTruth:
    missing = [k for k in ("name", "nodes", "edges") if k not in truth]
    if missing:
        raise ValueError(f"a ground truth needs keys name, nodes and edges; this one lacks {', '.join(missing)}")
    group = heads_per_kv or int(truth.get("heads_per_kv", 1))
    nodes = tuple(dict.fromkeys(_node(n) for n in truth["nodes"]))
    edges = tuple(dict.fromkeys(_edge(e, group) for e in truth["edges"]))
    distractors = tuple(_edge(d, group) if _is_edge(d) else _node(d) for d in truth.get("distractors", ()))
    return GroundTruth(name=str(truth["name"]), nodes=nodes, edges=edges, distractors=distractors,
                       description=str(truth.get("description", "")), source=str(truth.get("source", "")),
                       causal=bool(truth.get("causal", True)), prompts=truth.get("prompts"), heads_per_kv=group)


def _scores(ranking, heads_per_kv: int) -> tuple[str, str, list[str], np.ndarray | None]:
    """(level "nodes" | "edges", what it is, its components, their scores or None for an order)."""
    if isinstance(ranking, Result):
        return _result_scores(ranking, heads_per_kv)
    if isinstance(ranking, str):
        raise ValueError(f"ranking={ranking!r} is one label; give a list best first, e.g. [{ranking!r}, ...]")
    if isinstance(ranking, (dict, pd.Series)):
        items = list(ranking.items())
        labels, values = [k for k, _ in items], np.array([float(v) for _, v in items])
        what = "scores given"
    else:
        labels, values, what = list(ranking), None, "order given"
    if not labels:
        raise ValueError("ranking is empty: give components best first, or a probe's ranking Result")
    level = "edges" if _is_edge(labels[0]) else "nodes"
    return level, what, [_edge(c, heads_per_kv) if level == "edges" else _node(c) for c in labels], values


def _result_scores(ranking: Result, heads_per_kv: int) -> tuple[str, str, list[str], np.ndarray | None]:
    """`_scores` of a Result: its ``component_scores()`` (the ranking protocol, `probes.results`),
    or, for a Result whose ``ranking`` is an order without scores (a `FaithfulnessCurve`'s), its
    first ``n_ranked`` components as given."""
    if callable(getattr(ranking, "component_scores", None)):
        try:
            scores = ranking.component_scores()
        except ValueError as error:  # it ranks no whole components (a patching sweep of positions)
            raise RankingMismatchError(str(error)) from None
        labels, method, values = list(scores.index), str(scores.name), scores.to_numpy(float)
    elif isinstance(getattr(ranking, "ranking", None), tuple) and hasattr(ranking, "n_ranked"):
        labels, method, values = list(ranking.ranking[:ranking.n_ranked]), "faithfulness curve's order", None
    else:
        raise RankingMismatchError(f"a {type(ranking).__name__} holds no ranking of components; give a Patching "
                                   "(head_out), a HeadAttribution, an EdgeScores, a FaithfulnessCurve, a "
                                   "{component: score} dict or a list best first")
    level = "edges" if labels and _is_edge(labels[0]) else "nodes"
    return level, method, [_edge(c, heads_per_kv) if level == "edges" else _node(c) for c in labels], values


@dataclass(frozen=True, eq=False, repr=False)
class Recovery(Result):
    """A ranking scored against a ground truth.

    ``components`` every component ranked (true ones the ranking does not score appended last),
    ``scores`` the ranking's own numbers (NaN where it has none), ``key`` what orders them (|score|,
    the score, or the order given: larger is better), ``ranks`` 1 = best with tied components
    sharing their midrank, ``is_true`` whether the truth names it. ``auroc``, ``precision``,
    ``recall`` (at k = the truth's size) and ``last_true_rank``: see the module.
    """

    truth: str
    level: str  # "nodes" or "edges"
    method: str
    order_by: str  # "|score|", "score" or "order given"
    components: tuple[str, ...]
    scores: np.ndarray
    key: np.ndarray
    ranks: np.ndarray
    is_true: np.ndarray
    unscored_truth: tuple[str, ...]
    auroc: float
    precision: float
    recall: float
    last_true_rank: int

    kind = "recovery"
    usual = "auroc"
    extremes_column = "rank"

    @property
    def title(self) -> str:
        return f"Recovery of {self.truth}'s true {self.level} by {self.method}"

    @property
    def k(self) -> int:
        """The truth's size: precision and recall are at this many components."""
        return int(self.is_true.sum())

    @property
    def df(self) -> pd.DataFrame:
        frame = pd.DataFrame({"component": self.components, "score": self.scores, "rank": self.ranks,
                              "is_true": self.is_true})
        return frame.sort_values("rank", kind="stable").reset_index(drop=True)

    def evidence_table(self) -> pd.DataFrame:
        """The top ranks down to the last true component (at least 2k rows), then the rest of the truth."""
        frame = self.df
        shown = frame.iloc[:max(2 * self.k, self.last_true_rank, 10)]
        return shown if len(shown) <= 200 else pd.concat([frame.iloc[:200], frame.iloc[200:][frame.iloc[200:].is_true]])

    def summary(self) -> dict:
        return {"AUROC": self.auroc, f"precision@{self.k}": self.precision, f"recall@{self.k}": self.recall,
                "last true rank": self.last_true_rank, "true": self.k, "ranked": len(self.components),
                "ordered by": self.order_by}

    def notes(self) -> list[str]:
        notes = [f"ranked by {self.order_by}; AUROC = Mann–Whitney U / (true × other), midranks for ties; "
                 f"precision and recall over the top {self.k} (the truth's size), a tie across the cut counted "
                 "by its expected share; last true rank: components taken best first, ties whole",
                 f"compared with the truth's {self.level} ({self.k}) of {self.truth}"]
        if self.unscored_truth:
            notes.append(f"not scored by the ranking, counted last: {', '.join(self.unscored_truth)}")
        return notes + list(self.notes_text)

    def figure(self) -> dict:
        frame = self.df
        return {"type": "bar", "x": list(frame["component"][:40]), "y": frame["score"][:40].tolist(),
                "xlabel": "component (best first; true ones in the table)", "ylabel": "score",
                "title": f"AUROC {self.auroc:.3g}, precision@{self.k} {self.precision:.3g}"}


def scores_of(key: np.ndarray, is_true: np.ndarray) -> dict:
    """AUROC, precision and recall at k = #true, the last true rank and the midranks (1 = best)
    for ``key`` (larger is better; NaN the worst, tied) and ``is_true``."""
    from scipy.stats import rankdata

    key = np.where(np.isnan(key), -np.inf, np.asarray(key, float))
    is_true = np.asarray(is_true, bool)
    n, k = len(key), int(is_true.sum())
    if k == 0:
        raise ValueError("the truth names none of the ranking's kind of component: nothing to recover")
    ascending = rankdata(key, method="average")  # 1 = the smallest key, ties share their midrank
    negatives = n - k
    auroc = float((ascending[is_true].sum() - k * (k + 1) / 2) / (k * negatives)) if negatives else float("nan")
    ranks = n + 1 - ascending  # 1 = the best
    at_least = np.array([(key >= v).sum() for v in key])  # the rank of each, its tie taken whole
    # the top k: everything strictly above the k-th key, and its expected share of the tie at the cut
    cut = np.sort(key)[::-1][k - 1]
    strictly = key > cut
    tied = key == cut
    expected_true = is_true[strictly].sum() + is_true[tied].sum() * (k - strictly.sum()) / tied.sum()
    last = int(at_least[is_true].max())
    return dict(auroc=auroc, precision=float(expected_true / k), recall=float(expected_true / k),
                last_true_rank=last, ranks=ranks)


@probe
def recovery(ranking, truth, *, by: str = "abs") -> Recovery:
    """Score ``ranking`` against ``truth`` (a `GroundTruth`, or anything `ground_truth` takes:
    the model, a truth dict, a truth.json path): AUROC, precision and recall at the truth's
    size, and the rank of the last true component. ``ranking``: a `Patching` of ``head_out``
    or ``mlp_out_all_pos`` (activation or attribution patching), a `HeadAttribution`, an
    `EdgeScores` (EAP, EAP-IG, exact edge patching), a `FaithfulnessCurve`, a ``{component:
    score}`` dict, or components best first. Scores rank by |score| (``by="score"``: signed,
    larger first); orders by their order. Node rankings meet the truth's nodes, edge rankings
    its edges; a ranking of anything else is a `RankingMismatchError`."""
    if by not in ORDERS:
        raise ValueError(f"by={by!r}: choose one of {', '.join(ORDERS)} (abs: |score|, as MIB; score: signed)")
    truth = ground_truth(truth)
    level, method, components, scores = _scores(ranking, truth.heads_per_kv)
    if len(set(components)) < len(components):
        twice = sorted({c for c in components if components.count(c) > 1})
        raise ValueError(f"ranking names {', '.join(twice[:5])} more than once; list each component once")
    true = truth.edges if level == "edges" else truth.nodes
    if not true:
        other = "nodes" if level == "edges" else "edges"
        raise RankingMismatchError(f"the ranking is over {level}, but the ground truth of {truth.name!r} names no "
                                   f"{level} (only {other}); rank {other}, or give a truth with {level}")
    unscored = tuple(t for t in true if t not in set(components))
    if scores is None:
        order_by, key = "order given", np.arange(len(components), 0, -1, dtype=float)
        scores = np.full(len(components), np.nan)
    else:
        order_by, key = ("|score|", np.abs(scores)) if by == "abs" else ("score", scores.copy())
    components = list(components) + list(unscored)
    scores = np.concatenate([scores, np.full(len(unscored), np.nan)])
    key = np.concatenate([key, np.full(len(unscored), -np.inf)])
    is_true = np.array([c in set(true) for c in components], dtype=bool)
    found = scores_of(key, is_true)
    return Recovery(model=truth.name, prompt_set="ground truth", truth=truth.name, level=level, method=method,
                    order_by=order_by, components=tuple(components), scores=scores,
                    key=np.where(np.isfinite(key), key, np.nan), ranks=found["ranks"], is_true=is_true,
                    unscored_truth=unscored, auroc=found["auroc"], precision=found["precision"],
                    recall=found["recall"], last_true_rank=found["last_true_rank"])
