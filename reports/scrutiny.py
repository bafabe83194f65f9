"""The run-level tables of scrutiny: every p-value of the run corrected together, every
published value a claim replicates (or not), and the self-checks each model passed.

A run that tests forty things at α = 0.05 finds two by chance. Each evidence item lists the
p-values of its own tests (``p_values``, `Result.p_values`); `p_value_rows` collects them
from every test (parts included) and corrects them by Holm's step-down method twice: over
the whole run, and over the test's own family (the claim's). A claim significant on a raw
p-value but not once corrected over the run is marked; asserting on the corrected value
inside a test is `circuitcheck.scrutiny.holm_family`.
"""

ALPHA = 0.05
AT_IMPORT = "(module import)"  # capture.AT_IMPORT: evidence a test module recorded when imported


def _items(evidence: list[dict], where: str = ""):
    """Every evidence item and its parts, depth first, with the path of titles to it."""
    for item in evidence or []:
        title = f"{where} / {item.get('title', '')}" if where else item.get("title", "")
        yield item, title
        yield from _items(item.get("parts") or [], title)


def _sources(run: dict):
    """(row id, outcome, model, evidence list) of every test, every wider fixture of the run and
    every test module that recorded evidence when imported."""
    for test in run.get("tests") or []:
        yield test["nodeid"], test.get("outcome"), test.get("model"), test.get("evidence")
    for fixture in run.get("fixtures") or []:
        name = fixture.get("fixture")
        row = f"{fixture.get('node')} (at import)" if name == AT_IMPORT else f"fixture {name}"
        yield row, "fixture", fixture.get("model"), fixture.get("evidence")


def p_value_rows(run: dict, alpha: float = ALPHA) -> list[dict]:
    """One row per p-value of the run: where it came from, raw, Holm over its test's family and
    over the run, and ``lost`` when it is below ``alpha`` raw but not once corrected over the run."""
    from circuitcheck.probes.statistics import holm  # numpy: only when a report is written

    rows = []
    for family, (nodeid, outcome, model, evidence) in enumerate(_sources(run)):
        for item, title in _items(evidence):
            for name, p in (item.get("p_values") or {}).items():
                if p is not None:
                    rows.append({"nodeid": nodeid, "outcome": outcome, "model": item.get("model") or model,
                                 "title": title, "name": name, "p": float(p), "family": family})
    if not rows:
        return []
    for row, corrected in zip(rows, holm([r["p"] for r in rows])):
        row["holm_run"] = float(corrected)
    for family in {r["family"] for r in rows}:
        members = [r for r in rows if r["family"] == family]
        for row, corrected in zip(members, holm([r["p"] for r in members])):
            row["holm_claim"] = float(corrected)
    sizes = {family: sum(r["family"] == family for r in rows) for family in {r["family"] for r in rows}}
    for row in rows:
        row["family_size"] = sizes[row.pop("family")]
        row["lost"] = row["p"] < alpha <= row["holm_run"]
    return rows


def published_rows(run: dict) -> list[dict]:
    """Every published value recorded in the run (`circuitcheck.scrutiny.published`)."""
    rows = []
    for nodeid, outcome, model, evidence in _sources(run):
        for item, _ in _items(evidence):
            if item.get("kind") == "published":
                summary = item.get("summary") or {}
                rows.append({"nodeid": nodeid, "outcome": outcome, "model": item.get("model") or model or "—",
                             "what": summary.get("what", ""), "measured": summary.get("measured"),
                             "reported": summary.get("reported"), "band": summary.get("band"),
                             "verdict": summary.get("verdict"), "replicates": summary.get("replicates"),
                             "source": summary.get("source", ""), "reported_on": summary.get("reported on") or ""})
    return rows


def self_check_rows(run: dict) -> list[dict]:
    """Per model, its self-checks: those the model fixture recorded, else the first a test did
    (a test may break a model of its own on purpose)."""
    seen, rows = set(), []
    sources = list(_sources(run))
    for _, _, model, evidence in [s for s in sources if s[1] == "fixture"] + [s for s in sources if s[1] != "fixture"]:
        for item, _ in _items(evidence):
            name = item.get("model") or model
            if item.get("kind") != "self_checks" or name in seen:
                continue
            seen.add(name)
            table = item.get("table") or {}
            columns = table.get("columns") or []
            checks = [dict(zip(columns, row)) for row in table.get("rows") or []]
            rows.append({"model": name, "title": item.get("title", ""), "checks": checks})
    return rows
