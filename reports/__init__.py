"""Evidence reports: the pytest plugin that gathers each test's evidence, and what writes,
compares and merges the reports.

Probes record their Results in `circuitcheck.probes.evidence`; the pytest plugin
(`reports.plugin`, loaded through `circuitcheck.plugin`) is three modules: `facts` (a
test's identity and where it ran), `capture` (each test's evidence, xdist workers
included, and a wider fixture's evidence filed with its module) and `writer` (on the
controller: the report options, checked before any test runs by `preflight`, and the
run written at the end). `run` is the record of one run (``evidence.json``, schema in
``evidence.schema.json`` and ``SCHEMA.md``), `store` the report folder (a folder per run,
``latest``, retention), `render` the ``index.html`` page, `compare` the comparison with an
earlier run (``--report-compare``), `merge` several runs (shards) as one
(``circuitcheck-merge``, circuitcheck-ray); `sample` a synthetic run for tests and
benchmarks. `render`, `compare` and `merge` are usable on their own.
"""

from .compare import compare_runs
from .merge import merge_runs
from .render import write_report
from .run import RunRecord

__all__ = ["RunRecord", "compare_runs", "merge_runs", "write_report"]
