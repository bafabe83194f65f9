"""Test facts: who a test is and where it ran, as the report files it.

Computed where the test runs (an xdist worker, or the one process): the report's id
(`plain_nodeid`, without xdist's ``@group``), the hypothesis and model it stands for,
its parameters, claim (docstring) and place in the collection, the loaded model's
info, and `where` it ran (host, worker, device). `item_facts` gathers them for the
test's setup report (`circuitcheck.reports.capture`) and for circuitcheck-ray's
collection (`circuitcheck.shard_plugin`). Importing this module imports no torch.
"""

import inspect
import os
import socket

import pytest

ORDER = pytest.StashKey[int]()  # the test's place in the collection (definition order)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Remember each test's place in the collection, so the report lists tests in the
    order they are defined, not the order they finished in (under xdist each worker
    collects the same items in the same order)."""
    for index, item in enumerate(items):
        item.stash[ORDER] = index


def _model_param(item) -> str | None:
    callspec = getattr(item, "callspec", None)
    value = callspec.params.get("model") if callspec else None
    return value if isinstance(value, str) else None


def plain_nodeid(item) -> str:
    """The test's id without the ``@group`` that pytest-xdist's ``--dist loadgroup`` appends to
    it in a worker (``test_x[gpt2]@gpt2``): the report's ids are the same with or without xdist."""
    nodeid = item.nodeid
    if getattr(item.config.option, "loadgroup", False):
        names = sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                        for mark in item.iter_markers("xdist_group")})
        suffix = "@" + "_".join(names)
        if names and nodeid.endswith(suffix):
            return nodeid[:-len(suffix)]
    return nodeid


def where(item, model_info: dict | None) -> dict:
    """Where the test ran: host, xdist worker, the model's device (with the
    ``CUDA_VISIBLE_DEVICES`` its process saw, for a CUDA device); the shard is set by a merge."""
    device = (model_info or {}).get("device")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if device and visible is not None and "cuda" in device:
        device = f"{device} (CUDA_VISIBLE_DEVICES={visible})"
    worker = getattr(item.config, "workerinput", {}).get("workerid")
    return {"host": socket.gethostname(), "worker": worker, "device": device, "shard": None}


def item_facts(item) -> dict:
    """What the report needs to know about a test, computed where the test runs."""
    model = _model_param(item)
    hypothesis = plain_nodeid(item)
    if model:  # the hypothesis is the test id without the model part
        for old, new in ((f"[{model}]", ""), (f"[{model}-", "["), (f"-{model}]", "]"),
                         (f"-{model}-", "-")):
            hypothesis = hypothesis.replace(old, new)
    callspec = getattr(item, "callspec", None)
    params = {k: str(v) for k, v in (callspec.params.items() if callspec else ()) if k != "model"}
    facts = {"hypothesis": hypothesis, "model": model, "params": params,
             "claim": inspect.getdoc(getattr(item, "obj", None)) or ""}
    if ORDER in item.stash:
        facts["order"] = item.stash[ORDER]
    loaded = getattr(item, "funcargs", {}).get("model")
    if model and loaded is not None:
        from circuitcheck.probes.model_state import model_info

        facts["model_info"] = vars(model_info(loaded)).copy()
    facts["where"] = where(item, facts.get("model_info"))
    return facts
