"""Evidence reports: the pytest plugin that gathers each test's evidence and renders it.

Probes record their Results in `circuitcheck.probes.evidence`; `reports.plugin`
collects them per test (xdist workers included) and writes ``index.html`` and
``evidence.json``; `render`, `compare` and `merge` are usable on their own.
"""

from .compare import compare_runs
from .merge import merge_runs
from .render import write_report
from .run import RunRecord

__all__ = ["RunRecord", "compare_runs", "merge_runs", "write_report"]
