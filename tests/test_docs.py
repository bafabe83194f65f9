"""docs/API.md is generated from the docstrings and must match them."""

import subprocess
import sys
from pathlib import Path

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
    assert "- `kind`: `zero`, `mean`, `resample`" in text
