"""LPIPS and DISTS in JAX, with backbone and head weights from local files.

Both metrics compare deep VGG16 features (:mod:`swinjax.models.vgg`) of a reference x and a
distorted y; SwinCoder reports both (Li et al., CLIC 2025, Table I). They are *evaluation*
metrics: the weights are never downloaded, evaluation reports a metric only when
its file is given (:func:`lpips_available`, :func:`dists_available`), and a given but broken file
raises instead of being skipped.

**LPIPS** (Zhang et al., CVPR 2018, eq. 1; the authors' ``lpips`` package, version 0.1, ``net=
"vgg"``), for images in [0, 1]:

1. ``v = 2 x - 1`` (the package's ``normalize=True``), then its ``ScalingLayer``:
   ``(v - shift) / scale`` with ``shift = (-0.030, -0.088, -0.188)``,
   ``scale = (0.458, 0.448, 0.450)``;
2. VGG16 (torchvision weights) at ``relu1_2, relu2_2, relu3_3, relu4_3, relu5_3``;
3. each feature unit-normalised over channels, ``f / (||f||_2 + 1e-10)``;
4. ``d_l = (f_l(x) - f_l(y))**2``, weighted per channel by the learned non-negative 1x1 "lin"
   conv ``w_l`` and summed over channels, averaged over space; ``LPIPS = sum_l``.

**DISTS** (Ding et al., TPAMI 2020, eqs. 6-9; the authors' ``DISTS_pytorch/DISTS_pt.py``), for
images in [0, 1]:

1. features: the image itself (3 channels) and VGG16 (ImageNet mean/std input normalisation)
   at ``relu1_2 ... relu5_3``, with every max pool replaced by L2 pooling
   (:func:`swinjax.models.vgg.l2_pool`) to remove aliasing;
2. per channel, over space: means ``mu_x, mu_y``, variances, covariance ``mean(x y) - mu_x mu_y``;
   texture term ``S1 = (2 mu_x mu_y + c1) / (mu_x^2 + mu_y^2 + c1)``, structure term
   ``S2 = (2 cov + c2) / (var_x + var_y + c2)``, ``c1 = c2 = 1e-6``;
3. ``DISTS = 1 - sum_{l,c} (alpha_lc S1_lc + beta_lc S2_lc)`` with the learned alpha, beta
   (1475 each = 3 + 64 + 128 + 256 + 512 + 512) divided by ``sum(alpha) + sum(beta)``.

The authors' demo script resizes images whose shorter side exceeds 256 px before DISTS; that is
preprocessing of the demo, not the metric, and :func:`dists` does not do it.

Convolutions run at ``Precision.HIGHEST`` so accelerators do not round to bf16/TF32. A reference
transcription in PyTorch lives in ``tests/test_perceptual.py``; with the same weights the two
agree to better than 1e-6 (measured 6e-8; docs/weights.md).

**Weights files** (``.npz``, float32; made by ``scripts/convert_torch_weights.py``):

* LPIPS: the 13 VGG16 convs ``conv{b}_{i}/kernel`` (HWIO) and ``/bias``, plus ``lin{k}/kernel``
  ``(1, 1, C_k, 1)`` (HWIO of the 1x1 lin convs, k = 0..4, C = 64, 128, 256, 512, 512).
* DISTS: the 13 VGG16 convs, plus ``alpha`` and ``beta`` ``(1475,)``.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from swinjax.models.vgg import (
    VGGFeatures,
    block_channels,
    check_entries,
    random_vgg_arrays,
    read_npz,
    vgg_params_from_arrays,
    weights_available,
)

#: VGG16 layers both metrics read.
VGG16_METRIC_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
#: LPIPS ScalingLayer constants (for inputs in [-1, 1]).
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
_LPIPS_EPS = 1e-10
_DISTS_C1 = 1e-6
_DISTS_C2 = 1e-6
_HIGHEST = jax.lax.Precision.HIGHEST


def lpips_head_shapes(width: int = 64) -> dict[str, tuple[int, ...]]:
    """``{"lin{k}/kernel": (1, 1, C_k, 1)}`` of the LPIPS file."""
    return {f"lin{k}/kernel": (1, 1, c, 1) for k, c in enumerate(block_channels(width))}


def dists_head_shapes(width: int = 64) -> dict[str, tuple[int, ...]]:
    """``{"alpha": (N,), "beta": (N,)}`` of the DISTS file, ``N = 3 + sum(block channels)``."""
    n = 3 + sum(block_channels(width))
    return {"alpha": (n,), "beta": (n,)}


def lpips_available(path: str | os.PathLike | None) -> bool:
    """Whether an LPIPS weights file is given and exists (broken files raise on loading)."""
    return weights_available(path)


def dists_available(path: str | os.PathLike | None) -> bool:
    """Whether a DISTS weights file is given and exists (broken files raise on loading)."""
    return weights_available(path)


def _read_vgg16_file(
    path: str | os.PathLike, width: int, heads: dict[str, tuple[int, ...]], what: str
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays of a metric's weights file and its VGG16 parameters, every entry checked.

    Args:
        path: the ``.npz`` file.
        width: the VGG's first-stage width.
        heads: the metric's own entries and their shapes, checked as well.
        what: what the file is for, used in messages.

    Returns:
        ``(arrays, vgg params)``: the file's arrays (for the metric's own entries) and VGG16.
    """
    arrays = read_npz(path, what)
    vgg = vgg_params_from_arrays(arrays, 16, width, path, what)
    check_entries(arrays, heads, path, what)
    return arrays, vgg


