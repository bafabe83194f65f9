"""Does every part matter, and is nothing missing? Completeness and minimality (Wang et al. 2022).

* **completeness**: |F(C \\ K) − F(M \\ K)| for subsets K of C (empty, random, and a greedy
  search for the worst K): a complete circuit behaves like the model when parts of it are
  knocked out.
* **minimality**: for each component v, the largest change |F(C \\ K) − F(C \\ (K ∪ {v}))|
  over the same Ks: a component whose removal never matters is not needed.

Every K of a probe is evaluated in the same batched passes (`engine`). What a component outside
C \\ K (or in K) carries: the ``ablation`` of `faithfulness`, counterfactual ``"patching"`` included;
by default the one the circuit was found with, or `spec.DEFAULT_ABLATION` (`spec.judged_with`).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..results import Result


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


def completeness_of(components: tuple, n_random: int, greedy_steps: int | None, generator, f_without) -> dict:
    """The completeness search over ``components`` (heads, or edges): K = ∅, ``n_random`` random
    subsets, then ``greedy_steps`` greedy additions (default half of them), each K scored by
    ``f_without(list of Ks) -> rows F(C \\ K), F(M \\ K) interleaved, × prompts``; the fields of
    `Completeness`."""
    ks = list(dict.fromkeys([()] + _random_subsets(components, n_random, generator)))
    sources = ["empty"] + ["random"] * (len(ks) - 1)
    values = f_without(ks).mean(axis=1)
    f_c, f_m = list(values[0::2]), list(values[1::2])
    k: tuple = ()
    steps = greedy_steps if greedy_steps is not None else max(1, len(components) // 2)
    for _ in range(min(steps, len(components))):
        options = [c for c in components if c not in k]
        trial = f_without([k + (v,) for v in options]).mean(axis=1)
        best = int(np.argmax(np.abs(trial[0::2] - trial[1::2])))
        k = k + (options[best],)
        ks.append(k)
        sources.append("greedy")
        f_c.append(trial[2 * best])
        f_m.append(trial[2 * best + 1])
    return dict(ks=tuple(ks), sources=tuple(sources), f_circuit=np.array(f_c), f_model=np.array(f_m))


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


def minimality_of(components: tuple, n_random: int, generator, f_without) -> dict:
    """The minimality search over ``components`` (heads, or edges): for each v, K = ∅ and
    ``n_random`` random subsets of the others, all the sets ``K`` and ``K ∪ {v}`` scored by one
    call of ``f_without(list of Ks) -> F(C \\ K) per K``; the fields of `Minimality`."""
    plan = {v: [()] + _random_subsets(components, n_random, generator, exclude=(v,)) for v in components}
    wanted = list(dict.fromkeys(k2 for v, ks in plan.items() for k in ks for k2 in (k, k + (v,))))
    index = {k: i for i, k in enumerate(wanted)}
    values = f_without(wanted)
    change, best_k, with_v, without_v = [], [], [], []
    for v, ks in plan.items():
        diffs = [abs(values[index[k]] - values[index[k + (v,)]]) for k in ks]
        i = int(np.argmax(diffs))
        change.append(diffs[i])
        best_k.append(ks[i])
        with_v.append(values[index[ks[i]]])
        without_v.append(values[index[ks[i] + (v,)]])
    return dict(f_circuit=float(values[index[()]]), components=components, change=np.array(change),
                best_k=tuple(best_k), with_v=np.array(with_v), without_v=np.array(without_v))
