"""circuitcheck: test claims about a language model's internals as pytest hypotheses.

One import line gives a hypothesis file everything it needs::

    from circuitcheck import PromptSet, ioi_prompts, logit_diff, patch, strategies

The parts live in three packages with dependencies pointing one way:
`circuitcheck.probes` (prompts, probes, results, the evidence sink) at the core;
`circuitcheck.fixtures` (models, prompt families, Hypothesis strategies) and
`circuitcheck.reports` (the report plugin and renderer) built on it. Names are
imported on first use, so ``import circuitcheck`` (and ``pytest --help``, which
loads the plugin) does not import torch.
"""

import importlib

from .exports import EXPORTS

__version__ = "0.1.0"
__all__ = sorted(EXPORTS)


def __getattr__(name: str):
    if name not in EXPORTS:
        raise AttributeError(f"module 'circuitcheck' has no attribute {name!r}")
    module, attribute = EXPORTS[name]
    value = importlib.import_module(module)
    value = value if attribute is None else getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(EXPORTS))
