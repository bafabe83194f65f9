"""The workflow-feasibility map: does a prompt family fit the IOI / 'an'-neuron workflow, and
at which step does the analogy break?

Each step is a claim with a stated threshold, measured on the family and recorded with
its evidence (the probes it runs record theirs too):

1. ``task``: the model gets the task (top-1 accuracy ≥ 0.8; bootstrap interval);
2. ``answers``: answers are single tokens and the incorrect one is a plausible rival
   (median rank of the incorrect answer among ~50k tokens ≤ 20);
3. ``corruption``: the corruption flips the answer (fraction flipped ≥ 0.8);
4. ``lens``: the logit lens shows the answer forming at identifiable layers (one step of
   the residual stream adds ≥ 30% of the final logit difference);
5. ``heads``: direct attribution concentrates on a few heads (top 5 carry ≥ 50% of the
   total absolute head effect, and beat random heads on held-out prompts, p < 0.05);
6. ``patching``: patching localises (the same for head-output patching, on at most
   eight prompts of one token length, spread over the family);
7. ``neuron``: the neuron most congruent with the first prompt's answer token predicts
   it over the family (r ≥ 0.5, 95% interval above 0).

For steps 5 and 6 the p-value is a held-out circuit test: the top heads are chosen on
half of the prompts and evaluated on the other half against random sets of as many
heads; it is the share of random sets that do as well.
"""

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .attribution import head_attribution, logit_lens
from .corruption import corruption_check
from .evidence import probe
from .logits import top_k
from .model_state import model_name
from .neurons import bootstrap_ci, neuron_congruence, neuron_prediction_correlation
from .patching import patch
from .results import Result
from .tokens import AnswerTokenError

STEPS = ("task", "answers", "corruption", "lens", "heads", "patching", "neuron")


@dataclass(frozen=True, eq=False, repr=False)
class FeasibilityStep(Result):
    """One step of the workflow on one family: the measured value against its threshold."""

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

    kind = "feasibility_step"

    @property
    def title(self) -> str:
        return f"Feasibility of {self.family!r}, step {STEPS.index(self.step) + 1} ({self.step}): {self.claim}"

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame([{"family": self.family, "step": self.step, "value": self.value,
                              "threshold": self.threshold, "holds": self.passed, "detail": self.detail}])

    def summary(self) -> dict:
        out = {"value": self.value, "threshold": self.threshold, "holds": str(self.passed),
               "n_prompts": self.n_prompts}
        if self.ci is not None:
            out["ci_low"], out["ci_high"] = self.ci
        if self.p_value is not None:
            out["p_value (vs random heads)"] = self.p_value
        return out

    def notes(self) -> list[str]:
        return [self.detail]


def _mean_ci(flags: np.ndarray) -> tuple[float, float]:
    return bootstrap_ci(flags.astype(float), flags.astype(float), lambda x, _: float(x.mean()))


def held_out_share(values: np.ndarray, k: int = 5, samples: int = 1000, seed: int = 0):
    """Pick the top ``k`` components (rows) on even prompts (columns); on odd prompts, their share
    of the total absolute effect and the p-value against random ``k``-sets."""
    if values.shape[1] < 2:
        magnitude = np.abs(values.mean(axis=1))
        return float(np.sort(magnitude)[::-1][:k].sum() / magnitude.sum()), None
    pick = np.abs(values[:, 0::2].mean(axis=1)).argsort()[::-1][:k]
    held = np.abs(values[:, 1::2].mean(axis=1))
    total = held.sum()
    share = float(held[pick].sum() / total)
    rng = np.random.default_rng(seed)
    random_shares = np.array([held[rng.choice(len(held), k, replace=False)].sum() / total
                              for _ in range(samples)])
    return share, float((1 + (random_shares >= share).sum()) / (1 + samples))


def patching_sample(model, prompts, limit: int = 8):
    """At most ``limit`` prompts, spread over the family, from its most common token length."""
    lengths = prompts.tokenize(model).lengths
    common = Counter(lengths).most_common(1)[0][0]
    same = [i for i, length in enumerate(lengths) if length == common]
    picks = [same[round(k * (len(same) - 1) / max(limit - 1, 1))] for k in range(min(limit, len(same)))]
    return prompts.subset(sorted(set(picks)))


