"""Report rendering at scale: 300 hypotheses with 3 figures each (median of 3).

Target: under 10 s and under 20 MB of HTML.

    .venv/bin/python benchmarks/report.py
    .venv/bin/python benchmarks/report.py --quick   # 20 hypotheses, one render: seconds

``--quick`` checks that the script still matches the code (tests/test_benchmarks.py runs it);
the targets are not judged there.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from circuitcheck.reports.render import write_report
from circuitcheck.reports.sample import synthetic_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 hypotheses, one render: a check that the script runs")
    args = parser.parse_args()
    hypotheses, renders = (20, 1) if args.quick else (300, 3)
    times, size = [], 0
    for _ in range(renders):
        with tempfile.TemporaryDirectory() as folder:
            run = synthetic_run(hypotheses, figures=3)
            start = time.perf_counter()
            html = write_report(run, Path(folder))
            times.append(time.perf_counter() - start)
            size = html.stat().st_size
    print(f"{hypotheses} hypotheses × 3 figures: render + write {statistics.median(times):.2f} s "
          f"(runs: {', '.join(f'{t:.2f}' for t in times)}), index.html {size / 2**20:.1f} MB "
          + ("(--quick: targets not judged)" if args.quick else "(targets: < 10 s, < 20 MB)"))


if __name__ == "__main__":
    main()
