"""The converted-model cache: atomic, verified entries; corruption rebuilt; one build under concurrency."""

import json
import random
import subprocess
import sys

import pytest
import xxhash

from circuitcheck.fixtures.cache import CorruptCacheEntry, cache_root, check_entry, read_or_build, write_entry


def fill(tmp):
    (tmp / "weights.bin").write_bytes(b"x" * 100)
    (tmp / "config.json").write_text("{}")


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CIRCUITCHECK_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("CIRCUITCHECK_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "circuitcheck"


def test_entry_records_its_files_and_passes_the_check(tmp_path):
    write_entry(tmp_path / "entry", fill, {"sha256": "abc"})
    manifest = check_entry(tmp_path / "entry")
    assert manifest["sha256"] == "abc"
    assert manifest["files"] == {"config.json": 2, "weights.bin": 100}
    assert manifest["xxh3_128"]["weights.bin"] == xxhash.xxh3_128(b"x" * 100).hexdigest()
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]  # no temporary folder left


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    def broken(tmp):
        fill(tmp)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_entry(tmp_path / "entry", broken, {})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncate", "delete", "manifest"])
def test_a_corrupt_entry_is_rebuilt_with_a_warning(tmp_path, damage):
    folder = tmp_path / "entry"
    builds = []

    def build(tmp):
        builds.append(tmp)
        fill(tmp)

    def load(f):
        return (f / "weights.bin").read_bytes()

    assert read_or_build(folder, build, load, {}) == b"x" * 100
    if damage == "truncate":
        (folder / "weights.bin").write_bytes(b"x" * 10)
    elif damage == "delete":
        (folder / "config.json").unlink()
    else:
        (folder / "manifest.json").write_text("{not json")
    with pytest.raises(CorruptCacheEntry):
        check_entry(folder)
    with pytest.warns(UserWarning, match="corrupt.*rebuilding"):
        assert read_or_build(folder, build, load, {}) == b"x" * 100
    assert len(builds) == 2
    check_entry(folder)


def test_an_entry_that_fails_to_load_is_rebuilt(tmp_path):
    folder = tmp_path / "entry"
    write_entry(folder, fill, {})
    calls = []

    def load(f):
        calls.append(f)
        if len(calls) == 1:
            raise ValueError("header too large")
        return "ok"

    with pytest.warns(UserWarning, match="header too large"):
        assert read_or_build(folder, fill, load, {}) == "ok"
    assert len(calls) == 2
    assert json.loads((folder / "manifest.json").read_text())["files"]["weights.bin"] == 100


def random_fill(tmp):
    (tmp / "weights.bin").write_bytes(random.Random(0).randbytes(1 << 20))
    (tmp / "config.json").write_text("{}")


def test_a_block_zeroed_without_a_change_of_size_is_detected_and_rebuilt(tmp_path):
    """The damage from issue 11: a block zeroed inside the weights, the size unchanged."""
    folder, builds = tmp_path / "entry", []

    def build(tmp):
        builds.append(tmp)
        random_fill(tmp)

    def load(f):
        return (f / "weights.bin").read_bytes()

    clean = read_or_build(folder, build, load, {})
    with open(folder / "weights.bin", "r+b") as file:
        file.seek(300_000)
        file.write(bytes(65536))
    assert (folder / "weights.bin").stat().st_size == len(clean)
    with pytest.raises(CorruptCacheEntry, match=r"weights\.bin.*content has changed"):
        check_entry(folder)
    with pytest.warns(UserWarning, match=r"corrupt.*weights\.bin.*rebuilding"):
        assert read_or_build(folder, build, load, {}) == clean
    assert len(builds) == 2
    check_entry(folder)


def test_an_entry_written_before_digests_is_rebuilt_with_a_warning(tmp_path):
    """An old manifest records sizes only, so it cannot vouch for the content: rebuild."""
    folder = tmp_path / "entry"
    folder.mkdir()
    random_fill(folder)
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    (folder / "manifest.json").write_text(json.dumps({"files": sizes}))
    builds = []

    def build(tmp):
        builds.append(tmp)
        random_fill(tmp)

    with pytest.warns(UserWarning, match="no content digests.*rebuilding"):
        read_or_build(folder, build, lambda f: None, {})
    assert len(builds) == 1
    check_entry(folder)


RACER = """
import os, sys, time
from pathlib import Path
from circuitcheck.fixtures.cache import read_or_build

folder, go, log = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

def build(tmp):
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(0.5)  # widen the window in which the other process may start a build too
    (tmp / "weights.bin").write_bytes(b"w" * 100_000)
    (tmp / "config.json").write_text("{}")

def load(f):
    config = (f / "config.json").read_text()
    time.sleep(0.2)  # a reader that takes its time, as transformers does
    return config + str(len((f / "weights.bin").read_bytes()))

while not go.exists():
    time.sleep(0.01)
print(read_or_build(folder, build, load, {}))
"""


@pytest.mark.parametrize("round_", range(3))
def test_two_processes_building_one_entry_from_an_empty_cache(tmp_path, round_):
    """Issue 11: two pytest runs on a cold cache; one crashed reading an entry the other replaced."""
    folder, go, log = tmp_path / "cache" / "entry", tmp_path / "go", tmp_path / "builds.log"
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(folder), str(go), str(log)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    go.touch()
    outcomes = [racer.communicate(timeout=60) for racer in racers]
    for racer, (out, err) in zip(racers, outcomes):
        assert racer.returncode == 0, err
        assert out.strip() == "{}100000"
    assert len(log.read_text().split()) == 1  # the build ran once
    check_entry(folder)
    assert sorted(p.name for p in folder.parent.iterdir() if not p.name.endswith(".lock")) == ["entry"]


def test_replacing_an_entry_leaves_open_readers_their_files(tmp_path):
    """A rebuilt entry is renamed in over the old one, never deleted from under a reader."""
    folder = tmp_path / "entry"
    write_entry(folder, fill, {})
    with open(folder / "weights.bin", "rb") as reader:
        write_entry(folder, lambda tmp: (tmp / "weights.bin").write_bytes(b"new"), {})
        assert reader.read() == b"x" * 100
    assert (folder / "weights.bin").read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]  # the old entry is gone


def test_a_build_clears_what_a_killed_build_left(tmp_path):
    stale = tmp_path / ".entry.k2j4_x"  # write_entry's temporary folder, its process killed
    stale.mkdir()
    (stale / "weights.bin").write_bytes(b"half")
    read_or_build(tmp_path / "entry", fill, lambda f: None, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".entry.lock", "entry"]
