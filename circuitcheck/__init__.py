"""circuitcheck: test claims about a language model's internals as pytest hypotheses.

One import line gives a hypothesis file everything it needs::

    from circuitcheck import PromptSet, ioi_prompts, logit_diff, patch, strategies

and the rest is one submodule away: ``circuitcheck.results`` (every Result class),
``circuitcheck.errors``, ``circuitcheck.metrics``, ``circuitcheck.registries`` (SWEEPS,
STEPS, site labels, tokenizing). The code lives in three packages with dependencies
pointing one way: `circuitcheck.probes` (prompts, probes, results, the evidence sink) at
the core; `circuitcheck.fixtures` (models, prompt families, Hypothesis strategies) and
`circuitcheck.reports` (the report plugin and renderer) built on it. Names are imported on
first use (`circuitcheck.exports`), so ``import circuitcheck`` does not import torch.
"""

from .exports import EXPORTS as _EXPORTS
from .exports import top_level_attribute as __getattr__

__version__ = "0.1.0"
__all__ = sorted(_EXPORTS)


def __dir__() -> list[str]:
    """The researcher names, and nothing else (``__version__`` and the submodules are still attributes)."""
    return list(__all__)
