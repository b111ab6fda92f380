"""Image-quality metrics, Bjøntegaard deltas and CompressAI-format result files.

Conventions -- the ones CompressAI's ``eval_model`` uses, so numbers are
comparable with the published curves in ``../shared/anchors``:

* Metrics are computed on **8-bit** images (the reconstruction rounded to integers, cropped to
  the original size), RGB, per image; a data set's number is the mean of the per-image numbers.
* **PSNR** (dB) = ``10 log10(255² / MSE)`` with the MSE over all pixels and the three channels.
* **MS-SSIM** follows Wang, Simoncelli & Bovik, "Multiscale structural similarity for image
  quality assessment" (Asilomar 2003) with the conventions of ``pytorch_msssim`` (the
  implementation CompressAI calls): 11-tap Gaussian window with σ = 1.5 applied separably and
  without padding ("valid"), K1 = 0.01, K2 = 0.03, data range 255 on 8-bit values (CompressAI
  passes [0, 1] images with data range 1: SSIM is invariant to that joint scaling), 5 scales with
  the paper's weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), contrast-structure terms clamped
  at 0 (ReLU) before the weighted product, 2×2 average pooling between scales (a side of odd
  length is zero-padded by one on both ends and the zeros are counted in the average, as
  ``torch.nn.functional.avg_pool2d`` does by default), the index computed per channel and then
  averaged over R, G, B. Five scales of an 11-tap valid window need a smaller side of at least
  161 pixels (:data:`MS_SSIM_MIN_SIDE`); smaller images have no MS-SSIM (``ValueError`` here,
  ``null`` in result files) rather than a number computed on a different definition.
* **MS-SSIM in dB** is ``-10 log10(1 - MS-SSIM)`` (the usual way to plot it; CompressAI's
  ``ms-ssim-db``).

**BD-rate** (Bjøntegaard, VCEG-M33, 2001): the average rate difference between two RD curves at
equal quality. Following the current JVET/VCEG practice (JVET-K0491's "piecewise cubic"
interpolation, also used by the ``bjontegaard`` package and by ``anchors/derived``), the log of
the rate is interpolated as a function of the quality with a monotone piecewise cubic Hermite
interpolant (PCHIP, Fritsch & Carlson 1980), both interpolants are integrated exactly over the
*overlapping* quality interval only, and the mean log-rate difference ``Δ`` is reported as
``(exp(Δ) - 1) · 100 %``. The original cubic-polynomial fit of VCEG-M33 is available as
``method="cubic"``. Negative BD-rate = the test curve needs fewer bits.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from swinjax.atomic import write_atomic

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_WINDOW = 11
MS_SSIM_SIGMA = 1.5
MS_SSIM_K = (0.01, 0.03)
# pytorch_msssim requires smaller_side > (win - 1) * 2**4 = 160 for five scales.
MS_SSIM_MIN_SIDE = (MS_SSIM_WINDOW - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1


def psnr(reference: np.ndarray, reconstruction: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR in dB between two RGB images ``[H, W, 3]`` (8-bit values: ``data_range=255``).

    Integer images are compared exactly (integer squared errors summed in int64, in row blocks,
    so a 4096 x 4096 image needs no float64 copies). Returns ``inf`` for identical images (a
    lossless point has no finite PSNR).
    """
    a, b = np.asarray(reference), np.asarray(reconstruction)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim != 3 or a.shape[-1] != 3 or 0 in a.shape:
        raise ValueError(f"expected RGB images [H, W, 3], got shape {a.shape}")
    exact = np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer)
    total = 0 if exact else 0.0
    for r in range(0, a.shape[0], 256):
        if exact:
            d = a[r : r + 256].astype(np.int64) - b[r : r + 256].astype(np.int64)
        else:
            d = a[r : r + 256].astype(np.float64) - b[r : r + 256].astype(np.float64)
        total += (d * d).sum()
    mse = float(total) / a.size
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def gaussian_window(size: int = MS_SSIM_WINDOW, sigma: float = MS_SSIM_SIGMA) -> np.ndarray:
    """The normalised 1-D Gaussian taps of SSIM (``pytorch_msssim._fspecial_gauss_1d``)."""
    coords = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(coords**2) / (2.0 * sigma**2))
    return g / g.sum()


