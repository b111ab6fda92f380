"""Mixed precision and the choice of layer kernels for a training config.

Two top-level config keys (``configs/common.py``), neither part of the model (a model trained
either way exports the same float32 parameters and codes the same files):

* ``dtype``: ``"float32"`` (default) or ``"bfloat16"``, the computation dtype of the analysis and
  synthesis transforms (g_a, g_s, h_a) in training. Parameters, gradients and optimizer state stay
  float32 (Micikevicius et al. 2018, "Mixed precision training": the float32 master copy keeps
  small updates from rounding away), and so do the losses, the rates and the entropy-parameter
  path (h_s, the context models, the factorized prior): likelihoods of a Gaussian with a
  bfloat16 mean and scale are off by up to a few per cent, and the decoder must reproduce the
  encoder's scale indexes. bfloat16 keeps float32's exponent range, so no loss scaling is needed
  (float16 is not offered for training). Inference (compress, decompress, evaluation, validation
  during training) runs in float32 unless a caller builds the codec with another dtype.
* ``kernels``: ``"auto"``, ``"cpu"`` or ``"generic"``, which formulation of Dense, LayerNorm,
  GELU and window attention the traced step uses (:func:`swinjax.layers.ops.kernels`; ``"auto"``
  takes the hand-written kernels on the CPU backend only).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import jax.numpy as jnp

from swinjax.layers.ops import KERNELS, kernels

#: Computation dtypes a training config may ask for.
DTYPES: dict[str, Any] = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

F = TypeVar("F", bound=Callable[..., Any])


def compute_dtype(config: Any) -> Any:
    """The transforms' computation dtype of ``config.dtype``; None for float32.

    None (not ``jnp.float32``) lets every module keep its input's dtype, which is exactly the
    float32 program the library ran before mixed precision existed.

    Raises:
        ValueError: an unknown dtype name.
    """
    name = str(config.get("dtype", "float32") or "float32")
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {name!r}")
    return None if name == "float32" else DTYPES[name]


def kernel_choice(config: Any) -> str:
    """``config.kernels`` (default ``"auto"``), validated.

    Raises:
        ValueError: an unknown choice.
    """
    kind = str(config.get("kernels", "auto") or "auto")
    if kind not in KERNELS:
        raise ValueError(f"kernels must be one of {KERNELS}, got {kind!r}")
    return kind


def with_kernels(config: Any, fn: F) -> F:
    """``fn`` traced with the layer kernels of ``config`` (:func:`kernel_choice`).

    Wrap a function before handing it to ``jax.jit``: the choice is made while tracing, so the
    compiled program carries it whatever the caller's context is later.
    """
    kind = kernel_choice(config)

    @functools.wraps(fn)
    def traced(*args: Any, **kwargs: Any) -> Any:
        with kernels(kind):
            return fn(*args, **kwargs)

    return traced  # type: ignore[return-value]
