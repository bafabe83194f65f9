"""The report options, checked before any test runs: one check for every front end.

`check_report_options` is what both the pytest plugin (`circuitcheck.reports.writer`,
in ``pytest_configure``) and circuitcheck-ray (before it starts any shard) run: the
report folder can be written (`store.check_writable`), ``--report-keep`` is not
negative, and the run to compare with can be read (`compare.load_evidence`). A bad one
raises `ReportOptionError`, whose message names the option, what is wrong and the fix,
so a run never ends with its report lost for a reason known at the start.
"""

from pathlib import Path

from . import store


class ReportOptionError(ValueError):
    """A report option that cannot be used; ``option`` is its flag, the message says the fix."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


def os_reason(error: OSError) -> str:
    """``Permission denied: /path`` (an OSError's reason and file), or its text."""
    return f"{error.strerror}: {error.filename}" if error.strerror and error.filename else str(error)


def check_report_options(folder: Path, keep: int | None = None, compare=None,
                         skip_option: str | None = None) -> tuple[Path | None, dict | None]:
    """Check a run's report options; return the run to compare with (its evidence.json's path
    and document), or (None, None) without ``compare``. ``skip_option`` is the front end's
    flag for writing no report (``--no-report``), offered as the other fix for a folder that
    cannot be written. ReportOptionError otherwise."""
    if keep is not None and keep < 0:
        raise ReportOptionError("--report-keep", f"--report-keep {keep}: pass the number of run folders "
                                                 "to keep (0 keeps all)")
    try:
        store.check_writable(folder)
    except OSError as error:
        other = f", or {skip_option}" if skip_option else ""
        raise ReportOptionError("--report-dir", (
            f"--report-dir {folder}: the report cannot be written there ({os_reason(error)}). Pass "
            f"--report-dir with a folder you can write (each run adds a folder of its own to it){other}.")) from None
    if not compare:
        return None, None
    from .compare import load_evidence

    try:
        return load_evidence(compare)
    except ValueError as error:
        raise ReportOptionError("--report-compare", (
            f"--report-compare {compare}: {error}. Pass an evidence.json written by an earlier run (or its "
            "run folder, or a report folder for its latest run), or leave out --report-compare.")) from None
