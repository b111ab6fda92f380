"""Metrics: PSNR, MS-SSIM against an independent implementation and published values, BD-rate."""

import io
import json
import math
import pathlib

import numpy as np
import pytest
from PIL import Image

from swinjax import metrics

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
KODAK = SHARED / "datasets" / "kodak"
ANCHORS = SHARED / "anchors" / "kodak"


def _pair(h, w, seed=0, noise=12.0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(7 * xx + 2 * yy), np.cos(5 * yy), np.sin(11 * xx * yy)], -1)
    ref = np.clip(128 + 100 * base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    rec = np.clip(ref + rng.normal(0, noise, ref.shape), 0, 255).astype(np.uint8)
    return ref, rec


# -- an independent MS-SSIM, written from the paper's definition ------------------------------
# Full (non-separable) 11x11 Gaussian window applied by explicit windowed sums at every valid
# position, statistics as expectations under the window, downsampling by an explicit loop over
# 2x2 blocks with torch's avg_pool2d(padding=size%2, count_include_pad=True) semantics.


def _window():
    x = np.arange(11) - 5
    g = np.exp(-(x**2) / (2 * 1.5**2))
    w2 = np.outer(g, g)
    return w2 / w2.sum()


def _local_expectation(img, win):
    views = np.lib.stride_tricks.sliding_window_view(img, (11, 11))  # [H-10, W-10, 11, 11]
    return np.einsum("ijkl,kl->ij", views, win)


def _pool(img):
    h, w = img.shape
    ph, pw = h % 2, w % 2
    padded = np.zeros((h + 2 * ph, w + 2 * pw))
    padded[ph : ph + h, pw : pw + w] = img
    oh, ow = (h + 2 * ph - 2) // 2 + 1, (w + 2 * pw - 2) // 2 + 1
    out = np.empty((oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[i, j] = padded[2 * i : 2 * i + 2, 2 * j : 2 * j + 2].sum() / 4.0
    return out


def _reference_ms_ssim(a, b):
    weights = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    win = _window()
    per_channel = []
    for ch in range(3):
        x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)
        value = 1.0
        for level, wgt in enumerate(weights):
            ex, ey = _local_expectation(x, win), _local_expectation(y, win)
            vx = _local_expectation(x * x, win) - ex**2
            vy = _local_expectation(y * y, win) - ey**2
            cxy = _local_expectation(x * y, win) - ex * ey
            cs = np.mean((2 * cxy + c2) / (vx + vy + c2))
            if level == len(weights) - 1:
                ssim = np.mean(
                    (2 * ex * ey + c1) / (ex**2 + ey**2 + c1) * (2 * cxy + c2) / (vx + vy + c2)
                )
                value *= max(ssim, 0.0) ** wgt
            else:
                value *= max(cs, 0.0) ** wgt
                x, y = _pool(x), _pool(y)
        per_channel.append(value)
    return float(np.mean(per_channel))


@pytest.mark.parametrize("shape", [(161, 161), (203, 181)])
def test_ms_ssim_matches_an_independent_implementation(shape):
    # 203x181 has odd sides at several scales (exercises the zero-padded pooling).
    ref, rec = _pair(*shape)
    got = metrics.ms_ssim(ref, rec)
    want = _reference_ms_ssim(ref, rec)
    assert 0.5 < want < 0.999
    assert got == pytest.approx(want, abs=1e-5)
    # The cached-reference form is the same computation.
    assert metrics.MsSsimReference(ref)(rec) == pytest.approx(got, abs=1e-12)


def test_ms_ssim_matches_the_published_pytorch_msssim_value_on_kodak():
    # anchors/kodak/measured was computed with an MS-SSIM that agrees with pytorch_msssim to
    # 1e-6; the JPEG bytes are reproducible for the same libjpeg-turbo, which the file records.
    table = ANCHORS / "measured" / "jpeg420_per_image.json"
    if not table.is_file() or not (KODAK / "kodim01.png").is_file():
        pytest.skip("../shared anchors or Kodak not present")
    rows = json.loads(table.read_text())
    row = next(r for r in rows if r["image"] == "kodim01.png" and r["quality"] == 5)
    ref = np.asarray(Image.open(KODAK / "kodim01.png").convert("RGB"))
    buf = io.BytesIO()
    Image.fromarray(ref).save(buf, format="JPEG", quality=5, subsampling="4:2:0")
    if len(buf.getvalue()) != row["bytes"]:
        pytest.skip("this libjpeg produces other bytes than the measured anchor's")
    rec = np.asarray(Image.open(buf).convert("RGB"))
    assert metrics.ms_ssim(ref, rec) == pytest.approx(row["msssim"], abs=1e-6)
    assert metrics.psnr(ref, rec) == pytest.approx(row["psnr"], abs=1e-9)


def test_ms_ssim_identity_range_and_small_images():
    ref, rec = _pair(170, 180)
    assert metrics.ms_ssim(ref, ref) == pytest.approx(1.0, abs=1e-12)
    worse = metrics.ms_ssim(ref, _pair(170, 180, noise=40.0)[1])
    assert worse < metrics.ms_ssim(ref, rec) < 1.0
    with pytest.raises(ValueError, match="161"):
        metrics.ms_ssim(ref[:160], rec[:160])
    with pytest.raises(ValueError, match="shape"):
        metrics.ms_ssim(ref, rec[:-1])


def test_psnr_known_values():
    a = np.full((4, 5, 3), 100, np.uint8)
    b = a.copy()
    b[..., 0] += 3  # MSE = 9 / 3 = 3
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 3.0))
    assert metrics.psnr(a, a) == math.inf
    assert metrics.ms_ssim_db(0.99) == pytest.approx(20.0)


