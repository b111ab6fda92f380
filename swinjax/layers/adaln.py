"""Lambda conditioning for variable-rate coding: a smooth embedding of log(lambda) and AdaLN blocks.

SwinCoder (Li et al., CLIC 2025, §II-A) inserts AdaLN layers after the last layer of g_a and the
first layer of g_s, "the same as in QARV" (Duan et al. 2023). QARV embeds log(lambda) with
sinusoids whose periods are of the order of its lambda range, passes the code through an MLP,
and uses the embedding to modulate *residual* blocks: ``x + gamma * MLP(AdaLN(x, e))`` with
``AdaLN(x, e) = LN(x) * (1 + scale(e)) + shift(e)``. The residual form matters: a LayerNorm on the
latent itself would pin every token's energy, and the energy of y is what sets the rate.

Two properties are tested: the embedding is smooth in log(lambda) (nearby lambdas get nearby
codes, so every training step teaches the whole neighbourhood of its lambda), and each block
modulates per example.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from swinjax.layers.ops import Dense, LayerNorm, gelu
from swinjax.lmbda import LmbdaRange

# Angular frequencies of the sinusoids over t in [0, 1] (the whole lambda range): from a quarter
# turn to two turns. With SwinCoder's [16, 1024] (six octaves) the fastest sinusoid turns a third
# of a circle per octave, so lambda and 2 lambda get strongly correlated codes.
MIN_FREQUENCY = 0.5 * math.pi
MAX_FREQUENCY = 4.0 * math.pi


def smooth_embedding(t: jax.Array, dim: int) -> jax.Array:
    """Sinusoidal code of ``t [B]`` (about [0, 1]) with frequencies spread over one range.

    Args:
        t: positions, 0 and 1 being the ends of the lambda range.
        dim: even code width.

    Returns:
        ``[B, dim]`` float32: ``[cos(t w_i), sin(t w_i)]`` with ``w_i`` geometric from
        :data:`MIN_FREQUENCY` to :data:`MAX_FREQUENCY`.
    """
    if dim % 2 or dim < 2:
        raise ValueError(f"embedding dim must be even and positive, got {dim}")
    half = dim // 2
    steps = jnp.arange(half, dtype=jnp.float32) / max(half - 1, 1)
    freqs = MIN_FREQUENCY * (MAX_FREQUENCY / MIN_FREQUENCY) ** steps
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class LambdaEmbedding(nn.Module):
    """Maps ``lmbda [B]`` to an embedding ``[B, features]``: smooth code of log lambda, then an MLP.

    Attributes:
        features: embedding width.
        lmbda_min: lower end of the training range (SwinCoder: 16).
        lmbda_max: upper end (SwinCoder: 1024).
        sinusoid_dim: width of the sinusoidal code.
    """

    features: int = 256
    lmbda_min: float = 16.0
    lmbda_max: float = 1024.0
    sinusoid_dim: int = 64

    @nn.compact
    def __call__(self, lmbda: jax.Array) -> jax.Array:
        """Embeds a ``[B]`` (or scalar) array of lambdas."""
        lmbda = jnp.atleast_1d(jnp.asarray(lmbda, jnp.float32))
        t = LmbdaRange(self.lmbda_min, self.lmbda_max, True).position(lmbda)
        e = smooth_embedding(t, self.sinusoid_dim)
        e = Dense(self.features, name="fc1")(e)
        e = gelu(e)
        return Dense(self.features, name="fc2")(e)


class AdaLN(nn.Module):
    """Parameter-free LayerNorm modulated per example: ``LN(x) * (1 + scale(e)) + shift(e)``.

    Used inside :class:`LambdaBlock` (never on the latent itself). The modulation starts small
    (``scale, shift = Dense(2C)(GELU(e))`` with 0.02-normal weights), so a block starts close to
    an unconditioned one.
    """

    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, embedding: jax.Array) -> jax.Array:
        """Modulates ``x [B, ..., C]`` with ``embedding [B, E]``."""
        c = x.shape[-1]
        mod = Dense(2 * c, kernel_init=nn.initializers.normal(0.02), name="modulation")(
            gelu(embedding)
        )
        mod = mod.reshape(mod.shape[0], *([1] * (x.ndim - 2)), 2 * c)
        scale, shift = jnp.split(mod, 2, axis=-1)
        y = LayerNorm(use_scale=False, use_bias=False, epsilon=1e-5, dtype=self.dtype, name="norm")(
            x
        )
        return y * (1.0 + scale.astype(y.dtype)) + shift.astype(y.dtype)


class LambdaBlock(nn.Module):
    """QARV's conditioned residual block on tokens: ``x + gamma * MLP(AdaLN(x, e))``.

    Nothing normalises the stream itself, so the encoder's weights (and the image) keep setting
    the latent's amplitude, and the block adds a lambda-dependent correction per channel. ``gamma``
    is a learned per-channel layer scale, started at 1 so that Adam (whose steps are about the
    learning rate per parameter) does not spend thousands of steps growing it.

    Attributes:
        mlp_ratio: hidden width of the MLP relative to the channels.
        dtype: computation dtype.
    """

    mlp_ratio: float = 2.0
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, embedding: jax.Array) -> jax.Array:
        """``[B, ..., C]`` -> ``[B, ..., C]`` conditioned on ``embedding [B, E]``."""
        c = x.shape[-1]
        h = AdaLN(self.dtype, name="adaln")(x, embedding)
        h = Dense(int(round(c * self.mlp_ratio)), dtype=self.dtype, name="fc1")(h)
        h = Dense(c, dtype=self.dtype, name="fc2")(h, activation="gelu")
        gamma = self.param("layer_scale", nn.initializers.ones, (c,), jnp.float32)
        return x + h * gamma.astype(h.dtype)


class LatentGain(nn.Module):
    """Per-channel, lambda-dependent gain on the latent: a quantization step of ``1 / gain``.

    The encoder codes ``round(gain * (y - mu))``; the decoder divides by the same gain before
    g_s, and the entropy model's means and scales (predicted for y itself) are multiplied by it.
    This is the gain unit of Cui et al. (CVPR 2021, "Asymmetric gained deep image compression
    with continuous rate adaptation"), made continuous in lambda:
    ``log gain_c = offset_c + slope_c * log(lambda / lambda_mid)``.

    Why: AdaLN alone (SwinCoder, §II-A) must learn to rescale the latent before lambda can move
    the rate, and on a short training budget it does not (docs/training.md's reference-model notes
    give the measured spread). A Gaussian source at high rate wants a step proportional to
    ``lambda ** -0.5`` (D ~ step^2 / 12, R ~ -log2 step, minimise R + lambda D), so the slope
    starts at 0.5 and the model starts with an 8x range of steps over [16, 1024]; both per-channel
    parameters are learned. At ``lambda_mid`` the gain starts at 1: a model trained without it
    keeps its behaviour there.

    Attributes:
        channels: latent channels.
        lmbda_min: lower end of the lambda range.
        lmbda_max: upper end.
        init_slope: starting slope of log gain against log lambda.
    """

    channels: int
    lmbda_min: float = 16.0
    lmbda_max: float = 1024.0
    init_slope: float = 0.5

    @nn.compact
    def __call__(self, lmbda: jax.Array) -> jax.Array:
        """Gain ``[B, 1, 1, C]`` for ``lmbda [B]``, float32 (float64 for a float64 ``lmbda``).

        Compression computes entropy parameters in float64 so that every machine decodes alike
        (:mod:`swinjax.compression`); training passes float32 and gets float32.
        """
        lmbda = jnp.atleast_1d(jnp.asarray(lmbda))
        lmbda = lmbda.astype(jnp.promote_types(lmbda.dtype, jnp.float32))
        mid = LmbdaRange(self.lmbda_min, self.lmbda_max, True).default
        s = jnp.log(lmbda / mid)[:, None]
        slope = self.param(
            "slope", nn.initializers.constant(self.init_slope), (self.channels,), jnp.float32
        )
        offset = self.param("offset", nn.initializers.zeros, (self.channels,), jnp.float32)
        return jnp.exp(offset[None] + slope[None] * s)[:, None, None, :]
