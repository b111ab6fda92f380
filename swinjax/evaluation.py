"""Rate-distortion evaluation with real files: the library behind ``python evaluate.py``.

For every image and every λ the model writes a real swinjax file (range-coded, header
included), the file is read back from disk and decoded, and the numbers reported are

* **actual bpp** = file bytes × 8 / (H × W) of the original image, header included, next to the
  **estimated bpp** = −log2 likelihood of y and z / (H × W) from the evaluation forward pass
  (both reported, never confused);
* PSNR and MS-SSIM (RGB) on the 8-bit decoded image (:mod:`swinjax.metrics` states the exact
  conventions), per image and then averaged;
* encode and decode wall-clock seconds of ``compress`` / ``decompress`` (in memory, excluding file
  I/O, as CompressAI times ``compress``/``decompress``). Every program is compiled before it is
  timed: the evaluation forward pass on each image runs first and compiles everything the
  encoder and decoder use for that padded size.

The decoded image is also compared with the forward pass's reconstruction; they must be equal
(README: file format), and a mismatch is reported as a note and a warning rather than hidden.

Classical codecs are measured in the same run on the same images, each swept over its quality
setting, with the same metric code, and BD-rates (PSNR and MS-SSIM in dB,
:func:`swinjax.metrics.bd_rate`: PCHIP on log-rate over the overlapping quality range) are
computed against each codec and against published curves (``--anchors``).

Results use CompressAI's JSON schema (one file per curve; lists over rate points), so they plot
directly against ``../shared/anchors/kodak/*.json``. LPIPS and DISTS are reported as ``null`` with
a note unless weights are given (see :func:`load_perceptual_metrics`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import io
import math
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from swinjax import metrics
from swinjax.lmbda import LmbdaError, lmbda_range

DEFAULT_DATA = "../shared/datasets/kodak"
# What ``python evaluate.py`` without flags compares the model with, and where it draws the plot.
DEFAULT_CODECS = ("jpeg", "webp", "avif")
DEFAULT_PLOT = "rd.png"
PERCEPTUAL_METRICS = ("lpips", "dists")


class EvaluationError(Exception):
    """A problem with the user's input (flags, files, data): reported as one line."""


# -- progress ----------------------------------------------------------------------------------


class Progress:
    """A progress bar on a terminal, a few plain lines otherwise (logs, CI, notebooks' stderr).

    Args:
        total: number of steps.
        label: what is being counted.
        stream: where to write (e.g. ``sys.stderr``); ``None`` disables output.
    """

    def __init__(self, total: int, label: str, stream: TextIO | None) -> None:
        """Starts the clock; nothing is printed until the first :meth:`update`."""
        self.total = max(int(total), 1)
        self.label = label
        self.stream = stream
        self.done = 0
        self.start = time.perf_counter()
        self.tty = bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())
        self._last_line = -1

    def update(self, what: str = "", n: int = 1) -> None:
        """Advances by ``n`` steps; ``what`` names the item just finished."""
        self.done = min(self.done + n, self.total)
        if self.stream is None:
            return
        frac = self.done / self.total
        elapsed = time.perf_counter() - self.start
        eta = elapsed / frac * (1 - frac) if frac > 0 else 0.0
        if self.tty:
            width = 24
            bar = "#" * int(frac * width) + "." * (width - int(frac * width))
            self.stream.write(
                f"\r{self.label} [{bar}] {self.done}/{self.total} {elapsed:5.0f}s "
                f"ETA {eta:4.0f}s {what[:40]:<40}"
            )
            if self.done == self.total:
                self.stream.write("\n")
        else:  # at most ~10 lines per bar
            tenth = int(frac * 10)
            if tenth == self._last_line and self.done != self.total:
                return
            self._last_line = tenth
            self.stream.write(
                f"{self.label} {self.done}/{self.total} ({frac:.0%}) {elapsed:.0f}s {what}\n"
            )
        self.stream.flush()


# -- the model --------------------------------------------------------------------------------


def open_codec(ckpt: str | os.PathLike | None = None, max_pixels: int | None = None) -> Any:
    """An :class:`~swinjax.compression.ImageCodec` for ``--ckpt``.

    ``ckpt`` is what :func:`swinjax.checkpoint.resolve_ckpt` takes: a shipped model's name, an
    export directory, a training workdir, or ``None`` for the shipped default model.

    Codecs are cached per export (path and modification times) so that a notebook or a test
    that evaluates the same checkpoint again reuses the compiled programs instead of compiling
    them anew (each ``ImageCodec`` owns its jitted functions).

    Raises:
        EvaluationError: ``ckpt`` is neither a shipped name, an export nor a training workdir,
            or is invalid.
    """
    from swinjax.checkpoint import DEFAULT_MODEL, load_model
    from swinjax.compression import DEFAULT_MAX_PIXELS

    what = DEFAULT_MODEL if ckpt is None else str(ckpt)
    try:
        exported = load_model(ckpt)
    except (FileNotFoundError, ValueError, KeyError, OSError) as e:
        raise EvaluationError(f"cannot load checkpoint {what!r}: {e}") from e
    path = pathlib.Path(exported.path or what).resolve()
    stamps = tuple(
        (p.stat().st_mtime_ns, p.stat().st_size)
        for p in (path / "model.json", path / "params.msgpack", path / "tables.npz")
        if p.exists()
    )
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    return _cached_codec(_CacheKey((str(path), stamps, limit), exported))


