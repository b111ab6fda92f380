"""Pre-norm Swin blocks and stages (Liu et al. 2021), shared by every transform.

Window geometry is resolved per block from the static map size: the configured window is clamped
to the map (Swin's rule for small inputs, per axis), the normalised map is padded to a multiple of
the window, padded tokens are masked out as keys (so results do not depend on the padding), and the
output is cropped back. Shifting is skipped on an axis that fits in one window.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from swinjax.layers.attention import Projection, WindowAttention, effective_kv_stride
from swinjax.layers.ops import Dense, LayerNorm, LayerNormParams, NormParams
from swinjax.layers.windows import shifted_window_mask


def window_geometry(
    size: tuple[int, int], window: tuple[int, int], shifted: bool
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Window, shift and padded size used for a map of ``size``.

    Args:
        size: ``(H, W)`` of the map.
        window: configured window.
        shifted: whether this block uses shifted windows.

    Returns:
        ``(window, shift, padded_size)``.
    """
    win = tuple(min(w, s) for w, s in zip(window, size, strict=True))
    shift = tuple((w // 2 if shifted and s > w else 0) for w, s in zip(win, size, strict=True))
    padded = tuple(-(-s // w) * w for s, w in zip(size, win, strict=True))
    return win, shift, padded  # type: ignore[return-value]


class Mlp(nn.Module):
    """Two-layer GELU MLP of the transformer block."""

    hidden: int
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, norm: NormParams | None = None) -> jax.Array:
        """Applies Dense -> GELU -> Dense on the last axis.

        ``norm`` (a :class:`~swinjax.layers.ops.LayerNormParams` output) normalises ``x`` first,
        fused into ``fc1``; GELU is fused into ``fc2`` (:func:`~swinjax.layers.ops.fused_dense`).
        """
        c = x.shape[-1]
        if norm is None:
            h = Dense(self.hidden, dtype=self.dtype, name="fc1")(x)
        else:
            h = Dense(self.hidden, dtype=self.dtype, name="fc1")(x, norm=norm)
        return Dense(c, dtype=self.dtype, name="fc2")(h, activation="gelu")


class SwinBlock(nn.Module):
    """``x + Attn(LN(x)); x + MLP(LN(x))`` over (shifted) windows of a ``[B, H, W, C]`` map.

    Attributes:
        num_heads: attention heads.
        window: configured window size ``(wh, ww)``.
        shifted: use shifted windows (alternate blocks of a stage).
        mlp_ratio: hidden width of the MLP relative to C.
        projection: Q/K/V projection form (see :mod:`swinjax.layers.attention`).
        relative_position_bias: Swin's learned bias (off for SwinNPE).
        kv_stride: 1, or 2 for strided convolutional K/V.
        dtype: computation dtype.
    """

    num_heads: int
    window: tuple[int, int]
    shifted: bool = False
    mlp_ratio: float = 4.0
    projection: Projection = "linear"
    relative_position_bias: bool = True
    kv_stride: int = 1
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the block; any H, W >= 1."""
        _, h, w, c = x.shape
        win, shift, (hp, wp) = window_geometry((h, w), tuple(self.window), self.shifted)
        stride = effective_kv_stride(self.kv_stride, win, shift)
        mask = shifted_window_mask((hp, wp), win, shift, (h, w), stride)
        y = LayerNorm(epsilon=1e-5, dtype=self.dtype, name="norm1")(x)
        if (hp, wp) != (h, w):
            y = jnp.pad(y, ((0, 0), (0, hp - h), (0, wp - w), (0, 0)))
        y = WindowAttention(
            c,
            self.num_heads,
            tuple(self.window),
            self.projection,
            self.relative_position_bias,
            self.kv_stride,
            self.dtype,
            name="attn",
        )(y, win, shift, mask)
        x = x + y[:, :h, :w, :]
        norm2 = LayerNormParams(epsilon=1e-5, name="norm2")(c)
        return x + Mlp(int(round(c * self.mlp_ratio)), self.dtype, name="mlp")(x, norm=norm2)


class SwinStage(nn.Module):
    """``depth`` Swin blocks at constant width, shifted windows on every second block."""

    depth: int
    num_heads: int
    window: tuple[int, int]
    mlp_ratio: float = 4.0
    projection: Projection = "linear"
    relative_position_bias: bool = True
    kv_stride: int = 1
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the blocks in order."""
        for i in range(self.depth):
            x = SwinBlock(
                self.num_heads,
                tuple(self.window),
                shifted=i % 2 == 1,
                mlp_ratio=self.mlp_ratio,
                projection=self.projection,
                relative_position_bias=self.relative_position_bias,
                kv_stride=self.kv_stride,
                dtype=self.dtype,
                name=f"block{i}",
            )(x)
        return x
