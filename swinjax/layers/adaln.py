"""Lambda conditioning for variable-rate coding: sinusoidal embedding of log(lambda), MLP, AdaLN.

SwinCoder (Li et al., CLIC 2025, §II-A) inserts AdaLN layers after the last layer of g_a and the
first layer of g_s, "the same as in QARV" (Duan et al. 2023): lambda is embedded sinusoidally on a
log scale, passed through an MLP, and the embedding produces a per-channel scale and shift that
modulate a parameter-free LayerNorm.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from swinjax.layers.ops import Dense, LayerNorm, gelu


def sinusoidal_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """Transformer/diffusion-style embedding of a scalar per example.

    Args:
        t: ``[B]`` positions, expected in about [0, 1000].
        dim: even embedding size.
        max_period: longest period of the sinusoids.

    Returns:
        ``[B, dim]`` float32: ``[cos(t f_i), sin(t f_i)]``.
    """
    if dim % 2:
        raise ValueError(f"embedding dim must be even, got {dim}")
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32)[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class LambdaEmbedding(nn.Module):
    """Maps ``lmbda [B]`` to an embedding ``[B, features]`` (QARV recipe).

    ``log(lmbda)`` is mapped linearly from ``[log lmbda_min, log lmbda_max]`` onto ``[0, 1000]``
    (the usual range of diffusion timesteps) so the sinusoids resolve the whole training range.

    Attributes:
        features: embedding width.
        lmbda_min: lower end of the training range (SwinCoder: 16).
        lmbda_max: upper end (SwinCoder: 1024).
        sinusoid_dim: width of the sinusoidal code.
    """

    features: int = 256
    lmbda_min: float = 16.0
    lmbda_max: float = 1024.0
    sinusoid_dim: int = 128

    @nn.compact
    def __call__(self, lmbda: jax.Array) -> jax.Array:
        """Embeds a ``[B]`` (or scalar) array of lambdas."""
        lmbda = jnp.atleast_1d(jnp.asarray(lmbda, jnp.float32))
        lo, hi = math.log(self.lmbda_min), math.log(self.lmbda_max)
        t = 1000.0 * (jnp.log(lmbda) - lo) / (hi - lo)
        e = sinusoidal_embedding(t, self.sinusoid_dim)
        e = Dense(self.features, name="fc1")(e)
        e = gelu(e)
        return Dense(self.features, name="fc2")(e)


class AdaLN(nn.Module):
    """Parameter-free LayerNorm modulated by a conditioning embedding.

    ``out = LN(x) * (1 + scale(e)) + shift(e)`` with ``scale, shift = Dense(2C)(GELU(e))``.
    The modulation is initialised small but non-zero so that lambda influences the transform from
    the first step of variable-rate training.
    """

    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, embedding: jax.Array) -> jax.Array:
        """Modulates ``x [B, H, W, C]`` with ``embedding [B, E]``."""
        c = x.shape[-1]
        mod = Dense(2 * c, kernel_init=nn.initializers.normal(0.02), name="modulation")(
            gelu(embedding)
        )
        scale, shift = jnp.split(mod[:, None, None, :], 2, axis=-1)
        y = LayerNorm(use_scale=False, use_bias=False, epsilon=1e-5, dtype=self.dtype, name="norm")(
            x
        )
        return y * (1.0 + scale.astype(y.dtype)) + shift.astype(y.dtype)
