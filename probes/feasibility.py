"""The workflow-feasibility map: does a prompt family fit the IOI / 'an'-neuron workflow, and
at which step does the analogy break?

Each step is a claim with a stated threshold, measured on the family and recorded with
its evidence (the probes it runs record theirs too):

1. ``answers``: answers are single tokens and the incorrect one is a plausible rival
   (median rank of the incorrect answer among ~50k tokens ≤ 20);
2. ``task``: the model gets the task (top-1 accuracy ≥ 0.8, with its exact
   Clopper–Pearson interval);
3. ``corruption``: the corruption flips the answer (fraction flipped ≥ 0.8, Clopper–Pearson
   interval);
4. ``lens``: the logit lens shows the answer forming at identifiable layers (one step of
   the residual stream adds ≥ 30% of the final logit difference);
5. ``heads``: direct attribution concentrates on a few heads (top 5 carry ≥ 50% of the
   total absolute head effect, and beat random heads on held-out prompts, p < 0.05);
6. ``patching``: patching localises (the same for head-output patching, on at most
   eight prompts of one token length, spread over the family; the step reports which);
7. ``circuit``: the heads patching finds are a faithful circuit on prompts they were not
   chosen on (the IOI paper's faithfulness, circuitry's random-circuit test): on the patching
   step's prompts, the top 5 heads by head-patching effect on the even prompts, everything else
   mean-ablated over the odd prompts, keep F(C)/F(M) ≥ 0.5 of the logit difference on those odd
   prompts, and come closer to F(M) than 20 random 5-head circuits (p = 1/21 < 0.05 when none
   does as well; 20 is the smallest N that can give p < 0.05). Sizes are chosen for time: at
   most four held-out prompts, 20 random circuits, all evaluated in one batched pass after one
   pass over the prompts. With one prompt the heads are chosen and judged on it;
8. ``neuron``: a neuron congruent with an answer predicts it, as the 'an' neuron predicts
   ' an': for each distinct correct answer, the neuron most congruent with it, and Pearson
   r over every prompt of the family between that neuron's activation and that answer's
   logit. The step is judged on the answer whose neuron predicts it best (its rival need
   not have such a neuron: ' a' has none in SmolLM2), with a 95% bootstrap interval over
   prompts; it holds at r ≥ 0.5 with the interval above 0. Every answer's r is in the detail.

``answers`` comes first because every other step reads one answer token per prompt: when
it breaks, each later step records a break that says it could not be measured and why,
so the first break names the real cause.

For steps 5 and 6 the p-value is a held-out share test: the top heads are chosen on
half of the prompts and evaluated on the other half against random sets of as many
heads; it is the share of random sets that do as well. With one prompt there is no
held-out half: the step is judged by the share alone and its detail says so.
"""

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .ablation_values import check_ablation
from .attribution import head_attribution, logit_lens
from .circuits.spec import Circuit
from .criteria import random_circuit_test
from .corruption import corruption_check
from .evidence import probe
from .forward import final_logits
from .input_errors import check_count
from .logits import top_k
from .model_state import model_name
from .neurons import bootstrap_ci, neuron_activations, neuron_congruence, pearson
from .patching import patch
from .prompts import index_label
from .results import Result
from .sites import head_label
from .statistics import clopper_pearson
from .tokens import AnswerTokenError, PromptLengthError

# Each step's claim and threshold, in the order the workflow takes them.
CLAIMS = {
    "answers": ("answers are single tokens and the incorrect one is a plausible rival", 20.0),
    "task": ("the model gets the task", 0.8),
    "corruption": ("the corruption flips the answer", 0.8),
    "lens": ("the answer forms at identifiable layers", 0.3),
    "heads": ("direct attribution concentrates on a few heads", 0.5),
    "patching": ("patching localises to a few heads", 0.5),
    "circuit": ("the heads patching finds are faithful on held-out prompts", 0.5),
    "neuron": ("a neuron congruent with an answer predicts it", 0.5),
}
STEPS = tuple(CLAIMS)
CIRCUIT_HEADS = 5  # as many heads as steps 5 and 6 judge
CIRCUIT_RANDOM = 20  # random circuits: the smallest N whose best p-value, 1/(1+N), is below 0.05


