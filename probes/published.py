"""Published values: does a measurement replicate the number a paper reported?

A replication claim names three things besides the measurement: the paper's number, the
tolerance a replication must meet, and where the number comes from. Fix the tolerance
before measuring (from the paper's own spread, or the seed-to-seed spread of your
setup), not after. ``band`` is absolute (``0.3``: within ±0.3 of the paper's value) or,
written as a percentage (``"10%"``), relative to the paper's value::

    ld = logit_diff(model, ioi_prompts())
    assert published(ld.mean, reported=3.56, band=0.5, source="Wang et al. 2022, §3",
                     what="IOI logit difference, GPT-2 small").replicates

`published` needs no model: it records the comparison as the test's evidence, so the
report can show "replicates" or "does not replicate" with both numbers and the citation.
A number measured on another model than the paper's (``reported_on="GPT-2 small"``) is a
comparison, not a replication: the verdict then reads "agrees" or "does not agree".
"""

import math
import re
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .evidence import probe
from .results import Result

PERCENT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*$")
# A value exactly on the band's edge replicates, whatever the float rounding: |measured − reported|
# may exceed the band by a few roundings of the numbers' own size (3.86 − 3.56 > 0.3 in float64).
ROUNDINGS = 4 * sys.float_info.epsilon


@dataclass(frozen=True, eq=False, repr=False)
class Published(Result):
    """A measured value against a published one: ``replicates`` when ``|measured − reported|``
    is at most ``tolerance`` (``band`` as given: absolute, or a percentage of ``reported``)."""

    what: str
    measured: float
    reported: float
    band: str
    tolerance: float
    source: str
    reported_on: str = ""  # the model the paper measured, when it is not the one measured here ("": the same)

    kind = "published"

    @property
    def difference(self) -> float:
        return self.measured - self.reported

    @property
    def low(self) -> float:
        return self.reported - self.tolerance

    @property
    def high(self) -> float:
        return self.reported + self.tolerance

    @property
    def replicates(self) -> bool:
        slack = ROUNDINGS * max(abs(self.measured), abs(self.reported), self.tolerance)
        return bool(math.isfinite(self.measured) and abs(self.difference) <= self.tolerance + slack)

    @property
    def verdict(self) -> str:
        if self.reported_on:
            return "agrees" if self.replicates else "does not agree"
        return "replicates" if self.replicates else "does not replicate"

    @property
    def title(self) -> str:
        on = f" (reported on {self.reported_on})" if self.reported_on else ""
        verb = f"{self.verdict} with" if self.reported_on else self.verdict
        return (f"{self.what or 'Measured value'} {verb} {self.source}{on}: "
                f"{self.measured:.4g} vs {self.reported:.4g} ± {self.band}")

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame([{"what": self.what, "measured": self.measured, "reported": self.reported,
                              "band": self.band, "low": self.low, "high": self.high,
                              "difference": self.difference, "replicates": self.replicates,
                              "source": self.source}])

    def summary(self) -> dict:
        return {"what": self.what, "measured": self.measured, "reported": self.reported, "band": self.band,
                "tolerance": self.tolerance, "difference": self.difference, "replicates": self.replicates,
                "verdict": self.verdict, "source": self.source, "reported on": self.reported_on}

    def notes(self) -> list[str]:
        relative = f" ({self.band} of {self.reported:.4g})" if self.band.endswith("%") else ""
        lines = [f"measured {self.measured:.4g}; {self.source} reports {self.reported:.4g}; a replication "
                 f"must lie within ±{self.tolerance:.4g}{relative}: {self.low:.4g} to {self.high:.4g}"]
        if not math.isfinite(self.measured):
            lines.append(f"does not replicate: the measured value is {self.measured!r}")
        else:
            lines.append(f"{self.verdict}: off by {self.difference:+.4g}"
                         + ("" if self.replicates else f", {abs(self.difference) - self.tolerance:.4g} "
                                                       "beyond the band"))
        return [*lines, *self.notes_text]

    def figure(self) -> dict:
        return {"type": "bar", "x": ["measured", f"reported ({self.source})"], "y": [self.measured, self.reported],
                "xlabel": self.what or "value", "ylabel": "value",
                "title": f"{self.verdict} (band ±{self.tolerance:.4g})"}


def _number(name: str, value, fix: str) -> float:
    if isinstance(value, (bool, np.bool_)) or isinstance(value, Result):
        raise ValueError(f"{name}={value!r}: {fix}")
    try:
        number = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not a number: {fix}") from None
    return number


def _tolerance(band, reported: float) -> tuple[str, float]:
    """``(band as shown, absolute tolerance)`` from an absolute number or a ``"10%"`` string."""
    fix = "give an absolute tolerance such as band=0.3, or a share of the reported value such as band='10%'"
    if isinstance(band, str):
        match = PERCENT.match(band)
        if not match:
            raise ValueError(f"band={band!r}: {fix}")
        if reported == 0:
            raise ValueError(f"band={band!r} is relative to reported=0, so it has no width; give an absolute "
                             "band such as band=0.05")
        percent = float(match.group(1))
        return f"{percent:g}%", abs(reported) * percent / 100
    tolerance = _number("band", band, fix)
    if not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"band={band!r}: a tolerance is a finite number of at least 0; {fix}")
    return f"{tolerance:g}", tolerance


def _reported_on(reported_on) -> str:
    """The model the paper measured: a name (a comparison across models), or "" for the same model."""
    if reported_on is None or reported_on == "":
        return ""
    if not isinstance(reported_on, str) or not reported_on.strip():
        raise ValueError(f"reported_on={reported_on!r:.60}: give the name of the model the paper measured "
                         "(e.g. reported_on='GPT-2 small') when it is not this one; leave it out when it is")
    return reported_on.strip()


def _model(model) -> str:
    if model is None or isinstance(model, str):
        return model or ""
    if not (hasattr(model, "cfg") and hasattr(model, "hook_dict")):  # a model (TransformerBridge)
        raise ValueError(f"model={model!r:.60}: give the model the value was measured on, or its name "
                         "(e.g. model='gpt2'), or leave it out")
    from .model_state import model_name

    return model_name(model)


@probe
def published(value, *, reported, band, source: str, what: str = "", model=None,
              reported_on: str | None = None) -> Published:
    """Record ``value`` (your measurement) as a replication of ``reported`` (the paper's number),
    which it must match within ``band``: absolute (``0.3``) or relative to ``reported``
    (``"10%"``). ``source``: the citation (``"Wang et al. 2022, §3"``); ``what``: what the
    number is; ``model``: the model (or its name) it was measured on, for the report;
    ``reported_on``: the name of the model the paper measured, when it differs (a comparison
    across models; None or left out: the same model). A NaN measurement does not replicate."""
    measured = _number("value", value, "give the measured number, e.g. published(result.mean, ...)")
    reported = _number("reported", reported, "give the number the paper reports")
    if not math.isfinite(reported):
        raise ValueError(f"reported={reported!r}: give the finite number the paper reports")
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"source={source!r}: give the citation the number comes from, e.g. "
                         "source='Wang et al. 2022, §3'")
    shown, tolerance = _tolerance(band, reported)
    return Published(model=_model(model), prompt_set="", what=str(what), measured=measured, reported=reported,
                     band=shown, tolerance=tolerance, source=source.strip(), reported_on=_reported_on(reported_on))
