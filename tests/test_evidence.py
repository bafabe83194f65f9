"""Evidence at the probe boundary: what a test records, and what it costs when nothing is recorded."""

import json

import numpy as np
import pytest

from circuitcheck.probes import PromptSet, attention, corruption_check, evidence, logit_diff
from circuitcheck.probes.model_state import PassCache, nbytes

from .test_plugin import load_report, run

PAIR = PromptSet(["When John and Mary went to the shops, John gave the bag to"], [(" Mary", " John")],
                 corrupted_prompts=["When John and Mary went to the shops, Mary gave the bag to"], name="pair")


@pytest.fixture
def sink():
    evidence.start()
    yield evidence
    evidence.stop()


def test_only_the_outermost_probe_is_recorded_and_keeps_its_parts(tiny_llama, sink):
    check = corruption_check(tiny_llama, PAIR)
    [recorded] = sink.drain()
    assert recorded is check
    assert [type(p).__name__ for p in check.parts] == ["LogitDiff", "LogitDiff"]
    form = evidence.to_evidence(recorded)
    assert form["kind"] == "corruption_check"
    assert [p["kind"] for p in form["parts"]] == ["logit_diff", "logit_diff"]
    assert form["parts"][1]["prompt_set"] == "pair (corrupted)"


def test_nothing_is_recorded_or_built_without_a_sink(tiny_llama):
    evidence.stop()  # as in a notebook or a script: close the sink the plugin opened for this test
    assert not evidence.collecting()
    built = []

    class Spy(dict):
        def evidence(self):
            built.append(self)
            return {}

    evidence.record(Spy())
    evidence.Evidence().table([{"a": 1}])
    logit_diff(tiny_llama, PAIR)
    assert evidence.drain() == [] and built == []


def test_results_are_immutable_values(tiny_llama):
    first = attention(tiny_llama, PAIR, ["L0H0"])
    with pytest.raises(ValueError, match="read-only"):
        first.patterns[0][0][...] = 0
    diff = logit_diff(tiny_llama, PAIR)
    with pytest.raises(ValueError, match="read-only"):
        diff.per_prompt[0] = 1.0
    again = attention(tiny_llama, PAIR, ["L0H0"])
    assert np.array_equal(again.patterns, first.patterns)


def test_nan_numbers_become_null_with_a_note(sink):
    evidence.Evidence().number("r", float("nan"), threshold=float("inf"))
    [item] = sink.drain()
    text = json.dumps(evidence.to_evidence(item), allow_nan=False)
    assert json.loads(text) == {"kind": "number", "title": "r", "value": None, "threshold": None,
                                "passes": None, "note": "the value was nan, which JSON cannot hold"}


def test_the_pass_cache_is_bounded_in_bytes():
    import torch

    cache = PassCache(max_bytes=3 * 400)
    for key in "abcd":
        cache.put(key, {"x": torch.zeros(100)})  # 400 bytes each
    assert "a" not in cache and len(cache) == 3 and cache.bytes == 1200
    cache.get("b")  # used: now the most recent
    cache.put("e", (torch.zeros(50), np.zeros(25)))  # 200 + 200 bytes
    assert "c" not in cache and "b" in cache
    cache.put("huge", torch.zeros(1000))
    assert "huge" not in cache and nbytes({"a": [torch.zeros(2, 3)]}) == 24


GIVEN = '''
from hypothesis import given, settings, strategies as st
from circuitcheck import PromptSet, logit_diff

NAMES = ["Mary", "Anne", "Kate", "Sarah", "Tom", "Paul"]

def prompts(name):
    return PromptSet([f"When John and {name} went to the shops, John gave the bag to"], [(f" {name}", " John")],
                     name=name)

@settings(max_examples=6, database=None, derandomize=True, deadline=None)
@given(name=st.sampled_from(NAMES))
def test_passes_every_example(model, name):
    logit_diff(model, prompts(name))

@settings(max_examples=20, database=None, derandomize=True, deadline=None)
@given(name=st.sampled_from(NAMES))
def test_fails_on_a_later_name(model, name):
    assert NAMES.index(logit_diff(model, prompts(name)).prompt_set) < 2
'''


@pytest.mark.slow
def test_given_tests_record_only_their_last_example(pytester):
    pytester.makepyfile(test_given=GIVEN)
    result = run(pytester, "--model", "tiny-llama", "--report-dir", "out")
    result.assert_outcomes(passed=1, failed=1)
    tests = {t["nodeid"].split("::")[1].split("[")[0]: t for t in load_report(pytester)["tests"]}
    assert len(tests["test_passes_every_example"]["evidence"]) == 1
    [falsifying] = tests["test_fails_on_a_later_name"]["evidence"]
    assert falsifying["prompt_set"] == "Kate"  # the shrunk counterexample, replayed last
    result.stdout.fnmatch_lines(["*model=TransformerBridge(tiny-llama on cpu, float32),", "*name='Kate',"])


@pytest.mark.slow
def test_no_report_attaches_no_evidence(pytester):
    pytester.makeconftest('''
import json
def pytest_runtest_logreport(report):
    if report.when == "call":
        with open("properties.json", "a") as out:
            out.write(json.dumps([k for k, _ in report.user_properties]) + "\\n")
''')
    pytester.makepyfile(test_given=GIVEN)
    run(pytester, "--model", "tiny-llama", "--no-report", "-k", "passes")
    assert (pytester.path / "properties.json").read_text().split() == ["[]"]
    assert not (pytester.path / "reports").exists()