@dataclass(frozen=True, eq=False, repr=False)
class FeasibilityStep(Result):
    """One step of the workflow on one family: the measured value against its threshold
    (NaN when the step could not be measured; ``detail`` says why). ``prompt_indices``
    names the prompts a step used when it used only some of them (``n_prompts`` of them)."""

    family: str
    step: str
    claim: str
    value: float
    threshold: float
    passed: bool
    detail: str
    ci: tuple[float, float] | None = None
    p_value: float | None = None
    n_prompts: int = 0
    prompt_indices: tuple[int, ...] = ()

    kind = "feasibility_step"

    @property
    def title(self) -> str:
        return f"Feasibility of {self.family!r}, step {STEPS.index(self.step) + 1} ({self.step}): {self.claim}"

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame([{"family": self.family, "step": self.step, "value": self.value,
                              "threshold": self.threshold, "holds": self.passed, "detail": self.detail}])

    def summary(self) -> dict:
        out = {"family": self.family, "step": self.step, "value": self.value,
               "threshold": self.threshold, "holds": str(self.passed), "n_prompts": self.n_prompts}
        if self.prompt_indices:
            out["prompts used"] = index_label(self.prompt_indices)
        if self.ci is not None:
            out["ci_low"], out["ci_high"] = self.ci
        if self.p_value is not None:
            out["p_value (vs random heads)"] = self.p_value
        return out

    def p_values(self) -> dict[str, float]:
        return {} if self.p_value is None else {"p_value (vs random heads)": self.p_value}

    def notes(self) -> list[str]:
        return [self.detail]


def _share_ci(flags: np.ndarray) -> tuple[float, float]:
    """The exact interval of a share of prompts (Clopper–Pearson)."""
    return clopper_pearson(int(flags.sum()), len(flags))


HELD_OUT_SAMPLES = 10_000  # random k-sets: the smallest p-value, 1/10 001, survives Holm over a run of many tests


def held_out_share(values: np.ndarray, k: int = 5, samples: int = HELD_OUT_SAMPLES, seed: int = 0):
    """Pick the top ``k`` components (rows) on even prompts (columns); on odd prompts, their share
    of the total absolute effect and the p-value against random ``k``-sets (None with one prompt)."""
    if values.shape[1] < 2:
        magnitude = np.abs(values.mean(axis=1))
        return float(np.sort(magnitude)[::-1][:k].sum() / magnitude.sum()), None
    pick = np.abs(values[:, 0::2].mean(axis=1)).argsort()[::-1][:k]
    held = np.abs(values[:, 1::2].mean(axis=1))
    total = held.sum()
    share = float(held[pick].sum() / total)
    rng = np.random.default_rng(seed)
    picks = rng.random((samples, len(held))).argpartition(k, axis=1)[:, :k]  # k of them, uniformly, no repeats
    random_shares = held[picks].sum(axis=1) / total
    return share, float((1 + (random_shares >= share).sum()) / (1 + samples))


def _p_detail(p: float | None, n: int) -> str:
    if p is None:
        return (f"; no held-out p-value: the p-value needs at least 2 prompts ({n} here), "
                "so this step is judged by the share alone")
    return f"; held-out p = {p:.3g}"


def patching_indices(model, prompts, limit: int = 8) -> list[int]:
    """The prompts the patching step uses: all of the family's most common token length when
    there are at most ``limit``, else ``limit`` of them spread evenly (first and last included)."""
    lengths = prompts.tokenize(model).lengths
    common = Counter(lengths).most_common(1)[0][0]
    same = [i for i, length in enumerate(lengths) if length == common]
    if len(same) <= limit:
        return same
    return [same[int(k)] for k in np.linspace(0, len(same) - 1, limit).round()]


def patching_sample(model, prompts, limit: int = 8):
    """`patching_indices` as a PromptSet (its name lists the indices)."""
    return prompts.subset(patching_indices(model, prompts, limit))


def answer_problem(model, prompts) -> str | None:
    """Why the family's answers cannot be read as one token per prompt, or None."""
    try:
        tokenized = prompts.tokenize(model)
    except AnswerTokenError as error:
        more = len(error.problems) - 1
        return error.problems[0] + (f" (and {more} more answer problem(s))" if more else "")
    try:
        tokenized.require_single_token("the workflow")
    except ValueError as error:
        return str(error)
    return None


