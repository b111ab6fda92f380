"""Window self-attention: Swin's linear Q/K/V and SwinNPE's convolutional Q/K/V.

Swin's form has a relative position bias; SwinNPE's has no positional encoding.

Both forms share one module. The projections are computed on the whole (padded, unrolled) 2-D map;
the map is then rolled for shifted windows and partitioned. For the linear projection this is the
same computation as Swin's (a per-token projection commutes with roll and partition). For the
convolutional projection it is CvT's ``Flatten(Conv2d(Reshape2D(x)))`` (Wu et al. 2021) as adopted
by SwinNPE (Arezki et al., eq. 1): each token sees its 3x3 neighbourhood in the image, never the
far side of the cyclic roll.

Projection forms (``projection=``):

* ``"linear"``: one ``Dense(3C)`` (Swin, SwinT-ChARM).
* ``"dw"``: a depthwise 3x3 convolution per Q, K and V and no pointwise layer. This is the form that
  reproduces SwinNPE's published cost (178 vs 223 GMACs at 768x512, docs/papers.md: costs).
* ``"dw_pw"``: depthwise 3x3 followed by a full ``C x C`` pointwise layer per Q, K and V (the
  literal depthwise-separable convolution of CvT; its cost is that of SwinT-ChARM or more).

``kv_stride=2`` computes K and V with stride 2 (CvT's "squeezed" projection), so each window's
queries attend to a quarter as many keys.
"""

from __future__ import annotations

import math
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from swinjax.layers.ops import Dense, stats_dtype, use_cpu_kernels
from swinjax.layers.windows import relative_position_index, window_partition, window_reverse

Projection = Literal["linear", "dw", "dw_pw"]
PROJECTIONS: tuple[str, ...] = ("linear", "dw", "dw_pw")


