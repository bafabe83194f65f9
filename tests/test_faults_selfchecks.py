"""Bad input to the self-checks (issue 29): a model's name where the loaded model belongs, and
something other than a Hugging Face model as ``hugging_face=``, are refused in one line that
says what to pass, before any pass and without touching the reference kept on the model."""

from pathlib import Path

import pytest

from circuitcheck.fixtures import load_model
from circuitcheck.probes.model_state import state_of
from circuitcheck.probes.self_check_text import (REFERENCE_KEY, SERIAL_KEY, hugging_face_reference,
                                                 keep_hugging_face_reference)
from circuitcheck.probes.self_checks import require_self_check, require_trusted, self_checks


@pytest.fixture(scope="module")
def second_load():
    """A second `load_model` of the same model: a bridge, not a Hugging Face model."""
    return load_model("tiny-llama", device="cpu")


@pytest.mark.parametrize("call, message", [
    (lambda m: self_checks("tiny-llama"),
     r"self_checks('tiny-llama'): give the loaded model, not its name: self_checks(load_model('tiny-llama'))"),
    (lambda m: self_checks(Path("models/planted")),
     r"self_checks('models/planted'): give the loaded model, not its name: "),
    (lambda m: self_checks("tiny-llama", hugging_face=m.original_model),
     r"self_checks('tiny-llama'): give the loaded model, not its name"),
    (lambda m: self_checks(None), "self_checks(model=NoneType): give a model from circuitcheck.load_model(...)"),
    (lambda m: self_checks(3), "self_checks(model=int): give a model from circuitcheck.load_model(...)"),
    (lambda m: require_self_check("tiny-llama", "hooks", "patch"),
     r"require_self_check('tiny-llama'): give the loaded model, not its name: "
     r"require_self_check(load_model('tiny-llama'))"),
    (lambda m: require_self_check("tiny-llama", "hook", "patch"), r"require_self_check('hook'): choose one of"),
    (lambda m: require_trusted("tiny-llama", "patch", "hooks"),
     r"patch('tiny-llama'): give the loaded model, not its name"),
])
def test_a_name_where_the_loaded_model_belongs_is_refused(tiny_llama, call, message):
    with pytest.raises(ValueError) as refused:
        call(tiny_llama)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value), refused.value


@pytest.mark.parametrize("given, message", [
    ("second load", "hugging_face=<a model from load_model>: that is a circuitcheck model (a TransformerBridge, "
                    "its weights rewritten by compatibility mode), not the Hugging Face model with the original "
                    "weights; hugging_face= takes a Hugging Face model with the original weights"),
    ("tiny-llama", "hugging_face='tiny-llama': a name; hugging_face= takes a Hugging Face model"),
    (3, "hugging_face=int: hugging_face= takes a Hugging Face model with the original weights"),
    ("original", "hugging_face=model.original_model: that is the model the bridge wraps"),
])
def test_what_hugging_face_takes_is_said_and_the_kept_reference_stays(tiny_llama, second_load, given, message):
    """A second load_model(...) was a traceback from deep inside (a bridge returns a tensor, not
    an output with .logits); now it is refused and the reference kept at load time stays."""
    given = {"second load": second_load, "original": tiny_llama.original_model}.get(given, given)
    capabilities = state_of(tiny_llama).capabilities
    kept, serial = capabilities.get(REFERENCE_KEY), capabilities.get(SERIAL_KEY)
    for call in (lambda: self_checks(tiny_llama, hugging_face=given),
                 lambda: keep_hugging_face_reference(tiny_llama, given)):
        with pytest.raises(ValueError) as refused:
            call()
        assert str(refused.value).startswith(message) and "\n" not in str(refused.value), refused.value
    assert capabilities.get(REFERENCE_KEY) is kept and capabilities.get(SERIAL_KEY) == serial


def test_a_reference_is_not_taken_from_a_bridge(second_load):
    with pytest.raises(ValueError, match=r"^hugging_face=<a model from load_model>: that is a circuitcheck model"):
        hugging_face_reference(second_load, [1, 2, 3])


def test_the_second_loads_own_reference_is_accepted_as_numbers(tiny_llama, second_load):
    """What a second load can give: the Hugging Face numbers it kept at load time."""
    reference = state_of(second_load).capabilities[REFERENCE_KEY]
    fresh = load_model("tiny-llama", device="cpu")
    assert self_checks(fresh, hugging_face=reference).check("hugging_face").passed
