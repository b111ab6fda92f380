"""Deep factorized density for the hyper-latent z (Ballé et al. 2018, appendix 6.1).

Each channel has its own monotone cumulative function ``c(x)`` built from ``filters`` layers of
``softplus(H) x + b`` and ``tanh`` residuals with gates ``tanh(a)``; the probability of a unit
bin is ``sigmoid(c(x + 0.5)) - sigmoid(c(x - 0.5))``, evaluated on the side of the median where
both terms are small (tfc's ``NoisyDeepFactorized``; CompressAI's ``EntropyBottleneck``).

``quantiles [C, 3]`` are auxiliary parameters (own optimizer, as in CompressAI): trained by
:meth:`FactorizedPrior.aux_loss` to sit at the ``tail_mass / 2`` and ``1 - tail_mass / 2``
quantiles and the median of each channel. The median is the quantization offset of z; the outer
quantiles bound the integer support of the coding tables, values outside it use the escape code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from swinjax.entropy.gaussian import lower_bound


def _uniform_init(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return jax.random.uniform(key, shape, jnp.float32, -0.5, 0.5)


class FactorizedPrior(nn.Module):
    """Per-channel learned density of ``z``; inputs are ``[..., C]`` (channels last).

    Attributes:
        channels: C.
        filters: hidden widths of the density network (Ballé: (3, 3, 3)).
        init_scale: initial width of each density.
        tail_mass: probability left outside the quantiles (and the coding table).
        likelihood_bound: floor of every likelihood, applied with
            :func:`~swinjax.entropy.gaussian.lower_bound` (gradients still flow where they push a
            likelihood up past the floor, as tfc's and CompressAI's ``EntropyBottleneck``).
    """

    channels: int
    filters: Sequence[int] = (3, 3, 3)
    init_scale: float = 10.0
    tail_mass: float = 1e-9
    likelihood_bound: float = 1e-9

    def setup(self) -> None:
        """Creates the density parameters (initialised as in Ballé et al.)."""
        dims = (1, *self.filters, 1)
        scale = self.init_scale ** (1.0 / (len(self.filters) + 1))
        c = self.channels
        matrices, biases, factors = [], [], []
        for i in range(len(self.filters) + 1):
            init = math.log(math.expm1(1.0 / scale / dims[i + 1]))
            matrices.append(
                self.param(f"matrix{i}", nn.initializers.constant(init), (c, dims[i + 1], dims[i]))
            )
            biases.append(self.param(f"bias{i}", _uniform_init, (c, dims[i + 1], 1)))
            if i < len(self.filters):
                factors.append(self.param(f"factor{i}", nn.initializers.zeros, (c, dims[i + 1], 1)))
        self.matrices, self.biases, self.factors = matrices, biases, factors
        q = self.init_scale
        self.quantiles = self.param(
            "quantiles",
            lambda k, s: jnp.tile(jnp.array([[-q, 0.0, q]], jnp.float32), (s[0], 1)),
            (c, 3),
        )

    def _logits_cumulative(self, x: jax.Array, stop_gradient: bool) -> jax.Array:
        """``c(x)`` for ``x [C, 1, N]`` -> ``[C, 1, N]``."""
        sg = jax.lax.stop_gradient if stop_gradient else (lambda a: a)
        logits = x
        for i in range(len(self.filters) + 1):
            logits = jnp.matmul(jax.nn.softplus(sg(self.matrices[i])), logits) + sg(self.biases[i])
            if i < len(self.filters):
                logits = logits + jnp.tanh(sg(self.factors[i])) * jnp.tanh(logits)
        return logits

    def likelihood(self, values: jax.Array) -> jax.Array:
        """Probability of the unit bin around each value, ``values [..., C]`` -> same shape."""
        shape = values.shape
        v = jnp.moveaxis(values.reshape(-1, self.channels), -1, 0)[:, None, :]  # [C, 1, N]
        lower = self._logits_cumulative(v - 0.5, stop_gradient=False)
        upper = self._logits_cumulative(v + 0.5, stop_gradient=False)
        # Evaluate on the side where both sigmoids are small (no cancellation near 1).
        sign = -jnp.sign(lower + upper)
        sign = jax.lax.stop_gradient(jnp.where(sign == 0, 1.0, sign))
        lik = jnp.abs(jax.nn.sigmoid(sign * upper) - jax.nn.sigmoid(sign * lower))
        # Pass-through floor: a plain maximum would zero the gradient of every bin below it.
        lik = lower_bound(lik, self.likelihood_bound)
        return jnp.moveaxis(lik[:, 0, :], 0, -1).reshape(shape)

    def medians(self) -> jax.Array:
        """Median of each channel, ``[C]``: the quantization offset of z."""
        return self.quantiles[:, 1]

    def aux_loss(self) -> jax.Array:
        """Pulls ``quantiles`` to the tail-mass quantiles and median; touches nothing else."""
        target = math.log(2.0 / self.tail_mass - 1.0)
        target = jnp.array([-target, 0.0, target], jnp.float32)
        logits = self._logits_cumulative(self.quantiles[:, None, :], stop_gradient=True)
        return jnp.sum(jnp.abs(logits[:, 0, :] - target))

    def table_inputs(self, max_length: int = 4096) -> dict[str, jax.Array]:
        """Integer-grid pmfs from which the coding tables are built (numpy side: tables.py).

        For channel c the support is ``[-minima_c, maxima_c]`` around the median with
        ``minima = ceil(median - q_low)`` and ``maxima = ceil(q_high - median)`` (CompressAI
        ``EntropyBottleneck.update``); lengths are clipped to ``max_length``.

        Returns:
            ``pmf [C, L]`` (zero beyond each row's length), ``length [C]`` int32,
            ``offset [C]`` int32 (symbol value of column 0), ``tail_mass [C]``: the mass outside
            the row, coded through the escape symbol.
        """
        med = self.medians()
        minima = jnp.clip(jnp.ceil(med - self.quantiles[:, 0]), 0, max_length // 2)
        maxima = jnp.clip(jnp.ceil(self.quantiles[:, 2] - med), 0, max_length // 2 - 1)
        length = (minima + maxima + 1).astype(jnp.int32)
        width = int(max_length)
        grid = jnp.arange(width, dtype=jnp.float32)[None, :] - minima[:, None]  # symbol values
        samples = grid + med[:, None]
        lower = self._logits_cumulative(samples[:, None, :] - 0.5, stop_gradient=True)[:, 0]
        upper = self._logits_cumulative(samples[:, None, :] + 0.5, stop_gradient=True)[:, 0]
        sign = -jnp.sign(lower + upper)
        sign = jnp.where(sign == 0, 1.0, sign)
        pmf = jnp.abs(jax.nn.sigmoid(sign * upper) - jax.nn.sigmoid(sign * lower))
        valid = jnp.arange(width)[None, :] < length[:, None]
        pmf = jnp.where(valid, pmf, 0.0)
        first = self._logits_cumulative((med - minima - 0.5)[:, None, None], True)[:, 0, 0]
        last = self._logits_cumulative((med + maxima + 0.5)[:, None, None], True)[:, 0, 0]
        tail = jax.nn.sigmoid(first) + jax.nn.sigmoid(-last)
        return {
            "pmf": pmf,
            "length": length,
            "offset": (-minima).astype(jnp.int32),
            "tail_mass": tail,
        }


def trim_table_inputs(inputs: dict[str, jax.Array]) -> dict[str, np.ndarray]:
    """Converts :meth:`FactorizedPrior.table_inputs` to numpy and drops all-zero columns."""
    out = {k: np.asarray(v) for k, v in inputs.items()}
    width = int(out["length"].max()) if out["length"].size else 1
    out["pmf"] = out["pmf"][:, :width].astype(np.float64)
    out["tail_mass"] = out["tail_mass"].astype(np.float64)
    return out
