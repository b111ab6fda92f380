"""Image files in and out: one robust loader and one atomic PNG writer for the whole project.

Training, evaluation and the CLI all read images through :func:`load_image`, so every entry point
treats odd files the same way and a user mistake (missing path, empty file, not an image, a
decompression bomb) becomes a one-line :class:`ImageError` instead of a traceback.

Pixel conventions: images are 8-bit RGB ``uint8 [H, W, 3]`` on disk and at the
edges of the program, float32 RGB in ``[0, 1]`` inside the model (:func:`to_float`), and metrics
are computed on the 8-bit rounded reconstruction (:func:`to_uint8`).
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
from PIL import Image, ImageOps

from swinjax.atomic import write_atomic
from swinjax.coding import container

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageError",
    "has_alpha",
    "image_size",
    "load_image",
    "save_png",
    "to_float",
    "to_uint8",
]

# One size limit for reading images and decoding files (swinjax.coding.container owns it): 10^8
# pixels (400 MB as float32 RGB), far above any image the codec is meant for (CLIC ~2048x1376,
# the 4096x4096 stress test), far below what a header alone could make a host allocate.
DEFAULT_MAX_PIXELS = container.DEFAULT_MAX_PIXELS

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_HIGH_DEPTH_GRAY = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


class ImageError(ValueError):
    """A file could not be used as an image; the message is one line naming the path and why.

    A ``ValueError`` subclass so callers that already treat bad arguments as user errors (CLI
    exit codes, the training data filter) handle it without knowing about this module.
    """


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _fail(path: os.PathLike | str, problem: str) -> ImageError:
    return ImageError(f"{os.fspath(path)}: {_one_line(problem)}")


def _scale16(values: np.ndarray) -> np.ndarray:
    """16-bit -> 8-bit with rounding: ``round(v * 255 / 65535) = round(v / 257)``.

    ``v / 257`` is never exactly halfway between integers (257 is odd), so the integer formula
    ``(2v + 257) // 514`` is the exact round-to-nearest without float error.
    """
    v = np.clip(values.astype(np.int64), 0, 65535)
    return ((2 * v + 257) // 514).astype(np.uint8)


def _png16_low_bytes(path: os.PathLike | str) -> Image.Image | None:
    """Re-decodes a 16-bit-per-channel PNG keeping the *low* byte of every sample.

    Pillow has no 16-bit RGB mode: it decodes 16-bit RGB(A) PNGs to 8 bits by keeping the high
    byte (truncation). Decoding the same stream again with the little-endian raw mode makes
    Pillow keep the other byte, so the two passes together give the exact 16-bit value, which is
    then rounded to 8 bits like every other 16-bit input. Returns ``None`` when the trick does not
    apply (the caller then keeps Pillow's truncated values: at most one level off).
    """
    try:
        with Image.open(path) as im:
            args = str(im.tile[0].args) if len(im.tile) == 1 else ""
            if im.format != "PNG" or not args.endswith(";16B"):
                return None
            im.tile = [im.tile[0]._replace(args=args[: -len("16B")] + "16L")]
            im.load()
            return im.copy()
    except Exception:  # noqa: BLE001 - an optional refinement; truncation is the fallback
        return None


def _to_rgb_array(im: Image.Image, path: os.PathLike | str, alpha: str) -> np.ndarray:
    """Converts a loaded, orientation-corrected image of any supported mode to uint8 RGB."""
    mode = im.mode
    if mode == "P" or mode == "PA":
        # A palette with a transparent index becomes RGBA (so the alpha policy applies to it).
        im = im.convert("RGBA" if ("transparency" in im.info or mode == "PA") else "RGB")
        mode = im.mode
    if mode in _HIGH_DEPTH_GRAY:
        gray = np.asarray(im)
        rgb = np.repeat(_scale16(gray)[..., None], 3, axis=-1)
        return np.ascontiguousarray(rgb)
    if mode == "F":
        raise _fail(path, "32-bit float images are not supported (their value range is unknown)")
    if mode in _ALPHA_MODES:
        rgba = np.asarray(im.convert("RGBA"))
        rgb = rgba[..., :3]
        if alpha == "white":
            a = rgba[..., 3:].astype(np.float32) / 255.0
            rgb = rgb.astype(np.float32) * a + 255.0 * (1.0 - a)
            return np.rint(rgb).astype(np.uint8)
        return np.ascontiguousarray(rgb)
    # 1, L, P, RGB, RGBX, CMYK, YCbCr, LAB, HSV: Pillow's conversion (exact except CMYK/LAB/HSV,
    # which are converted as well as Pillow can without colour management).
    try:
        return np.asarray(im.convert("RGB"))
    except Exception as err:  # noqa: BLE001 - any Pillow failure is reported as one line
        raise _fail(path, f"cannot convert image mode {mode!r} to RGB ({err})") from None


def _open_checked(path: pathlib.Path, max_pixels: int | None) -> Image.Image:
    """Opens ``path`` lazily (header only) after every check that needs no pixel decoding."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except OSError as err:
        raise _fail(path, f"cannot access ({err.strerror or err})") from None
    if path.is_dir():
        raise _fail(path, "is a directory, not an image file")
    if st.st_size == 0:
        raise _fail(path, "empty file (0 bytes)")
    try:
        im = Image.open(path)
    except Image.DecompressionBombError as err:
        raise _fail(path, f"refused as a possible decompression bomb: {err}") from None
    except Image.UnidentifiedImageError:
        if _header_says_zero_size(path):
            raise _fail(path, "zero-size image (width or height is 0)") from None
        raise _fail(path, "not a recognised image file (Pillow cannot identify it)") from None
    except PermissionError:
        raise _fail(path, "permission denied") from None
    except Exception as err:  # noqa: BLE001 - a corrupt header can raise almost anything
        raise _fail(path, f"unreadable image header ({type(err).__name__}: {err})") from None
    width, height = im.size
    problem = None
    if width <= 0 or height <= 0:
        problem = f"zero-size image ({width}x{height})"
    elif max_pixels is not None and width * height > max_pixels:
        problem = (
            f"image is {width}x{height} = {width * height} pixels, over the limit of "
            f"{max_pixels} (max_pixels; a decompression-bomb guard, raise it to accept this)"
        )
    if problem is not None:
        im.close()
        raise _fail(path, problem)
    return im


def _header_says_zero_size(path: pathlib.Path) -> bool:
    """Whether a PNG/GIF header declares a zero width or height (Pillow says "unidentified")."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError:
        return False
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) == 24:
        return int.from_bytes(head[16:20], "big") == 0 or int.from_bytes(head[20:24], "big") == 0
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return int.from_bytes(head[6:8], "little") == 0 or int.from_bytes(head[8:10], "little") == 0
    return False


def image_size(
    path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> tuple[int, int]:
    """``(height, width)`` of the image as :func:`load_image` would return it, from the header.

    Cheap (no pixel decoding), so data pipelines can drop unusable files when they are built
    instead of failing mid-run. EXIF orientations that rotate by 90 degrees swap the two sides.
    A file that passes may still fail to decode (truncated data); only :func:`load_image` tells.

    Args:
        path: the image file.
        max_pixels: as in :func:`load_image`.

    Returns:
        ``(height, width)`` in pixels.

    Raises:
        ImageError: the same header-level problems :func:`load_image` reports.
    """
    p = pathlib.Path(path)
    with _open_checked(p, max_pixels) as im:
        width, height = im.size
        try:
            orientation = im.getexif().get(0x0112, 1)
        except Exception:  # noqa: BLE001 - malformed EXIF is ignored by load_image too
            orientation = 1
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return height, width


def has_alpha(path: str | os.PathLike) -> bool:
    """Whether the image has transparency, which :func:`load_image` drops (the codec is RGB).

    Read from the header only; an unreadable file has none (loading it reports the problem).
    """
    try:
        with Image.open(path) as im:
            return im.mode in _ALPHA_MODES or "transparency" in im.info
    except Exception:  # noqa: BLE001 - any unreadable file: load_image says why
        return False


def load_image(
    path: str | os.PathLike,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    alpha: str = "drop",
) -> np.ndarray:
    """Reads an image file as 8-bit RGB, whatever its format, mode or orientation.

    Anything Pillow opens is accepted (PNG, JPEG, TIFF, WebP, BMP, GIF, ...). Multi-frame files
    (GIF, APNG, multi-page TIFF) give their first frame. Policies, chosen so that the codec is
    always fed the pixels a viewer would show and numbers stay comparable with CompressAI-style
    evaluation (which opens images with ``Image.open(f).convert("RGB")``):

    * **Orientation**: the EXIF orientation tag is applied (``ImageOps.exif_transpose``), so a
      phone photo is coded upright. A malformed EXIF block is ignored (pixels kept as stored).
    * **Grayscale** (``1``, ``L``, ``I;16``, ``I``) is replicated to three equal channels;
      **palette** (``P``) is expanded; **CMYK/YCbCr/LAB** go through Pillow's RGB conversion.
      ICC profiles are not applied: stored values are taken as sRGB.
    * **Alpha** (RGBA, LA, palette transparency) is **dropped** by default: the stored colour
      channels are kept unchanged and transparency is lost (what ``convert("RGB")`` does, so
      fully transparent pixels keep whatever colour the file stores). The codec codes three
      channels, so alpha cannot be carried; ``alpha="white"`` composites onto white instead,
      for users who want what a viewer shows on a white page.
    * **16-bit** samples are scaled to 8 bits with rounding, ``round(v * 255 / 65535)``
      (grayscale of any format, and RGB/RGBA PNG; for other 16-bit RGB formats Pillow keeps the
      high byte, at most one level below the rounded value).

    Args:
        path: the image file.
        max_pixels: largest accepted ``width * height``, checked from the header before any
            pixel is decoded (a guard against decompression bombs: a tiny file that claims a
            gigapixel image). ``None`` disables this check; Pillow's own guard
            (``2 * PIL.Image.MAX_IMAGE_PIXELS``) still applies and must be raised separately for
            images beyond it.
        alpha: ``"drop"`` (default) or ``"white"``; see above.

    Returns:
        ``uint8`` array of shape ``[H, W, 3]`` (C-contiguous).

    Raises:
        ImageError: a one-line message naming the path and the problem: missing path, a
            directory, permission denied, empty file, not an image, truncated or corrupt data,
            zero-size image, or more pixels than ``max_pixels``.
    """
    if alpha not in ("drop", "white"):
        raise ValueError(f"alpha must be 'drop' or 'white', got {alpha!r}")
    p = pathlib.Path(path)
    im = _open_checked(p, max_pixels)
    with im:
        # Pillow decodes 16-bit PNG colour by truncation; spot it from the raw mode before loading.
        png16 = im.format == "PNG" and bool(im.tile) and str(im.tile[0].args).endswith(";16B")
        try:
            im.load()
        except Exception as err:  # noqa: BLE001 - truncated/corrupt data raises many types
            raise _fail(
                path, f"corrupt or truncated image data ({type(err).__name__}: {err})"
            ) from None
        low = _png16_low_bytes(p) if png16 and im.mode in ("RGB", "RGBA", "LA") else None
        try:
            oriented = ImageOps.exif_transpose(im)
            low = ImageOps.exif_transpose(low) if low is not None else None
        except Exception:  # noqa: BLE001 - malformed EXIF: keep the stored orientation
            oriented = im
            low = None
        if low is not None:
            hi = np.asarray(oriented).astype(np.int64)
            lo = np.asarray(low).astype(np.int64)
            oriented = Image.fromarray(_scale16(hi * 256 + lo))
        rgb = _to_rgb_array(oriented, path, alpha)
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise _fail(path, f"decoded to unexpected array {rgb.dtype}{list(rgb.shape)}")
    return np.ascontiguousarray(rgb)


def save_png(
    path: str | os.PathLike,
    image: np.ndarray,
    *,
    overwrite: bool = False,
    compress_level: int = 6,
) -> pathlib.Path:
    """Writes ``uint8 [H, W, 3]`` as an RGB PNG, atomically and without clobbering by default.

    Written by :func:`swinjax.atomic.write_atomic`, so a crash or a full disk never leaves a
    half-written image under the final name, and an existing file is only replaced when asked.

    Args:
        path: destination file; its directory must exist.
        image: ``uint8`` array ``[H, W, 3]`` (use :func:`to_uint8` for float images).
        overwrite: replace an existing file (the CLI's ``--force``).
        compress_level: zlib level 0-9 (lossless either way; 6 is Pillow's default).

    Returns:
        The destination path.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        FileNotFoundError: the destination directory does not exist.
        ValueError: ``image`` is not ``uint8 [H, W, 3]`` with ``H, W > 0``.
    """
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] != 3 or 0 in arr.shape:
        raise ValueError(
            f"save_png expects a uint8 [H, W, 3] array with H, W > 0, got {arr.dtype}"
            f"{list(arr.shape)} (convert float images with to_uint8)"
        )
    pil = Image.fromarray(np.ascontiguousarray(arr))
    return write_atomic(
        path,
        lambda f: pil.save(f, format="PNG", compress_level=compress_level),
        overwrite=overwrite,
    )


def to_float(image: np.ndarray) -> np.ndarray:
    """``uint8`` image -> float32 in ``[0, 1]`` (``x / 255``), the model's input convention.

    Args:
        image: ``uint8`` array of any shape (typically ``[H, W, 3]`` or ``[B, H, W, 3]``).

    Returns:
        float32 array of the same shape.

    Raises:
        TypeError: the input is not ``uint8`` (dividing e.g. 16-bit data by 255 would silently
            give values far above 1).
    """
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"to_float expects uint8 pixels, got {arr.dtype}")
    return arr.astype(np.float32) / np.float32(255.0)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Float image in ``[0, 1]`` -> ``uint8``: scale by 255, round half to even, clip.

    This is the 8-bit reconstruction on which metrics are computed (the same
    ``round(clip(x) * 255)`` as CompressAI and tfc). NaN maps to 0 so a diverged model gives a
    black image rather than undefined integer conversion.

    Args:
        x: float array of any shape (numpy, or anything ``np.asarray`` accepts).

    Returns:
        ``uint8`` array of the same shape.
    """
    arr = np.asarray(x, dtype=np.float32)
    arr = np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0)
    return np.rint(np.clip(arr, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