def _neuron_step(model, prompts):
    """Per distinct correct answer: its most congruent neuron and r between that neuron's
    activation and the answer's logit over all prompts; the best answer's r and its
    bootstrap interval (see the module docstring)."""
    tokenized = prompts.tokenize(model)
    correct = [a for a, _ in prompts.answers]
    counts = Counter(correct)
    answers = list(counts)  # distinct, in order of first appearance
    neurons = [neuron_congruence(model, a).labels[0] for a in answers]
    activation = neuron_activations(model, prompts, neurons).values  # answer × prompt
    ids = [int(tokenized.answer_ids[correct.index(a), 0]) for a in answers]
    logit = final_logits(model, tokenized)[:, ids].numpy().T  # answer × prompt
    r = np.nan_to_num(np.array([pearson(activation[j], logit[j]) for j in range(len(answers))]))
    best = int(r.argmax())  # a neuron that never varies counts as r = 0
    ci = bootstrap_ci(activation[best], logit[best], lambda x, y: float(np.nan_to_num(pearson(x, y))))
    order = sorted(range(len(answers)), key=lambda j: -r[j])
    shown = [f"{answers[j]!r}: {neurons[j]} r = {r[j]:.2f} ({counts[answers[j]]} prompts)" for j in order[:4]]
    more = f"; … {len(answers) - 4} more answers" if len(answers) > 4 else ""
    detail = (f"best: {answers[best]!r} and {neurons[best]}, r = {r[best]:.2f} (95% CI {ci[0]:.2f} to "
              f"{ci[1]:.2f}); each distinct answer with its most congruent neuron: " + "; ".join(shown) + more)
    return float(r[best]), ci, detail


def _circuit_step(model, prompts, used: list[int], ablation: str = "mean", n_random: int = CIRCUIT_RANDOM):
    """Heads chosen by head patching on the even prompts of ``used``, judged on the odd ones
    (see the module docstring): F(C)/F(M), the random-circuit p-value, and the detail."""
    sweep = patch(model, prompts.subset(used), "head_out")  # the patching step's sweep: cached, not rerun
    effects = sweep.values - sweep.target_baseline  # head × prompt
    halves = len(used) >= 2
    chosen = [used[i] for i in range(0, len(used), 2)] if halves else used
    judged = [used[i] for i in range(1, len(used), 2)] if halves else used
    on_chosen = effects[:, 0::2] if halves else effects
    order = np.abs(on_chosen.mean(axis=1)).argsort()[::-1][:CIRCUIT_HEADS]
    circuit = Circuit([head_label(*sweep.sites[i]) for i in order])
    test = random_circuit_test(model, prompts.subset(judged), circuit, n=n_random, ablation=ablation)
    [result] = test.parts
    one = "" if halves else "; one prompt: chosen and judged on the same prompt, nothing held out"
    if result.f_model <= 0:
        return float("nan"), None, (f"not measured: the model's mean logit difference on prompts "
                                    f"{index_label(judged)} is {result.f_model:.2f} (≤ 0), so there is "
                                    "nothing for a circuit to keep" + one)
    close = int((test.random_gaps <= test.candidate_gap).sum())
    return result.ratio, test.p_value, (
        f"heads {', '.join(circuit.heads)} (the top {len(circuit)} by head patching on prompts "
        f"{index_label(chosen)}) keep F(C)/F(M) = {result.ratio:.2f} (F(C) {result.f_circuit:.2f}, F(M) "
        f"{result.f_model:.2f}) on prompts {index_label(judged)}, the rest {ablation}-ablated over those prompts; "
        f"{close} of {n_random} random {len(circuit)}-head circuits come as close to F(M), "
        f"p = {test.p_value:.3g}" + one)


