"""docs/API.md is generated from the docstrings and must match them."""

import subprocess
import sys
from pathlib import Path

import pytest

BUILDER = Path(__file__).resolve().parents[1] / "docs" / "build_api.py"


def test_the_api_reference_is_up_to_date():
    checked = subprocess.run([sys.executable, str(BUILDER), "--check"], capture_output=True, text=True,
                             timeout=300)
    assert checked.returncode == 0, checked.stderr + "\nrun: .venv/bin/python docs/build_api.py"


def test_the_reference_lists_every_name_and_the_allowed_values():
    import circuitcheck

    text = (BUILDER.parent / "API.md").read_text()
    missing = [name for name in circuitcheck.__all__ if f"`{name}" not in text]
    assert not missing, f"docs/API.md lacks {missing}"
    assert "- `direction`: `clean_into_corrupted`, `corrupted_into_clean`" in text
    assert "- `ablation`: `mean`, `resample`, `zero`" in text


# The required arguments (after model and prompts) of each probe whose allowed values are listed.
REQUIRED = {"ablate": ("L0H1",), "compensation": (["L0H1"],), "completeness": (["L0H1"],),
            "faithfulness": (["L0H1"],), "minimality": (["L0H1"],), "random_circuit_test": (["L0H1"],),
            "noise_corruption": ([1],), "path_patch": (["L0H0"], ["L1H0"]), "feasibility_step": (), "feasibility": (),
            "faithfulness_curve": (["L0H1"],), "edge_patch": (["L0H1 → logits"],),
            "edge_patch_scores": (["L0H1 → logits"],)}


def documented_values() -> dict[tuple[str, str], list[str]]:
    """``{(function, argument): [values]}`` as docs/API.md lists them under each function."""
    import re

    found, function = {}, None
    for line in (BUILDER.parent / "API.md").read_text().splitlines():
        if heading := re.match(r"^### `(\w+)\(", line):
            function = heading[1]
        elif line.startswith("### "):
            function = None
        elif function and (listed := re.match(r"^- `(\w+)`: (.*)$", line)):
            found[(function, listed[1])] = re.findall(r"`([^`]+)`", listed[2])
    return found


def checked_values(message: str) -> list[str]:
    """The values a refusal lists: ``... choose one of a, b or pass a function ...`` → [a, b]."""
    import re

    listed = re.search(r"choose (?:one of )?(.*)", message)[1]
    listed = re.split(r" or (?:pass )?a function| \(", listed)[0]
    return [v.strip() for v in re.split(r", | or ", listed)]


def test_each_documented_value_list_is_the_one_the_function_checks(tiny_llama):
    """Call every function whose values API.md lists with a value outside them: it must refuse
    it listing exactly the documented values (head_scores' `kind` once showed the ablations)."""
    import circuitcheck

    from .test_patching import PROMPTS

    documented = documented_values()
    assert ("head_scores", "kind") in documented and ("ablate", "ablation") in documented
    for (function, argument), values in documented.items():
        assert function in REQUIRED or function in ("patch", "attribution_patch", "head_scores", "edge_attribution",
                                                    "from_mib"), (
            f"{function}: add its required arguments to REQUIRED so its documented values are checked")
        with pytest.raises(ValueError) as refused:
            required = ("circuit",) if (function, argument) == ("feasibility_step", "ablation") else \
                REQUIRED.get(function, ())
            home = next(m for m in (circuitcheck, circuitcheck.scrutiny, circuitcheck.edges) if hasattr(m, function))
            getattr(home, function)(tiny_llama, PROMPTS, *required, **{argument: "not-a-value"})
        message = str(refused.value)
        assert "'not-a-value'" in message, (function, argument, message)
        assert checked_values(message) == values, (function, argument, message)
