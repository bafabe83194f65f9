"""What ``from circuitcheck import …`` offers, generated from the packages' ``__all__``.

The top level is the researchers' names: `circuitcheck.probes` (probes, PromptSet, Circuit,
GaussianNoise, Evidence, model_info), `circuitcheck.fixtures` (load_model, DEFAULT_MODEL),
`circuitcheck.fixtures.families` (the prompt families) and the submodules `strategies`,
`results`, `errors`, `metrics` and `registries`. Each package's ``__all__`` is read from its
source, so ``import circuitcheck`` (and ``pytest --help``, which loads the plugin) imports
no torch. A name that used to be at the top level and now lives in a submodule still works
for one release, with a DeprecationWarning naming its new home (`MOVED`).
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP_LEVEL = {"circuitcheck.probes": "probes/__init__.py", "circuitcheck.fixtures": "fixtures/__init__.py",
             "circuitcheck.fixtures.families": "fixtures/families.py"}
SUBMODULES = {"strategies": "circuitcheck.fixtures.strategies", "results": "circuitcheck.results",
              "errors": "circuitcheck.errors", "metrics": "circuitcheck.metrics",
              "registries": "circuitcheck.registries"}
HOMES = {"circuitcheck.results": "circuitcheck/results.py", "circuitcheck.errors": "circuitcheck/errors.py",
         "circuitcheck.metrics": "circuitcheck/metrics.py", "circuitcheck.registries": "circuitcheck/registries.py"}
# Top-level names of the last release that moved, by their new name where they were renamed.
RENAMED = {"AblationResult": ("circuitcheck.results", "Ablation"), "PatchingResult": ("circuitcheck.results", "Patching")}


def names_in(path: str) -> list[str]:
    """The ``__all__`` literal of a source file, without importing it."""
    for node in ast.parse((ROOT / path).read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise LookupError(f"{path} has no __all__ list")


def _exports() -> dict[str, tuple[str, str | None]]:
    exports = {name: (module, name) for module, path in TOP_LEVEL.items() for name in names_in(path)}
    exports |= {name: (module, None) for name, module in SUBMODULES.items()}
    return exports


EXPORTS: dict[str, tuple[str, str | None]] = _exports()
MOVED: dict[str, tuple[str, str]] = {name: (module, name) for module, path in HOMES.items()
                                     for name in names_in(path) if name not in EXPORTS} | RENAMED