@probe
def feasibility_step(model, prompts, step: str, family: str | None = None) -> FeasibilityStep:
    """Measure one workflow step on a prompt family (see the module docstring)."""
    family = family or prompts.name
    n = len(prompts)

    def result(claim, value, threshold, passed, detail, **extra):
        return FeasibilityStep(model=model_name(model), prompt_set=prompts.name, family=family,
                               step=step, claim=claim, value=float(value), threshold=float(threshold),
                               passed=bool(passed), detail=detail, n_prompts=n, **extra)

    if step == "answers":
        try:
            ranks = top_k(model, prompts).incorrect_rank
        except AnswerTokenError as error:
            return result("answers are single tokens", 0, 1, False, str(error).splitlines()[1].strip())
        median = float(np.median(ranks))
        return result("answers are single tokens and the incorrect one is a plausible rival", median, 20,
                      median <= 20, f"median rank of the incorrect answer {median:g} (1 = top)")
    if step == "task":
        top1 = top_k(model, prompts).correct_rank == 1
        return result("the model gets the task", top1.mean(), 0.8, top1.mean() >= 0.8,
                      f"top-1 on {int(top1.sum())} of {n} prompts", ci=_mean_ci(top1))
    if step == "corruption":
        check = corruption_check(model, prompts)
        flipped = np.array([v == "flips" for v in check.verdicts])
        return result("the corruption flips the answer", flipped.mean(), 0.8, flipped.mean() >= 0.8,
                      f"flips {int(flipped.sum())} of {n}; no effect on "
                      f"{check.verdicts.count('no effect')}", ci=_mean_ci(flipped))
    if step == "lens":
        lens = logit_lens(model, prompts)
        rises = np.diff(lens.mean)
        final = lens.mean[-1]
        share = float(rises.max() / final) if final > 0 else 0.0
        where = lens.labels[int(rises.argmax()) + 1]
        return result("the answer forms at identifiable layers", share, 0.3, share >= 0.3,
                      f"largest single rise at {where}: {share:.0%} of the final {final:.2f}")
    if step == "heads":
        heads = head_attribution(model, prompts)
        share, (_, p) = heads.share_of_top(5), held_out_share(heads.values.reshape(-1, n))
        return result("direct attribution concentrates on a few heads", share, 0.5,
                      share >= 0.5 and (p is None or p < 0.05),
                      f"top 5 heads ({', '.join(heads.top(5)['head'])}) carry {share:.0%}", p_value=p)
    if step == "patching":
        sample = patching_sample(model, prompts)
        sweep = patch(model, sample, "head_out")
        share, (_, p) = sweep.share_of_top(5), held_out_share(sweep.values - sweep.target_baseline)
        return result("patching localises to a few heads", share, 0.5, share >= 0.5 and (p is None or p < 0.05),
                      f"top 5 heads ({', '.join(sweep.top(5)['site'])}) carry {share:.0%} of the patching "
                      f"effect on {len(sample)} prompts", p_value=p)
    if step == "neuron":
        token = prompts.answers[0][0]  # the family's canonical (first) answer
        neuron = neuron_congruence(model, token).labels[0]
        corr = neuron_prediction_correlation(model, prompts, neuron, token)
        passed = corr.r >= 0.5 and corr.ci[0] > 0
        return result("a congruent neuron predicts the answer", corr.r if np.isfinite(corr.r) else 0.0, 0.5,
                      passed, f"{neuron}, most congruent with {token!r}: r = {corr.r:.2f} "
                      f"(95% CI {corr.ci[0]:.2f} to {corr.ci[1]:.2f})", ci=corr.ci)
    raise ValueError(f"step {step!r}: choose one of {', '.join(STEPS)}")


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
def feasibility(model, prompts, family: str | None = None, steps=STEPS) -> Feasibility:
    """Run the workflow ``steps`` on a family; ``.first_break`` names where it stops fitting."""
    done = tuple(feasibility_step(model, prompts, step, family) for step in steps)
    return Feasibility(model=done[0].model, prompt_set=prompts.name, family=family or prompts.name,
                       steps=done, parts=done)