@probe
def feasibility_step(model, prompts, step: str, *, family: str | None = None, ablation: str = "mean",
                     n_random: int = CIRCUIT_RANDOM) -> FeasibilityStep:
    """Measure one workflow step on a prompt family (see the module docstring). For the
    'circuit' step: ``ablation``, how the heads outside the circuit are removed (over the
    judged prompts), and ``n_random``, the random circuits it is tested against (p ≥ 1/(1 + n):
    raise it for a p-value that must survive a correction for several tests)."""
    if step not in CLAIMS:
        raise ValueError(f"step {step!r}: choose one of {', '.join(STEPS)}")
    check_ablation(ablation)
    n_random = check_count("n_random", n_random, 1, f"the random circuits the circuit step is tested against, "
                           f"e.g. {CIRCUIT_RANDOM}")
    family = family or prompts.name
    n = len(prompts)
    claim, threshold = CLAIMS[step]

    def result(value, passed, detail, **extra):
        extra.setdefault("n_prompts", n)
        return FeasibilityStep(model=model_name(model), prompt_set=prompts.name, family=family,
                               step=step, claim=claim, value=float(value), threshold=threshold,
                               passed=bool(passed), detail=detail, **extra)

    if problem := answer_problem(model, prompts):
        if step == "answers":
            return result(float("nan"), False, f"answers are not single tokens: {problem}")
        return result(float("nan"), False, f"not measured: every step reads one answer token per "
                      f"prompt, and step 'answers' breaks: {problem}")
    if step == "answers":
        median = float(np.median(top_k(model, prompts).incorrect_rank))
        return result(median, median <= threshold, f"median rank of the incorrect answer {median:g} (1 = top)")
    if step == "task":
        top1 = top_k(model, prompts).correct_rank == 1
        return result(top1.mean(), top1.mean() >= threshold, f"top-1 on {int(top1.sum())} of {n} prompts",
                      ci=_share_ci(top1))
    if step == "corruption":
        check = corruption_check(model, prompts)
        flipped = np.array([v == "flips" for v in check.verdicts])
        return result(flipped.mean(), flipped.mean() >= threshold, f"flips {int(flipped.sum())} of {n}; no "
                      f"effect on {check.verdicts.count('no effect')}", ci=_share_ci(flipped))
    if step == "lens":
        lens = logit_lens(model, prompts)
        rises = np.diff(lens.mean)
        final = lens.mean[-1]
        share = float(rises.max() / final) if final > 0 else 0.0
        where = lens.labels[int(rises.argmax()) + 1]
        return result(share, share >= threshold,
                      f"largest single rise at {where}: {share:.0%} of the final {final:.2f}")
    if step == "heads":
        heads = head_attribution(model, prompts)
        share, (_, p) = heads.share_of_top(5), held_out_share(heads.values.reshape(-1, n))
        return result(share, share >= threshold and (p is None or p < 0.05),
                      f"top 5 heads ({', '.join(heads.top(5)['head'])}) carry {share:.0%}" + _p_detail(p, n),
                      p_value=p)
    if step == "patching":
        used = patching_indices(model, prompts)
        try:
            sweep = patch(model, prompts.subset(used), "head_out")
        except PromptLengthError as error:
            return result(float("nan"), False, "not measured: " + str(error).splitlines()[0],
                          n_prompts=len(used), prompt_indices=tuple(used))
        share, (_, p) = sweep.share_of_top(5), held_out_share(sweep.values - sweep.target_baseline)
        length = prompts.tokenize(model).lengths[used[0]]
        return result(share, share >= threshold and (p is None or p < 0.05),
                      f"top 5 heads ({', '.join(sweep.top(5)['head'])}) carry {share:.0%} of the patching "
                      f"effect on {len(used)} of {n} prompts {index_label(used)} (those of {length} tokens, "
                      f"the most common length)" + _p_detail(p, len(used)),
                      p_value=p, n_prompts=len(used), prompt_indices=tuple(used))
    if step == "circuit":
        used = patching_indices(model, prompts)
        try:
            value, p, detail = _circuit_step(model, prompts, used, ablation, n_random)
        except PromptLengthError as error:
            value, p, detail = float("nan"), None, "not measured: " + str(error).splitlines()[0]
        return result(value, value >= threshold and p is not None and p < 0.05, detail, p_value=p,
                      n_prompts=len(used), prompt_indices=tuple(used))
    value, ci, detail = _neuron_step(model, prompts)
    return result(value, value >= threshold and ci[0] > 0, detail, ci=ci)


@dataclass(frozen=True, eq=False, repr=False)
class Feasibility(Result):
    """All steps on one family, in order, and the first step where the analogy breaks."""

    family: str
    steps: tuple[FeasibilityStep, ...]

    kind = "feasibility"
    title = "Workflow feasibility"

    @property
    def first_break(self) -> str | None:
        return next((s.step for s in self.steps if not s.passed), None)

    @property
    def df(self) -> pd.DataFrame:
        return pd.concat([s.df for s in self.steps], ignore_index=True)

    def summary(self) -> dict:
        return {"family": self.family, "first_break": self.first_break or "none",
                "steps_holding": sum(s.passed for s in self.steps)}


@probe
def feasibility(model, prompts, *, family: str | None = None, steps=STEPS, ablation: str = "mean",
                n_random: int = CIRCUIT_RANDOM) -> Feasibility:
    """Run the workflow ``steps`` on a family; ``.first_break`` names where it stops fitting.
    ``ablation`` and ``n_random``: the circuit step's, as in `feasibility_step`."""
    steps = (steps,) if isinstance(steps, str) else tuple(steps)
    unknown = [s for s in steps if s not in CLAIMS]
    if not steps or unknown:
        raise ValueError(f"steps={list(steps)!r}: " + (f"{unknown[0]!r} is not a step; " if unknown else "")
                         + f"choose one or more of {', '.join(STEPS)} (before any step runs)")
    check_ablation(ablation)  # before any step runs
    done = tuple(feasibility_step(model, prompts, step, family=family, ablation=ablation, n_random=n_random)
                 for step in steps)
    return Feasibility(model=done[0].model, prompt_set=prompts.name, family=family or prompts.name,
                       steps=done, parts=done)
