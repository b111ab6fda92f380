"""Analysis and synthesis transforms ``g_a, g_s, h_a, h_s`` built from stage specs in the config.

The same two modules build every Swin transform of the three architectures:

* :class:`Analysis`: per stage, a :class:`~swinjax.layers.PatchMerge` (2x down) followed by
  ``depth`` Swin blocks; optionally a final Linear to the latent width and a lambda-conditioned
  residual block (:class:`~swinjax.layers.adaln.LambdaBlock`, SwinCoder's AdaLN).
* :class:`Synthesis`: optionally a first Linear and a lambda-conditioned block; per stage,
  ``depth`` Swin blocks followed by a :class:`~swinjax.layers.PatchSplit` (2x up) to the next
  stage's width, the last one to ``out_channels``.

SwinCoder's hyper transforms are convolutional and follow STF (Zou et al., CVPR 2022), which the
SwinCoder authors build on: :class:`ConvHyperAnalysis` and :class:`ConvHyperSynthesis`.

Readings of the papers are documented in ``configs/`` and docs/papers.md ("Readings of the papers").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from swinjax.layers import LambdaBlock, PatchMerge, PatchSplit, SwinStage
from swinjax.layers.attention import PROJECTIONS
from swinjax.layers.ops import Dense, gelu
from swinjax.layers.resample import (
    Conv3x3,
    depth_to_space,
    depth_to_space_levels,
    space_to_depth,
    space_to_depth_levels,
)


def _swin_stage(t: Any, depth: int, heads: int, i: int) -> SwinStage:
    """Stage ``i`` of a Swin transform ``t`` (:class:`Analysis` or :class:`Synthesis`)."""
    return SwinStage(
        depth,
        heads,
        (t.window, t.window),
        t.mlp_ratio,
        t.projection,
        t.relative_position_bias,
        t.kv_stride,
        t.dtype,
        name=f"stage{i}",
    )


class Analysis(nn.Module):
    """Swin analysis transform (g_a, or h_a of SwinNPE/SwinT-ChARM).

    Attributes:
        channels: width after each patch merge; one 2x downsampling per entry.
        depths: Swin blocks after each merge (0 = merge only, SwinCoder's first stage).
        heads: attention heads per stage.
        window: attention window (square).
        out_channels: final Linear to this width, or None to keep ``channels[-1]``.
        first_norm: ``"post"`` for RGB input (see PatchMerge), ``"pre"`` for feature input.
        adaln: lambda-conditioned residual AdaLN block after the last layer (SwinCoder).
        mlp_ratio, projection, relative_position_bias, kv_stride: Swin block settings.
        dtype: computation dtype.
    """

    channels: Sequence[int]
    depths: Sequence[int]
    heads: Sequence[int]
    window: int
    out_channels: int | None = None
    first_norm: str = "post"
    adaln: bool = False
    mlp_ratio: float = 4.0
    projection: str = "linear"
    relative_position_bias: bool = True
    kv_stride: int = 1
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, lmbda_embedding: jax.Array | None = None) -> jax.Array:
        """``[B, H, W, C_in]`` -> ``[B, H / 2^n, W / 2^n, C_out]``."""
        # Merges separated by stages without blocks (SwinCoder's first stage) run on a nested
        # space-to-depth layout of their input: one transpose of the image instead of one per
        # intermediate map (XLA CPU is memory-bound on those full-resolution transposes).
        chain = 1
        while chain < len(self.depths) and self.depths[chain - 1] == 0:
            chain += 1
        if chain > 1:
            x = space_to_depth_levels(x, chain)
        for i, (c, d, h) in enumerate(zip(self.channels, self.depths, self.heads, strict=True)):
            norm = self.first_norm if i == 0 else "pre"
            merge = PatchMerge(c, norm, self.dtype, name=f"merge{i}")
            if i < chain and chain > 1:
                if i > 0:
                    x = x.reshape(*x.shape[:-2], 4 * x.shape[-1])
                x = merge(x, merged=True)
            else:
                x = merge(x)
            if d:
                x = _swin_stage(self, d, h, i)(x)
        if self.out_channels is not None:
            x = Dense(self.out_channels, dtype=self.dtype, name="out")(x)
        if self.adaln:
            if lmbda_embedding is None:
                raise ValueError("this transform is lambda-conditioned: pass lmbda_embedding")
            x = LambdaBlock(dtype=self.dtype, name="lmbda_block")(x, lmbda_embedding)
        return x


class Synthesis(nn.Module):
    """Swin synthesis transform (g_s, or h_s of SwinNPE/SwinT-ChARM).

    Attributes:
        channels: width of each stage's Swin blocks; each stage ends with a 2x patch split.
        depths: Swin blocks per stage.
        heads: attention heads per stage.
        window: attention window.
        out_channels: width after the last patch split (3 for images).
        in_proj: start with a Linear to ``channels[0]`` (SwinCoder: "the first layer of g_s").
        adaln: lambda-conditioned residual AdaLN block after the first layer (SwinCoder).
        mlp_ratio, projection, relative_position_bias, kv_stride, dtype: as in :class:`Analysis`.
    """

    channels: Sequence[int]
    depths: Sequence[int]
    heads: Sequence[int]
    window: int
    out_channels: int
    in_proj: bool = False
    adaln: bool = False
    mlp_ratio: float = 4.0
    projection: str = "linear"
    relative_position_bias: bool = True
    kv_stride: int = 1
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, lmbda_embedding: jax.Array | None = None) -> jax.Array:
        """``[B, h, w, C_in]`` -> ``[B, h * 2^n, w * 2^n, out_channels]``."""
        if self.in_proj:
            x = Dense(self.channels[0], dtype=self.dtype, name="in_proj")(x)
        if self.adaln:
            if lmbda_embedding is None:
                raise ValueError("this transform is lambda-conditioned: pass lmbda_embedding")
            x = LambdaBlock(dtype=self.dtype, name="lmbda_block")(x, lmbda_embedding)
        n = len(self.channels)
        for i, (d, h) in enumerate(zip(self.depths, self.heads, strict=True)):
            if d:
                x = _swin_stage(self, d, h, i)(x)
            nxt = self.channels[i + 1] if i + 1 < n else self.out_channels
            # The input of the first split is the raw latent when there are no blocks and no
            # in_proj; normalising it would erase its scale, so only normalise features.
            norm = bool(d) or i > 0 or self.in_proj
            # A split followed only by splits (stages without blocks) stays in depth order; the
            # chain goes to space in one transpose at the end (the mirror of Analysis' chain).
            split = PatchSplit(nxt, norm=norm, dtype=self.dtype, name=f"split{i}")
            to_space = i + 1 == n or self.depths[i + 1] > 0
            if x.ndim == 4 and to_space:
                x = split(x)
            else:
                x = split(x, to_space=False)
                if to_space:
                    x = depth_to_space_levels(x.reshape(*x.shape[:-2], 4 * x.shape[-1]))
        return x


class ConvHyperAnalysis(nn.Module):
    """STF-style convolutional h_a: 3x3 convs with GELU, two 2x downsamplings.

    STF (Zou et al. 2022) uses ``conv3x3`` layers with stride 2 at the third and fifth layer. Here a
    stride-2 layer is space-to-depth followed by a 3x3 convolution on the merged channels: the
    receptive field contains the strided 3x3 one, and it avoids XLA CPU's slow strided-conv
    backward pass .

    Attributes:
        widths: output width of each layer.
        strides: 1 or 2 per layer.
    """

    widths: Sequence[int]
    strides: Sequence[int]
    dtype: Any = None

    @nn.compact
    def __call__(self, y: jax.Array) -> jax.Array:
        """``[B, h, w, M]`` -> ``[B, h/4, w/4, N]``."""
        x = y
        last = len(self.widths) - 1
        for i, (c, s) in enumerate(zip(self.widths, self.strides, strict=True)):
            if s == 2:
                x = space_to_depth(x, 2)
            x = Conv3x3(c, self.dtype, name=f"conv{i}")(x)
            if i < last:
                x = gelu(x)
        return x


class ConvHyperSynthesis(nn.Module):
    """STF-style convolutional h_s: 3x3 convs with GELU and two sub-pixel 2x upsamplings.

    A layer with ``upsample == 2`` is STF's ``subpel_conv3x3``: a 3x3 convolution to 4x the width
    followed by depth-to-space.
    """

    widths: Sequence[int]
    upsample: Sequence[int]
    dtype: Any = None

    @nn.compact
    def __call__(self, z_hat: jax.Array) -> jax.Array:
        """``[B, h/4, w/4, N]`` -> ``[B, h, w, widths[-1]]``."""
        x = z_hat
        last = len(self.widths) - 1
        for i, (c, u) in enumerate(zip(self.widths, self.upsample, strict=True)):
            x = Conv3x3(c * u * u, self.dtype, name=f"conv{i}")(x)
            if u > 1:
                x = depth_to_space(x, u)
            if i < last:
                x = gelu(x)
        return x


def _check_stages(name: str, spec: Any) -> None:
    """Raises a ValueError naming the problem in one stage spec of the config."""
    lens = {len(spec.channels), len(spec.depths), len(spec.heads)}
    if len(lens) != 1:
        raise ValueError(
            f"model.{name}: channels, depths and heads must have the same length, got "
            f"{len(spec.channels)}, {len(spec.depths)}, {len(spec.heads)}"
        )
    for c, d, h in zip(spec.channels, spec.depths, spec.heads, strict=True):
        if c <= 0 or d < 0 or h <= 0:
            raise ValueError(f"model.{name}: channels/heads must be > 0 and depths >= 0")
        if c % h:
            raise ValueError(f"model.{name}: {h} heads do not divide {c} channels")
    if spec.window <= 0:
        raise ValueError(f"model.{name}.window must be positive, got {spec.window}")
    projection = spec.get("projection", "linear")
    if projection not in PROJECTIONS:
        raise ValueError(
            f"model.{name}.projection must be one of {PROJECTIONS}, got {projection!r}"
        )
    kv_stride = spec.get("kv_stride", 1)
    if kv_stride not in (1, 2):
        raise ValueError(f"model.{name}.kv_stride must be 1 or 2, got {kv_stride!r}")
    if kv_stride > 1 and (projection == "linear" or spec.get("relative_position_bias", True)):
        raise ValueError(
            f"model.{name}.kv_stride=2 needs a convolutional projection ('dw' or 'dw_pw') and "
            "relative_position_bias=False"
        )


def _check_same_resampling(down: str, up: str, n_down: int, n_up: int) -> None:
    """Synthesis must upsample exactly as much as its analysis downsamples."""
    if n_down != n_up:
        raise ValueError(f"model.{up} upsamples by {n_up} but model.{down} downsamples by {n_down}")


def _swin_kwargs(spec: Any, model: Any) -> dict[str, Any]:
    return dict(
        channels=tuple(spec.channels),
        depths=tuple(spec.depths),
        heads=tuple(spec.heads),
        window=int(spec.window),
        mlp_ratio=float(model.mlp_ratio),
        projection=spec.get("projection", "linear"),
        relative_position_bias=bool(spec.get("relative_position_bias", True)),
        kv_stride=int(spec.get("kv_stride", 1)),
    )


def build_transforms(model: Any, dtype: Any = None) -> dict[str, nn.Module]:
    """Builds ``g_a, g_s, h_a, h_s`` from ``config.model``.

    ``dtype`` reaches g_a, g_s and h_a; h_s always computes in float32 (its input, ``z_hat``, is
    float32): its output parametrises the entropy model of y, so it is part of the
    entropy-parameter path that the decoder must reproduce and that rates are computed from
    (:mod:`swinjax.precision`). It holds under 10 % of the codec's MACs.

    Args:
        model: the ``model`` ConfigDict (see ``configs/``).
        dtype: computation dtype of g_a, g_s and h_a (None: the input's, float32).

    Returns:
        ``{"g_a", "g_s", "h_a", "h_s"}`` -> unbound Flax modules.

    Raises:
        ValueError: naming the offending config key.
    """
    for name in ("g_a", "g_s"):
        _check_stages(name, model[name])
    _check_same_resampling("g_a", "g_s", 2 ** len(model.g_a.channels), 2 ** len(model.g_s.channels))
    vr = bool(model.variable_rate)
    g_a = Analysis(
        **_swin_kwargs(model.g_a, model),
        out_channels=model.g_a.get("out_channels"),
        first_norm="post",
        adaln=vr,
        dtype=dtype,
    )
    g_s = Synthesis(
        **_swin_kwargs(model.g_s, model),
        out_channels=3,
        in_proj=bool(model.g_s.get("in_proj", False)),
        adaln=vr,
        dtype=dtype,
    )
    hyper = model.hyper
    if hyper.kind == "swin":
        _check_stages("hyper.h_a", hyper.h_a)
        _check_stages("hyper.h_s", hyper.h_s)
        _check_same_resampling(
            "hyper.h_a", "hyper.h_s", 2 ** len(hyper.h_a.channels), 2 ** len(hyper.h_s.channels)
        )
        h_a = Analysis(
            **_swin_kwargs(hyper.h_a, model),
            out_channels=hyper.h_a.get("out_channels"),
            first_norm="pre",
            dtype=dtype,
        )
        h_s = Synthesis(**_swin_kwargs(hyper.h_s, model), out_channels=int(hyper.out_channels))
    elif hyper.kind == "conv":
        if len(hyper.h_a_widths) != len(hyper.h_a_strides):
            raise ValueError("model.hyper: h_a_widths and h_a_strides differ in length")
        if len(hyper.h_s_widths) != len(hyper.h_s_upsample):
            raise ValueError("model.hyper: h_s_widths and h_s_upsample differ in length")
        for key in ("h_a_strides", "h_s_upsample"):
            if any(f not in (1, 2) for f in hyper[key]):
                raise ValueError(f"model.hyper.{key} must hold 1s and 2s, got {tuple(hyper[key])}")
        _check_same_resampling(
            "hyper.h_a_strides",
            "hyper.h_s_upsample",
            math.prod(hyper.h_a_strides),
            math.prod(hyper.h_s_upsample),
        )
        h_a = ConvHyperAnalysis(tuple(hyper.h_a_widths), tuple(hyper.h_a_strides), dtype)
        h_s = ConvHyperSynthesis(tuple(hyper.h_s_widths), tuple(hyper.h_s_upsample))
    else:
        raise ValueError(f"model.hyper.kind must be 'swin' or 'conv', got {hyper.kind!r}")
    return {"g_a": g_a, "g_s": g_s, "h_a": h_a, "h_s": h_s}


def downsampling_factor(model: Any) -> int:
    """Total spatial reduction from x to z: images are padded to a multiple of it."""
    g = 2 ** len(model.g_a.channels)
    hyper = model.hyper
    if hyper.kind == "swin":
        h = 2 ** len(hyper.h_a.channels)
    else:
        h = 1
        for s in hyper.h_a_strides:
            h *= s
    return g * h


def pad_image(x: jax.Array, multiple: int) -> tuple[jax.Array, tuple[int, int]]:
    """Pads ``[B, H, W, 3]`` at the bottom/right by edge replication to a multiple of ``multiple``.

    Edge replication costs fewer bits than zeros: the padded area continues the image.

    Returns:
        The padded batch and ``(pad_h, pad_w)``.
    """
    _, h, w, _ = x.shape
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    return x, (ph, pw)


def validate_image(x: Any) -> None:
    """Raises ValueError with a clear message unless ``x`` is a float ``[B, H, W, 3]`` batch.

    Catching these here gives a user an error naming the problem instead of a shape error from
    deep inside XLA.
    """
    shape = getattr(x, "shape", None)
    if shape is None:
        raise ValueError(f"expected an image array, got {type(x).__name__}")
    if len(shape) != 4:
        raise ValueError(f"expected a batch of images [B, H, W, 3], got shape {tuple(shape)}")
    b, h, w, c = shape
    if c != 3:
        raise ValueError(f"expected RGB images with 3 channels, got {c} (shape {tuple(shape)})")
    if b == 0 or h == 0 or w == 0:
        raise ValueError(f"empty image batch: shape {tuple(shape)}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"expected float images in [0, 1], got dtype {x.dtype}")
