"""Classical codecs measured beside the model: JPEG, WebP, AVIF, JPEG 2000 (Pillow), JPEG XL.

Each is swept over its quality setting with the settings and options of the measured curves in
``../shared/anchors/kodak/measured`` (the same Pillow/libjpeg-turbo/libwebp/libavif versions give
identical bytes), so the evaluation's curves and the stored ones can be compared directly.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from swinjax.evaluation.common import EvaluationError


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


def _pillow_codecs() -> list[tuple[str, str, str, ClassicalCodec]]:
    """``(key, Pillow feature, why missing, codec)`` of the codecs Pillow provides."""
    q5 = tuple(range(5, 100, 5))
    j2k_ratios = (12, 16, 20, 24, 30, 40, 48, 60, 80, 120, 160, 240)
    return [
        ("jpeg", "jpg", "this Pillow has no JPEG encoder", ClassicalCodec(
            "jpeg420", "quality", q5, "jpg",
            _pillow_version("jpg") + "; quality q, 4:2:0, baseline (= CompressAI's JPEG)",
            _jpeg, _pil_decode,
        )),
        ("webp", "webp", "this Pillow has no WebP support", ClassicalCodec(
            "webp", "quality", q5, "webp",
            _pillow_version("webp") + "; lossy, quality q, method 4",
            _webp, _pil_decode,
        )),
        ("avif", "avif", "this Pillow has no AVIF encoder with aom", ClassicalCodec(
            "avif444", "quality", tuple(range(10, 90, 10)), "avif",
            _pillow_version("avif") + "; aom, quality q, 4:4:4, speed 4, tune psnr, 1 thread",
            _avif, _pil_decode,
        )),
        ("jpeg2000", "jpg_2000", "this Pillow has no OpenJPEG", ClassicalCodec(
            "jpeg2000", "ratio", j2k_ratios, "j2k",
            _pillow_version("jpg_2000")
            + "; 9/7 wavelet + ICT, rate ratio r (target 24/r bpp), 6 resolutions, 1 layer",
            _jpeg2000, _pil_decode,
        )),
    ]  # fmt: skip


def classical_codecs() -> tuple[dict[str, ClassicalCodec], dict[str, str]]:
    """The classical codecs usable here, and the reasons the others are not.

    Keys are the names accepted by ``--codecs``: ``jpeg`` (4:2:0), ``webp``, ``avif`` (4:4:4),
    ``jpeg2000`` (Pillow/OpenJPEG), ``jxl`` (imagecodecs, optional).
    """
    from PIL import features

    ok: dict[str, ClassicalCodec] = {}
    missing: dict[str, str] = {}
    for key, feature, why, codec in _pillow_codecs():
        usable = features.check(feature) and (key != "avif" or _avif_has_aom())
        if usable:
            ok[key] = codec
        else:
            missing[key] = why
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
