"""Results display themselves in Jupyter; the example notebook runs headless so it cannot rot."""

import shutil
import subprocess
from pathlib import Path

import pytest

from circuitcheck.probes import PromptSet, corruption_check, head_attribution, notebook

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore_a_family.ipynb"
PAIR = PromptSet(['When <b>John</b> and Mary went to the shops, John gave the bag to'], [(" Mary", " John")],
                 corrupted_prompts=['When <b>John</b> and Mary went to the shops, Mary gave the bag to'],
                 name="<i>pair</i>")


def test_a_result_shows_its_numbers_table_figure_and_parts_escaped(tiny_llama, monkeypatch):
    monkeypatch.setattr(notebook, "_plotly_js_sent", False)
    first = corruption_check(tiny_llama, PAIR)._repr_html_()
    assert "fraction_flipped" in first and "Corruption check" in first
    assert "<b>John</b>" not in first and "&lt;b&gt;John&lt;/b&gt;" in first and "<i>pair</i>" not in first
    assert first.count("built from") == 0 and first.count("part: ") == 2  # its two logit_diffs
    assert first.count("Plotly.newPlot") == 3 and "<script src" not in first  # inlined, no CDN
    second = head_attribution(tiny_llama, PAIR)._repr_html_()
    assert len(second) < len(first) / 100  # plotly.js is inlined once per kernel, not per result


def test_a_result_renders_in_headless_chromium_offline(tiny_llama, tmp_path, monkeypatch):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium installed (apt-get install chromium); .ci/run installs it")
    monkeypatch.setattr(notebook, "_plotly_js_sent", False)
    page = tmp_path / "cell.html"
    page.write_text("<!DOCTYPE html><meta charset='utf-8'><body>"
                    + corruption_check(tiny_llama, PAIR)._repr_html_()
                    + head_attribution(tiny_llama, PAIR)._repr_html_() + "</body>")
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=10000", "--host-resolver-rules=MAP * ~NOTFOUND"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert "Uncaught" not in dom.stderr and "is not defined" not in dom.stderr, dom.stderr[-2000:]
    assert dom.stdout.count('class="main-svg"') >= 4  # the line chart, two parts' bars, the heatmap


@pytest.mark.slow
def test_the_example_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("CIRCUITCHECK_NOTEBOOK_MODEL", "tiny-llama")
    book = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(book, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in book.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    shown = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert sum("circuitcheck-result" in html for html in shown) == 3  # logit_diff, corruption, patch
