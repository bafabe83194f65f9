"""What ``from circuitcheck import …`` offers, generated from the packages' ``__all__``.

The top level is the researchers' names: `circuitcheck.probes` (probes, PromptSet, Circuit,
GaussianNoise, Evidence, model_info), `circuitcheck.fixtures` (load_model, DEFAULT_MODEL),
`circuitcheck.fixtures.families` (the prompt families) and the submodules `strategies`,
`results`, `errors`, `metrics`, `registries`, `scrutiny` and `edges`. Each package's ``__all__`` is read from its
source, so ``import circuitcheck`` (and ``pytest --help``, which loads the plugin) imports
no torch. A name that used to be at the top level and now lives in a submodule still works
for one release, with a DeprecationWarning naming its new home (`MOVED`). The package's
``__getattr__`` is `top_level_attribute`, so that its namespace holds only its names.
"""

import ast
import importlib
import importlib.util
import sys
import warnings
from pathlib import Path

# module -> (the package that holds its file, the file's name): found through the import
# system, so the same code reads an editable checkout and an installed wheel
TOP_LEVEL = {"circuitcheck.probes": ("circuitcheck.probes", "__init__.py"),
             "circuitcheck.fixtures": ("circuitcheck.fixtures", "__init__.py"),
             "circuitcheck.fixtures.families": ("circuitcheck.fixtures", "families.py")}
SUBMODULES = {"strategies": "circuitcheck.fixtures.strategies", "results": "circuitcheck.results",
              "errors": "circuitcheck.errors", "metrics": "circuitcheck.metrics",
              "registries": "circuitcheck.registries", "scrutiny": "circuitcheck.scrutiny",
              "edges": "circuitcheck.edges"}
HOMES = {f"circuitcheck.{name}": ("circuitcheck", f"{name}.py") for name in ("results", "errors", "metrics", "registries")}
# Top-level names of the last release that moved, by their new name where they were renamed.
RENAMED = {"AblationResult": ("circuitcheck.results", "Ablation"), "PatchingResult": ("circuitcheck.results", "Patching")}


def source_of(package: str, file: str) -> Path:
    """``file`` in ``package``'s folder, found without running the package."""
    if package == "circuitcheck":
        return Path(__file__).with_name(file)
    return Path(importlib.util.find_spec(package).origin).with_name(file)


def names_in(where: tuple[str, str]) -> list[str]:
    """The ``__all__`` literal of a module's source file, without importing the module."""
    path = source_of(*where)
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise LookupError(f"{path} has no __all__ list")


def _exports() -> dict[str, tuple[str, str | None]]:
    exports = {name: (module, name) for module, where in TOP_LEVEL.items() for name in names_in(where)}
    exports |= {name: (module, None) for name, module in SUBMODULES.items()}
    return exports


EXPORTS: dict[str, tuple[str, str | None]] = _exports()
MOVED: dict[str, tuple[str, str]] = {name: (module, name) for module, where in HOMES.items()
                                     for name in names_in(where) if name not in EXPORTS} | RENAMED


def top_level_attribute(name: str):
    """``circuitcheck.<name>``: an export, imported on first use (and kept in the package), or a
    moved name, with a warning naming its new home."""
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
    setattr(sys.modules[__package__], name, value)
    return value
