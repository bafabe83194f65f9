"""Corruption without a corrupted prompt: ablate activations, or add noise to the input.

* **Ablation** replaces an activation on every prompt and measures the metric:
  ``zero`` (set to 0), ``mean`` (its mean over a reference prompt set, at the same
  position), or ``resample`` (its value on a randomly drawn reference prompt, seeded).
  Mean and resample ablation keep the activation in distribution; zero does not.
* **Gaussian noise** (ROME's causal tracing, Meng et al. 2022) corrupts the token
  embeddings at chosen positions with noise of ``scale`` times the embeddings'
  standard deviation, averaged over seeded samples. `GaussianNoise` is also a
  corruption that `patch(..., noise=...)` restores from the clean run.

Sites are written as researchers write them (`probes.sites`): ``"L9H6"`` (a head's output),
``"L25N1527"`` (a neuron), ``"attn_out L5"`` or ``"mlp_out L5"`` (a layer's output),
``"L9H6 pos 10"`` (one position).
"""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .ablation_values import ablation_values, check_ablation
from .evidence import probe
from .forward import final_logits, final_logits_with, input_device
from .input_errors import check_count
from .metrics import resolve_metric
from .renamed import older_name, renamed_keywords
from .results import Result
from .self_checks import require_trusted
from .sites import parse_site

@dataclass(frozen=True, eq=False, repr=False)
class Ablation(Result):
    """The metric per prompt before and after ablating ``sites`` together."""

    sites: tuple[str, ...]
    ablation: str
    metric: str
    prompts: tuple[str, ...]
    before: np.ndarray
    after: np.ndarray
    seed: int | None

    kind = "ablation"

    @property
    def title(self) -> str:
        return f"{self.ablation.capitalize()} ablation of {', '.join(self.sites)} ({self.metric})"

    @property
    def effect(self) -> np.ndarray:
        return self.after - self.before

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame({"prompt": self.prompts, "before": self.before, "after": self.after,
                             "effect": self.effect})

    def summary(self) -> dict:
        return {"mean_before": float(self.before.mean()), "mean_after": float(self.after.mean()),
                "mean_effect": float(self.effect.mean()),
                "fraction_of_metric_removed": float(1 - self.after.mean() / self.before.mean())
                if self.before.mean() else float("nan")}

    def notes(self) -> list[str]:
        return [f"{self.ablation} ablation" + (f", seed {self.seed}" if self.seed is not None else "")]


@probe
@renamed_keywords(kind="ablation")
def ablate(model, prompts, sites, *, ablation: str = "mean", reference=None, metric="logit_diff",
           seed: int = 0, prepend_bos: bool | None = None) -> Ablation:
    """Ablate all ``sites`` at once (every position, unless a site names one: ``"L9H6 pos 10"``)
    and compare the metric with the plain run. ``ablation``: ``mean``, ``resample`` or ``zero``
    (`probes.ablation_values`); ``reference``: the prompt set that mean and resample ablation
    draw from (default: ``prompts``), of the same token width."""
    seed = check_ablation(ablation, seed)
    require_trusted(model, "ablation", "hooks")
    sites = [sites] if isinstance(sites, str) else list(sites)
    metric_name, metric_fn = resolve_metric(metric)
    tokenized = prompts.tokenize(model, prepend_bos)
    parsed = [parse_site(s).check(model, tokenized.model_name) for s in sites]
    values = ablation_values(model, prompts, [s.hook for s in parsed], ablation, reference, seed, prepend_bos)
    by_hook = {}
    for site in parsed:
        by_hook.setdefault(site.hook, []).append(site)

    def replace(name):
        def hook(activation, hook):
            value = values.of(name, activation)
            for site in by_hook[name]:
                activation[site.selector()] = value[site.selector()]
            return activation
        return hook

    clean, answers = final_logits(model, tokenized), tokenized.answer_ids  # on the CPU
    ablated = final_logits_with(model, tokenized.tokens.to(input_device(model)), tokenized.final_positions,
                                [(name, replace(name)) for name in by_hook]).cpu()
    return Ablation(
        model=tokenized.model_name, prompt_set=prompts.name, sites=tuple(sites), ablation=ablation,
        metric=metric_name, prompts=prompts.prompts,
        before=metric_fn(clean, answers, clean).numpy(),
        after=metric_fn(ablated, answers, clean).numpy(), seed=values.seed)


