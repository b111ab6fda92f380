"""Gaussian conditional: likelihood of quantized values, the scale table and scale -> index.

Semantics follow tensorflow-compression's ``GaussianConditional`` and CompressAI's
``GaussianConditional``: the probability of a quantized value is the Gaussian mass of its unit bin
``[v - 0.5, v + 0.5)``, floored at ``likelihood_bound``; scales are floored at the smallest entry of
the scale table; a scale is coded with the table entry at or just above it (``scale_index``), so
the coding distribution is never narrower than the model's.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

SCALE_MIN = 0.11
SCALE_MAX = 256.0
SCALE_LEVELS = 64
LIKELIHOOD_BOUND = 1e-9


@functools.lru_cache(maxsize=8)
def scale_table(
    minimum: float = SCALE_MIN, maximum: float = SCALE_MAX, levels: int = SCALE_LEVELS
) -> np.ndarray:
    """Log-spaced scales from ``minimum`` to ``maximum`` (CompressAI's bounds: 0.11 .. 256, 64).

    0.11 is where a zero-mean Gaussian puts ~99.99 % of its mass in the zero bin; 256 covers the
    widest latents of trained models. The table is float32 data: computed once in numpy,
    identical on every platform.
    """
    t = np.exp(np.linspace(math.log(minimum), math.log(maximum), levels)).astype(np.float32)
    t.setflags(write=False)
    return t


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def lower_bound(x: jax.Array, bound: float) -> jax.Array:
    """``max(x, bound)`` whose gradient still flows when it would push ``x`` up past the bound.

    A plain ``maximum`` kills the gradient of every value below the bound, so a scale initialised
    too small could never grow. As Ballé et al.'s ``LowerBound`` (tfc, CompressAI), the gradient
    passes where ``x >= bound`` or where descent would increase ``x``.
    """
    return jnp.maximum(x, bound)


def _lower_bound_fwd(x: jax.Array, bound: float) -> tuple[jax.Array, jax.Array]:
    return jnp.maximum(x, bound), x


def _lower_bound_bwd(bound: float, x: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    passes = (x >= bound) | (g < 0)
    return (jnp.where(passes, g, jnp.zeros_like(g)),)


lower_bound.defvjp(_lower_bound_fwd, _lower_bound_bwd)


def standard_normal_cdf(x: jax.Array) -> jax.Array:
    """Phi(x) via erfc, accurate in the far tails where ``0.5 * (1 + erf)`` cancels."""
    return 0.5 * jax.lax.erfc(-x * (1.0 / math.sqrt(2.0)))


def gaussian_likelihood(
    values: jax.Array,
    mean: jax.Array,
    scale: jax.Array,
    scale_bound: float = SCALE_MIN,
    likelihood_bound: float = LIKELIHOOD_BOUND,
) -> jax.Array:
    """Probability mass of the unit bin around each value under ``N(mean, scale)``.

    Uses the symmetry ``P = Phi((0.5 - |v|)/s) - Phi((-0.5 - |v|)/s)`` so both terms are lower
    tails (no catastrophic cancellation for values far from the mean).
    """
    scale = lower_bound(scale, scale_bound)
    v = jnp.abs(values - mean)
    upper = standard_normal_cdf((0.5 - v) / scale)
    lower = standard_normal_cdf((-0.5 - v) / scale)
    return lower_bound(upper - lower, likelihood_bound)


def scale_index(scale: jax.Array, table: np.ndarray) -> jax.Array:
    """Index of the smallest table scale ``>= scale`` (clipped to the table), as int32.

    Computed in float32 against the float32 table by the same jitted code on the encoder and the
    decoder: both sides see the same scales and therefore the same indexes (docs/file-format.md).
    """
    t = jnp.asarray(table, jnp.float32)
    idx = jnp.searchsorted(t, scale.astype(jnp.float32), side="left")
    return jnp.clip(idx, 0, t.shape[0] - 1).astype(jnp.int32)