def depthwise_conv3x3(
    x: jax.Array, kernel: jax.Array, bias: jax.Array, stride: int = 1
) -> jax.Array:
    """Depthwise 3x3 convolution with zero padding, written as nine shifted multiply-adds.

    XLA's CPU backend runs grouped convolutions far below its matmul throughput; nine fused
    elementwise multiply-adds over shifted slices are memory-bound but much faster there and
    lower to the same arithmetic on every backend.

    Args:
        x: ``[B, H, W, C]``.
        kernel: ``[3, 3, C]``.
        bias: ``[C]``.
        stride: 1 or 2. With stride 2 output ``i`` is centred on input ``2i``.

    Returns:
        ``[B, ceil(H/stride), ceil(W/stride), C]``.
    """
    b, h, w, c = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    oh, ow = -(-h // stride), -(-w // stride)
    out = None
    for i in range(3):
        for j in range(3):
            tap = jax.lax.slice(
                xp,
                (0, i, j, 0),
                (b, i + (oh - 1) * stride + 1, j + (ow - 1) * stride + 1, c),
                (1, stride, stride, 1),
            )
            term = tap * kernel[i, j]
            out = term if out is None else out + term
    return out + bias


class DepthwiseConv3x3(nn.Module):
    """A depthwise 3x3 convolution (one filter per channel, with bias)."""

    stride: int = 1
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the convolution to ``[B, H, W, C]``."""
        c = x.shape[-1]
        # Fan-in of a depthwise filter is 9: scale the init like a 3x3 conv on one channel.
        kernel = self.param(
            "kernel",
            nn.initializers.variance_scaling(
                1.0, "fan_in", "truncated_normal", in_axis=(0, 1), out_axis=2
            ),
            (3, 3, c),
            jnp.float32,
        )
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        dtype = self.dtype or x.dtype
        return depthwise_conv3x3(x, kernel.astype(dtype), bias.astype(dtype), self.stride)


def effective_kv_stride(kv_stride: int, window: tuple[int, int], shift: tuple[int, int]) -> int:
    """The K/V stride actually usable for a window: strided keys need even windows and shifts.

    Small maps clamp the window (possibly to an odd size); there the projection falls back to
    stride 1 with the same parameters.
    """
    if all(v % kv_stride == 0 for v in (*window, *shift)):
        return kv_stride
    return 1


def window_attention_core(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    bias: jax.Array | None,
    mask: np.ndarray | None,
    grid: tuple[int, int, int],
) -> jax.Array:
    """``softmax(q k^T + bias + mask) v`` per window and head, with a hand-written backward pass.

    Args:
        q: ``[B * nH * nW, heads, N, d]`` queries, already scaled by ``1/sqrt(d)``.
        k: ``[B * nH * nW, heads, M, d]`` keys.
        v: ``[B * nH * nW, heads, M, d]`` values.
        bias: ``[heads, N, M]`` (relative position bias) or None.
        mask: ``[nH, nW, N, M]`` additive constant or None.
        grid: ``(B, nH, nW)``.

    Returns:
        ``[B * nH * nW, heads, N, d]``; logits and softmax are float32 (float64 for float64
        inputs, :func:`~swinjax.layers.ops.stats_dtype`).

    With the hand-written CPU kernels (:func:`~swinjax.layers.ops.kernels`) the backward pass is
    written out: it uses ``rowsum(dP * P) = rowsum(dO * O)`` (as FlashAttention does, Dao et al.
    2022) and keeps every operand in the head-major layout above, which XLA's CPU backend maps to
    batched GEMMs without transposing the ``N x M`` probability matrices. Elsewhere JAX
    differentiates the forward pass, which XLA's GPU and TPU backends fuse better than an opaque
    custom derivative.
    """
    b, nh, nw = grid
    heads, n, m = q.shape[1], q.shape[2], k.shape[2]
    dtype = q.dtype
    sd = stats_dtype(dtype)  # logits and softmax: float32, or float64 for float64 inputs

    def probs(q: jax.Array, k: jax.Array, bias: jax.Array | None) -> jax.Array:
        s = jnp.einsum("whqd,whkd->whqk", q, k).astype(sd)
        if bias is not None or mask is not None:
            s = s.reshape(b, nh, nw, heads, n, m)
            if bias is not None:
                s = s + bias
            if mask is not None:
                s = s + jnp.asarray(mask, s.dtype)[:, :, None]
            s = s.reshape(-1, heads, n, m)
        e = jnp.exp(s - jnp.max(s, axis=-1, keepdims=True))
        return e / jnp.sum(e, axis=-1, keepdims=True)

    if not use_cpu_kernels():
        return jnp.einsum("whqk,whkd->whqd", probs(q, k, bias).astype(dtype), v)

    @jax.custom_vjp
    def core(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array | None) -> jax.Array:
        return jnp.einsum("whqk,whkd->whqd", probs(q, k, bias).astype(dtype), v)

    def fwd(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array | None) -> tuple:
        p = probs(q, k, bias)
        o = jnp.einsum("whqk,whkd->whqd", p.astype(dtype), v)
        return o, (q, k, v, p, o, bias)

    def bwd(res: tuple, do: jax.Array) -> tuple:
        q, k, v, p, o, bias = res
        dv = jnp.einsum("whqk,whqd->whkd", p.astype(dtype), do)
        dp = jnp.einsum("whqd,whkd->whqk", do, v).astype(sd)
        rows = jnp.sum((do * o).astype(sd), axis=-1, keepdims=True)
        ds = p * (dp - rows)
        dq = jnp.einsum("whqk,whkd->whqd", ds.astype(dtype), k)
        dk = jnp.einsum("whqk,whqd->whkd", ds.astype(dtype), q)
        dbias = None
        if bias is not None:
            # A sum over the (few) windows as a vector-matrix product: YNNPACK's reduction over a
            # short leading axis runs ~10x slower on CPU.
            flat = ds.reshape(ds.shape[0], heads * n * m)
            ones = jnp.ones((flat.shape[0],), flat.dtype)
            dbias = jnp.matmul(ones, flat, precision=jax.lax.Precision.HIGHEST)
            dbias = dbias.reshape(heads, n, m).astype(bias.dtype)
        return dq, dk, dv, dbias

    core.defvjp(fwd, bwd)
    return core(q, k, v, bias)


def _roll(x: jax.Array, shift: tuple[int, int]) -> jax.Array:
    if shift == (0, 0):
        return x
    return jnp.roll(x, (-shift[0], -shift[1]), axis=(1, 2))


def _unroll(x: jax.Array, shift: tuple[int, int]) -> jax.Array:
    if shift == (0, 0):
        return x
    return jnp.roll(x, shift, axis=(1, 2))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside (shifted) windows of a 2-D map.

    Attributes:
        dim: channels C of the map (input and output).
        num_heads: heads; must divide ``dim``.
        window: configured window ``(wh, ww)``; the bias table is sized for it.
        projection: ``"linear"``, ``"dw"`` or ``"dw_pw"`` (module docstring).
        relative_position_bias: learn Swin's bias table (SwinT-ChARM, SwinCoder). SwinNPE turns it
            off: its convolutions carry position information.
        kv_stride: 1, or 2 for strided K/V (convolutional projections only).
        dtype: computation dtype (parameters stay float32); softmax runs in at least float32.
    """

    dim: int
    num_heads: int
    window: tuple[int, int]
    projection: Projection = "linear"
    relative_position_bias: bool = True
    kv_stride: int = 1
    dtype: jnp.dtype | None = None

    def setup(self) -> None:
        """Validates the configuration before any parameter is created."""
        if self.dim % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} does not divide dim={self.dim}")
        if self.projection not in PROJECTIONS:
            raise ValueError(f"projection must be one of {PROJECTIONS}, got {self.projection!r}")
        if self.kv_stride not in (1, 2):
            raise ValueError(f"kv_stride must be 1 or 2, got {self.kv_stride}")
        if self.kv_stride > 1 and self.projection == "linear":
            raise ValueError("kv_stride > 1 needs a convolutional projection ('dw' or 'dw_pw')")
        if self.kv_stride > 1 and self.relative_position_bias:
            raise ValueError("kv_stride > 1 cannot be combined with relative_position_bias")

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        window: tuple[int, int],
        shift: tuple[int, int],
        mask: np.ndarray | None,
    ) -> jax.Array:
        """Attends within windows.

        Args:
            x: normalised map ``[B, H, W, C]`` with H, W multiples of ``window`` (already padded).
            window: window used for this map (``<=`` the configured one when the map is small).
            shift: cyclic shift for shifted windows, ``(0, 0)`` for regular ones.
            mask: additive mask from :func:`~swinjax.layers.windows.shifted_window_mask` or None.

        Returns:
            ``[B, H, W, C]``.
        """
        dtype = self.dtype or x.dtype
        c, heads = self.dim, self.num_heads
        head_dim = c // heads
        dense = lambda n, name: Dense(n, dtype=dtype, name=name)  # noqa: E731
        stride = effective_kv_stride(self.kv_stride, window, shift)

        if self.projection == "linear":
            # A per-token projection commutes with roll and partition: move the (normalised) input
            # into window order once, instead of rolling and partitioning q, k and v separately.
            xw = window_partition(_roll(x, shift), window)
            b, nh, nw, n, _ = xw.shape
            qkv = dense(3 * c, "qkv")(xw).reshape(b * nh * nw, n, 3, heads, head_dim)
            q, k, v = qkv.transpose(2, 0, 3, 1, 4)
        else:
            q = DepthwiseConv3x3(dtype=dtype, name="q_dw")(x)
            k = DepthwiseConv3x3(stride=stride, dtype=dtype, name="k_dw")(x)
            v = DepthwiseConv3x3(stride=stride, dtype=dtype, name="v_dw")(x)
            if self.projection == "dw_pw":
                q, k, v = dense(c, "q_pw")(q), dense(c, "k_pw")(k), dense(c, "v_pw")(v)
            kv_window = (window[0] // stride, window[1] // stride)
            kv_shift = (shift[0] // stride, shift[1] // stride)

            def heads_first(t: jax.Array, win: tuple[int, int], sh: tuple[int, int]) -> jax.Array:
                t = window_partition(_roll(t, sh), win)
                bb, th, tw, tn, _ = t.shape
                return t.reshape(bb * th * tw, tn, heads, head_dim).transpose(0, 2, 1, 3)

            b, nh, nw = x.shape[0], x.shape[1] // window[0], x.shape[2] // window[1]
            n = window[0] * window[1]
            q = heads_first(q, window, shift)
            k = heads_first(k, kv_window, kv_shift)
            v = heads_first(v, kv_window, kv_shift)

        bias = None
        if self.relative_position_bias:
            wh, ww = self.window
            table = self.param(
                "relative_position_bias_table",
                nn.initializers.truncated_normal(0.02),
                ((2 * wh - 1) * (2 * ww - 1), heads),
                jnp.float32,
            )
            index = relative_position_index(tuple(window), tuple(self.window))
            bias = table[index.reshape(-1)].reshape(n, n, heads).transpose(2, 0, 1)
        out = window_attention_core(q * (1.0 / math.sqrt(head_dim)), k, v, bias, mask, (b, nh, nw))
        out = out.transpose(0, 2, 1, 3).reshape(b, nh, nw, n, c)
        # The output projection is per token too: apply it before leaving window order.
        out = dense(c, "proj")(out)
        return _unroll(window_reverse(out, window), shift)


def ConvWindowAttention(  # noqa: N802 - a constructor named like the module it builds
    dim: int,
    num_heads: int,
    window: tuple[int, int],
    projection: Projection = "dw",
    kv_stride: int = 1,
    dtype: jnp.dtype | None = None,
    name: str | None = None,
) -> WindowAttention:
    """SwinNPE's convolutional window attention: convolutional Q/K/V, no positional encoding.

    Args:
        dim: channels.
        num_heads: heads.
        window: configured window.
        projection: ``"dw"`` (default, reproduces the published cost) or ``"dw_pw"``.
        kv_stride: 1 or 2.
        dtype: computation dtype.
        name: Flax module name.

    Returns:
        A :class:`WindowAttention` with ``relative_position_bias=False``.
    """
    if projection == "linear":
        raise ValueError("convolutional attention needs projection 'dw' or 'dw_pw'")
    return WindowAttention(dim, num_heads, window, projection, False, kv_stride, dtype, name=name)
