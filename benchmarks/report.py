"""Report rendering at scale: 300 hypotheses with 3 figures each (median of 3).

Target: under 10 s and under 20 MB of HTML.

    .venv/bin/python benchmarks/report.py
"""

import statistics
import tempfile
import time
from pathlib import Path

from circuitcheck.reports.render import write_report
from circuitcheck.reports.sample import synthetic_run


def main() -> None:
    times, size = [], 0
    for _ in range(3):
        with tempfile.TemporaryDirectory() as folder:
            run = synthetic_run(300, figures=3)
            start = time.perf_counter()
            html = write_report(run, Path(folder))
            times.append(time.perf_counter() - start)
            size = html.stat().st_size
    print(f"300 hypotheses × 3 figures: render + write {statistics.median(times):.2f} s "
          f"(runs: {', '.join(f'{t:.2f}' for t in times)}), index.html {size / 2**20:.1f} MB "
          "(targets: < 10 s, < 20 MB)")


if __name__ == "__main__":
    main()
