"""Rate and distortion: pure functions (the conventions of docs/evaluation.md).

Rate R is bits per pixel of the original image, estimated as ``-log2`` of the likelihoods of y and
z; distortion D is MSE on [0, 1]; the loss is ``L = R + lambda * D`` (CompressAI's
``lambda_c = lambda / 255**2``). SwinNPE's ``L = D + beta R`` is the same trade-off with
``lambda = 1 / beta``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def bits_per_example(likelihoods: jax.Array) -> jax.Array:
    """``-sum(log2 p)`` over every axis but the first: ``[B, ...]`` -> ``[B]``."""
    axes = tuple(range(1, likelihoods.ndim))
    return -jnp.sum(jnp.log2(likelihoods), axis=axes)


def bpp(y_likelihoods: jax.Array, z_likelihoods: jax.Array, num_pixels: int) -> jax.Array:
    """Estimated bits per pixel of each example, ``[B]`` (num_pixels: of the original image)."""
    return (bits_per_example(y_likelihoods) + bits_per_example(z_likelihoods)) / num_pixels


def mse(x: jax.Array, x_hat: jax.Array) -> jax.Array:
    """Mean squared error per example on [0, 1], ``[B]``."""
    axes = tuple(range(1, x.ndim))
    return jnp.mean(jnp.square(x.astype(jnp.float32) - x_hat.astype(jnp.float32)), axis=axes)


def psnr_db(mse_value: jax.Array, peak: float = 1.0) -> jax.Array:
    """PSNR in dB from an MSE on [0, peak]."""
    return 10.0 * jnp.log10(peak**2 / jnp.maximum(mse_value, 1e-12))


def rate_distortion_loss(
    x: jax.Array,
    out: dict[str, jax.Array],
    lmbda: jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``mean_b(R_b + lambda_b * D_b)`` and its parts, for the output of ``Codec.__call__``.

    Args:
        x: original (padded) batch ``[B, H, W, 3]``.
        out: the codec's training output (``x_hat``, ``y_likelihoods``, ``z_likelihoods``).
        lmbda: ``[B]`` lambda per example.

    Returns:
        The scalar loss and a dict of batch means: ``loss``, ``bpp``, ``mse``, ``psnr_db``.
    """
    num_pixels = x.shape[1] * x.shape[2]
    rate = bpp(out["y_likelihoods"], out["z_likelihoods"], num_pixels)
    dist = mse(x, out["x_hat"])
    loss = jnp.mean(rate + lmbda * dist)
    return loss, {
        "loss": loss,
        "bpp": jnp.mean(rate),
        "mse": jnp.mean(dist),
        "psnr_db": jnp.mean(psnr_db(dist)),
    }
