"""Report rendering: schema, comparison, atomic writes, rendering errors, size, and a real browser."""

import json
import shutil
import subprocess

import jsonschema
import pytest

from circuitcheck.probes import evidence as capture
from circuitcheck.reports.render import render_html, write_report
from circuitcheck.reports.run import SCHEMA_VERSION
from circuitcheck.reports.sample import synthetic_run

from .test_plugin import run as run_pytest

SCHEMA = json.loads((__import__("pathlib").Path(__file__).parents[1] / "reports" / "evidence.schema.json").read_text())


def test_synthetic_run_matches_the_schema():
    jsonschema.validate(synthetic_run(), SCHEMA)


@pytest.mark.slow
def test_plugin_output_validates_against_the_schema(pytester):
    from .test_plugin import HYPOTHESES

    pytester.makepyfile(test_claims=HYPOTHESES)
    run_pytest(pytester, "--model", "tiny-llama", "--report-dir", "out")
    jsonschema.validate(json.loads((pytester.path / "out" / "latest" / "evidence.json").read_text()), SCHEMA)


@pytest.mark.slow
def test_compare_shows_changed_verdicts_and_moved_numbers(pytester, monkeypatch):
    pytester.makepyfile(test_flip='''
import os
def test_flips(evidence):
    """Holds unless FLIP is set."""
    evidence.number("score", float(os.environ.get("SCORE", "1")))
    assert "FLIP" not in os.environ

def test_steady():
    pass
''')
    run_pytest(pytester, "--report-dir", "old")
    monkeypatch.setenv("FLIP", "1")
    monkeypatch.setenv("SCORE", "2")
    run_pytest(pytester, "--report-dir", "new", "--report-compare", "old")  # a report folder: its latest run
    report = json.loads((pytester.path / "new" / "latest" / "evidence.json").read_text())
    tests = {t["nodeid"]: t for t in report["tests"]}
    flips = tests["test_flip.py::test_flips"]["compare"]
    assert flips["status"] == "changed" and flips["old_outcome"] == "passed"
    assert flips["moves"] == [{"name": "number #1 score", "old": 1.0, "new": 2.0}]
    assert tests["test_flip.py::test_steady"]["compare"]["status"] == "same"
    old_run = (pytester.path / "old" / "latest").resolve()
    assert report["compared_with"]["path"] == str(old_run / "evidence.json")
    html = (pytester.path / "new" / "latest" / "index.html").read_text()
    assert "passed → failed" in html and "since the compared run" in html
    missing = run_pytest(pytester, "--report-compare", "nowhere.json")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR


