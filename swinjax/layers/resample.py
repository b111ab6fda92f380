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

from swinjax.layers.ops import Dense, LayerNorm, LayerNormParams


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


def space_to_depth_levels(x: jax.Array, levels: int) -> jax.Array:
    """``levels`` nested 2x space-to-depths in one transpose, keeping each level on its own axis.

    ``[B, H, W, C]`` -> ``[B, H/2^L, W/2^L, 4, ..., 4, 4C]`` (``L - 1`` axes of 4). Reshaping the
    last ``k + 1`` axes to one gives ``space_to_depth`` applied ``k + 1`` times, so a chain of patch
    merges without blocks in between can run on this layout: each merge reduces the last axis and
    the next one reads the last two axes as its merged channels, with no transpose of the
    intermediate (larger) feature maps.
    """
    b, h, w, c = x.shape
    f = 2**levels
    if h % f or w % f:
        raise ValueError(f"map {h}x{w} is not divisible by {f}")
    x = x.reshape(b, h // f, *([2] * levels), w // f, *([2] * levels), c)
    rows = [1 + 1 + i for i in range(levels)]  # row offsets, most significant first
    cols = [2 + levels + 1 + i for i in range(levels)]
    order = [0, 1, 2 + levels] + [a for pair in zip(rows, cols, strict=True) for a in pair]
    x = x.transpose(*order, x.ndim - 1)
    return x.reshape(b, h // f, w // f, *([4] * (levels - 1)), 4 * c)


def depth_to_space_levels(x: jax.Array) -> jax.Array:
    """Inverse of :func:`space_to_depth_levels`: ``[B, h, w, 4, ..., 4, 4C]`` -> ``[B, H, W, C]``.

    The first axis of 4 holds the most significant (first split's) row and column offset.
    """
    b, h, w = x.shape[:3]
    levels = x.ndim - 3
    if x.shape[-1] % 4 or any(n != 4 for n in x.shape[3:-1]):
        raise ValueError(f"expected [B, h, w, 4, ..., 4, 4C], got {x.shape}")
    c = x.shape[-1] // 4
    x = x.reshape(b, h, w, *([2] * (2 * levels)), c)
    rows = [3 + 2 * i for i in range(levels)]
    cols = [4 + 2 * i for i in range(levels)]
    x = x.transpose(0, 1, *rows, 2, *cols, x.ndim - 1)
    f = 2**levels
    return x.reshape(b, h * f, w * f, c)


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
    def __call__(self, x: jax.Array, merged: bool = False) -> jax.Array:
        """Halves H and W (both must be even).

        With ``merged=True`` the input is already space-to-depth ordered (last axis ``4C``, any
        leading axes, see :func:`space_to_depth_levels`) and only the norm and Linear are applied.
        """
        if not merged:
            x = space_to_depth(x, 2)
        if self.norm == "pre":
            norm = LayerNormParams(epsilon=1e-5, name="norm")(x.shape[-1])
            return Dense(self.features, dtype=self.dtype, name="reduction")(x, norm=norm)
        x = Dense(self.features, dtype=self.dtype, name="reduction")(x)
        if self.norm == "post":
            x = LayerNorm(epsilon=1e-5, dtype=self.dtype, name="norm")(x)
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
    def __call__(self, x: jax.Array, to_space: bool = True) -> jax.Array:
        """Doubles H and W.

        With ``to_space=False`` the result stays in depth order, ``[..., 4, features]`` (one axis
        of 4 sub-tokens added, see :func:`depth_to_space_levels`): a following split can run on it
        directly, and the chain is moved to space by one transpose at the end.
        """
        if self.norm:
            norm = LayerNormParams(epsilon=1e-5, name="norm")(x.shape[-1])
            x = Dense(4 * self.features, dtype=self.dtype, name="expand")(x, norm=norm)
        else:
            x = Dense(4 * self.features, dtype=self.dtype, name="expand")(x)
        if not to_space:
            return x.reshape(*x.shape[:-1], 4, self.features)
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
        return Dense(self.features, dtype=self.dtype, name="kernel")(cols)
