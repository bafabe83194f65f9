"""A family added the way a new user would: one file, a template, answers and a corruption.

Every file in hypotheses/families/ is imported by the feasibility suite, so this
family appears in the report's feasibility table; its expected row in
hypotheses/test_feasibility.py's EXPECTED map (which the suite prints for you the first
time, ready to paste) makes a later change in where it breaks fail the run.
"""

from circuitcheck import PromptSet, family

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")


@family("months")
def months(model) -> PromptSet:
    """"January, February," → " March" (not " April"); corrupted: start one month later."""
    return PromptSet.from_template(
        "{a}, {b},", [{"a": MONTHS[i], "b": MONTHS[i + 1], "c": MONTHS[i + 2], "d": MONTHS[i + 3],
                       "e": MONTHS[i + 4]} for i in range(8)],
        answers=(" {c}", " {d}"), corrupted_template="{b}, {c},", name="months")
