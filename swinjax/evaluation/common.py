"""What the parts of the evaluation share: its error type and its defaults."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

DEFAULT_DATA = "../shared/datasets/kodak"
# What ``python evaluate.py`` without flags compares the model with, and where it draws the plot.
DEFAULT_CODECS = ("jpeg", "webp", "avif")
DEFAULT_PLOT = "rd.png"
PERCEPTUAL_METRICS = ("lpips", "dists")

# A perceptual metric of two 8-bit images (reference, reconstruction).
PerceptualMetric = Callable[[np.ndarray, np.ndarray], float]


class EvaluationError(Exception):
    """A problem with the user's input (flags, files, data): reported as one line."""


@dataclass
class EvalOptions:
    """Everything ``evaluate.py`` passes to :func:`evaluate` (see its ``--help``)."""

    ckpt: str | None = None  # None: the shipped default model
    data: str = DEFAULT_DATA
    lmbdas: list[float] | None = None
    out: str | None = None
    per_image: bool = False
    plot: str | None = None
    codecs: list[str] = field(default_factory=list)
    anchors: list[str] = field(default_factory=list)
    keep_files: str | None = None
    max_images: int | None = None
    max_pixels: int | None = None
    weights: dict[str, str | None] = field(default_factory=dict)
    progress: bool = True
    bd_method: str = "pchip"
