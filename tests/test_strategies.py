"""Hypothesis strategies shrink to the most natural prompt, and the profiles exist."""

from hypothesis import find, settings

from circuitcheck.fixtures.strategies import a_an_prompt_sets, counting_prompt_sets, ioi_prompt_sets


def test_shrinking_lands_on_the_canonical_prompts():
    assert find(ioi_prompt_sets(), lambda p: True).prompts[0] == \
        "When Mary and John went to the shops, Mary gave the bag to"
    assert find(counting_prompt_sets(), lambda p: True).prompts[0] == "0 1 2 3 "
    assert find(counting_prompt_sets(apart=False), lambda p: True).answers[0] == (" 4", " 5")
    assert find(a_an_prompt_sets(), lambda p: True).answers[0] == (" an", " a")  # pear, then apple


def test_a_failing_condition_shrinks_to_the_simplest_counterexample():
    """Among prompts that count down, the simplest is the canonical 9 8 7 6."""
    down = find(counting_prompt_sets(), lambda p: p.answers[0][0] < p.prompts[0][-2])
    assert down.prompts[0] == "9 8 7 6 " and down.corrupted_prompts[0] == "9 8 7 5 "


def test_profiles_are_registered():
    for name in ("dev", "ci", "thorough"):
        assert settings.get_profile(name).deadline is None
    assert settings.get_profile("ci").derandomize and settings.get_profile("dev").derandomize
