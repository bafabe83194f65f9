"""The tolerances the toolkit's tests compare numbers with, each a claim about arithmetic.

Two float32 computations of the same quantity differ by rounding, and rounding depends on the
order of the sums, which depends on the CPU (vector width, BLAS kernel, thread split). A
tolerance tuned to one machine fails on the next, so every tolerance here is derived from
what is compared:

* ``summed(scale, terms)``: two float32 orders of a sum of ``terms`` terms, each at most
  ``scale`` in size, differ by at most ``terms × ε × scale`` (the γₙ bound of Higham,
  *Accuracy and Stability of Numerical Algorithms*, §4.2), ε = 2⁻²³ ≈ 1.19e-7;
* ``through_model(model, scale)``: a number computed through the model (a logit, a logit
  difference, a metric of the final residual) in two float32 orders of the same arithmetic:
  every layer adds its attention and MLP outputs to the residual (2 L + 1 sums of d_model
  terms), and a normalisation passes the rounding of a d_model vector on with a gain of
  about √d_model at most, so ``ε × scale × (2 L + 1) × √d_model``, ``scale`` being the
  largest activation summed (the residual stream's or the logits' size, measured).

Where a float64 reference can be computed, the float32 result is compared with it instead.
"""

import math

import numpy as np

FLOAT32_EPS = float(np.finfo(np.float32).eps)  # 2^-23


def summed(scale: float, terms: int) -> float:
    """Two float32 orders of a sum of ``terms`` terms of size ≤ ``scale``."""
    return terms * FLOAT32_EPS * scale


def through_model(model, scale: float) -> float:
    """Two float32 orders of the same computation through every layer of ``model``."""
    cfg = model.cfg
    return FLOAT32_EPS * scale * (2 * cfg.n_layers + 1) * math.sqrt(cfg.d_model)
