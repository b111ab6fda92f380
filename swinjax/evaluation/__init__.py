"""Rate-distortion evaluation with real files: the library behind ``python evaluate.py``.

For every image and every λ the model writes a real swinjax file, which is read back and
decoded; actual bpp (file bytes, header included), estimated bpp, PSNR, MS-SSIM and coding times
are reported beside classical codecs run on the same images, with BD-rates and an RD plot.

Parts, one concern each:

* :mod:`~swinjax.evaluation.runner`: the run (:func:`evaluate`), λ choice, perceptual metrics;
* :mod:`~swinjax.evaluation.classical`: JPEG, WebP, AVIF, JPEG 2000 and JPEG XL;
* :mod:`~swinjax.evaluation.report`: CompressAI-schema results, BD-rates, files, the text table;
* :mod:`~swinjax.evaluation.plot`: the RD plot (matplotlib);
* :mod:`~swinjax.evaluation.common`: options, defaults and the error type they share.
"""

from swinjax.codec_cache import open_codec
from swinjax.evaluation.classical import ClassicalCodec, classical_codecs, select_codecs
from swinjax.evaluation.common import (
    DEFAULT_CODECS,
    DEFAULT_DATA,
    DEFAULT_PLOT,
    PERCEPTUAL_KEYS,
    PERCEPTUAL_LABELS,
    PERCEPTUAL_METRICS,
    EvalOptions,
    EvaluationError,
)
from swinjax.evaluation.plot import plot_rd
from swinjax.evaluation.report import Report, format_table
from swinjax.evaluation.runner import evaluate, lmbdas_for, load_perceptual_metrics

__all__ = [
    "DEFAULT_CODECS",
    "DEFAULT_DATA",
    "DEFAULT_PLOT",
    "PERCEPTUAL_KEYS",
    "PERCEPTUAL_LABELS",
    "PERCEPTUAL_METRICS",
    "ClassicalCodec",
    "EvalOptions",
    "EvaluationError",
    "Report",
    "classical_codecs",
    "evaluate",
    "format_table",
    "lmbdas_for",
    "load_perceptual_metrics",
    "open_codec",
    "plot_rd",
    "select_codecs",
]