def test_report_files_are_replaced_atomically(tmp_path, monkeypatch):
    write_report(synthetic_run(), tmp_path)
    before = (tmp_path / "index.html").read_text()
    monkeypatch.setattr("circuitcheck.reports.render.render_html", lambda run: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_report(synthetic_run(5), tmp_path)
    assert (tmp_path / "index.html").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evidence.json", "index.html"]


def test_unrenderable_evidence_becomes_an_error_in_its_place():
    class Broken:
        def evidence(self):
            raise RuntimeError("cannot serialise this")

    run = synthetic_run(1)
    run["tests"][0]["evidence"] += [capture.to_evidence(Broken()),
                                    {"kind": "x", "title": "bad figure", "figures": [{"type": "pie"}]}]
    html = render_html(run)
    assert "evidence could not be recorded: RuntimeError: cannot serialise this" in html
    assert "figure could not be drawn: ValueError: unknown figure type" in html


def test_three_hundred_hypotheses_with_three_figures_stay_under_20_mb():
    """Size only; render time is measured by benchmarks/report.py."""
    html = render_html(synthetic_run(300, figures=3))
    assert len(html.encode()) < 20 * 2**20
    assert html.count("data-figure=") == 900 and html.count("Plotly.newPlot") == 1


def test_report_renders_in_headless_chromium(tmp_path):
    """The page draws every figure offline; its screenshot (kept as ``report.png`` in this
    test's tmp folder) shows the comparison summary, the falsifying example, prompt labels
    and the logit-lens figure with its right axis title inside the figure."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium installed (apt-get install chromium); .ci/run installs it")
    run = showcase_run()
    run["tests"] += synthetic_run(3, figures=3)["tests"][1:]  # and the three kinds of figure, twice
    write_report(run, tmp_path)
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=10000", "--window-size=1200,2200"]
    url = (tmp_path / "index.html").as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    subprocess.run([*flags, f"--screenshot={tmp_path / 'report.png'}", url], capture_output=True, timeout=120)
    assert "Uncaught" not in dom.stderr and "is not defined" not in dom.stderr, dom.stderr[-2000:]
    assert dom.stdout.count('class="main-svg"') >= 2 * 10  # every figure drew its SVG (two per figure)
    assert "Since the compared run" in dom.stdout and "Falsifying example" in dom.stdout
    assert "…Mary and John…shops, John gave the bag…" in dom.stdout  # a prompt's tick label
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert_right_axis_title_inside(dom.stdout, "mean probability")


def assert_right_axis_title_inside(dom: str, title: str):
    """The right axis title's centre lies inside the figure's SVG, not past its right edge."""
    import re

    [figure] = [f for f in dom.split('class="plot-container plotly"')[1:] if f">{title}</text>" in f]
    width = float(re.search(r'<svg class="main-svg"[^>]* width="([\d.]+)"', figure).group(1))
    [text] = re.findall(r'<text class="y2title"[^>]*>', figure)
    x = float(re.search(r' x="([\d.]+)"', text).group(1))
    assert x + 8 <= width, f"right axis title at x={x}, figure {width} wide: clipped"


def test_feasibility_table_orders_steps_and_marks_the_first_break():
    from circuitcheck.reports.render import feasibility_table

    run = synthetic_run(0)
    for family, outcomes in (("IOI", ["passed", "passed", "xfailed"]), ("days", ["xfailed", "passed", "xfailed"])):
        for step, outcome in zip(["task", "answers", "neuron"], outcomes):
            run["tests"].append({"nodeid": f"t[{family}-{step}]", "hypothesis": f"t[{family}-{step}]",
                                 "model": "m", "claim": "", "outcome": outcome, "message": "", "details": "",
                                 "duration": 0.0, "evidence": [], "params": {"family": family, "step": step}})
    steps, rows = feasibility_table(run)
    assert steps == ["task", "answers", "neuron"]
    assert [(r["family"], r["first_break"]) for r in rows] == [("IOI", "neuron"), ("days", "task")]
    assert "Workflow feasibility" not in render_html({**run, "tests": []})
    html = render_html(run)
    assert html.count("◀") == 2 + 1  # one mark per family, and the legend


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, as browsers and most JSON tools do."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_anywhere_are_written_as_null(tmp_path):
    run = synthetic_run(1)
    run["duration"] = float("nan")  # a run-level number
    run["tests"][0]["evidence"].append({"kind": "number", "title": "raw", "value": float("inf"),
                                        "figures": [{"type": "bar", "x": ["a", "b"], "y": [float("nan"), 1.0]}]})
    write_report(run, tmp_path)
    report = strict_json((tmp_path / "evidence.json").read_text())
    assert report["duration"] is None and report["tests"][0]["evidence"][-1]["value"] is None
    html = (tmp_path / "index.html").read_text()
    figures = html.split('id="circuitcheck-figures">')[1].split("</script>")[0]
    assert [None, 1.0] in [trace["y"] for figure in strict_json(figures).values() for trace in figure["data"]]


def test_a_nan_number_in_a_run_gives_strict_json(pytester):
    pytester.makepyfile(test_nan='''
def test_nan(evidence):
    evidence.number("ratio", float("nan"), threshold=float("inf"))
''')
    run_pytest(pytester, "--report-dir", "out").assert_outcomes(passed=1)
    report = strict_json((pytester.path / "out" / "latest" / "evidence.json").read_text())
    [number] = report["tests"][0]["evidence"]
    assert number["value"] is None and number["threshold"] is None and "nan" in number["note"]


def test_models_table_shows_what_was_prepended():
    run = synthetic_run(1)
    run["models"] = [{"name": "a", "prepended": "<|endoftext|>"}, {"name": "b", "prepended": None},
                     {"name": "c"}]
    jsonschema.validate(run, SCHEMA)
    html = render_html(run)
    assert "a; prepended: &#39;&lt;|endoftext|&gt;&#39;" in html
    assert "b; prepended: nothing" in html and "c; prepended" not in html


# Per-run folders (circuitcheck.reports.store)

from circuitcheck.reports import store  # noqa: E402


def run_id_in_html(html: str) -> str:
    return html.split('<meta name="circuitcheck-run-id" content="')[1].split('"')[0]


def publish_runs(report_dir, n, keep=store.KEEP, start=1_700_000_000.0):
    folders = []
    for i in range(n):
        run = {**synthetic_run(1), "run_id": store.new_run_id(), "started": start + 60 * i}
        folders.append(store.publish(run, report_dir, keep=keep).parent)
    return folders


def assert_consistent(folder):
    """Both files of a run folder come from the run its name says."""
    assert sorted(p.name for p in folder.iterdir()) == ["evidence.json", "index.html"]
    run_id = strict_json((folder / "evidence.json").read_text())["run_id"]
    assert folder.name.endswith("-" + run_id) and run_id_in_html((folder / "index.html").read_text()) == run_id


def test_each_run_gets_its_own_folder_and_latest_points_at_the_newest(tmp_path):
    first, second = publish_runs(tmp_path, 2)
    assert first.name.startswith("20231114T221320Z-") and first != second
    for folder in (first, second):
        assert_consistent(folder)
    assert (tmp_path / "latest").is_symlink() and not (tmp_path / "latest").readlink().is_absolute()
    assert (tmp_path / "latest").resolve() == second.resolve() == store.latest_run(tmp_path).resolve()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, second.name, "latest"])


def test_only_the_newest_runs_are_kept(tmp_path):
    folders = publish_runs(tmp_path, 5, keep=3)
    assert sorted(p for p in tmp_path.iterdir() if store.RUN_NAME.match(p.name)) == folders[2:]
    assert store.latest_run(tmp_path) == folders[-1]
    publish_runs(tmp_path, 2, keep=0, start=1_800_000_000.0)  # 0 keeps all
    assert len([p for p in tmp_path.iterdir() if store.RUN_NAME.match(p.name)]) == 5


def test_leftovers_of_killed_runs_are_removed_once_stale(tmp_path):
    import os
    import time

    dead = tmp_path / f"{store.TEMP_PREFIX}deadbeef-x1"  # killed between writing and renaming
    dead.mkdir()
    (dead / "evidence.json").write_text("")
    old_layout = tmp_path / ".index.html.k2j3"  # the one-folder layout's empty temporary file
    old_layout.write_text("")
    live = tmp_path / f"{store.TEMP_PREFIX}0123abcd-y2"  # a run writing right now
    live.mkdir()
    mine = tmp_path / "notes.txt"  # not ours: never touched
    mine.write_text("keep me")
    hour_ago = time.time() - 2 * store.STALE_AFTER
    for path in (dead, old_layout, mine):
        os.utime(path, (hour_ago, hour_ago))
    [folder] = publish_runs(tmp_path, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([folder.name, "latest", live.name, "notes.txt"])


def test_a_failed_write_leaves_no_folder_and_latest_unchanged(tmp_path, monkeypatch):
    [first] = publish_runs(tmp_path, 1)
    monkeypatch.setattr("circuitcheck.reports.render.render_html", lambda run: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        publish_runs(tmp_path, 1, start=1_800_000_000.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, "latest"])
    assert store.latest_run(tmp_path) == first


def test_latest_txt_where_symlinks_cannot_be_made(tmp_path, monkeypatch):
    def no_symlinks(*args, **kwargs):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr("os.symlink", no_symlinks)
    first, second = publish_runs(tmp_path, 2)
    assert (tmp_path / "latest.txt").read_text() == second.name + "\n"
    assert not (tmp_path / "latest").exists() and store.latest_run(tmp_path) == second


# Report fixes (issue 13, point 5)

from circuitcheck.probes.figures import plotly_figure, prompt_labels  # noqa: E402

IOI_LIKE = ["When Mary and John went to the shops, John gave the bag to",
            "When Tom and Anna went to the shops, Anna gave the bag to",
            "When Mary and John went to the park, John gave the ball to"]


def test_prompt_labels_keep_the_part_that_differs():
    labels, full = prompt_labels(IOI_LIKE)
    assert full == IOI_LIKE
    assert labels == ["0: …Mary and John…shops, John gave the bag…", "1: …Tom and Anna…shops, Anna gave the bag…",
                      "2: …Mary and John…park, John gave the ball…"]
    assert prompt_labels(["The capital of France is", "The capital of Germany is"])[0] == ["0: …France…",
                                                                                           "1: …Germany…"]
    same, _ = prompt_labels(["one prompt", "one prompt"])  # equal prompts stay apart
    assert len(set(same)) == 2
    assert all(len(label) < 50 for label in prompt_labels([p * 5 for p in IOI_LIKE])[0])


def test_prompt_figures_label_what_differs_and_hover_the_whole_prompt(tiny_llama):
    from circuitcheck.probes import PromptSet, corruption_check, logit_diff

    texts = [IOI_LIKE[0], "When John and Mary went to the shops, Mary gave the bag to"]
    prompts = PromptSet(texts, [(" Mary", " John"), (" John", " Mary")], name="ioi-like",
                        corrupted_prompts=[texts[0].replace("John gave", "Mary gave"),
                                           texts[1].replace("Mary gave", "John gave")])
    for spec in (logit_diff(tiny_llama, prompts).figure(), corruption_check(tiny_llama, prompts).figure()):
        assert spec["x"] == ["0: …Mary and John…John…", "1: …John and Mary…Mary…"] and spec["hover"] == texts
        for trace in plotly_figure(spec)["data"]:
            assert trace["hovertext"] == texts and "%{hovertext}" in trace["hovertemplate"]
    hostile = plotly_figure({"type": "bar", "x": ["a"], "y": [1.0], "hover": ["<b>x</b> & y"]})
    assert hostile["data"][0]["hovertext"] == ["&lt;b&gt;x&lt;/b&gt; &amp; y"]


def test_the_right_axis_has_room_for_its_title():
    spec = {"type": "line", "x": ["a", "b"], "series": {"d": [1, 2], "p": [0.1, 0.2]}, "right_axis": ["p"],
            "right_label": "mean probability"}
    layout = plotly_figure(spec)["layout"]
    assert layout["yaxis2"]["automargin"] is True and layout["margin"]["r"] >= 60
    assert layout["yaxis2"]["title"]["text"] == "mean probability"


def test_attention_to_the_two_answers_carries_two_titles(tiny_llama):
    from circuitcheck.probes import PromptSet, attention_to

    prompts = PromptSet(IOI_LIKE[:1], [(" Mary", " John")], name="ioi-like")
    to_io = attention_to(tiny_llama, prompts, ["L0H0", "L1H1"], target="correct")
    to_s = attention_to(tiny_llama, prompts, ["L0H0", "L1H1"], target="incorrect")
    assert to_io.title != to_s.title and "correct answer" in to_io.title and "incorrect answer" in to_s.title
    assert "L0H0, L1H1" in to_io.title and to_io.figure()["title"] == to_io.title
    assert to_io.evidence()["title"] != to_s.evidence()["title"]
    assert "' Mary'" in attention_to(tiny_llama, prompts, ["L0H0"], target=" Mary").title


def test_matrix_and_evidence_follow_definition_order_with_each_claim():
    from circuitcheck.reports.run import definition_order

    run = synthetic_run(4)
    for test, order, claim in zip(run["tests"], (2, 0, 3, 1), ("Third.\nMore.", "First.", "Fourth.", "Second.")):
        test.update(order=order, claim=claim)  # listed in completion order, as under xdist
    run["tests"][2]["nodeid"] = run["tests"][2]["hypothesis"] = "hypotheses/test_a.py::test_z"  # another file
    assert [t["claim"][:5] for t in definition_order(run["tests"])] == ["Fourt", "First", "Secon", "Third"]
    no_order = definition_order([{k: v for k, v in t.items() if k != "order"} for t in run["tests"]])
    html = render_html(run)
    matrix = html.split("<h2>Hypotheses × models</h2>")[1].split("<h2>Evidence</h2>")[0]
    rows = [row.split("<code>")[1].split("</code>")[0] for row in matrix.split("<tr>")[2:]]
    assert rows == ["hypotheses/test_a.py::test_z", "hypotheses/test_x.py::test_1",
                    "hypotheses/test_x.py::test_3", "hypotheses/test_x.py::test_0"]
    assert "<td>Third.</td>" in matrix and "More." not in matrix
    assert [t["claim"][:5] for t in no_order] == ["Fourt", "Third", "First", "Secon"]  # file, then as they came


def showcase_run() -> dict:
    """A run with a property test's counterexample, a comparison and a logit-lens figure."""
    run = synthetic_run(2, figures=2)
    failing, passing = run["tests"]
    failing.update(outcome="failed", message="AssertionError: assert 1.2 > 2",
                   examples={"count": 37, "shown": "falsifying",
                             "note": "37 examples run; evidence of the falsifying one shown"},
                   compare={"status": "changed", "old_outcome": "passed",
                            "moves": [{"name": "logit_diff #1 mean", "old": 2.5, "new": 1.2}],
                            "prompts": {"old_prompt_sets": ["ioi-A"], "new_prompt_sets": ["ioi-B"],
                                        "prompts_added": [IOI_LIKE[1]], "prompts_removed": [IOI_LIKE[0]]}})
    passing["compare"] = {"status": "same", "old_outcome": "passed", "moves": []}
    labels, hover = prompt_labels(IOI_LIKE)
    failing["evidence"] = [
        {"kind": "logit_diff", "title": "Logit difference", "prompt_set": "ioi-B",
         "figures": [{"type": "bar", "x": labels, "hover": hover, "y": [1.5, -0.5, 2.0],
                      "xlabel": "prompt", "ylabel": "logit difference"}]},
        {"kind": "logit_lens", "title": "Logit lens", "prompt_set": "ioi-B",
         "figures": [{"type": "line", "x": [f"L{l} {s}" for l in range(30) for s in ("pre", "mid")],
                      "xlabel": "residual stream", "ylabel": "mean logit difference",
                      "right_label": "mean probability", "right_axis": ["P(correct)", "P(incorrect)"],
                      "series": {"logit difference": [l / 10 for l in range(60)],
                                 "P(correct)": [l / 60 for l in range(60)],
                                 "P(incorrect)": [(60 - l) / 120 for l in range(60)]}}]}]
    run["compared_with"] = {"path": "/runs/old/evidence.json", "started": 0.0, "run_id": "89abcdef"}
    run["removed_since_compared"] = []
    from circuitcheck.reports.compare import summarise

    run["compare_summary"] = summarise(run)
    return run


def test_report_shows_counterexample_and_comparison_summary():
    run = showcase_run()
    jsonschema.validate(run, SCHEMA)
    assert run["compare_summary"] == {"verdicts_changed": 1, "numbers_moved": 1, "prompt_sets_changed": 1,
                                      "new": 0, "removed": 0}
    html = render_html(run)
    top = html.split("<h2>Hypotheses × models</h2>")[0]
    assert "Since the compared run" in top and "prompt set changed" in top and "ioi-A, " not in top
    assert "ioi-A → ioi-B" in top and "passed → failed" in top
    assert "Falsifying example" in html and "37 examples run; evidence of the falsifying one shown" in html


def test_comparing_with_a_report_folder_reads_its_newest_run_not_an_old_layout_file(tmp_path):
    from circuitcheck.reports.compare import load_evidence

    (tmp_path / "evidence.json").write_text(json.dumps({"tests": [], "command": "old layout"}))
    run = tmp_path / "20260101T000000Z-abcdef12"
    run.mkdir()
    (run / "evidence.json").write_text(json.dumps({"tests": [], "command": "newest run"}))
    (tmp_path / "latest").symlink_to(run.name)
    path, document = load_evidence(tmp_path)
    assert path == run / "evidence.json" and document["command"] == "newest run"


def test_numbers_are_not_compared_across_schema_versions():
    """Version 1 recorded every Result; items are matched by the n-th of a kind, so a run
    written before would show false moves: its verdicts are compared, its numbers not."""
    from circuitcheck.reports.compare import compare_runs

    old, new = synthetic_run(1), synthetic_run(1)
    old["schema_version"] = 1
    old["tests"][0]["evidence"][0]["summary"]["mean"] = 99.0
    compare_runs(new, "old/evidence.json", old)
    assert new["tests"][0]["compare"]["moves"] == [] and "numbers not" in new["compared_with"]["note"]
    jsonschema.validate(new, SCHEMA)


# Where each test ran, and a report merged from shards

def test_merged_report_shows_each_shard_and_a_failed_one_prominently():
    from circuitcheck.reports.sample import merged_run

    run = merged_run()
    jsonschema.validate(run, SCHEMA)
    html = render_html(run)
    top = html.split("<h2>Hypotheses × models</h2>")[0]
    banner = top.split('<p class="banner shard-failed">')[1].split("</p>")[0]
    assert "<strong>s1</strong> failed after 2 attempt(s) on gpu-b: worker lost (exit code -9)" in banner
    shards = top.split('<details id="shards" open>')[1].split("</details>")[0]
    assert shards.count("<tr><td>s") == 2 and "shards/s0/evidence.json" in shards and ">1 failed<" in shards
    assert "gpu-a · gw1 · cuda:0 (CUDA_VISIBLE_DEVICES=5) · shard s0 <span" in top  # the "ran on" row
    assert "0.10 s · ran on gpu-a · gw0 · cuda:0 (CUDA_VISIBLE_DEVICES=3) · shard s0</p>" in html


def test_a_report_of_shards_that_all_passed_keeps_their_list_closed():
    from circuitcheck.reports.sample import merged_run

    run = merged_run()
    run["merged_from"][1].update(status="ok", attempts=1, reason="")
    html = render_html(run)
    assert '<details id="shards">' in html and "shard-failed" not in html


def test_xdist_group_suffix_is_not_part_of_the_reports_test_id():
    """pytest-xdist's loadgroup appends '@group' to a test's id in the worker (pytest before 9.2)."""
    from types import SimpleNamespace

    from circuitcheck.reports.facts import plain_nodeid

    group = pytest.mark.xdist_group("gpt2").mark

    def item(nodeid, loadgroup=True, marks=(group,)):
        return SimpleNamespace(nodeid=nodeid, config=SimpleNamespace(option=SimpleNamespace(loadgroup=loadgroup)),
                               iter_markers=lambda name: iter(marks))

    assert plain_nodeid(item("t.py::test_x[gpt2]@gpt2")) == "t.py::test_x[gpt2]"
    assert plain_nodeid(item("t.py::test_x[gpt2]")) == "t.py::test_x[gpt2]"  # pytest 9.2: no suffix
    assert plain_nodeid(item("t.py::test_x[a@gpt2]", marks=())) == "t.py::test_x[a@gpt2]"
    assert plain_nodeid(item("t.py::test_x[gpt2]@gpt2", loadgroup=False)) == "t.py::test_x[gpt2]@gpt2"
