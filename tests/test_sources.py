"""Finding models offline, and failing fast with one actionable line when we can't."""

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
