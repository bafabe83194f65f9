"""The converted-model cache: atomic entries, corruption detected and rebuilt."""

import json

import pytest

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
    (folder / "weights.bin").write_bytes(b"y" * 100)  # right size, wrong content
    calls = []

    def load(f):
        calls.append(f)
        if len(calls) == 1:
            raise ValueError("header too large")
        return "ok"

    with pytest.warns(UserWarning, match="header too large"):
        assert read_or_build(folder, fill, load, {}) == "ok"
    assert json.loads((folder / "manifest.json").read_text())["files"]["weights.bin"] == 100
