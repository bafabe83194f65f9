"""Shared fixtures for the toolkit's own tests.

Unit tests use tiny random-weight models (about a second to build); tests
marked ``integration`` use the real default model, loaded once per session.
"""

import pytest

pytest_plugins = ["pytester"]


def pytest_collection_modifyitems(items):
    """A test that uses the real default model is an integration test, marked or not."""
    for item in items:
        if "smollm2" in getattr(item, "fixturenames", ()):
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
    """The real default model, SmolLM2-135M-Instruct, on the CPU in float32."""
    from circuitcheck.fixtures import load_model

    return load_model("smollm2-135m", device="cpu")