@dataclass(frozen=True)
class _CacheKey:
    """Hashes by ``key`` only; carries the loaded export to build the codec on a cache miss."""

    key: tuple
    exported: Any = field(compare=False, hash=False)


@functools.lru_cache(maxsize=4)
def _cached_codec(k: _CacheKey) -> Any:
    from swinjax.compression import ImageCodec

    try:
        return ImageCodec(k.exported, max_pixels=k.key[2])
    except ValueError as e:
        raise EvaluationError(f"cannot use checkpoint {k.key[0]}: {e}") from e


def lmbdas_for(model: Any, requested: Sequence[float] | None) -> tuple[list[float | None], str]:
    """The λ values to evaluate and a note about them.

    Variable-rate models take the requested list (each checked against the trained range), or by
    default 5 values spaced geometrically over the trained range ``[model.lmbda.min, max]``.
    Fixed-rate models have one rate point: the list is ignored (and the note says so).
    """
    if not bool(model.get("variable_rate", False)):
        note = "fixed-rate model: one rate point"
        if requested:
            note += f" (the requested lambdas {_fmt_list(requested)} are ignored)"
        return [None], note
    rng = lmbda_range(model)
    lo, hi = rng.min, rng.max
    if not requested:
        values = rng.sweep(5)
        return values, f"variable-rate model: 5 lambdas spaced geometrically over [{lo:g}, {hi:g}]"
    bad = []
    for v in requested:
        try:
            rng.check(v)
        except LmbdaError:
            bad.append(v)
    if bad:
        raise EvaluationError(
            f"--lmbda {_fmt_list(bad)} outside the model's trained range [{lo:g}, {hi:g}]"
        )
    return sorted(float(v) for v in requested), f"variable-rate model, range [{lo:g}, {hi:g}]"