def load_lpips(path: str | os.PathLike, width: int = 64) -> dict[str, Any]:
    """LPIPS(VGG) parameters ``{"vgg": VGG16 params, "lin": [5 x (C_k,)]}`` from a local file.

    Raises:
        FileNotFoundError: the file is missing (the message says how to make it).
        swinjax.models.vgg.WeightsFormatError: an entry is missing or mis-shaped.
    """
    heads = lpips_head_shapes(width)
    arrays, vgg = _read_vgg16_file(path, width, heads, "LPIPS (VGG) weights")
    lin = [jnp.asarray(arrays[k][0, 0, :, 0], jnp.float32) for k in heads]
    return {"vgg": vgg, "lin": lin}


def load_dists(path: str | os.PathLike, width: int = 64) -> dict[str, Any]:
    """DISTS parameters ``{"vgg": VGG16 params, "alpha": (N,), "beta": (N,)}`` from a local file.

    Raises:
        FileNotFoundError: the file is missing (the message says how to make it).
        swinjax.models.vgg.WeightsFormatError: an entry is missing or mis-shaped.
    """
    arrays, vgg = _read_vgg16_file(path, width, dists_head_shapes(width), "DISTS weights")
    return {
        "vgg": vgg,
        "alpha": jnp.asarray(arrays["alpha"], jnp.float32),
        "beta": jnp.asarray(arrays["beta"], jnp.float32),
    }


def _check_pair(x: jax.Array, y: jax.Array, name: str, min_size: int) -> None:
    if x.shape != y.shape or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(
            f"{name} needs two [B, H, W, 3] batches of one shape, got {x.shape}, {y.shape}"
        )
    if min(x.shape[1], x.shape[2]) < min_size:
        raise ValueError(
            f"{name} needs images of at least {min_size}x{min_size}, got {x.shape[1]}x{x.shape[2]}"
        )


def _width(vgg_params: dict) -> int:
    return int(vgg_params["conv1_1"]["kernel"].shape[-1])


