"""One quantization function for every path (docs/file-format.md).

Training, the evaluation forward pass, compress and decompress all call :func:`quantize`, so the
rate the model estimates and the rate the file pays are computed on the same values.

Modes (tfc / CompressAI vocabulary):

* ``"noise"``: ``x + u``, ``u ~ U(-0.5, 0.5)``: the differentiable proxy of quantization used for
  the training rate (Ballé et al. 2017). No offset: noise is symmetric.
* ``"ste"``: ``round(x - offset) + offset`` in the forward pass with an identity gradient
  (straight-through): the training distortion and context of the "mixed" scheme of Minnen & Singh
  (2020).
* ``"dequantize"``: ``round(x - offset) + offset`` without gradient: evaluation.
* ``"symbols"``: ``round(x - offset)`` as int32: what the range coder codes.

Offsets are means (Gaussian conditional) or medians (factorized prior).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

Mode = Literal["noise", "ste", "dequantize", "symbols"]


def quantize(
    x: jax.Array,
    mode: Mode,
    offset: jax.Array | float | None = None,
    key: jax.Array | None = None,
) -> jax.Array:
    """Quantizes ``x`` around ``offset`` (see the module docstring for the modes).

    Args:
        x: values to quantize.
        mode: ``"noise"``, ``"ste"``, ``"dequantize"`` or ``"symbols"``.
        offset: broadcastable quantization offset (mean or median); 0 if None.
        key: PRNG key, required for ``"noise"``.

    Returns:
        Quantized values (float), or int32 symbols for ``"symbols"``.
    """
    if mode == "noise":
        if key is None:
            raise ValueError("quantize(mode='noise') needs a PRNG key")
        return x + jax.random.uniform(key, x.shape, x.dtype, -0.5, 0.5)
    off = jnp.zeros((), x.dtype) if offset is None else jnp.asarray(offset, x.dtype)
    if mode == "symbols":
        return jnp.round(x - off).astype(jnp.int32)
    if mode == "dequantize":
        return jnp.round(x - off) + off
    if mode == "ste":
        r = x - off
        return r + jax.lax.stop_gradient(jnp.round(r) - r) + off
    raise ValueError(f"unknown quantization mode {mode!r}")


def dequantize(symbols: jax.Array, offset: jax.Array | float | None = None) -> jax.Array:
    """Inverse of ``quantize(mode="symbols")``: ``symbols + offset``.

    Float32, or the offset's dtype when that is wider (compression's float64 entropy path
    converts the integers directly, never through float32).
    """
    if offset is None:
        return jnp.asarray(symbols).astype(jnp.float32)
    dtype = jnp.promote_types(jnp.result_type(offset), jnp.float32)
    return jnp.asarray(symbols).astype(dtype) + offset
