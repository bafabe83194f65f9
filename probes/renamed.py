"""Old names that still work for one release, with a warning naming the new one."""

import functools
import warnings


def renamed_keywords(**old_to_new):
    """Accept each old keyword as its new name, with a DeprecationWarning pointing at the caller's
    line: ``@renamed_keywords(kind="ablation")`` lets ``ablate(..., kind="zero")`` run as
    ``ablate(..., ablation="zero")``. The signature (and so the docs) shows only the new names."""

    def wrap(function):
        @functools.wraps(function)
        def call(*args, **kwargs):
            for old, new in old_to_new.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(f"{function.__name__}() got {old}= and {new}=: {old}= is the old name of "
                                    f"{new}=; give only {new}=")
                warnings.warn(f"{function.__name__}({old}=...) is now {function.__name__}({new}=...); the old "
                              "name will be removed in the next release", DeprecationWarning, stacklevel=3)
                kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return call

    return wrap