@jax.jit
def lpips(params: dict[str, Any], x: jax.Array, y: jax.Array) -> jax.Array:
    """LPIPS (VGG, v0.1) between ``x`` and ``y``, ``[B, H, W, 3]`` in [0, 1]; ``[B]``.

    Lower is more similar; ``lpips(p, x, x) == 0``. Images need H, W >= 16 (four max pools
    before relu5_3).

    Args:
        params: from :func:`load_lpips`.
        x: reference batch.
        y: distorted batch.
    """
    _check_pair(x, y, "LPIPS", 16)
    b = x.shape[0]
    net = VGGFeatures(
        layers=VGG16_METRIC_LAYERS,
        depth=16,
        width=_width(params["vgg"]),
        normalize_input=False,
        precision=_HIGHEST,
    )
    shift = jnp.asarray(LPIPS_SHIFT, jnp.float32)
    scale = jnp.asarray(LPIPS_SCALE, jnp.float32)
    v = jnp.concatenate([x, y], axis=0).astype(jnp.float32)
    feats = net.apply({"params": params["vgg"]}, ((2.0 * v - 1.0) - shift) / scale)
    total = jnp.zeros((b,), jnp.float32)
    for name, w in zip(VGG16_METRIC_LAYERS, params["lin"], strict=True):
        f = feats[name]
        f = f / (jnp.sqrt(jnp.sum(jnp.square(f), axis=-1, keepdims=True)) + _LPIPS_EPS)
        d = jnp.square(f[:b] - f[b:])
        total = total + jnp.mean(jnp.sum(d * w, axis=-1), axis=(1, 2))
    return total


@jax.jit
def dists(params: dict[str, Any], x: jax.Array, y: jax.Array) -> jax.Array:
    """DISTS between ``x`` and ``y``, ``[B, H, W, 3]`` in [0, 1]; ``[B]``.

    Lower is more similar; ``dists(p, x, x)`` is 0 up to rounding.

    Args:
        params: from :func:`load_dists`.
        x: reference batch.
        y: distorted batch.
    """
    _check_pair(x, y, "DISTS", 1)
    b = x.shape[0]
    width = _width(params["vgg"])
    net = VGGFeatures(
        layers=VGG16_METRIC_LAYERS,
        depth=16,
        width=width,
        pooling="l2",
        normalize_input=True,
        precision=_HIGHEST,
    )
    v = jnp.concatenate([x, y], axis=0).astype(jnp.float32)
    feats = net.apply({"params": params["vgg"]}, v)
    stages = [v] + [feats[n] for n in VGG16_METRIC_LAYERS]
    chns = (3,) + block_channels(width)
    w_sum = jnp.sum(params["alpha"]) + jnp.sum(params["beta"])
    splits = np.cumsum(chns)[:-1]
    alphas = jnp.split(params["alpha"] / w_sum, splits)
    betas = jnp.split(params["beta"] / w_sum, splits)
    score = jnp.zeros((b,), jnp.float32)
    for f, alpha, beta in zip(stages, alphas, betas, strict=True):
        fx, fy = f[:b], f[b:]
        mx = jnp.mean(fx, axis=(1, 2))
        my = jnp.mean(fy, axis=(1, 2))
        s1 = (2 * mx * my + _DISTS_C1) / (mx**2 + my**2 + _DISTS_C1)
        vx = jnp.mean(jnp.square(fx - mx[:, None, None]), axis=(1, 2))
        vy = jnp.mean(jnp.square(fy - my[:, None, None]), axis=(1, 2))
        cov = jnp.mean(fx * fy, axis=(1, 2)) - mx * my
        s2 = (2 * cov + _DISTS_C2) / (vx + vy + _DISTS_C2)
        score = score + jnp.sum(alpha * s1, axis=-1) + jnp.sum(beta * s2, axis=-1)
    return 1.0 - score


def random_lpips_arrays(width: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """Random LPIPS file contents (He-initialised VGG16, non-negative lin weights) for tests."""
    rng = np.random.default_rng(seed + 1)
    out = random_vgg_arrays(16, width, seed)
    for k, shape in lpips_head_shapes(width).items():
        out[k] = rng.uniform(0.0, 1.0, shape).astype(np.float32)
    return out


def random_dists_arrays(width: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """Random DISTS file contents (He-initialised VGG16, alpha/beta ~ N(0.1, 0.01)) for tests.

    N(0.1, 0.01) is the authors' initialisation of alpha and beta.
    """
    rng = np.random.default_rng(seed + 2)
    out = random_vgg_arrays(16, width, seed)
    for k, shape in dists_head_shapes(width).items():
        out[k] = (0.1 + 0.01 * rng.standard_normal(shape)).astype(np.float32)
    return out
