"""Write docs/API.md: every name `from circuitcheck import …` offers, from its docstrings.

    .venv/bin/python docs/build_api.py          # rewrite docs/API.md
    .venv/bin/python docs/build_api.py --check  # exit 1 when docs/API.md is out of date (CI)

For each function: its signature and docstring, and for the string arguments
that take a fixed set of values, the values (from the registry that function
checks them against: an argument name such as ``kind`` means different things
in different modules). For each Result: its fields, properties and methods.
"""

import argparse
import dataclasses
import inspect
import sys
from pathlib import Path

OUTPUT = Path(__file__).with_name("API.md")
SECTIONS = (  # how the top level's names are grouped on the page; every name in circuitcheck.__all__ is listed
    ("Prompts, circuits and evidence", ("PromptSet", "Circuit", "GaussianNoise", "Evidence")),
    ("Models", ("load_model", "model_info", "DEFAULT_MODEL")),
    ("Prompt families and strategies", ("ioi_prompts", "ioi_abc_prompts", "a_an_prompts", "counting_prompts",
                                        "day_prompts", "pet_family_prompts", "family", "FAMILIES", "strategies")),
)
SUBMODULES = ("scrutiny", "edges", "results", "errors", "metrics", "registries")  # each gets a section of its __all__


# Arguments checked by one shared function, whichever probe takes them: the registry it checks.
SHARED = {"metric": ("circuitcheck.probes.metrics", "METRICS"),  # resolve_metric
          "sweep": ("circuitcheck.probes.patching", "SWEEPS"),  # patching.prepare
          "direction": ("circuitcheck.probes.patching", "DIRECTIONS"),  # patching.prepare
          "step": ("circuitcheck.probes.feasibility", "STEPS"),
          "ablation": ("circuitcheck.probes.ablation_values", "ABLATIONS")}  # check_ablation
# Arguments each module checks against a registry of its own (``kind`` is a head class in
# probes.head_scores): looked up in the function's module.
OWN = {"kind": "KINDS", "receiver_input": "INPUTS", "method": "METHODS", "kv": "KV_RULES"}
# A shared argument that a module widens with a registry of its own (edge and node circuits
# also take ``ablation="patching"``): the module's registry wins, or that of the module whose
# ``setup`` checks the argument for it (the circuit probes share `probes.circuits.engine`'s).
WIDENED = {"ablation": ("EDGE_ABLATIONS", "CIRCUIT_ABLATIONS")}


def widened(module, parameter: str) -> tuple | None:
    """The registry that widens ``parameter`` in ``module`` (or in the module of its ``setup``)."""
    setup = getattr(module, "setup", None)
    for home in (module, inspect.getmodule(setup) if callable(setup) else None):
        for registry in WIDENED.get(parameter, ()):
            if home is not None and hasattr(home, registry):
                return tuple(getattr(home, registry))
    return None


def allowed_values(obj) -> dict[str, tuple]:
    """The string arguments of function ``obj`` that take a fixed set of values, and those
    values, from the registry the code checks each against. An argument in OWN whose module
    has no such registry is an error here, not another module's list."""
    import importlib

    try:
        parameters = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return {}
    module = importlib.import_module(obj.__module__)
    out = {}
    for parameter in parameters:
        if (values := widened(module, parameter)) is not None:
            out[parameter] = values
        elif parameter in SHARED:
            where, registry = SHARED[parameter]
            out[parameter] = tuple(getattr(importlib.import_module(where), registry))
        elif parameter in OWN:
            if not hasattr(module, OWN[parameter]):
                raise LookupError(f"{obj.__name__}({parameter}=...): {module.__name__} has no {OWN[parameter]}; "
                                  "give the module the registry its check uses, or list the argument in SHARED")
            out[parameter] = tuple(getattr(module, OWN[parameter]))
    return out


def listed(parameter: str, values: tuple) -> str:
    return ", ".join(f"`{v}`" for v in values) + (" or a function" if parameter == "metric" else "")


def _doc(obj) -> str:
    return inspect.cleandoc(obj.__doc__ or "").strip()


