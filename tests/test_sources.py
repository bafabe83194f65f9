"""Finding models offline, and failing fast with one actionable line when we can't."""

import re
import time

import pytest

from circuitcheck.fixtures import DEFAULT_MODEL, DeviceUnavailable, ModelUnavailable, resolve_device, resolve_model
from circuitcheck.fixtures.gguf_models import SMOLLM2_SHA256, embedded_gguf_path, verified_embedded_gguf
from circuitcheck.fixtures.sources import hub_reachability


def test_default_model_is_the_embedded_gguf():
    assert resolve_model(DEFAULT_MODEL).kind == "embedded"
    path, digest = verified_embedded_gguf()
    assert path == embedded_gguf_path() and path.suffix == ".gguf"
    assert digest == SMOLLM2_SHA256


def test_tiny_models_and_local_paths(tmp_path):
    assert resolve_model("tiny-llama").kind == "tiny"
    (tmp_path / "hf").mkdir()
    with pytest.raises(ModelUnavailable, match="without config.json"):
        resolve_model(str(tmp_path / "hf"))
    (tmp_path / "hf" / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path / "hf")).kind == "folder"
    with pytest.raises(ModelUnavailable, match="no such .gguf file"):
        resolve_model(str(tmp_path / "missing.gguf"))


def test_unknown_hub_model_offline_fails_fast_with_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ModelUnavailable) as error:
        resolve_model("no-such/model")
    assert time.monotonic() - start < 1
    message = str(error.value)
    assert "\n" not in message
    for part in ("'no-such/model'", "Hugging Face cache", "HF_HUB_OFFLINE", "hf download no-such/model",
                 f"--model {DEFAULT_MODEL}"):
        assert part in message


def test_unreachable_hub_is_reported_within_the_probe_timeout(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    start = time.monotonic()
    reason = hub_reachability()
    assert time.monotonic() - start < 4
    assert reason and "127.0.0.1" in reason


def test_device_resolution():
    import torch

    assert resolve_device("cpu") == "cpu"
    mps = getattr(torch.backends, "mps", None)
    expected = "cuda" if torch.cuda.is_available() else "mps" if mps and mps.is_available() else "cpu"
    assert resolve_device("auto") == expected
    with pytest.raises(DeviceUnavailable, match="choose one of"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailable, match="sees no CUDA GPU.*--device cpu"):
            resolve_device("cuda")


@pytest.fixture
def text_gguf(tmp_path):
    path = tmp_path / "x.gguf"
    path.write_text("hello, this is not a model\n")
    return path


@pytest.fixture
def truncated_gguf(tmp_path):
    """The embedded GGUF cut short after 4 MB (its header is ~1.8 MB, its tensors ~96 MB)."""
    path = tmp_path / "cut.gguf"
    with open(embedded_gguf_path(), "rb") as whole:
        path.write_bytes(whole.read(4 << 20))
    return path


def one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_text_file_named_gguf_is_rejected_in_one_line(text_gguf):
    with pytest.raises(ModelUnavailable) as error:
        resolve_model(str(text_gguf))
    message = one_line(error)
    assert str(text_gguf) in message
    assert "is not a GGUF file (it starts with b'hell', not b'GGUF'); pass a .gguf model file to --model" in message


def test_a_gguf_cut_short_is_rejected_in_one_line(truncated_gguf):
    with pytest.raises(ModelUnavailable) as error:
        resolve_model(str(truncated_gguf))
    message = one_line(error)
    assert str(truncated_gguf) in message and "download or copy it again" in message
    expected = embedded_gguf_path().stat().st_size
    match = re.search(r"is not a complete GGUF file: expected (\d+) bytes of tensor data, found (\d+)", message)
    assert match, message
    data_start = expected - int(match[1])
    assert int(match[2]) == (4 << 20) - data_start


def test_a_gguf_cut_inside_its_header_is_rejected_in_one_line(tmp_path):
    path = tmp_path / "stub.gguf"
    with open(embedded_gguf_path(), "rb") as whole:
        path.write_bytes(whole.read(100_000))
    with pytest.raises(ModelUnavailable, match=r"stub.gguf is not a complete GGUF file: its header runs past the end of the file "
                                              r"\(100000 bytes\); download or copy it again"):
        resolve_model(str(path))


def test_the_embedded_gguf_passes_the_check():
    assert resolve_model(str(embedded_gguf_path())).kind == "gguf"


@pytest.mark.parametrize("bad", ["text_gguf", "truncated_gguf"])
def test_pytest_with_a_broken_gguf_stops_with_a_usage_error_and_no_traceback(pytester, request, bad):
    path = request.getfixturevalue(bad)
    pytester.makepyfile(test_m="def test_x(model):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--model", str(path), timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1 and str(path) in errors[0] and "GGUF file" in errors[0]
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
