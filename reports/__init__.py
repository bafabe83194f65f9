"""Evidence reports: capture what probes find during each test and render it.

`record` is what probes call; `Evidence` is what the ``evidence`` fixture gives a
hypothesis for its own notes, numbers and tables. The pytest plugin
(`reports.plugin`) writes ``reports/out/index.html`` and ``evidence.json``.
"""

from .capture import record
from .attach import Evidence

__all__ = ["Evidence", "record"]
