"""The package's shape: one namespace, dependencies pointing one way, one name per module."""

import ast
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"probes": "circuitcheck.probes", "fixtures": "circuitcheck.fixtures",
            "reports": "circuitcheck.reports"}
SOURCE_FOLDERS = ("circuitcheck", "probes", "fixtures", "reports", "hypotheses", "tests", "benchmarks")


def python_files():
    for folder in SOURCE_FOLDERS:
        yield from sorted((ROOT / folder).rglob("*.py"))
    yield ROOT / "conftest.py"


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved)."""
    parts = path.relative_to(ROOT).parts
    package = ".".join([PACKAGES.get(parts[0], "circuitcheck"), *parts[1:-1]]) if parts[0] in PACKAGES \
        else "circuitcheck"
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.add(f"{base}.{node.module}" if node.module else base)
            else:
                names.add(node.module)
    return names


@pytest.mark.parametrize("path", list(python_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_imports_a_folder_under_its_bare_name(path):
    bare = {n for n in imported_modules(path) if n.split(".")[0] in PACKAGES}
    assert not bare, f"{path.relative_to(ROOT)} imports {sorted(bare)}; use circuitcheck.<package>"


@pytest.mark.parametrize("path", sorted((ROOT / "probes").rglob("*.py")), ids=lambda p: p.name)
def test_probes_are_the_core_and_import_neither_fixtures_nor_reports(path):
    upward = {n for n in imported_modules(path)
              if n.startswith(("circuitcheck.fixtures", "circuitcheck.reports"))}
    assert not upward, f"probes/{path.name} imports {sorted(upward)}: probes must not depend on them"


PROBE_FILES = sorted((ROOT / "probes").rglob("*.py"))


@pytest.mark.parametrize("path", PROBE_FILES, ids=lambda p: str(p.relative_to(ROOT / "probes")))
def test_a_probe_module_is_one_a_reader_can_hold(path):
    lines = len(path.read_text().splitlines())
    assert lines <= 400, f"probes/{path.relative_to(ROOT / 'probes')} has {lines} lines: split it by what it does"


def test_site_labels_are_parsed_in_one_place():
    """Only probes/sites.py holds a pattern for labels such as ``L9H6``, and only it spells out a
    hook name per layer (``blocks.{layer}...``): every other module asks it (`parse_site`, `hook_of`)."""
    import re

    hand_built = re.compile(r"^f['\"]blocks\.\{[^}]+\}\.(attn\.|mlp\.)?hook_")
    label_pattern = re.compile(r"L\(\\d\+\)|\^L\\d|L\\d\+[HN]")
    for path in PROBE_FILES:
        if path.name == "sites.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not label_pattern.search(node.value), f"{path.name} parses a site label: {node.value!r}"
            if isinstance(node, ast.JoinedStr) and hand_built.match(ast.unparse(node)):
                raise AssertionError(f"{path.name} builds a hook name by hand: {ast.unparse(node)}; "
                                     "use sites.hook_of")


def test_fixtures_do_not_import_reports():
    for path in (ROOT / "fixtures").rglob("*.py"):
        assert not any(n.startswith("circuitcheck.reports") for n in imported_modules(path)), path


def test_no_pythonpath_puts_the_folders_on_sys_path_twice():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "pythonpath" not in config["tool"]["pytest"]["ini_options"]
    assert config["project"]["entry-points"]["pytest11"] == {"circuitcheck": "circuitcheck.plugin"}
    assert "Framework :: Pytest" in config["project"]["classifiers"]


def test_every_package_folder_is_in_the_wheel():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    for folder, name in PACKAGES.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            package = ".".join([name, *init.parent.relative_to(ROOT / folder).parts])
            assert package in listed, f"add {package!r} to [tool.setuptools] packages in pyproject.toml"


def test_the_installed_modules_are_the_repository_folders():
    import circuitcheck.fixtures
    import circuitcheck.probes
    import circuitcheck.reports

    for folder, name in PACKAGES.items():
        assert Path(sys.modules[name].__file__).parent == ROOT / folder
        assert folder not in sys.modules, f"{folder} was imported under its bare name too"


def test_one_import_line_gives_a_hypothesis_what_it_needs():
    import circuitcheck

    for name in ("load_model", "PromptSet", "logit_diff", "patch", "corruption_check", "Evidence",
                 "ioi_prompts", "FAMILIES", "family", "strategies", "model_info"):
        assert name in circuitcheck.__all__ and getattr(circuitcheck, name) is not None
    import circuitcheck.probes

    assert not set(circuitcheck.probes.__all__) - set(circuitcheck.__all__), "re-export every probe"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        circuitcheck.nothing
