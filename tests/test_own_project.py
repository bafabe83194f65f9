"""circuitcheck installed from a wheel into another project's environment, used there by plain pytest.

The wheel is built from a copy of this checkout and installed into a fresh virtual
environment (torch and the other dependencies are borrowed from the toolkit's own
environment through a ``.pth`` file, so nothing is downloaded). A top-level
package named ``fixtures`` (PyPI's testing-cabal package has that name) is
installed beside it: circuitcheck must not care.
"""

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

HYPOTHESIS = '''
from circuitcheck import PromptSet, corruption_check, logit_diff, model_info

IOI = PromptSet(["When John and Mary went to the shops, John gave the bag to"], [(" Mary", " John")],
                corrupted_prompts=["When John and Mary went to the shops, Mary gave the bag to"], name="ioi")

def test_the_model_runs(model):
    """The tiny model gives a finite logit difference."""
    assert model_info(model).name == "tiny-llama"
    assert abs(logit_diff(model, IOI).mean) < 100

def test_corruption_is_checked(model):
    """The corruption check runs and records one item with its parts."""
    assert len(corruption_check(model, IOI).verdicts) == 1

def test_hypothesis_settings_stay_the_projects():
    """circuitcheck registers its profiles under its own names and loads none of them."""
    from hypothesis import settings
    assert settings.get_current_profile_name() in ("default", "ci")  # Hypothesis's own ("ci" in a CI)
    assert settings().max_examples == 100
    assert settings.get_profile("circuitcheck-dev").max_examples == 20
'''


def _copy_of_checkout(destination: Path) -> Path:
    skip = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", "out", ".hypothesis")
    shutil.copytree(ROOT, destination, ignore=skip)
    return destination


@pytest.mark.slow
def test_an_installed_wheel_works_in_a_project_of_its_own(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(_copy_of_checkout(tmp_path / "src"))], check=True, timeout=300)
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    purelib = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    # the toolkit's own site-packages, for torch & co.; its .pth files (the editable install) are not run
    (purelib / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    [wheel] = wheels.glob("circuitcheck-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(purelib),
                    str(wheel)], check=True, timeout=300)
    (purelib / "fixtures").mkdir()
    (purelib / "fixtures" / "__init__.py").write_text('"""A stand-in for PyPI\'s fixtures."""\nclass Fixture: ...\n')

    project = tmp_path / "project"
    project.mkdir()
    (project / "test_claims.py").write_text(HYPOTHESIS)
    where = subprocess.run([python, "-c", "import circuitcheck.probes, fixtures; print(circuitcheck.probes.__file__);"
                            "print(fixtures.__doc__)"], capture_output=True, text=True, cwd=project).stdout
    assert where.splitlines() == [str(purelib / "circuitcheck" / "probes" / "__init__.py"),
                                  "A stand-in for PyPI's fixtures."]
    result = subprocess.run([python, "-m", "pytest", "--model", "tiny-llama", "-p", "no:cacheprovider",
                             "--report-dir", "report"], capture_output=True, text=True, cwd=project, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "3 passed" in result.stdout
    report = json.loads((project / "report" / "latest" / "evidence.json").read_text())
    kinds = {t["nodeid"].split("::")[1]: [e["kind"] for e in t["evidence"]] for t in report["tests"]}
    assert kinds == {"test_the_model_runs[tiny-llama]": ["logit_diff"],
                     "test_corruption_is_checked[tiny-llama]": ["corruption_check"],
                     "test_hypothesis_settings_stay_the_projects": []}
    assert (project / "report" / "latest" / "index.html").is_file()
