"""Resampling by space/depth reshapes: patch merge (2x down) and patch split (2x up).

XLA's CPU backend runs transposed convolutions ~27x slower than a convolution followed by
depth-to-space, and strided-convolution backward passes ~5x slower than space-to-depth followed by
a dense layer; every resampling in swinjax is therefore a reshape plus a matmul.
"""

from __future__ import annotations

from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp


def space_to_depth(x: jax.Array, factor: int = 2) -> jax.Array:
    """``[B, H, W, C]`` -> ``[B, H/f, W/f, f*f*C]`` (channel order: row offset, col offset, C)."""
    b, h, w, c = x.shape
    if h % factor or w % factor:
        raise ValueError(f"map {h}x{w} is not divisible by {factor}")
    x = x.reshape(b, h // factor, factor, w // factor, factor, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h // factor, w // factor, factor * factor * c)


def depth_to_space(x: jax.Array, factor: int = 2) -> jax.Array:
    """Inverse of :func:`space_to_depth`: ``[B, H, W, f*f*C]`` -> ``[B, H*f, W*f, C]``."""
    b, h, w, cc = x.shape
    if cc % (factor * factor):
        raise ValueError(f"{cc} channels are not divisible by {factor * factor}")
    c = cc // (factor * factor)
    x = x.reshape(b, h, w, factor, factor, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * factor, w * factor, c)


class PatchMerge(nn.Module):
    """Space-to-depth 2x, LayerNorm, Linear (Swin's patch merging; SwinNPE §II).

    Attributes:
        features: output channels.
        norm: ``"pre"`` normalises the 4C merged channels before the Linear (Swin). ``"post"``
            normalises after it: used on raw RGB, where a LayerNorm over one 2x2 patch would erase
            its mean and contrast (Swin's patch embedding also normalises after projecting).
        dtype: computation dtype.
    """

    features: int
    norm: Literal["pre", "post", "none"] = "pre"
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Halves H and W (both must be even)."""
        x = space_to_depth(x, 2)
        if self.norm == "pre":
            x = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name="norm")(x)
        x = nn.Dense(self.features, dtype=self.dtype, name="reduction")(x)
        if self.norm == "post":
            x = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name="norm")(x)
        return x


class PatchSplit(nn.Module):
    """Linear to 4x``features`` then depth-to-space 2x: the reverse of :class:`PatchMerge`.

    Attributes:
        features: output channels.
        norm: LayerNorm the input before the Linear (the reverse order of a pre-norm merge).
        dtype: computation dtype.
    """

    features: int
    norm: bool = True
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Doubles H and W."""
        if self.norm:
            x = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name="norm")(x)
        x = nn.Dense(4 * self.features, dtype=self.dtype, name="expand")(x)
        return depth_to_space(x, 2)


class Conv3x3(nn.Module):
    """3x3 'SAME' convolution as im2col plus one matmul.

    On XLA's CPU backend, convolutions over tiny maps (the hyper-latent of a 256 crop is 4x4, of a
    128 crop 2x2) run far below matmul speed; nine shifted slices concatenated and multiplied by one
    ``[9C, F]`` matrix is a plain GEMM on every backend and counts the same MACs.
    """

    features: int
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``[B, H, W, C]`` -> ``[B, H, W, features]``."""
        _, h, w, _ = x.shape
        xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        cols = jnp.concatenate(
            [xp[:, i : i + h, j : j + w, :] for i in range(3) for j in range(3)], axis=-1
        )
        return nn.Dense(self.features, dtype=self.dtype, name="kernel")(cols)