# -- BD-rate ------------------------------------------------------------------------------------

RATES = [0.12, 0.2, 0.35, 0.6, 0.95]
PSNRS = [27.1, 29.0, 31.2, 33.4, 35.3]


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_rate_of_identical_curves_is_zero(method):
    assert metrics.bd_rate(RATES, PSNRS, RATES, PSNRS, method=method) == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_rate_of_rates_scaled_by_0_9_is_minus_10_percent(method):
    scaled = [0.9 * r for r in RATES]
    assert metrics.bd_rate(RATES, PSNRS, scaled, PSNRS, method=method) == pytest.approx(-10.0)
    # Anchor and test swapped: 1/0.9 - 1 = +11.1 %.
    assert metrics.bd_rate(scaled, PSNRS, RATES, PSNRS, method=method) == pytest.approx(100 / 9)


def test_bd_rate_uses_only_the_overlapping_quality_range():
    # log-rate linear in quality (PCHIP reproduces it exactly); the test curve (x0.8 rates)
    # extends well beyond the anchor on both sides. Averaging over anything but the overlap
    # [29, 33] would not give exactly -20 %, since the two ranges' mean log-rates differ.
    def rate(q):
        return float(np.exp(-7.0 + 0.23 * q))

    anchor_q = [29.0, 30.0, 31.0, 32.0, 33.0]
    test_q = [25.0, 28.5, 30.5, 32.5, 38.0]
    got = metrics.bd_rate(
        [rate(q) for q in anchor_q], anchor_q, [0.8 * rate(q) for q in test_q], test_q
    )
    assert got == pytest.approx(-20.0, abs=1e-9)
    assert metrics.bd_overlap(anchor_q, test_q) == pytest.approx(4 / 13)
    with pytest.raises(ValueError, match="overlap"):
        metrics.bd_rate(RATES, PSNRS, RATES, [q + 20 for q in PSNRS])