def _fmt_list(values: Iterable[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


# -- classical codecs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassicalCodec:
    """A classical image codec swept over one quality setting.

    ``encode(image, setting) -> bytes`` and ``decode(bytes) -> uint8 [H, W, 3]`` work in memory;
    the settings and options reproduce the measured curves in
    ``../shared/anchors/kodak/measured`` (same Pillow/libjpeg-turbo/libwebp/libavif versions give
    identical bytes).
    """

    name: str
    setting: str
    settings: tuple[float, ...]
    ext: str
    description: str
    encode: Callable[[np.ndarray, Any], bytes]
    decode: Callable[[bytes], np.ndarray]


def _pil_encode(image: np.ndarray, **kwargs: Any) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, **kwargs)
    return buf.getvalue()


def _pil_decode(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _jpeg(image: np.ndarray, q: Any) -> bytes:
    return _pil_encode(image, format="JPEG", quality=int(q), subsampling="4:2:0")


def _webp(image: np.ndarray, q: Any) -> bytes:
    return _pil_encode(image, format="WEBP", quality=int(q), method=4)


def _avif(image: np.ndarray, q: Any) -> bytes:
    return _pil_encode(
        image,
        format="AVIF",
        quality=int(q),
        subsampling="4:4:4",
        speed=4,
        codec="aom",
        advanced={"tune": "psnr"},
        max_threads=1,
    )


def _jpeg2000(image: np.ndarray, ratio: Any) -> bytes:
    return _pil_encode(
        image,
        format="JPEG2000",
        quality_mode="rates",
        quality_layers=[float(ratio)],
        irreversible=True,
        mct=1,
        num_resolutions=6,
        no_jp2=True,
    )


def _jxl_codec() -> ClassicalCodec:
    import imagecodecs

    def enc(image: np.ndarray, d: Any) -> bytes:
        return bytes(imagecodecs.jpegxl_encode(image, distance=float(d), effort=7, numthreads=1))

    def dec(data: bytes) -> np.ndarray:
        out = np.asarray(imagecodecs.jpegxl_decode(data, numthreads=1))
        return out[..., :3] if out.ndim == 3 else np.repeat(out[..., None], 3, axis=-1)

    version = getattr(imagecodecs, "__version__", "?")
    return ClassicalCodec(
        "jxl",
        "distance",
        (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0),
        "jxl",
        f"imagecodecs {version} jpegxl_encode(distance=d, effort=7), libjxl VarDCT",
        enc,
        dec,
    )


def _pillow_version(feature: str) -> str:
    from PIL import __version__, features

    return f"Pillow {__version__}, {feature} {features.version(feature) or '?'}"


def classical_codecs() -> tuple[dict[str, ClassicalCodec], dict[str, str]]:
    """The classical codecs usable here, and the reasons the others are not.

    Keys are the names accepted by ``--codecs``: ``jpeg`` (4:2:0), ``webp``, ``avif`` (4:4:4),
    ``jpeg2000`` (Pillow/OpenJPEG), ``jxl`` (imagecodecs, optional).
    """
    from PIL import features

    ok: dict[str, ClassicalCodec] = {}
    missing: dict[str, str] = {}
    q5 = tuple(range(5, 100, 5))
    if features.check("jpg"):
        ok["jpeg"] = ClassicalCodec(
            "jpeg420", "quality", q5, "jpg",
            _pillow_version("jpg") + "; quality q, 4:2:0, baseline (= CompressAI's JPEG)",
            _jpeg, _pil_decode,
        )  # fmt: skip
    else:
        missing["jpeg"] = "this Pillow has no JPEG encoder"
    if features.check("webp"):
        ok["webp"] = ClassicalCodec(
            "webp", "quality", q5, "webp",
            _pillow_version("webp") + "; lossy, quality q, method 4",
            _webp, _pil_decode,
        )  # fmt: skip
    else:
        missing["webp"] = "this Pillow has no WebP support"
    if features.check("avif") and _avif_has_aom():
        ok["avif"] = ClassicalCodec(
            "avif444", "quality", tuple(range(10, 90, 10)), "avif",
            _pillow_version("avif") + "; aom, quality q, 4:4:4, speed 4, tune psnr, 1 thread",
            _avif, _pil_decode,
        )  # fmt: skip
    else:
        missing["avif"] = "this Pillow has no AVIF encoder with aom"
    if features.check("jpg_2000"):
        ok["jpeg2000"] = ClassicalCodec(
            "jpeg2000", "ratio", (12, 16, 20, 24, 30, 40, 48, 60, 80, 120, 160, 240), "j2k",
            _pillow_version("jpg_2000")
            + "; 9/7 wavelet + ICT, rate ratio r (target 24/r bpp), 6 resolutions, 1 layer",
            _jpeg2000, _pil_decode,
        )  # fmt: skip
    else:
        missing["jpeg2000"] = "this Pillow has no OpenJPEG"
    try:
        ok["jxl"] = _jxl_codec()
    except ImportError:
        missing["jxl"] = "imagecodecs is not installed (pip install imagecodecs)"
    return ok, missing


def _avif_has_aom() -> bool:
    try:
        from PIL import _avif

        return bool(_avif.encoder_codec_available("aom"))
    except (ImportError, AttributeError):
        return False


CODEC_ALIASES = {"jpeg420": "jpeg", "jpg": "jpeg", "avif444": "avif", "j2k": "jpeg2000"}


def select_codecs(names: Sequence[str]) -> tuple[list[ClassicalCodec], list[str]]:
    """Resolves ``--codecs`` names: unavailable optional codecs give a note, unknown ones fail."""
    ok, missing = classical_codecs()
    chosen, notes = [], []
    for raw in names:
        key = CODEC_ALIASES.get(raw.strip().lower(), raw.strip().lower())
        if not key or key == "none":
            continue
        if key in ok:
            if ok[key] not in chosen:
                chosen.append(ok[key])
        elif key in missing:
            notes.append(f"{key} skipped: {missing[key]}")
        else:
            known = ", ".join(sorted(set(ok) | set(missing)))
            raise EvaluationError(f"--codecs: unknown codec {raw!r} (known: {known}, none)")
    return chosen, notes


# -- perceptual metrics hook --------------------------------------------------------------------

PerceptualMetric = Callable[[np.ndarray, np.ndarray], float]


def load_perceptual_metrics(weights: Mapping[str, str | None]) -> dict[str, PerceptualMetric]:
    """LPIPS / DISTS from local weight files (never downloaded).

    The implementations live in :mod:`swinjax.perceptual` (``load_lpips(path)`` /
    ``lpips(params, x, y)`` and the same for ``dists``, on ``[B, H, W, 3]`` images in [0, 1]);
    here each becomes a function of two 8-bit images, evaluated on the same 8-bit decoded output
    as PSNR. Metrics without weights are not loaded; evaluation reports them as ``null`` with a
    note.

    Args:
        weights: ``{"lpips": path or None, "dists": path or None}``.

    Raises:
        EvaluationError: weights were given but cannot be used (missing, malformed, or no
            implementation installed), as one line.
    """
    out: dict[str, PerceptualMetric] = {}
    for name, path in weights.items():
        if not path:
            continue
        if not pathlib.Path(path).is_file():
            raise EvaluationError(f"--{name}-weights {path}: no such file")
        try:
            module = importlib.import_module("swinjax.perceptual")
            loader, fn = getattr(module, f"load_{name}"), getattr(module, name)
        except (ImportError, AttributeError):
            raise EvaluationError(
                f"--{name}-weights given, but this installation cannot compute {name.upper()} "
                "(no swinjax.perceptual implementation)"
            ) from None
        try:
            params = loader(path)
        except Exception as e:  # noqa: BLE001 - any loading failure is a one-line user error
            raise EvaluationError(f"--{name}-weights {path}: {e}") from e
        out[name] = _perceptual_metric(fn, params)
    return out


def _perceptual_metric(fn: Callable[..., Any], params: Any) -> PerceptualMetric:
    def metric(reference: np.ndarray, reconstruction: np.ndarray) -> float:
        x = np.asarray(reference, np.float32)[None] / 255.0
        y = np.asarray(reconstruction, np.float32)[None] / 255.0
        return float(np.asarray(fn(params, x, y))[0])

    return metric


# -- evaluation ---------------------------------------------------------------------------------


@dataclass
class EvalOptions:
    """Everything ``evaluate.py`` passes to :func:`evaluate` (see its ``--help``)."""

    ckpt: str | None = None  # None: the shipped default model (swinjax.checkpoint.DEFAULT_MODEL)
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


@dataclass
class Report:
    """What :func:`evaluate` returns: curves, per-image records, BD-rates, notes, files written."""

    model: dict[str, Any]
    codecs: dict[str, dict[str, Any]]
    per_image: list[dict[str, Any]]
    bd_rates: dict[str, dict[str, Any]]
    anchors: list[metrics.RDCurve]
    notes: list[str]
    written: list[pathlib.Path]


def _images(data: str, max_images: int | None) -> list[pathlib.Path]:
    from swinjax.data import DataConfigError, find_images

    p = pathlib.Path(data)
    if data == DEFAULT_DATA and not p.exists():  # run from elsewhere: next to the repository
        beside_repo = pathlib.Path(__file__).resolve().parents[1] / DEFAULT_DATA
        p = beside_repo if beside_repo.exists() else p
    if p.is_file():
        return [p]
    if not p.exists():
        raise EvaluationError(f"--data {data}: no such folder (give --data DIR with test images)")
    try:
        files = [pathlib.Path(f) for f in find_images([str(p)])]
    except DataConfigError as e:
        raise EvaluationError(f"--data {data}: {e}") from e
    if max_images is not None:
        if max_images < 1:
            raise EvaluationError("--max-images must be at least 1")
        files = files[:max_images]
    return files


def _load(path: pathlib.Path, max_pixels: int | None) -> np.ndarray:
    from swinjax.imageio import DEFAULT_MAX_PIXELS, ImageError, load_image

    try:
        return load_image(path, max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
    except ImageError as e:
        raise EvaluationError(str(e)) from e


def _quality(reference: np.ndarray, ref_ms: metrics.MsSsimReference | None, x: np.ndarray) -> dict:
    q = {"psnr": metrics.psnr(reference, x), "ms_ssim": None}
    if ref_ms is not None:
        q["ms_ssim"] = ref_ms(x)
    return q


def _perceptual(
    fns: Mapping[str, PerceptualMetric], image: np.ndarray, x_hat: np.ndarray
) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, fn in fns.items():
        try:
            out[name] = fn(image, x_hat)
        except ValueError:  # e.g. an image too small for the network: no value
            out[name] = None
    return out


def _mean(values: Sequence[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return float(np.mean(values))


def _curve_results(records: list[dict], key: str, settings: Sequence[Any]) -> dict[str, list]:
    """Means over images per setting, in the order of ``settings``."""
    res: dict[str, list] = {
        "bpp": [], "psnr-rgb": [], "ms-ssim-rgb": [], "ms-ssim-db-rgb": [],
        "encoding_time": [], "decoding_time": [],
    }  # fmt: skip
    for s in settings:
        rows = [r for r in records if r[key] == s]
        msssim = _mean([r["ms_ssim"] for r in rows])
        res["bpp"].append(_mean([r["bpp"] for r in rows]))
        res["psnr-rgb"].append(_mean([r["psnr"] for r in rows]))
        res["ms-ssim-rgb"].append(msssim)
        res["ms-ssim-db-rgb"].append(None if msssim is None else metrics.ms_ssim_db(msssim))
        res["encoding_time"].append(_mean([r["encoding_time"] for r in rows]))
        res["decoding_time"].append(_mean([r["decoding_time"] for r in rows]))
    return res


def _as_curve(name: str, results: Mapping[str, list]) -> metrics.RDCurve:
    clean = {k: [math.nan if v is None else v for v in vals] for k, vals in results.items()}
    keys = ("bpp", "psnr-rgb", "ms-ssim-db-rgb")
    return metrics.curve_from_results(name, {k: clean[k] for k in keys if k in clean})


def _bd(anchor: metrics.RDCurve, test: metrics.RDCurve, method: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, qa, qt in (
        ("psnr", anchor.psnr, test.psnr),
        ("ms-ssim-db", anchor.ms_ssim_db, test.ms_ssim_db),
    ):
        if qa is None or qt is None:
            out[key] = None
            out[f"{key}_note"] = "metric not in both curves"
            continue
        try:
            out[key] = metrics.bd_rate(anchor.bpp, qa, test.bpp, qt, method=method)
            out[f"{key}_overlap"] = metrics.bd_overlap(qa, qt)
        except ValueError as e:
            out[key] = None
            out[f"{key}_note"] = str(e)
    return out


def evaluate(opts: EvalOptions, log: TextIO | None = None) -> Report:
    """Runs the evaluation described in the module docstring and writes the requested files.

    Args:
        opts: the options (``evaluate.py`` flags).
        log: where progress and warnings go (default: ``sys.stderr`` at call time);
            ``opts.progress=False`` turns the progress lines off.

    Returns:
        The :class:`Report` (also printed by :func:`format_report`).

    Raises:
        EvaluationError: a user error (missing data, bad checkpoint, bad image, bad flag value),
            as a one-line message.
    """
    log = sys.stderr if log is None else log
    notes: list[str] = []
    out_path = pathlib.Path(opts.out) if opts.out else None
    for what, p in (("--out", out_path), ("--plot", opts.plot and pathlib.Path(opts.plot))):
        if p and not p.parent.is_dir():
            raise EvaluationError(f"{what} {p}: folder {p.parent} does not exist")
    files = _images(opts.data, opts.max_images)
    chosen, codec_notes = select_codecs(opts.codecs)
    notes += codec_notes
    anchors = []
    for path in _anchor_files(opts.anchors):
        curve = _read_anchor(path)
        if curve.name in [a.name for a in anchors] + [c.name for c in chosen]:
            curve.name = f"{curve.name} [{path}]"  # two curves of one name: keep both apart
        anchors.append(curve)
    perceptual = load_perceptual_metrics(opts.weights)
    for name in PERCEPTUAL_METRICS:
        if name not in perceptual:
            notes.append(
                f"{name}: unavailable (no weights given: --{name}-weights FILE); reported as null"
            )
    codec = open_codec(opts.ckpt, opts.max_pixels)
    model = codec.model
    lmbdas, lm_note = lmbdas_for(model, opts.lmbdas)
    notes.insert(0, lm_note)
    keep = pathlib.Path(opts.keep_files) if opts.keep_files else None
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    stream = log if opts.progress else None
    n_steps = len(files) * (len(lmbdas) + sum(len(c.settings) for c in chosen))
    bar = Progress(n_steps, "evaluate", stream)
    records: list[dict[str, Any]] = []
    small = []
    with tempfile.TemporaryDirectory(prefix="swinjax-eval-") as tmp:
        workdir = keep or pathlib.Path(tmp)
        for path in files:
            image = _load(path, opts.max_pixels)
            h, w = image.shape[:2]
            try:
                ref_ms = metrics.MsSsimReference(image)
            except ValueError:
                ref_ms = None
                small.append(path.name)
            rel = _relative(path, opts.data)
            records += _eval_model(
                codec, image, rel, lmbdas, ref_ms, perceptual, workdir, bar, notes, log
            )
            for cc in chosen:
                for s in cc.settings:
                    records.append(
                        _eval_classical(cc, s, image, rel, ref_ms, perceptual, workdir, h * w)
                    )
                    bar.update(f"{rel} {cc.name} {s:g}")
    if small:
        more = "..." if len(small) > 3 else ""
        notes.append(
            f"ms-ssim: undefined for {len(small)} image(s) smaller than "
            f"{metrics.MS_SSIM_MIN_SIDE} px ({', '.join(small[:3])}{more}); means reported as null"
        )
    report = _assemble(opts, codec, lmbdas, chosen, records, anchors, notes, files, perceptual)
    _write_outputs(opts, report, out_path)
    return report


def _relative(path: pathlib.Path, data: str) -> str:
    try:
        return str(path.relative_to(pathlib.Path(data)))
    except ValueError:
        return path.name


def _eval_model(
    codec: Any,
    image: np.ndarray,
    rel: str,
    lmbdas: Sequence[float | None],
    ref_ms: metrics.MsSsimReference | None,
    perceptual: Mapping[str, PerceptualMetric],
    workdir: pathlib.Path,
    bar: Progress,
    notes: list[str],
    log: TextIO | None,
) -> list[dict[str, Any]]:
    """All λ of one image: forward pass (compiles, estimates), real encode, file, real decode."""
    from swinjax.coding.container import FormatError

    h, w = image.shape[:2]
    out = []
    for lm in lmbdas:
        try:
            ev = codec.forward_eval(image, lm)
            t0 = time.perf_counter()
            data = codec.compress(image, lm)
            t1 = time.perf_counter()
        except ValueError as e:
            raise EvaluationError(f"{rel}: {e}") from e
        tag = "fixed" if lm is None else f"l{lm:g}"
        file = workdir / f"{pathlib.Path(rel).with_suffix('')}.{tag}.swj"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(data)
        stored = file.read_bytes()
        try:
            t2 = time.perf_counter()
            x_hat = codec.decompress(stored)
            t3 = time.perf_counter()
        except FormatError as e:  # our own file does not decode: a bug, never hidden
            raise RuntimeError(f"{rel}: the file just written does not decode: {e}") from e
        matches = bool(np.array_equal(x_hat, ev.x_hat))
        if not matches:
            msg = f"{rel} lambda={lm}: decoded image differs from the evaluation forward pass"
            notes.append(msg)
            if log is not None:
                print(f"warning: {msg}", file=log)
        rec = {
            "codec": "model",
            "image": rel,
            "height": h,
            "width": w,
            "lmbda": lm,
            "bytes": len(stored),
            "bpp": len(stored) * 8 / (h * w),
            "estimated_bpp": ev.bits / (h * w),
            "estimated_bpp_y": ev.bits_y / (h * w),
            "estimated_bpp_z": ev.bits_z / (h * w),
            **_quality(image, ref_ms, x_hat),
            "encoding_time": t1 - t0,
            "decoding_time": t3 - t2,
            "decoded_equals_forward_pass": matches,
        }
        rec.update(_perceptual(perceptual, image, x_hat))
        out.append(rec)
        bar.update(f"{rel} " + ("fixed" if lm is None else f"λ={lm:g}"))
    return out


def _eval_classical(
    cc: ClassicalCodec,
    setting: Any,
    image: np.ndarray,
    rel: str,
    ref_ms: metrics.MsSsimReference | None,
    perceptual: Mapping[str, PerceptualMetric],
    workdir: pathlib.Path,
    pixels: int,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    data = cc.encode(image, setting)
    t1 = time.perf_counter()
    file = workdir / f"{pathlib.Path(rel).with_suffix('')}.{cc.name}.{setting:g}.{cc.ext}"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(data)
    stored = file.read_bytes()
    t2 = time.perf_counter()
    x_hat = cc.decode(stored)
    t3 = time.perf_counter()
    if x_hat.shape != image.shape:
        raise RuntimeError(f"{cc.name} decoded {rel} to {x_hat.shape}, expected {image.shape}")
    rec = {
        "codec": cc.name,
        "image": rel,
        "height": image.shape[0],
        "width": image.shape[1],
        cc.setting: setting,
        "setting": setting,
        "bytes": len(stored),
        "bpp": len(stored) * 8 / pixels,
        **_quality(image, ref_ms, x_hat),
        "encoding_time": t1 - t0,
        "decoding_time": t3 - t2,
    }
    rec.update(_perceptual(perceptual, image, x_hat))
    return rec


def _anchor_files(specs: Sequence[str]) -> list[pathlib.Path]:
    out: list[pathlib.Path] = []
    for spec in specs:
        p = pathlib.Path(spec)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix in (".json", ".txt") and q.is_file())
            if not found:
                raise EvaluationError(f"--anchors {spec}: folder holds no .json/.txt curves")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise EvaluationError(f"--anchors {spec}: no such file or folder")
    return out


def _read_anchor(path: pathlib.Path) -> metrics.RDCurve:
    try:
        curve = metrics.read_curve(path)
    except ValueError as e:
        raise EvaluationError(f"--anchors: {e}") from e
    return curve


def _assemble(
    opts: EvalOptions,
    codec: Any,
    lmbdas: Sequence[float | None],
    chosen: Sequence[ClassicalCodec],
    records: list[dict[str, Any]],
    anchors: list[metrics.RDCurve],
    notes: list[str],
    files: Sequence[pathlib.Path],
    perceptual: Mapping[str, PerceptualMetric],
) -> Report:
    exported = codec.exported
    model_name = f"swinjax {exported.model_id} (step {exported.step})"
    model_rows = [r for r in records if r["codec"] == "model"]
    res = _curve_results(model_rows, "lmbda", lmbdas)
    res["estimated_bpp"] = [
        _mean([r["estimated_bpp"] for r in model_rows if r["lmbda"] == lm]) for lm in lmbdas
    ]
    for name in PERCEPTUAL_METRICS:
        res[name] = [
            _mean([r[name] for r in model_rows if r["lmbda"] == lm]) if name in perceptual else None
            for lm in lmbdas
        ]
    res["lmbda"] = list(lmbdas)
    dataset = {"path": str(opts.data), "images": len(files)}
    desc = (
        f"{model_name} on {len(files)} image(s) from {opts.data}. bpp: actual (file bytes x 8 / "
        "pixels, header included); estimated_bpp: -log2 likelihood of y and z / pixels. "
        "PSNR and MS-SSIM on the 8-bit decoded RGB image, per image then mean; MS-SSIM 5 scales "
        "(Wang et al. 2003 weights, pytorch_msssim conventions, data range 255). Times: mean "
        "wall-clock seconds per image of compress/decompress on "
        f"{_device_name()}."
    )
    model = metrics.compressai_json(
        model_name,
        desc,
        res,
        model={
            "id": exported.model_id,
            "step": exported.step,
            "config_hash": exported.config_hash,
            "variable_rate": bool(codec.model.get("variable_rate", False)),
            "ckpt": str(opts.ckpt) if opts.ckpt is not None else _default_model(),
        },
        dataset=dataset,
        notes=notes,
    )
    codecs = {}
    for cc in chosen:
        rows = [r for r in records if r["codec"] == cc.name]
        cres = _curve_results(rows, "setting", cc.settings)
        cres[cc.setting] = list(cc.settings)
        codecs[cc.name] = metrics.compressai_json(
            cc.name,
            f"{cc.description}. {len(files)} image(s) from {opts.data}; bpp from the encoded "
            "bytes; metrics as for the model; times = wall s/image, single-threaded.",
            cres,
            dataset=dataset,
        )
    model_curve = _as_curve(model_name, res)
    bd = {}
    for name, obj in codecs.items():
        bd[name] = _bd(_as_curve(name, obj["results"]), model_curve, opts.bd_method)
    for a in anchors:
        bd[a.name] = _bd(a, model_curve, opts.bd_method)
    if len(lmbdas) < 2:
        notes.append("bd-rate: needs at least 2 rate points of the model; not computed")
    model["bd_rates"] = {
        "description": (
            f"BD-rate (%) of {model_name} against each curve (negative = fewer bits), "
            f"{'PCHIP on log-rate' if opts.bd_method == 'pchip' else 'cubic fit (VCEG-M33)'}, "
            "over the overlapping quality range only (psnr: PSNR-RGB dB; ms-ssim-db: "
            "-10 log10(1 - mean MS-SSIM)); *_overlap = fraction of the model's quality range "
            "covered by the anchor."
        ),
        **bd,
    }
    return Report(model, codecs, records, bd, anchors, notes, [])


def _default_model() -> str:
    from swinjax.checkpoint import DEFAULT_MODEL

    return DEFAULT_MODEL


def _device_name() -> str:
    import jax

    d = jax.devices()[0]
    return f"{d.platform} ({getattr(d, 'device_kind', '') or d.platform})"


def _write_outputs(opts: EvalOptions, report: Report, out_path: pathlib.Path | None) -> None:
    if out_path is not None:
        report.written.append(metrics.write_json_atomic(out_path, report.model))
        for name, obj in report.codecs.items():
            p = out_path.with_name(f"{out_path.stem}_{name}{out_path.suffix or '.json'}")
            report.written.append(metrics.write_json_atomic(p, obj))
    if opts.per_image:
        if out_path is None:
            p = pathlib.Path("results_per_image.json")
        else:
            p = out_path.with_name(f"{out_path.stem}_per_image{out_path.suffix or '.json'}")
        per = {
            "description": "one record per image and rate point; bpp actual (file bytes), "
            "estimated_bpp from the likelihoods (model only); metrics on 8-bit RGB",
            "records": report.per_image,
        }
        report.written.append(metrics.write_json_atomic(p, per))
    if opts.plot:
        curves = [_as_curve(report.model["name"], report.model["results"])]
        curves += [_as_curve(n, o["results"]) for n, o in report.codecs.items()]
        curves += report.anchors
        report.written.append(plot_rd(curves, opts.plot, title=report.model["name"]))


# -- text report -------------------------------------------------------------------------------


def _f(v: float | None, spec: str) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:{spec}}"


def format_report(report: Report) -> str:
    """The table ``evaluate.py`` prints: the model's points, each codec's curve, BD-rates."""
    lines = []
    m = report.model
    r = m["results"]
    lines.append(m["name"] + f" on {m['dataset']['images']} image(s) from {m['dataset']['path']}")
    head = (
        f"{'codec':<10} {'setting':>10} {'bpp':>8} {'est.bpp':>8} {'PSNR':>7} {'MS-SSIM':>8} "
        f"{'enc s':>7} {'dec s':>7}"
    )
    lines += [head, "-" * len(head)]
    for i, lm in enumerate(r["lmbda"]):
        setting = "fixed" if lm is None else f"λ={lm:g}"
        lines.append(
            f"{'model':<10} {setting:>10} {_f(r['bpp'][i], '8.4f')} "
            f"{_f(r['estimated_bpp'][i], '8.4f')} {_f(r['psnr-rgb'][i], '7.2f')} "
            f"{_f(r['ms-ssim-rgb'][i], '8.4f')} {_f(r['encoding_time'][i], '7.3f')} "
            f"{_f(r['decoding_time'][i], '7.3f')}"
        )
    for name, obj in report.codecs.items():
        cr = obj["results"]
        key = next(k for k in cr if k in ("quality", "ratio", "distance"))
        for i, s in enumerate(cr[key]):
            lines.append(
                f"{name:<10} {key[0]}={s:<8g} {_f(cr['bpp'][i], '8.4f')} {'':>8} "
                f"{_f(cr['psnr-rgb'][i], '7.2f')} {_f(cr['ms-ssim-rgb'][i], '8.4f')} "
                f"{_f(cr['encoding_time'][i], '7.3f')} {_f(cr['decoding_time'][i], '7.3f')}"
            )
    if report.bd_rates:
        lines.append("")
        lines.append("BD-rate of the model vs (negative = fewer bits; PCHIP, overlap only):")
        for name, bd in report.bd_rates.items():
            parts = []
            for key, label in (("psnr", "PSNR"), ("ms-ssim-db", "MS-SSIM")):
                v = bd.get(key)
                if v is None:
                    why = str(bd.get(f"{key}_note", ""))
                    short = {
                        "overlap": "no overlap",
                        "at least 2": "too few points",
                        "not in both": "metric missing",
                        "same quality": "repeated quality",
                    }
                    why = next((v for k, v in short.items() if k in why), why[:40])
                    parts.append(f"{label} n/a ({why})" if why else f"{label} n/a")
                else:
                    cov = bd.get(f"{key}_overlap", 1.0)
                    flag = f" (overlap {cov:.0%})" if cov < 0.5 else ""
                    parts.append(f"{label} {v:+7.1f} %{flag}")
            lines.append(f"  {name:<40} " + "   ".join(parts))
    if report.notes:
        lines.append("")
        lines += [f"note: {n}" for n in report.notes]
    for p in report.written:
        lines.append(f"wrote {p}")
    return "\n".join(lines)


def options_from(**kwargs: Any) -> EvalOptions:
    """:class:`EvalOptions` from keyword arguments, rejecting unknown names (typo safety)."""
    names = {f.name for f in dataclasses.fields(EvalOptions)}
    unknown = set(kwargs) - names
    if unknown:
        raise TypeError(f"unknown evaluation options: {sorted(unknown)}")
    return EvalOptions(**kwargs)


# -- RD plot (Pillow) --------------------------------------------------------------------------
# Drawn with Pillow, a core dependency, rather than matplotlib, so that `--plot` works in every
# installation (matplotlib is not a dependency of swinjax).

_PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (174, 199, 232),
    (255, 187, 120), (152, 223, 138), (197, 176, 213), (196, 156, 148),
)  # fmt: skip
_MODEL_COLOUR = (214, 39, 40)


def _nice_ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    """Round tick values (1, 2, 5 × 10^k steps) covering ``[lo, hi]``."""
    if not hi > lo:
        hi = lo + 1.0
    raw = (hi - lo) / target
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    n = int(math.floor((hi - first) / step + 1e-9)) + 1
    return [round(first + i * step, 10) for i in range(max(n, 0))]


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def plot_rd(
    curves: Sequence[metrics.RDCurve],
    path: str | os.PathLike,
    title: str = "",
    overwrite: bool = True,
) -> pathlib.Path:
    """Draws PSNR-vs-bpp and MS-SSIM(dB)-vs-bpp panels with every curve and writes a PNG.

    The first curve is the model (drawn thick, red). The x axis runs from 0 to the larger of
    1.3 × the model's highest rate and 2 bpp (or the highest rate of any curve, if lower); other
    curves are clipped to it, so the plot stays readable when anchors extend to 4 bpp.

    Args:
        curves: RD curves (:class:`swinjax.metrics.RDCurve`).
        path: the PNG to write (atomically).
        title: a line above the panels.
        overwrite: replace an existing file.

    Returns:
        The path written.
    """
    from PIL import Image, ImageDraw

    width, height, legend_w = 1500, 640, 380
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font, small = _font(16), _font(13)
    draw.text((20, 10), title or "rate-distortion", fill="black", font=font)
    finite = [v for c in curves[:1] for v in c.bpp if math.isfinite(v)]
    all_bpp = [v for c in curves for v in c.bpp if math.isfinite(v)] or [1.0]
    x_hi = max(max(finite, default=0.0) * 1.3, min(max(all_bpp), 2.0))
    x_lo = 0.0
    panel_w = (width - legend_w - 60) // 2
    colours = {c.name: (_MODEL_COLOUR if i == 0 else _PALETTE[(i - 1) % len(_PALETTE)])
               for i, c in enumerate(curves)}  # fmt: skip
    for p, (label, attr) in enumerate(
        (("PSNR-RGB [dB]", "psnr"), ("MS-SSIM-RGB [dB]", "ms_ssim_db"))
    ):
        left, top = 80 + p * (panel_w + 40), 50
        pw, ph = panel_w - 60, height - top - 60
        ys = [
            y
            for c in curves
            for x, y in zip(c.bpp, getattr(c, attr) or [], strict=False)
            if math.isfinite(x) and math.isfinite(y) and x <= x_hi
        ]
        y_lo, y_hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
        pad = (y_hi - y_lo) * 0.05 or 1.0
        y_lo, y_hi = y_lo - pad, y_hi + pad
        panel = Image.new("RGB", (pw, ph), "white")
        pd = ImageDraw.Draw(panel)

        def to_px(
            x: float, y: float, y_lo: float = y_lo, y_hi: float = y_hi, pw: int = pw, ph: int = ph
        ) -> tuple[float, float]:
            return ((x - x_lo) / (x_hi - x_lo) * (pw - 1), (y_hi - y) / (y_hi - y_lo) * (ph - 1))

        for t in _nice_ticks(x_lo, x_hi):
            px = to_px(t, y_lo)[0]
            pd.line([(px, 0), (px, ph)], fill=(232, 232, 232))
            draw.text((left + px - 12, top + ph + 6), f"{t:g}", fill="black", font=small)
        for t in _nice_ticks(y_lo, y_hi):
            py = to_px(x_lo, t)[1]
            pd.line([(0, py), (pw, py)], fill=(232, 232, 232))
            draw.text((left - 45, top + py - 8), f"{t:g}", fill="black", font=small)
        for i, c in reversed(list(enumerate(curves))):
            vals = getattr(c, attr)
            if vals is None:
                continue
            pts = sorted(
                (x, y)
                for x, y in zip(c.bpp, vals, strict=False)
                if math.isfinite(x) and math.isfinite(y)
            )
            xy = [to_px(x, y) for x, y in pts]
            lw, r = (3, 4) if i == 0 else (2, 3)
            if len(xy) > 1:
                pd.line(xy, fill=colours[c.name], width=lw, joint="curve")
            for x, y in xy:
                pd.ellipse([x - r, y - r, x + r, y + r], fill=colours[c.name])
        img.paste(panel, (left, top))
        draw.rectangle([left, top, left + pw, top + ph], outline="black")
        draw.text((left + pw // 2 - 20, top + ph + 24), "bpp", fill="black", font=font)
        draw.text((left, top - 22), label, fill="black", font=font)
    lx, ly = width - legend_w + 10, 50
    for c in curves:
        draw.line([(lx, ly + 8), (lx + 30, ly + 8)], fill=colours[c.name], width=3)
        draw.text((lx + 38, ly), c.name[:48], fill="black", font=small)
        ly += 20
        if ly > height - 30:
            draw.text((lx + 38, ly), "...", fill="black", font=small)
            break
    dest = pathlib.Path(path)
    if dest.exists() and not overwrite:
        raise EvaluationError(f"{dest} exists; not overwritten")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            img.save(f, format="PNG")
        os.replace(tmp, dest)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return dest
