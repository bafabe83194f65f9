"""Bad input to `circuitcheck.scrutiny` (issue 29): a verdict where a p-value belongs, p-values
in a container with no order or no shape, a string for a level, a model's name where the
model belongs. Each is refused before anything runs, in one line naming the argument, what
was given and what to give instead."""

import math

import numpy as np
import pytest

from circuitcheck.scrutiny import holm, holm_family, published, robustness

from .test_patching import PROMPTS

WANG = "Wang et al. 2022, §3"
VERDICT = "is a verdict, not a p-value; give the test's p-value (result.p_value), or the Result itself to holm_family"


@pytest.mark.parametrize("call, message", [
    (lambda: holm([True, 0.5]), f"holm(): True {VERDICT}"),
    (lambda: holm(np.array([False, True])), f"holm(): False {VERDICT}"),
    (lambda: holm(np.bool_(False)), f"holm(): False {VERDICT}"),
    (lambda: holm([[0.1, 0.2], [0.3]]), "holm(): the p-values are ragged (rows of different lengths); give a flat"),
    (lambda: holm(p for p in (0.1, 0.2)), "holm(): a generator or iterator is read once; give the p-values in a list"),
    (lambda: holm({0.1, 0.2}), "holm(): a set has no order to give the corrected values back in; give the p-values in"),
    (lambda: holm({"a": 0.1}), "holm(): a dict of p-values; give a list (list(d.values())), or holm_family("),
    (lambda: holm(["0.05"]), "holm(): '0.05' (str) is not a p-value; give p-values as numbers between 0 and 1"),
    (lambda: holm([None]), "holm(): None (NoneType) is not a p-value; give p-values"),
    (lambda: holm([0.2, 1.5]), "holm(): p-value 1.5 is not between 0 and 1; give p-values (NaN for a test"),
    (lambda: holm([-math.inf]), "holm(): p-value -inf is not between 0 and 1"),
    (lambda: holm_family(("a", False)), f"holm_family(('a', False)): False {VERDICT}"),
    (lambda: holm_family(("a", np.bool_(True))), f"holm_family(('a', np.True_)): True {VERDICT}"),
    (lambda: holm_family(("a", "0.01")), "holm_family(('a', '0.01')): '0.01' (str) is not a p-value"),
    (lambda: holm_family(("a", 1.5)), "holm_family(('a', 1.5)): p-value 1.5 is not between 0 and 1"),
    (lambda: holm_family(("a", [0.1, 0.2])), "holm_family(('a', [0.1, 0.2])): give one p-value per pair, e.g. "
                                             "('a', result.p_value)"),
    (lambda: holm_family(("a", 0.01), alpha="0.05"), "alpha='0.05': give a significance level between 0 and 1"),
    (lambda: holm_family(("a", 0.01), alpha=True), "alpha=True: give a significance level between 0 and 1"),
    (lambda: holm_family(("a", 0.01), alpha=math.nan), "alpha=nan: give a significance level between 0 and 1"),
])
def test_p_values_that_are_not_numbers_in_order_are_refused(call, message):
    with pytest.raises(ValueError) as refused:
        call()
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value), refused.value


def test_nan_is_a_test_that_did_not_run_not_an_error():
    """NaN is documented as a test that did not run: it stays NaN, and does not count among the m."""
    np.testing.assert_allclose(holm([0.03, math.nan, 0.02]), [0.04, math.nan, 0.04])
    family = holm_family(("ran", 0.01), ("did not run", math.nan))
    assert not family.all_significant and family.corrected[0] == 0.01


@pytest.mark.parametrize("arguments, message", [
    (dict(model=3), "model=3: give the model the value was measured on, or its name (e.g. model='gpt2'), or leave"),
    (dict(model=[1]), "model=[1]: give the model the value was measured on"),
    (dict(reported_on=3), "reported_on=3: give the name of the model the paper measured (e.g. reported_on='GPT-2 "
                          "small') when it is not this one; leave it out when it is"),
    (dict(reported_on="   "), "reported_on='   ': give the name of the model the paper measured"),
    (dict(reported_on=False), "reported_on=False: give the name of the model the paper measured"),
])
def test_published_refuses_what_is_not_a_model_or_a_models_name(arguments, message):
    with pytest.raises(ValueError) as refused:
        published(3.4, reported=3.56, band=0.3, source=WANG, **arguments)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value), refused.value


@pytest.mark.parametrize("name, over, message", [
    (None, {"model": ["tiny-llama", "tiny-gpt2"]},
     "over['model']: 'tiny-llama' is a model's name; give loaded models, e.g. over={'model': "
     "[load_model('tiny-llama'), ...]} (circuitcheck.load_model)"),
    ("tiny-llama", {"seed": [0, 1]},
     "robustness(model='tiny-llama'): give a loaded model (circuitcheck.load_model('tiny-llama')), not its name"),
])
def test_robustness_refuses_model_names_before_running_the_claim(name, over, message):
    calls = []
    with pytest.raises(ValueError) as refused:
        robustness(name, PROMPTS, lambda model, prompts, **options: calls.append(1) or 1.0, over=over,
                   holds=lambda x: x > 0)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value), refused.value
    assert calls == []
