"""TensorBoard image summaries of validation: the first crops and their reconstructions.

At every validation, with ``config.tensorboard`` on, the first ``count`` validation crops are
coded (deterministic rounding, the float32 inference codec, as :meth:`Trainer.estimate`) at each
of the three validation lambdas (:meth:`swinjax.lmbda.LmbdaRange.validation_points`) and written
by process 0 as one image per lambda, ``val/images/lambda_<L>``: original and reconstruction side
by side, one crop per row. Scalars show that a run improves; the pictures show how (blur, ringing,
colour shifts, blocking at window borders), which is what a reader of a learned-codec paper
compares first.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from swinjax import sharding
from swinjax.lmbda import lmbda_range

#: Pixels of white between the tiles of a summary image.
GAP = 2


def to_uint8(x: np.ndarray) -> np.ndarray:
    """``[..., 3]`` floats in [0, 1] -> uint8, rounded as the codec's 8-bit output is."""
    return np.clip(np.round(np.asarray(x, np.float32) * 255.0), 0, 255).astype(np.uint8)


def image_grid(originals: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """One ``uint8 [H, W, 3]`` image: a row per crop, original left and reconstruction right.

    Args:
        originals: ``[N, h, w, 3]`` in [0, 1].
        reconstructions: the same shape.
    """
    if originals.shape != reconstructions.shape or originals.ndim != 4:
        raise ValueError(
            f"expected two [N, h, w, 3] batches, got {originals.shape}, {reconstructions.shape}"
        )
    n, h, w, _ = originals.shape
    grid = np.full((n * h + (n - 1) * GAP, 2 * w + GAP, 3), 255, np.uint8)
    for i in range(n):
        top = i * (h + GAP)
        grid[top : top + h, :w] = to_uint8(originals[i])
        grid[top : top + h, w + GAP :] = to_uint8(reconstructions[i])
    return grid


def validation_images(
    trainer: Any, params: Any, batches: list[dict[str, np.ndarray]], count: int = 2
) -> dict[str, np.ndarray]:
    """``{"val/images/lambda_<L>": grid}`` for the three validation lambdas.

    Every process must call it (the codec runs on the global batch, sharded like training); each
    gets the same images.
    """
    if not batches:
        return {}
    x = sharding.global_batch_array(trainer.mesh, batches[0]["x"])
    out = {}
    for lm in lmbda_range(trainer.config).validation_points():
        originals, x_hat = jax.device_get(trainer.reconstruct(params, x, lm))
        k = min(count, originals.shape[0])
        out[f"val/images/lambda_{lm:g}"] = image_grid(originals[:k], x_hat[:k])
    return out


def write_validation_images(
    writer: Any, trainer: Any, params: Any, batches: list[dict[str, np.ndarray]], step: int
) -> None:
    """Adds :func:`validation_images` to ``writer``'s TensorBoard (process 0) when it is on.

    ``config.tensorboard`` decides, not whether this process has a writer: every process takes
    part in coding the global batch.
    """
    if not trainer.config.get("tensorboard", False):
        return
    images = validation_images(trainer, params, batches)
    tb = getattr(writer, "tb", None)
    if tb is None:
        return
    for tag, image in images.items():
        tb.add_image(tag, image, step, dataformats="HWC")
    tb.flush()
