"""Per-run report folders: every run its own folder, a ``latest`` pointer, and a retention limit.

A report folder (``--report-dir``, default ``reports/out``) holds one folder per run,
named by its UTC start time and run id (``20250102T030405Z-1a2b3c4d``), and
``latest``: a relative symlink to the run that finished last (where symlinks cannot
be made, ``latest.txt`` names that folder instead). A run writes both of its files
into a hidden temporary folder and renames the folder into place in one step, so
``index.html`` and ``evidence.json`` always come from the same run, and two runs
writing into the same report folder at once never touch each other's files.
Temporaries a killed run left behind are removed by the next run once they are an
hour old; only the newest ``keep`` runs are kept.
"""

import os
import re
import shutil
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

KEEP = 20  # run folders kept by default (--report-keep)
STALE_AFTER = 3600.0  # seconds before a temporary is taken for a killed run's leftover
TEMP_PREFIX = ".circuitcheck-tmp-"
RUN_NAME = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
# temporaries of write_atomic: ".index.html.x1y2z3" (also from the older one-folder layout)
ATOMIC_TEMP = re.compile(r"^\.(index\.html|evidence\.json|latest\.txt)\..+$")


def new_run_id() -> str:
    """Eight hex digits naming one run (in its folder name, evidence.json and index.html)."""
    return uuid.uuid4().hex[:8]


def run_folder_name(started: float, run_id: str) -> str:
    """``20250102T030405Z-1a2b3c4d``: the UTC start time, then the run id; sorts by start."""
    return f"{datetime.fromtimestamp(started, timezone.utc):%Y%m%dT%H%M%SZ}-{run_id}"


def check_writable(report_dir: Path) -> None:
    """Create ``report_dir`` and a temporary folder in it (removed again); OSError if either fails."""
    report_dir = Path(report_dir)
    if report_dir.exists() and not report_dir.is_dir():
        raise NotADirectoryError(20, "it is a file, not a folder", str(report_dir))
    report_dir.mkdir(parents=True, exist_ok=True)
    tempfile.TemporaryDirectory(prefix=TEMP_PREFIX, dir=report_dir).cleanup()


def latest_run(report_dir: Path) -> Path | None:
    """The run folder ``latest`` (or ``latest.txt``) points at, if it still exists."""
    report_dir = Path(report_dir)
    link, note = report_dir / "latest", report_dir / "latest.txt"
    if link.is_symlink():
        name = os.readlink(link)
    elif note.is_file():
        name = note.read_text(encoding="utf-8").strip()
    else:
        return None
    folder = report_dir / name
    return folder if RUN_NAME.match(Path(name).name) and folder.is_dir() else None


def remove_stale(report_dir: Path, older_than: float = STALE_AFTER) -> list[str]:
    """Remove temporary folders and files left by killed runs (older than ``older_than``
    seconds: a younger one may belong to a run writing right now); return their names."""
    removed, now = [], time.time()
    for entry in Path(report_dir).iterdir():
        if not (entry.name.startswith(TEMP_PREFIX) or ATOMIC_TEMP.match(entry.name)):
            continue
        try:
            if now - entry.lstat().st_mtime < older_than:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry.name)
        except FileNotFoundError:  # another run removed it first
            continue
    return removed


def _write_text_atomic(path: Path, text: str) -> None:
    from .render import write_atomic

    write_atomic(path, text)


def point_latest(report_dir: Path, name: str) -> None:
    """Make ``latest`` a relative symlink to ``name``, replaced in one step (a temporary
    symlink renamed over it); where that cannot be done, write ``latest.txt`` instead."""
    report_dir = Path(report_dir)
    temp = report_dir / f"{TEMP_PREFIX}latest-{uuid.uuid4().hex[:8]}"
    try:
        os.symlink(name, temp, target_is_directory=True)
        os.replace(temp, report_dir / "latest")
    except (OSError, NotImplementedError):  # no symlinks here, or "latest" is a real folder
        temp.unlink(missing_ok=True)
        _write_text_atomic(report_dir / "latest.txt", name + "\n")
        return
    (report_dir / "latest.txt").unlink(missing_ok=True)  # never a stale second pointer


def prune(report_dir: Path, keep: int, also_keep: tuple[str, ...] = ()) -> list[str]:
    """Delete run folders beyond the newest ``keep`` (by start time; 0 keeps all), never
    the one ``latest`` points at nor those in ``also_keep``; return their names. A folder
    is renamed to a temporary name before it is deleted, so nobody sees half of it."""
    if keep <= 0:
        return []
    report_dir = Path(report_dir)
    runs = sorted(p.name for p in report_dir.iterdir()
                  if RUN_NAME.match(p.name) and p.is_dir() and not p.is_symlink())
    latest = latest_run(report_dir)
    protected = {*also_keep, *([latest.name] if latest else [])}
    removed = []
    for name in runs[:-keep]:
        if name in protected:
            continue
        doomed = report_dir / f"{TEMP_PREFIX}old-{name}"
        try:
            os.rename(report_dir / name, doomed)
        except FileNotFoundError:  # another run pruned it first
            continue
        shutil.rmtree(doomed, ignore_errors=True)
        removed.append(name)
    return removed


def publish(run: dict, report_dir: Path, keep: int = KEEP) -> Path:
    """Write ``run`` as a new run folder in ``report_dir``, point ``latest`` at it, clean
    stale temporaries and old runs; return the new folder's ``index.html``."""
    from .render import write_report

    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    remove_stale(report_dir)
    name = run_folder_name(run["started"], run["run_id"])
    temp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{run['run_id']}-", dir=report_dir))
    try:
        write_report(run, temp)
        temp.chmod(0o755)  # mkdtemp makes 0700; a report is for sharing
        os.rename(temp, report_dir / name)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    point_latest(report_dir, name)
    prune(report_dir, keep, also_keep=(name,))
    return report_dir / name / "index.html"
