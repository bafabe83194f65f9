"""Write ``evidence.json`` and ``index.html`` for a run into a folder (`store` gives each
run its own folder).

The HTML is rendered by jinja2 with autoescape on; user text (prompts, claims,
messages) only ever appears as escaped text. Figures travel as one JSON blob in
a ``<script type="application/json">`` element (with ``<`` escaped so no text
can close it) and are drawn by plotly.js, inlined once per page: the report is
one file that works offline. Both files are strict JSON inside: NaN and infinities
become null (``json_safe``), and ``allow_nan=False`` refuses any that slip through.
"""

import json
from pathlib import Path

import jinja2

from .ground_truth import ground_truth_section
from .run import definition_order
from .scrutiny import ALPHA, p_value_rows, published_rows, self_check_rows

TEMPLATES = Path(__file__).parent / "templates"


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path`` and rename: readers see old or new, never half
    (`circuitcheck.probes.files.write_atomic`, which MIB exports share)."""
    from circuitcheck.probes.files import write_atomic as write  # probes import torch: only when writing

    write(path, text)


def _script_json(data) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' survive literally."""
    text = json.dumps(data, allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _collect_figures(run: dict) -> dict:
    """Give each figure an id; a figure that cannot be drawn becomes a rendering error."""
    from circuitcheck.probes.figures import plotly_figure  # probes import torch: not at plugin import

    figures = {}

    def collect(item: dict, prefix: str) -> None:
        item["figure_ids"], item["figure_errors"] = [], []
        for f, spec in enumerate(item.get("figures") or []):
            try:
                figure = plotly_figure(spec)
                json.dumps(figure, allow_nan=False)
            except Exception as error:  # noqa: BLE001 - shown in the report instead
                item["figure_errors"].append(f"{type(error).__name__}: {error}")
                continue
            figures[f"{prefix}-{f}"] = figure
            item["figure_ids"].append(f"{prefix}-{f}")
        for p, part in enumerate(item.get("parts") or []):  # a composite probe's parts
            collect(part, f"{prefix}-p{p}")

    for t, test in enumerate(run["tests"]):
        for e, item in enumerate(test["evidence"]):
            collect(item, f"fig-{t}-{e}")
    for f, fixture in enumerate(run.get("fixtures") or []):
        for e, item in enumerate(fixture.get("evidence") or []):
            collect(item, f"fig-fx{f}-{e}")
    return figures


def fixture_places(run: dict) -> tuple[list[dict], dict[int, list[dict]], list[dict]]:
    """Where the page shows each wider fixture's evidence: session and package fixtures
    before every test; a module's (or class's) before the first test of its file, as that
    module's; one whose file has no test in the run, after them all."""
    first: dict = {}
    for index, test in enumerate(run["tests"]):
        first.setdefault(test["nodeid"].split("::")[0], index)
    before, at, after = [], {}, []
    for fixture in run.get("fixtures") or []:
        file = fixture.get("file")
        if not file:
            before.append(fixture)
        elif file in first:
            at.setdefault(first[file], []).append(fixture)
        else:
            after.append(fixture)
    return before, at, after


def feasibility_table(run: dict) -> tuple[list[str], list[dict]]:
    """Per family and model (a family's models in adjacent rows), the workflow steps (tests parametrized by ``family`` and ``step``,
    and the ``feasibility_step`` parts of each ``feasibility`` evidence item, in the order they
    ran) with each step's test, and the first step that does not hold."""
    steps: list[str] = []
    tables: dict = {}
    for test in run["tests"]:
        params = test.get("params") or {}
        if "family" in params and "step" in params:
            steps += [params["step"]] if params["step"] not in steps else []
            tables.setdefault((test["model"] or "—", params["family"]), {})[params["step"]] = test
        for item in test.get("evidence") or []:  # a feasibility(...) call: one row, its steps as parts
            if item.get("kind") != "feasibility":
                continue
            family = (item.get("summary") or {}).get("family") or item.get("prompt_set") or "—"
            for part in item.get("parts") or []:
                summary = part.get("summary") or {}
                if part.get("kind") == "feasibility_step" and "step" in summary:
                    step = summary["step"]
                    steps += [step] if step not in steps else []
                    outcome = "passed" if summary.get("holds") == "True" else "xfailed"
                    tables.setdefault((test["model"] or item.get("model") or "—", family), {})[step] = {
                        "nodeid": test["nodeid"], "outcome": outcome, "params": {"step": step}}
    rows = []
    families = list(dict.fromkeys(family for _, family in tables))  # each family's models side by side
    for (model, family), cells in sorted(tables.items(), key=lambda item: families.index(item[0][1])):
        ordered = [cells.get(step) for step in steps]
        first = next((step for step, t in zip(steps, ordered) if t and t["outcome"] != "passed"), None)
        rows.append({"model": model, "family": family, "cells": ordered, "first_break": first})
    return steps, rows


def where_text(where: dict | None) -> str:
    """One test's place, as the page shows it: ``host · gw0 · cuda:0 · shard s1`` (the parts known)."""
    where = where or {}
    parts = [where.get("host"), where.get("worker"), where.get("device"),
             f"shard {where['shard']}" if where.get("shard") else None]
    return " · ".join(str(part) for part in parts if part)


def places(run: dict) -> list[tuple[str, int]]:
    """Each place tests ran (host, worker, device, shard) with its number of tests, in the order
    first seen: the page's "ran on" row."""
    counts: dict = {}
    for test in run["tests"]:
        text = where_text(test.get("where"))
        if text:
            counts[text] = counts.get(text, 0) + 1
    return list(counts.items())


def run_tables(run: dict) -> dict:
    """The run-level scrutiny tables (`reports.scrutiny`); one that cannot be built is left out
    and named in ``table_errors``, so a fault there never costs the report."""
    tables, errors = {}, []
    for name, build in (("p_values", p_value_rows), ("published", published_rows), ("self_checks", self_check_rows),
                        ("ground_truth", ground_truth_section)):
        try:
            tables[name] = build(run)
        except Exception as error:  # noqa: BLE001 - shown on the page instead
            tables[name] = []
            errors.append(f"the {name.replace('_', ' ')} table could not be built: {type(error).__name__}: {error}")
    return {**tables, "table_errors": errors}


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def render_html(run: dict) -> str:
    """The report page; adds figure ids to ``run`` (so render after writing the JSON)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    env.filters["number"] = lambda v: "" if v is None else (f"{v:.4g}" if isinstance(v, float) else v)
    env.filters["repr"] = repr
    env.filters["seconds"] = lambda v, digits: "?" if v is None else f"{v:.{digits}f}"
    env.filters["where"] = where_text
    run["tests"] = definition_order(run["tests"])
    figures = _collect_figures(run)
    hypotheses = list(dict.fromkeys(t["hypothesis"] for t in run["tests"]))
    claims = {}  # each hypothesis's claim: the first line of its docstring
    for test in run["tests"]:
        claims.setdefault(test["hypothesis"], (test.get("claim") or "").strip().split("\n")[0])
    models = list(dict.fromkeys(t["model"] or "—" for t in run["tests"]))
    matrix = {(t["hypothesis"], t["model"] or "—"): t for t in run["tests"]}
    steps, feasibility = feasibility_table(run)
    fixtures_before, fixtures_at, fixtures_after = fixture_places(run)
    return env.get_template("index.html.j2").render(
        fixtures_before=fixtures_before, fixtures_at=fixtures_at, fixtures_after=fixtures_after, run=run,
        hypotheses=hypotheses, claims=claims, models=models, matrix=matrix, steps=steps, feasibility=feasibility,
        alpha=ALPHA, **run_tables(run),
        places=places(run), failed_shards=[s for s in run.get("merged_from") or [] if s.get("status") != "ok"],
        figures_json=_script_json(figures) if figures else None,
        plotly_js=_plotly_js() if figures else None,
    )


def write_report(run: dict, folder: Path) -> Path:
    """Write ``folder/evidence.json`` and ``folder/index.html``; return the HTML path.
    Non-finite numbers anywhere in ``run`` are written as null."""
    from circuitcheck.probes.evidence import json_safe  # imports torch: only when writing

    folder = Path(folder)
    run = json_safe(run)  # a copy: rendering adds figure ids to it
    write_atomic(folder / "evidence.json", json.dumps(run, indent=1, default=str, allow_nan=False))
    html = folder / "index.html"
    write_atomic(html, render_html(run))
    return html
