"""What the parts of the evaluation share: its error type and its defaults."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

DEFAULT_DATA = "../shared/datasets/kodak"
# What ``python evaluate.py`` without flags compares the model with, and where it draws the plot.
DEFAULT_CODECS = ("jpeg", "webp", "avif")
DEFAULT_PLOT = "rd.png"
# Perceptual metrics reported by default (swinjax.perceptual.METRIC_NAMES), lower is better.
PERCEPTUAL_METRICS = ("lpips_alex", "lpips_vgg", "dists")
# Their keys in the CompressAI-schema JSON (hyphenated like "psnr-rgb") and their labels.
PERCEPTUAL_KEYS = {"lpips_alex": "lpips-alex", "lpips_vgg": "lpips-vgg", "dists": "dists"}
PERCEPTUAL_LABELS = {"lpips_alex": "LPIPS-Alex", "lpips_vgg": "LPIPS-VGG", "dists": "DISTS"}

# A perceptual metric: given one 8-bit reference image, a function of an 8-bit reconstruction
# (the reference's features are computed once per image, not once per rate point).
PerceptualMetric = Callable[[np.ndarray], Callable[[np.ndarray], float]]


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
    # Which perceptual metrics to compute (all by default; [] for none) and, per metric, a local
    # weights file instead of the packaged weights ({"lpips_vgg": path, ...}).
    perceptual: list[str] = field(default_factory=lambda: list(PERCEPTUAL_METRICS))
    weights: dict[str, str | None] = field(default_factory=dict)
    # Extra decoders of the model's files (shipped decoder exports that pair with it, e.g.
    # "perceptual"); None: every one that is shipped.
    decoders: list[str] | None = None
    progress: bool = True
    bd_method: str = "pchip"
    # Take saved rows (swinjax.evaluation.resume): the images an interrupted run with the same
    # model and options finished, and earlier runs' classical-codec rows; False: measure all.
    resume: bool = True
