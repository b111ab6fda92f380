"""Compression to a target rate: the λ whose real file comes closest to a bpp from below."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from swinjax.lmbda import lmbda_range

if TYPE_CHECKING:
    from swinjax.compression import ImageCodec


def compress_to_bpp(
    codec: ImageCodec,
    image: np.ndarray,
    target_bpp: float,
    max_steps: int = 12,
    rtol: float = 0.01,
) -> tuple[bytes, float, str]:
    """Compresses with the largest λ whose *actual* bpp does not exceed ``target_bpp``.

    Bisection on log λ over the model's trained range (rate grows with λ, since the training
    loss is R + λ·D), on real files: each step is a full ``compress`` and the measure is the
    file size, header included, so the promise holds for the file the user gets. Stops when the
    rate is within ``rtol`` of the target (from below) or after ``max_steps`` files.

    Returns:
        ``(file bytes, λ used, note)``; the note says when the target is out of reach (the
        model's lowest rate is above it: the lowest-rate file is returned) or when it is above
        the model's highest rate.

    Raises:
        ValueError: the target is not positive, or the model is not variable-rate (one rate
            point: nothing to search).
    """
    if not target_bpp > 0:
        raise ValueError(f"the target rate must be positive, got {target_bpp} bpp")
    model = codec.model_config
    if not bool(model.get("variable_rate", False)):
        raise ValueError("a target rate needs a variable-rate model (this one has one rate point)")
    pixels = image.shape[0] * image.shape[1]

    def bpp(data: bytes) -> float:
        return len(data) * 8 / pixels

    lo, hi = lmbda_range(model).min, lmbda_range(model).max
    low = codec.compress(image, lo)
    if bpp(low) > target_bpp:
        note = f"target {target_bpp:g} bpp is below this model's lowest rate {bpp(low):.4f} bpp"
        return low, lo, note
    high = codec.compress(image, hi)
    if bpp(high) <= target_bpp:
        return high, hi, f"target above this model's highest rate {bpp(high):.4f} bpp"
    best, best_lm = low, lo
    a, b = np.log(lo), np.log(hi)
    for _ in range(max_steps):
        mid = float(np.exp((a + b) / 2))
        data = codec.compress(image, mid)
        if bpp(data) <= target_bpp:
            a, best, best_lm = np.log(mid), data, mid
            if bpp(data) >= target_bpp * (1 - rtol):
                break
        else:
            b = np.log(mid)
    return best, best_lm, ""
