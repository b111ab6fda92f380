"""Lambda, the rate-distortion weight: its range, default, sweep, sampling and validation.

``L = R + lambda * D`` with R in bits per pixel and D the MSE on [0, 1] (CompressAI's
``lambda_c = lambda / 255**2``; SwinNPE's ``beta`` is ``1 / lambda``). This module is the one
place that knows which lambdas a model accepts and which it uses by default: training, validation,
evaluation, the command line and the benchmarks all ask it.

* A **variable-rate** model (SwinCoder, Li et al., CLIC 2025) is trained on lambdas drawn
  log-uniformly from ``model.lmbda.min .. model.lmbda.max`` (SwinCoder: [16, 1024]) and accepts
  any lambda in that range; its default is the geometric middle.
* A **fixed-rate** model is trained at one lambda, ``model.lmbda.value``; the export stores the
  model config, so its files carry the lambda they were made with. Asking such a model for another
  lambda is an error (it cannot honour it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# SwinCoder's training range (Li et al., CLIC 2025, §II-A).
DEFAULT_MIN = 16.0
DEFAULT_MAX = 1024.0


class LmbdaError(ValueError):
    """A lambda the model cannot use (outside its trained range, or not its fixed value)."""


@dataclass(frozen=True)
class LmbdaRange:
    """The lambdas a model accepts: ``[min, max]``, a single point for fixed-rate models."""

    min: float
    max: float
    variable: bool

    def __post_init__(self) -> None:
        if not (0 < self.min <= self.max) or not math.isfinite(self.max):
            raise LmbdaError(
                f"lambda range must satisfy 0 < min <= max, got [{self.min}, {self.max}]"
            )

    @property
    def default(self) -> float:
        """The geometric middle of the range (the fixed value of a fixed-rate model)."""
        return float(math.sqrt(self.min * self.max))

    def sweep(self, n: int = 5) -> list[float]:
        """``n`` lambdas spaced geometrically over the range (one for a fixed-rate model)."""
        if not self.variable:
            return [self.min]
        if n < 1:
            raise LmbdaError(f"a lambda sweep needs at least one point, got {n}")
        if n == 1:
            return [self.default]
        return [float(v) for v in np.geomspace(self.min, self.max, n)]

    def validation_points(self) -> list[float]:
        """min, geometric middle and max: the three lambdas training validation reports."""
        if not self.variable:
            return [self.min]
        return [self.min, self.default, self.max]

    def check(self, lmbda: float | None) -> float:
        """Returns ``lmbda`` (or the default for None) after checking the model can use it.

        Raises:
            LmbdaError: outside the trained range, or not the fixed lambda of a fixed-rate model.
        """
        if lmbda is None:
            return self.default
        value = float(lmbda)
        if not math.isfinite(value):
            raise LmbdaError(f"lambda must be a finite number, got {lmbda}")
        # A relative tolerance so values printed with %g (the CLI, JSON) are accepted back.
        tol = 1e-6 * self.max
        if not self.min - tol <= value <= self.max + tol:
            if self.variable:
                raise LmbdaError(
                    f"lambda={value:g} is outside the model's trained range "
                    f"[{self.min:g}, {self.max:g}]"
                )
            raise LmbdaError(
                f"this fixed-rate model was trained at lambda={self.min:g}; it cannot code at "
                f"lambda={value:g} (omit --lmbda, or use a variable-rate model)"
            )
        return min(max(value, self.min), self.max)

    def position(self, lmbda: jax.Array) -> jax.Array:
        """``log(lmbda)`` mapped linearly onto [0, 1] over the range (the embedding's input)."""
        lo, hi = math.log(self.min), math.log(self.max)
        t = jnp.log(jnp.asarray(lmbda, jnp.float32))
        return (t - lo) / max(hi - lo, 1e-12)

    def sample(self, key: jax.Array, batch: int, bias: float = 1.0) -> jax.Array:
        """``[batch]`` lambdas for a training step.

        Log-uniform over the range by default (``bias=1``): equal effort per octave of lambda,
        which is how RD curves are read (QARV, Duan et al. 2023, samples the same way). ``bias >
        1`` leans towards the top of the range: the position ``t`` in [0, 1] of ``log lambda`` is
        drawn with density ``bias * t**(bias - 1)`` (``t = u**(1 / bias)``), so with ``bias=2``
        the top octave of [16, 1024] gets 31 % of the draws instead of 17 %. A fixed-rate model
        gets its value.
        """
        if not self.variable:
            return jnp.full((batch,), self.min, jnp.float32)
        if not bias > 0:
            raise LmbdaError(f"lambda sampling bias must be positive, got {bias}")
        u = jax.random.uniform(key, (batch,), jnp.float32)
        t = u if bias == 1.0 else u ** (1.0 / bias)
        lo, hi = math.log(self.min), math.log(self.max)
        return jnp.exp(lo + t * (hi - lo))


def lmbda_range(config: Any) -> LmbdaRange:
    """The lambda range of a model.

    Args:
        config: a whole config (with ``model``) or a model config (an export's ``model``).
            Variable-rate models have ``model.lmbda.min`` / ``max``; fixed-rate models
            ``model.lmbda.value``, the lambda they are trained at (so the export, and every file,
            carries it).

    Raises:
        LmbdaError: the model config does not say its lambda(s).
    """
    model = config.model if "model" in config else config
    lm = model.get("lmbda")
    variable = bool(model.get("variable_rate", False))
    try:
        if variable:
            return LmbdaRange(float(lm.min), float(lm.max), True)
        return LmbdaRange(float(lm.value), float(lm.value), False)
    except (AttributeError, KeyError, TypeError) as e:
        want = "model.lmbda.min and model.lmbda.max" if variable else "model.lmbda.value"
        raise LmbdaError(
            f"model {model.get('id', '?')!r} does not say its lambda: set {want}"
        ) from e
