"""circuitcheck: test claims about a language model's internals as pytest hypotheses.

One import line gives a hypothesis file everything it needs::

    from circuitcheck import PromptSet, ioi_prompts, logit_diff, patch, strategies

and the rest is one submodule away: ``circuitcheck.results`` (every Result class),
``circuitcheck.errors``, ``circuitcheck.metrics``, ``circuitcheck.registries`` (SWEEPS,
STEPS, site labels, tokenizing). The code lives in three packages with dependencies
pointing one way: `circuitcheck.probes` (prompts, probes, results, the evidence sink) at
the core; `circuitcheck.fixtures` (models, prompt families, Hypothesis strategies) and
`circuitcheck.reports` (the report plugin and renderer) built on it. Names are imported on
first use (`exports`), so ``import circuitcheck`` does not import torch.
"""

import importlib
import warnings

from .exports import EXPORTS, MOVED

__version__ = "0.1.0"
__all__ = sorted(EXPORTS)


def __getattr__(name: str):
    if name in MOVED:
        module, new = MOVED[name]
        warnings.warn(f"circuitcheck.{name} is now `from {module} import {new}`; the top-level name will be "
                      "removed in the next release", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), new)
    if name not in EXPORTS:
        raise AttributeError(f"module 'circuitcheck' has no attribute {name!r}")
    module, attribute = EXPORTS[name]
    value = importlib.import_module(module)
    value = value if attribute is None else getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(EXPORTS))
