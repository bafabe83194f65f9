"""Evidence a hypothesis attaches by hand, through the ``evidence`` fixture.

    def test_claim(model, evidence):
        evidence.note("Checked on the corrected prompt set from 2026-11.")
        evidence.number("top-3 share", share, threshold=0.5)

Probes record their own results; use this for what only the hypothesis knows.
"""

from .capture import record


def table_form(data) -> dict:
    """A ``{"columns", "rows"}`` table from a pandas DataFrame or a list of dicts."""
    if hasattr(data, "to_dict") and hasattr(data, "columns"):
        frame = data.reset_index() if getattr(data.index, "name", None) else data
        return {"columns": [str(c) for c in frame.columns],
                "rows": frame.astype(object).where(frame.notna(), None).values.tolist()}
    rows = list(data)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return {"columns": columns, "rows": [[row.get(c) for c in columns] for row in rows]}


class Evidence:
    """Attach notes, numbers and tables to the running test's evidence."""

    def note(self, text: str, title: str = "Note") -> None:
        record({"kind": "note", "title": title, "text": str(text)})

    def number(self, name: str, value: float, threshold: float | None = None,
               passes: bool | None = None) -> None:
        """A named number, with the threshold the claim compares it to."""
        record({"kind": "number", "title": name, "value": float(value),
                "threshold": None if threshold is None else float(threshold), "passes": passes})

    def table(self, data, title: str = "Table") -> None:
        record({"kind": "table", "title": title, "table": table_form(data)})

    def figure(self, spec: dict, title: str = "Figure") -> None:
        """A figure spec as probes make them (see `probes.results`)."""
        record({"kind": "figure", "title": title, "figures": [dict(spec)]})
