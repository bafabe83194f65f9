"""Errors caused by a researcher's input show the message and the researcher's line, not our source.

circuitcheck checks its input and raises ``ValueError`` (or a subclass such as
`AnswerTokenError`) or ``LookupError`` with a message naming the prompt, the
tokens and the fix. In a pytest traceback the library frames between the test
and that ``raise`` are noise (about 25 lines of our source). pytest hides a
frame whose module defines ``__tracebackhide__``; given a callable, it asks per
exception. `hide_frames_for_input_errors` installs `raised_for_the_input` in
each circuitcheck module: frames are hidden only for such errors raised by
circuitcheck's own code, so a genuine bug (an error from torch, a TypeError)
keeps its whole traceback, and ``pytest --full-trace`` shows everything.
`check_count` is the one check of every count, size and seed a probe takes.
"""

import sys

import numpy as np

INPUT_ERRORS = (ValueError, LookupError)


def check_count(name: str, value, minimum: int = 0, fix: str = "") -> int:
    """``value`` as an int when it is a whole number of at least ``minimum``; otherwise a
    ValueError naming the argument, its value and ``fix``. The one check every probe's
    counts, sizes and seeds go through (a negative count is never quietly taken as 0)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r}: give a whole number of at least {minimum}" + (f"; {fix}" if fix else ""))
    return int(value)


def raised_for_the_input(excinfo) -> bool:
    """True for a ValueError/LookupError whose ``raise`` is in circuitcheck's own code."""
    error = getattr(excinfo, "value", None)
    if not isinstance(error, INPUT_ERRORS) or error.__traceback__ is None:
        return False
    innermost = error.__traceback__
    while innermost.tb_next is not None:
        innermost = innermost.tb_next
    return str(innermost.tb_frame.f_globals.get("__name__", "")).startswith("circuitcheck.")


def hide_frames_for_input_errors(package: str) -> None:
    """Set ``__tracebackhide__`` in every loaded module of ``package`` (its own included)."""
    for name, module in list(sys.modules.items()):
        if module is not None and (name == package or name.startswith(package + ".")):
            module.__tracebackhide__ = raised_for_the_input
