"""Calls in an older form that still work for one release, with a warning naming the new form.

A probe's options (everything after its subject: ``metric``, ``reference``, ``ablation``,
``seed``, ``prepend_bos``, …) are keyword-only. `accept_older_calls` lets a call that still
passes them by position, or by a keyword's old name (`renamed_keywords`), run as the new
form, with a DeprecationWarning pointing at the caller's line. `probe` applies it to every
probe, so the signature (and so the docs) shows only the new form.

A name that moved keeps working the same way: `older_name` (a module's renamed objects) and
`moved_names` (the names a package's ``__all__`` no longer lists: engine plumbing now imported
from its own module, a second name of one concept) give a module ``__getattr__`` that warns
with the name to write now.
"""

import functools
import importlib
import inspect
import warnings

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
LATER = "the older form will be refused in the next release"


def renamed_keywords(**old_to_new):
    """Mark ``function``'s keywords that had another name: ``@renamed_keywords(kind="ablation")``."""

    def mark(function):
        function.renamed_keywords = old_to_new
        return function

    return mark


def _warn(message: str) -> None:
    warnings.warn(f"{message}; {LATER}", DeprecationWarning, stacklevel=4)  # the caller of the probe


def accept_older_calls(function):
    """``function``, also taking its keyword-only options by position (in their order) and its
    renamed keywords by their old names; either with a warning."""
    parameters = inspect.signature(function).parameters.values()
    n_positional = sum(p.kind in _POSITIONAL for p in parameters)
    options = [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
    renamed = getattr(function, "renamed_keywords", {})
    takes_any_number = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)
    if (not options or takes_any_number) and not renamed:
        return function  # nothing to accept (with ``*tests`` no option was ever positional)
    name = function.__name__

    @functools.wraps(function)
    def call(*args, **kwargs):
        for old, new in renamed.items():
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(f"{name}() got {old}= and {new}=: {old}= is the old name of {new}=; "
                                    f"give only {new}=")
                _warn(f"{name}({old}=...) is now {name}({new}=...)")
                kwargs[new] = kwargs.pop(old)
        extra = () if takes_any_number else args[n_positional:]
        if extra:
            named = options[:len(extra)]
            if len(extra) > len(options) or any(n in kwargs for n in named):
                return function(*args, **kwargs)  # Python's own TypeError says what is wrong
            _warn(f"{name}(): give {', '.join(n + '=' for n in named)} by keyword "
                  f"(options are keyword-only), e.g. {name}(..., {named[0]}={extra[0]!r})")
            kwargs.update(zip(named, extra))
            args = args[:n_positional]
        return function(*args, **kwargs)

    return call


def older_name(module: str, name: str, renamed: dict):
    """A module ``__getattr__`` for names that moved: ``renamed`` maps an old name to its object."""
    if name not in renamed:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    new = renamed[name]
    warnings.warn(f"{module}.{name} is now {new.__module__}.{new.__qualname__}; {LATER}", DeprecationWarning,
                  stacklevel=2)
    return new


def moved_names(package: str, homes: dict[str, str], instead: dict[str, str] | None = None):
    """A ``__getattr__`` for ``package``: each old name in ``homes`` still gives what it gave (looked
    up in its home module, imported on first use; ``"module:name"`` where it is called otherwise
    there), with a warning naming where to import it now, or, for a second name of one concept,
    ``instead[name]``: the one name to write now."""
    instead = instead or {}

    def __getattr__(name: str):
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        now = instead.get(name) or f"`from {homes[name]} import {name}`"
        warnings.warn(f"{package}.{name} is now {now}; {LATER}", DeprecationWarning, stacklevel=2)
        home, _, now_called = homes[name].partition(":")
        return getattr(importlib.import_module(home), now_called or name)

    __getattr__.homes = homes  # for the tests: every old name and its home
    return __getattr__