def _signature(name: str, obj) -> str:
    try:
        return f"{name}{inspect.signature(obj)}"
    except (TypeError, ValueError):
        return name


def function_entry(name: str, obj) -> list[str]:
    lines = [f"### `{_signature(name, obj)}`", "", _doc(obj), ""]
    lines += [f"- `{parameter}`: {listed(parameter, values)}" for parameter, values in allowed_values(obj).items()]
    return lines + [""] if lines[-1] != "" else lines


def class_entry(name: str, cls) -> list[str]:
    lines = [f"### `{name}`", "", _doc(cls), ""]
    if dataclasses.is_dataclass(cls):
        own = [f for f in dataclasses.fields(cls) if f.name not in ("model", "prompt_set", "parts", "notes_text")]
        if own:
            lines += ["| field | type |", "|---|---|"]
            lines += [f"| `{f.name}` | `{getattr(f.type, '__name__', str(f.type)).replace('|', '&#124;')}` |"
                      for f in own]
            lines.append("")
    members, seen = [], set()
    from circuitcheck.probes.results import Result

    own = [c for c in cls.__mro__ if c not in Result.__mro__]  # with what it inherits from other Results and mixins
    for member, value in [(m, v) for c in own for m, v in vars(c).items()]:
        if member in seen:
            continue
        seen.add(member)
        if member.startswith("_") or member in ("kind", "title", "usual", "extremes_column"):
            continue
        doc = _doc(value.fget if isinstance(value, property) else value) if callable(value) or isinstance(
            value, property) else ""
        what = "property" if isinstance(value, property) else _signature(member, value) if callable(value) else None
        if what:
            members.append(f"- `{member if what == 'property' else what}`{' (property)' if what == 'property' else ''}"
                           f"{': ' + doc.splitlines()[0] if doc else ''}")
    return lines + members + ([""] if members else [])


def entry(name: str, obj) -> list[str]:
    if inspect.ismodule(obj):
        lines = [f"### `{name}`", "", _doc(obj), ""]
        names = getattr(obj, "__all__", None) or [n for n in vars(obj) if not n.startswith("_")]
        lines += [f"- `{n}{inspect.signature(f)}`: {_doc(f).splitlines()[0] if _doc(f) else ''}"
                  for n, f in ((n, getattr(obj, n)) for n in names)
                  if inspect.isfunction(f) and f.__module__ == obj.__name__]
        return lines + [""]
    if inspect.isclass(obj):
        return class_entry(name, obj)
    if callable(obj):
        return function_entry(name, obj)
    shown = ", ".join(map(str, obj)) if isinstance(obj, (tuple, list, dict)) else repr(obj)
    return [f"### `{name}`", "", f"`{shown}`", ""]


def build() -> str:
    import importlib

    import circuitcheck

    placed = {n for _, names in SECTIONS for n in names} | set(SUBMODULES)
    probes = tuple(n for n in circuitcheck.__all__ if n not in placed)
    out = ["# circuitcheck API", "",
           "Everything `from circuitcheck import …` offers, and its submodules, generated from the",
           "docstrings by `docs/build_api.py` (CI fails when this page is out of date). Every Result",
           "also has `.df` (a pandas DataFrame), `.summary()`, `.figure()`, `.evidence()`, `.parts`,",
           "`assert_all(condition)` and a notebook display.", ""]
    for title, names in [("Probes", probes), *SECTIONS]:
        out += [f"## {title}", ""]
        for name in names:
            out += entry(name, getattr(circuitcheck, name))
    for submodule in SUBMODULES:
        module = importlib.import_module(f"circuitcheck.{submodule}")
        out += [f"## `{submodule}` (`circuitcheck.{submodule}`)", "", _doc(module), ""]
        for name in module.__all__:
            out += entry(name, getattr(module, name))
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when docs/API.md is out of date")
    text = build()
    if parser.parse_args().check:
        if not OUTPUT.is_file() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is out of date: run .venv/bin/python docs/build_api.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
