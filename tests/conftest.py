"""Shared fixtures for the toolkit's own tests.

Unit tests use tiny random-weight models (about a second to build); tests
marked ``integration`` use the real embedded models (SmolLM2 and Gemma 3 270M),
each loaded once per session.
"""

import pytest

pytest_plugins = ["pytester"]
REAL_MODEL_FIXTURES = {"smollm2", "gemma3", "embedded_model"}
_loaded = {}


def _real(name: str):
    """One load per embedded model per session, shared by the fixtures that name it."""
    from circuitcheck.fixtures import load_model

    if name not in _loaded:
        _loaded[name] = load_model(name, device="cpu")
    return _loaded[name]


def pytest_collection_modifyitems(items):
    """A test that uses a real embedded model is an integration test, marked or not."""
    for item in items:
        if REAL_MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def tiny_llama():
    from circuitcheck.fixtures import load_model

    return load_model("tiny-llama", device="cpu")


@pytest.fixture(scope="session")
def tiny_gpt2():
    from circuitcheck.fixtures import load_model

    return load_model("tiny-gpt2", device="cpu")


@pytest.fixture(scope="session")
def smollm2():
    """The real default model, SmolLM2-135M-Instruct (Llama architecture), on the CPU in float32."""
    return _real("smollm2-135m")


@pytest.fixture(scope="session")
def gemma3():
    """The second embedded model, Gemma 3 270M (sandwich norms, one key/value head), on the CPU."""
    return _real("gemma3-270m")


@pytest.fixture(scope="session", params=["smollm2-135m", "gemma3-270m"])
def embedded_model(request):
    """Each real embedded model in turn: a test of it runs on both architectures."""
    return _real(request.param)
