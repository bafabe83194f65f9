"""Is a corruption fit for patching? Check before you patch.

Patching measures how much of the gap between a clean and a corrupted run a site
restores, so the corruption must open a gap: ideally it *flips* the answer (the
logit difference changes sign), at least it must *lower* it. `corruption_check`
says which, per prompt.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .evidence import probe
from .figures import prompt_labels
from .logits import logit_diff
from .results import Result
from .statistics import clopper_pearson


@dataclass(frozen=True, eq=False, repr=False)
class CorruptionCheck(Result):
    """Clean and corrupted logit difference per prompt, and what the corruption did:
    ``flips`` (sign from + to −), ``lowers`` (by at least ``min_drop``), or ``no effect``."""

    prompts: tuple[str, ...]
    corrupted_prompts: tuple[str, ...]
    clean: np.ndarray
    corrupted: np.ndarray
    verdicts: tuple[str, ...]
    min_drop: float

    kind = "corruption_check"
    title = "Corruption check: does the corruption flip the answer?"

    @property
    def flips_all(self) -> bool:
        return all(v == "flips" for v in self.verdicts)

    @property
    def fraction_flipped(self) -> float:
        return self.verdicts.count("flips") / len(self.verdicts)

    @property
    def flipped_interval(self) -> tuple[float, float]:
        """The exact 95% interval of the share of prompts the corruption flips (Clopper–Pearson)."""
        return clopper_pearson(self.verdicts.count("flips"), len(self.verdicts))

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame({"prompt": self.prompts, "corrupted_prompt": self.corrupted_prompts,
                             "clean": self.clean, "corrupted": self.corrupted,
                             "change": self.corrupted - self.clean, "verdict": self.verdicts})

    def summary(self) -> dict:
        low, high = self.flipped_interval
        return {"flipped": f"{self.verdicts.count('flips')} of {len(self.verdicts)} (95% CI {low:.2f}–{high:.2f})",
                "fraction_flipped": self.fraction_flipped,
                "fraction_no_effect": self.verdicts.count("no effect") / len(self.verdicts),
                "mean_clean": float(self.clean.mean()), "mean_corrupted": float(self.corrupted.mean())}

    def figure(self) -> dict:
        labels, hover = prompt_labels(self.prompts)
        return {"type": "line", "x": labels, "hover": hover,
                "series": {"clean": self.clean.tolist(), "corrupted": self.corrupted.tolist()},
                "xlabel": "prompt", "ylabel": "logit difference"}


@probe
def corruption_check(model, prompts, *, min_drop: float = 1.0, prepend_bos: bool | None = None) -> CorruptionCheck:
    """Compare each prompt's logit difference with its corrupted twin's."""
    clean = logit_diff(model, prompts, prepend_bos=prepend_bos)
    corrupted = logit_diff(model, prompts.corrupted, prepend_bos=prepend_bos)
    verdicts = tuple(
        "flips" if c > 0 > k else "lowers" if c - k >= min_drop else "no effect"
        for c, k in zip(clean.per_prompt, corrupted.per_prompt))
    return CorruptionCheck(model=clean.model, prompt_set=prompts.name, prompts=prompts.prompts,
                           corrupted_prompts=prompts.corrupted_prompts, clean=clean.per_prompt,
                           corrupted=corrupted.per_prompt, verdicts=verdicts, min_drop=min_drop,
                           parts=(clean, corrupted))