@dataclass(frozen=True, eq=False, repr=False)
class NoiseCorruption(Result):
    """The metric per prompt with Gaussian noise on the embeddings of ``positions``
    (``scale`` × the embedding standard deviation), averaged over ``samples`` seeded draws."""

    positions: tuple[int, ...]
    scale: float
    samples: int
    seed: int
    noise_std: float
    prompts: tuple[str, ...]
    clean: np.ndarray
    noisy: np.ndarray

    kind = "noise_corruption"
    title = "Gaussian-noise corruption of the input embeddings (causal tracing)"

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame({"prompt": self.prompts, "clean": self.clean, "noisy": self.noisy,
                             "change": self.noisy - self.clean})

    def summary(self) -> dict:
        return {"mean_clean": float(self.clean.mean()), "mean_noisy": float(self.noisy.mean()),
                "fraction_lowered": float((self.noisy < self.clean).mean()), "noise_std": self.noise_std}

    def notes(self) -> list[str]:
        return [f"noise on positions {list(self.positions)}: {self.samples} samples, seed {self.seed}, "
                f"std {self.scale} × embedding std = {self.noise_std:.4f}"]


@dataclass(frozen=True)
class GaussianNoise:
    """Gaussian noise on the token embeddings at ``positions`` (BOS counted), ``scale`` times
    the embeddings' standard deviation, ``samples`` seeded draws (ROME's causal tracing)."""

    positions: tuple[int, ...]
    scale: float = 3.0
    samples: int = 10
    seed: int = 0

    def __post_init__(self):
        positions = (self.positions,) if isinstance(self.positions, (int, np.integer)) else tuple(self.positions)
        positions = tuple(check_count("positions", p, 0, "token indices from 0 (BOS counted), e.g. positions=[1, 2]")
                          for p in positions)
        if not positions:
            raise ValueError("positions=(): name the token indices to add noise to (BOS counted), e.g. [1, 2]")
        object.__setattr__(self, "positions", positions)
        check_count("samples", self.samples, 1, "the number of seeded noise draws, e.g. samples=10")
        check_count("seed", self.seed, 0, "a seed is a whole number from 0 up, e.g. seed=0")
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float, np.integer, np.floating)) or not (
                math.isfinite(self.scale) and self.scale >= 0):
            raise ValueError(f"scale={self.scale!r}: give the noise's size as a number of at least 0, in "
                             "embedding standard deviations (3.0 is the default)")

    def std(self, model) -> float:
        return self.scale * float(model.W_E.detach().float().std())

    def draws(self, model, n_prompts: int) -> list[torch.Tensor]:
        """One noise tensor (prompt × position × d_model) per sample, the same every call."""
        generator = torch.Generator().manual_seed(self.seed)
        shape = (n_prompts, len(self.positions), model.cfg.d_model)
        return [torch.randn(shape, generator=generator) * self.std(model) for _ in range(self.samples)]

    def hook(self, noise: torch.Tensor, offset: int = 0):
        """A ``hook_embed`` hook adding ``noise`` (batch × position × d_model) to its rows;
        ``offset``: the run's tokens start at that position (the rest is a cached prefix)."""

        def add_noise(embedding, hook):
            embedding[:, [p - offset for p in self.positions]] += noise.to(embedding.device, embedding.dtype)
            return embedding

        return ("hook_embed", add_noise)


@probe
def noise_corruption(model, prompts, positions, *, scale: float = 3.0, samples: int = 10, seed: int = 0,
                     metric="logit_diff", prepend_bos: bool | None = None) -> NoiseCorruption:
    """Corrupt the embeddings at ``positions`` (token indices, BOS counted) with Gaussian noise."""
    metric_name, metric_fn = resolve_metric(metric)
    tokenized = prompts.tokenize(model, prepend_bos)
    device = input_device(model)
    noise = GaussianNoise(positions, scale, samples, seed)  # checks the counts before any pass
    if any(not 0 <= p < min(tokenized.lengths) for p in noise.positions):
        raise ValueError(f"positions {list(noise.positions)}: the shortest prompt has "
                         f"{min(tokenized.lengths)} tokens")
    clean = final_logits(model, tokenized)
    answers = tokenized.answer_ids
    rows = torch.arange(len(tokenized.lengths))
    noisy = []
    for draw in noise.draws(model, len(rows)):
        final = final_logits_with(model, tokenized.tokens.to(device), tokenized.final_positions,
                                  [noise.hook(draw)]).cpu()
        noisy.append(metric_fn(final, answers, clean).numpy())
    return NoiseCorruption(model=tokenized.model_name, prompt_set=prompts.name, positions=noise.positions,
                           scale=scale, samples=samples, seed=seed, noise_std=noise.std(model),
                           prompts=prompts.prompts, clean=metric_fn(clean, answers, clean).numpy(),
                           noisy=np.mean(noisy, axis=0))


def __getattr__(name: str):
    return older_name(__name__, name, {"AblationResult": Ablation})