def _blur_valid(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable Gaussian filtering of ``[H, W, C]`` keeping only fully covered positions."""
    r = len(taps) // 2
    out = ndimage.correlate1d(x, taps, axis=0, mode="constant")[r : x.shape[0] - r]
    return ndimage.correlate1d(out, taps, axis=1, mode="constant")[:, r : x.shape[1] - r]


def _avg_pool2(x: np.ndarray) -> np.ndarray:
    """2×2 mean with stride 2; odd sides zero-padded by 1 on both ends, zeros counted."""
    ph, pw = x.shape[0] % 2, x.shape[1] % 2
    if ph or pw:
        x = np.pad(x, ((ph, ph), (pw, pw), (0, 0)))
    h, w = x.shape[0] // 2, x.shape[1] // 2
    x = x[: 2 * h, : 2 * w]
    return x.reshape(h, 2, w, 2, -1).mean(axis=(1, 3))


class MsSsimReference:
    """MS-SSIM against one fixed reference image, reusing the reference's filtered statistics.

    Evaluation compares each original with many reconstructions (every λ, every codec quality);
    the reference's pyramid, local means and local second moments are computed once here, which
    removes 2 of the 5 Gaussian filterings per scale from every later comparison.

    Args:
        reference: the original RGB image ``[H, W, 3]`` (8-bit values).
        data_range: 255 for 8-bit values.

    Raises:
        ValueError: not RGB, or the smaller side is below :data:`MS_SSIM_MIN_SIDE` (161) pixels.
    """

    def __init__(self, reference: np.ndarray, data_range: float = 255.0) -> None:
        """Builds the reference pyramid and its per-scale statistics."""
        a = np.asarray(reference)
        if a.ndim != 3 or a.shape[-1] != 3 or 0 in a.shape:
            raise ValueError(f"expected an RGB image [H, W, 3], got shape {a.shape}")
        if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
            raise ValueError(
                f"MS-SSIM (5 scales, 11-tap window) needs a smaller side of at least "
                f"{MS_SSIM_MIN_SIDE} pixels, got {a.shape[0]}x{a.shape[1]}"
            )
        self.shape = a.shape
        self.taps = gaussian_window()
        self.c1 = (MS_SSIM_K[0] * data_range) ** 2
        self.c2 = (MS_SSIM_K[1] * data_range) ** 2
        self.levels = []  # per scale: (image, local mean, local variance)
        x = a.astype(np.float64)
        for level in range(len(MS_SSIM_WEIGHTS)):
            mu = _blur_valid(x, self.taps)
            self.levels.append((x, mu, _blur_valid(x * x, self.taps) - mu**2))
            if level < len(MS_SSIM_WEIGHTS) - 1:
                x = _avg_pool2(x)

    def __call__(self, reconstruction: np.ndarray) -> float:
        """MS-SSIM of ``reconstruction`` (same shape as the reference)."""
        b = np.asarray(reconstruction)
        if b.shape != self.shape:
            raise ValueError(f"images differ in shape: {self.shape} vs {b.shape}")
        y = b.astype(np.float64)
        factors = []
        last = len(self.levels) - 1
        for level, (x, mu_a, var_a) in enumerate(self.levels):
            mu_b = _blur_valid(y, self.taps)
            var_b = _blur_valid(y * y, self.taps) - mu_b**2
            cov = _blur_valid(x * y, self.taps) - mu_a * mu_b
            cs = (2.0 * cov + self.c2) / (var_a + var_b + self.c2)
            if level < last:
                factors.append(np.maximum(cs.mean(axis=(0, 1)), 0.0))
                y = _avg_pool2(y)
            else:
                lum = (2.0 * mu_a * mu_b + self.c1) / (mu_a**2 + mu_b**2 + self.c1)
                factors.append(np.maximum((lum * cs).mean(axis=(0, 1)), 0.0))
        w = np.asarray(MS_SSIM_WEIGHTS)[:, None]
        per_channel = np.prod(np.stack(factors) ** w, axis=0)  # [C]
        return float(per_channel.mean())


def ms_ssim(reference: np.ndarray, reconstruction: np.ndarray, data_range: float = 255.0) -> float:
    """5-scale MS-SSIM of two RGB images ``[H, W, 3]`` (conventions in the module docstring).

    Computed in float64 with numpy/scipy on the host (no device, nothing to compile). To compare
    one original with many reconstructions, build a :class:`MsSsimReference` once instead.

    Raises:
        ValueError: shapes differ, not RGB, or the smaller side is below
            :data:`MS_SSIM_MIN_SIDE` (161) pixels.
    """
    a, b = np.asarray(reference), np.asarray(reconstruction)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return MsSsimReference(a, data_range)(b)


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, ``-10 log10(1 - value)`` (``inf`` for 1)."""
    if value >= 1.0:
        return math.inf
    return -10.0 * math.log10(1.0 - value)


# -- Bjøntegaard delta -------------------------------------------------------------------------


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch-Carlson derivatives of the monotone cubic Hermite interpolant (as scipy's)."""
    h = np.diff(x)
    delta = np.diff(y) / h
    n = len(x)
    d = np.zeros(n)
    if n == 2:
        d[:] = delta[0]
        return d
    for k in range(1, n - 1):
        s0, s1 = delta[k - 1], delta[k]
        if s0 * s1 > 0:
            w1 = 2 * h[k] + h[k - 1]
            w2 = h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / s0 + w2 / s1)
    d[0] = _pchip_end(h[0], h[1], delta[0], delta[1])
    d[-1] = _pchip_end(h[-1], h[-2], delta[-1], delta[-2])
    return d


def _pchip_end(h0: float, h1: float, m0: float, m1: float) -> float:
    """One-sided three-point end slope, shape-preserving (Moler, "Numerical Computing", §3.4)."""
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > abs(3 * m0):
        return 3 * m0
    return float(d)


def _hermite_integral(x: np.ndarray, y: np.ndarray, d: np.ndarray, lo: float, hi: float) -> float:
    """Exact integral over ``[lo, hi]`` of the cubic Hermite spline through ``(x, y, d)``."""
    total = 0.0
    for k in range(len(x) - 1):
        a, b = max(lo, x[k]), min(hi, x[k + 1])
        if b <= a:
            continue
        h = x[k + 1] - x[k]
        delta = (y[k + 1] - y[k]) / h
        c2 = (3 * delta - 2 * d[k] - d[k + 1]) / h
        c3 = (d[k] + d[k + 1] - 2 * delta) / h**2

        def prim(t: float, k: int = k, c2: float = c2, c3: float = c3) -> float:
            return y[k] * t + d[k] * t**2 / 2 + c2 * t**3 / 3 + c3 * t**4 / 4

        total += prim(b - x[k]) - prim(a - x[k])
    return total


def _curve(rate: Sequence[float], dist: Sequence[float], what: str) -> tuple[np.ndarray, ...]:
    r = np.asarray(rate, dtype=np.float64)
    q = np.asarray(dist, dtype=np.float64)
    if r.shape != q.shape or r.ndim != 1:
        raise ValueError(f"{what}: rate and quality lists differ in length")
    keep = np.isfinite(r) & np.isfinite(q) & (r > 0)
    r, q = r[keep], q[keep]
    if len(r) < 2:
        raise ValueError(f"{what}: needs at least 2 points with finite quality and rate > 0")
    order = np.argsort(q)
    r, q = r[order], q[order]
    if np.any(np.diff(q) <= 0):
        raise ValueError(f"{what}: two points have the same quality; BD needs distinct values")
    return q, np.log(r)


def bd_rate(
    rate_anchor: Sequence[float],
    quality_anchor: Sequence[float],
    rate_test: Sequence[float],
    quality_test: Sequence[float],
    method: str = "pchip",
) -> float:
    """Bjøntegaard delta rate (%) of the test curve against the anchor (module docstring).

    Args:
        rate_anchor: rates (bpp) of the anchor curve; any order.
        quality_anchor: its qualities (PSNR dB, MS-SSIM dB, ...), higher = better.
        rate_test: rates of the curve being compared.
        quality_test: its qualities.
        method: ``"pchip"`` (default; piecewise cubic Hermite on log-rate) or ``"cubic"``
            (VCEG-M33: least-squares cubic polynomial, needs 4 points per curve).

    Returns:
        The mean rate difference at equal quality, in percent (``-10.0``: the test curve needs
        10 % fewer bits).

    Raises:
        ValueError: fewer than 2 usable points, repeated quality values, or curves whose quality
            ranges do not overlap.
    """
    qa, la = _curve(rate_anchor, quality_anchor, "anchor curve")
    qt, lt = _curve(rate_test, quality_test, "test curve")
    lo, hi = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if hi <= lo:
        raise ValueError(
            f"quality ranges do not overlap (anchor {qa[0]:.4g}..{qa[-1]:.4g}, "
            f"test {qt[0]:.4g}..{qt[-1]:.4g})"
        )
    if method == "pchip":
        ia = _hermite_integral(qa, la, _pchip_slopes(qa, la), lo, hi)
        it = _hermite_integral(qt, lt, _pchip_slopes(qt, lt), lo, hi)
    elif method == "cubic":
        if len(qa) < 4 or len(qt) < 4:
            raise ValueError("method='cubic' needs at least 4 points per curve")
        pa, pt = np.polyint(np.polyfit(qa, la, 3)), np.polyint(np.polyfit(qt, lt, 3))
        ia = np.polyval(pa, hi) - np.polyval(pa, lo)
        it = np.polyval(pt, hi) - np.polyval(pt, lo)
    else:
        raise ValueError(f"unknown BD interpolation method {method!r} (pchip or cubic)")
    return float((math.exp((it - ia) / (hi - lo)) - 1.0) * 100.0)


def bd_overlap(quality_anchor: Sequence[float], quality_test: Sequence[float]) -> float:
    """Fraction of the test curve's quality range inside the anchor's range (0..1).

    A BD-rate over a small overlap says little about the curves; reports flag values below 0.5.
    """
    qa = np.asarray([v for v in quality_anchor if np.isfinite(v)], dtype=np.float64)
    qt = np.asarray([v for v in quality_test if np.isfinite(v)], dtype=np.float64)
    if len(qa) < 2 or len(qt) < 2 or qt.max() == qt.min():
        return 0.0
    lo, hi = max(qa.min(), qt.min()), min(qa.max(), qt.max())
    return float(max(hi - lo, 0.0) / (qt.max() - qt.min()))


# -- result files ------------------------------------------------------------------------------


def _json_safe(value: Any) -> Any:
    """NaN and infinities become ``null`` (JSON has neither); numpy scalars become Python."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: str | os.PathLike, obj: Any) -> pathlib.Path:
    """Writes ``obj`` as indented JSON with :func:`swinjax.atomic.write_atomic`.

    Non-finite floats are written as ``null`` so the file is strict JSON that any reader
    (including CompressAI's plotting script) accepts.
    """
    text = json.dumps(_json_safe(obj), indent=2, allow_nan=False) + "\n"
    return write_atomic(path, text.encode())


def compressai_json(
    name: str,
    description: str,
    results: Mapping[str, Sequence[Any]],
    **extra: Any,
) -> dict[str, Any]:
    """A result object in CompressAI's schema: ``{"name", "description", "results": {...}}``.

    ``results`` maps metric names (``bpp``, ``psnr-rgb``, ``ms-ssim-rgb``, ``encoding_time``,
    ``decoding_time``, ...) to lists with one value per rate point; all lists must have the same
    length. ``extra`` keys are added at the top level (CompressAI's readers ignore them).
    """
    lengths = {k: len(v) for k, v in results.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"result lists differ in length: {lengths}")
    out: dict[str, Any] = {"name": name, "description": description}
    out.update(extra)
    out["results"] = {k: list(v) for k, v in results.items()}
    return out


@dataclass
class RDCurve:
    """One rate-distortion curve (mean over a data set), as read from a results file."""

    name: str
    bpp: list[float]
    psnr: list[float] | None = None
    ms_ssim_db: list[float] | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # Lower-is-better metrics by results key (PERCEPTUAL_RESULT_KEYS: "lpips-alex", ...).
    perceptual: dict[str, list[float]] = field(default_factory=dict)


#: Results keys of the perceptual metrics that :func:`curve_from_results` reads (lower = better).
PERCEPTUAL_RESULT_KEYS = ("lpips-alex", "lpips-vgg", "dists")


def _floats(values: Sequence[Any]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def curve_from_results(name: str, results: Mapping[str, Any], source: str = "") -> RDCurve:
    """An :class:`RDCurve` from a ``results``-style mapping of metric lists.

    Recognised keys: ``bpp``; ``psnr-rgb`` or ``psnr``; ``ms-ssim-db-rgb``, ``ms-ssim-rgb`` or
    ``ms-ssim``; the lower-is-better ``lpips-alex``, ``lpips-vgg`` and ``dists``. An MS-SSIM list
    whose values exceed 1 is taken to be in dB already (the STF and WACNN files store dB under
    ``ms-ssim``).
    """
    if "bpp" not in results:
        raise ValueError(f"{source or name}: no 'bpp' list")
    bpp = _floats(results["bpp"])
    psnr_key = next((k for k in ("psnr-rgb", "psnr") if k in results), None)
    curve = RDCurve(name, bpp, source=source)
    if psnr_key:
        curve.psnr = _floats(results[psnr_key])
    if "ms-ssim-db-rgb" in results:
        curve.ms_ssim_db = _floats(results["ms-ssim-db-rgb"])
    else:
        key = next((k for k in ("ms-ssim-rgb", "ms-ssim") if k in results), None)
        if key:
            vals = _floats(results[key])
            finite = [v for v in vals if math.isfinite(v)]
            in_db = bool(finite) and max(finite) > 1.0
            curve.ms_ssim_db = vals if in_db else [ms_ssim_db(v) for v in vals]
    for key in PERCEPTUAL_RESULT_KEYS:
        if key in results and results[key] is not None:
            values = _floats(results[key])
            if any(math.isfinite(v) for v in values):
                curve.perceptual[key] = values
    checks = [("psnr", curve.psnr), ("ms-ssim", curve.ms_ssim_db), *curve.perceptual.items()]
    for what, values in checks:
        if values is not None and len(values) != len(bpp):
            raise ValueError(f"{source or name}: 'bpp' and {what} lists differ in length")
    if curve.psnr is None and curve.ms_ssim_db is None:
        raise ValueError(f"{source or name}: neither a PSNR nor an MS-SSIM list")
    return curve


def read_curve(path: str | os.PathLike) -> RDCurve:
    """Reads a published or measured RD curve.

    Formats: CompressAI JSON (``{"name", "results": {"bpp", "psnr-rgb", ...}}``), flat JSON with
    the lists at the top level (STF, MLIC, lossy-vae files), and tensorflow/compression's
    two-column text files (the metric is read from the header: "PSNR" or "MS-SSIM").

    Raises:
        ValueError: unreadable file or no usable curve in it (message names the file).
    """
    p = pathlib.Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ValueError(f"{p}: cannot read ({e.strerror or e})") from None
    if p.suffix == ".txt":
        return _read_tfc_txt(p, text)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{p}: expected a JSON object")
    name = str(obj.get("name") or p.stem)
    results = obj.get("results") if isinstance(obj.get("results"), dict) else obj
    return curve_from_results(name, results, source=str(p))


def _read_tfc_txt(p: pathlib.Path, text: str) -> RDCurve:
    header = " ".join(line for line in text.splitlines() if line.startswith("#"))
    rows = [line.split() for line in text.splitlines() if line.strip() and line[0] != "#"]
    try:
        data = np.asarray(rows, dtype=np.float64)
    except ValueError:
        raise ValueError(f"{p}: expected two numeric columns (bpp, metric)") from None
    if data.ndim != 2 or data.shape[1] < 2:
        raise ValueError(f"{p}: expected two numeric columns (bpp, metric)")
    name = header.split('"')[1] if header.count('"') >= 2 else p.stem
    bpp, metric = data[:, 0].tolist(), data[:, 1].tolist()
    if "MS-SSIM" in header:
        return curve_from_results(name, {"bpp": bpp, "ms-ssim": metric}, source=str(p))
    return curve_from_results(name, {"bpp": bpp, "psnr": metric}, source=str(p))