def test_bd_rate_order_independent_and_validates_input():
    perm = [3, 0, 4, 1, 2]
    a = metrics.bd_rate(RATES, PSNRS, [r * 1.3 for r in RATES], [q - 0.4 for q in PSNRS])
    b = metrics.bd_rate(
        [RATES[i] for i in perm],
        [PSNRS[i] for i in perm],
        [RATES[i] * 1.3 for i in perm],
        [PSNRS[i] - 0.4 for i in perm],
    )
    assert a == pytest.approx(b) and a > 30
    with pytest.raises(ValueError, match="same quality"):
        metrics.bd_rate(RATES, PSNRS, [0.1, 0.2], [30.0, 30.0])
    with pytest.raises(ValueError, match="at least 2"):
        metrics.bd_rate(RATES, PSNRS, [0.1], [30.0])


def test_pchip_integral_matches_scipy():
    interpolate = pytest.importorskip("scipy.interpolate")
    rng = np.random.default_rng(3)
    for n in (2, 3, 4, 7):
        x = np.sort(rng.uniform(20, 40, n))
        y = np.cumsum(rng.normal(size=n))
        lo, hi = x[0] + 0.2 * (x[-1] - x[0]), x[-1] - 0.1 * (x[-1] - x[0])
        want = interpolate.PchipInterpolator(x, y).integrate(lo, hi)
        got = metrics._hermite_integral(x, y, metrics._pchip_slopes(x, y), lo, hi)
        assert got == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_bd_rate_reproduces_the_anchor_table():
    # anchors/kodak/measured/bd_rates.md (computed independently): JPEG 4:2:0 vs CompressAI's
    # VTM = +202.6 % (PCHIP); measured WebP vs CompressAI's published WebP = 0.0 %.
    files = [ANCHORS / "vtm.json", ANCHORS / "measured" / "jpeg420.json", ANCHORS / "webp.json"]
    if not all(f.is_file() for f in files):
        pytest.skip("../shared anchors not present")
    vtm, jpeg, webp = (metrics.read_curve(f) for f in files)
    assert metrics.bd_rate(vtm.bpp, vtm.psnr, jpeg.bpp, jpeg.psnr) == pytest.approx(202.6, abs=0.1)
    mwebp = metrics.read_curve(ANCHORS / "measured" / "webp.json")
    assert metrics.bd_rate(webp.bpp, webp.psnr, mwebp.bpp, mwebp.psnr) == pytest.approx(0, abs=0.1)


# -- result files -------------------------------------------------------------------------------


def test_json_writer_is_strict_json_and_checks_lengths(tmp_path):
    obj = metrics.compressai_json(
        "m", "d", {"bpp": [0.1, 0.2], "psnr-rgb": [30.0, math.inf], "ms-ssim-rgb": [np.nan, 0.9]}
    )
    path = metrics.write_json_atomic(tmp_path / "r.json", obj)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    back = json.loads(text)
    assert back["results"]["psnr-rgb"] == [30.0, None]
    assert back["results"]["ms-ssim-rgb"] == [None, 0.9]
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left
    with pytest.raises(ValueError, match="length"):
        metrics.compressai_json("m", "d", {"bpp": [0.1], "psnr-rgb": [1.0, 2.0]})


def test_read_curve_formats(tmp_path):
    (tmp_path / "cai.json").write_text(
        json.dumps({"name": "X", "results": {"bpp": [0.1, 0.2], "ms-ssim-rgb": [0.9, 0.99]}})
    )
    (tmp_path / "stf.json").write_text(json.dumps({"bpp": [0.1, 0.2], "ms-ssim": [13.8, 15.1]}))
    (tmp_path / "t.txt").write_text(
        '# data for "Y" on kodak.\n# The second column contains PSNR/sRGB values.\n'
        "0.1 28.0\n0.2 30.5\n"
    )
    cai = metrics.read_curve(tmp_path / "cai.json")
    assert cai.name == "X" and cai.psnr is None
    assert cai.ms_ssim_db == pytest.approx([10.0, 20.0])
    stf = metrics.read_curve(tmp_path / "stf.json")
    assert stf.name == "stf" and stf.ms_ssim_db == [13.8, 15.1]  # already dB: kept
    txt = metrics.read_curve(tmp_path / "t.txt")
    assert txt.name == "Y" and txt.psnr == [28.0, 30.5]
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json"):
        metrics.read_curve(tmp_path / "bad.json")
