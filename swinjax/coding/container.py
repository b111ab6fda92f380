"""The ``.swj`` file format: self-describing, length-prefixed, checksummed, validated first.

Why so strict
-------------
A compressed file is untrusted input: a truncated, corrupted,
foreign or hostile file must give a one-line error, never a hang, a crash or a huge allocation.
So :func:`unpack` checks the magic, the version, the announced size against the real size and
the CRC32 of the whole file before it believes any field, then bounds every field (image size by
``max_pixels``, stream count, string lengths, latent shapes consistent with the image size and
the stored downsampling factor) before returning anything a caller would allocate from. It only
ever slices the input; it allocates nothing whose size a header field controls.

Layout (version 2, all integers little-endian)
----------------------------------------------

=========  ==========  ===================================================================
size       type        field
=========  ==========  ===================================================================
4          bytes       magic ``b"SWJX"``
2          u16         format version (2)
4          u32         file size in bytes, this whole file including the final CRC
1 + m      u8 + UTF-8  model id: length ``m`` in ``[1, 64]``, printable ASCII (a registry id
                       string, never a registry position)
1 + h      u8 + bytes  config hash: length ``h`` in ``[0, 64]``
8          f64         lambda (finite and > 0; NaN for fixed-rate models: "not applicable")
4, 4       u32, u32    original height, width (>= 1)
2, 2       u16, u16    pad_h, pad_w: bottom/right padding, ``< downsampling``
2          u16         downsampling: x -> z factor, a power of two in ``[1, 1024]``; the padded
                       image is a multiple of it
12         3 x u32     y shape (h, w, c): ``(H + pad_h) / g`` etc. for one power-of-two stride
                       ``g`` dividing ``downsampling``
12         3 x u32     z shape (h, w, c): ``(H + pad_h) / downsampling`` etc.
4          u32         CRC32 of the quantized symbols (:func:`symbols_crc32`)
2          u16         stream count ``k`` in ``[1, 256]``
4 k        k x u32     stream lengths
var        varints     pinned scale indexes: a count ``n``, then ``n`` pairs (gap, index):
                       ``gap`` a varint (LEB128), the number of y elements skipped since the
                       previous pinned one, ``index`` a u8 (see below)
sum        bytes       the streams: z first, then the y groups / slices in coding order
4          u32         CRC32 of every byte before it
=========  ==========  ===================================================================

Pinned scale indexes: y elements are numbered in coding order (group 0's elements in the C order
of its mask, then group 1's, ...). For a pinned element the decoder codes with the stored table
row instead of the one it computes: the encoder pins every element whose scale lies so close to a
scale-table boundary that another machine's rounding could pick the neighbouring row
(:mod:`swinjax.compression`). Almost every file pins none (one byte).

Version 1 (no pinned list) is refused with a one-line error naming both versions.

Bounds: the *padded* image has at most ``max_pixels`` pixels (default 100 M; the decoder
allocates the padded size), each latent has at most 4096 channels, and y and z together have no
more elements than the padded image has values (``3 H W``): a compression model never expands
its input, so anything larger is hostile. ``pack`` enforces the same rules, so swinjax never
writes a file it would refuse to read.

Errors all subclass :class:`FormatError` (a ``ValueError``) and are one line: not a swinjax
file, unsupported version, truncated, corrupt (CRC or an impossible field), image larger than
``max_pixels``, made by another model, and the checksum of the decoded latents (checked by the
caller after decoding, with :func:`check_symbols_crc32`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import struct
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

MAGIC = b"SWJX"
FORMAT_VERSION = 2
DEFAULT_MAX_PIXELS = 100_000_000
MAX_MODEL_ID_BYTES = 64
MAX_CONFIG_HASH_BYTES = 64
MAX_STREAMS = 256
MAX_CHANNELS = 4096
MAX_DOWNSAMPLING = 1024
MAX_FILE_BYTES = 2**32 - 1  # the size field is a u32

_FIXED = struct.Struct("<4sHI")  # magic, version, file size
_BODY = struct.Struct("<dIIHHH3I3IIH")  # lambda .. stream count
_CRC = struct.Struct("<I")
# empty model id / hash, no stream lengths, an empty pinned list
_MIN_SIZE = _FIXED.size + 2 + _BODY.size + 1 + _CRC.size
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-/:")


class FormatError(ValueError):
    """A file swinjax cannot or must not decode; ``str(e)`` is one line."""


class NotASwinjaxFileError(FormatError):
    """Wrong magic bytes: some other kind of file."""


class UnsupportedVersionError(FormatError):
    """A format version this swinjax does not read."""


class TruncatedFileError(FormatError):
    """Fewer bytes than the header announces."""


class CorruptFileError(FormatError):
    """The file CRC fails, or a field is impossible or out of bounds."""


class ModelMismatchError(FormatError):
    """The file was made by another model than the checkpoint decoding it."""


class ImageTooLargeError(FormatError):
    """A well-formed file whose image exceeds the configured ``max_pixels``."""


class ChecksumMismatchError(FormatError):
    """The decoded latents differ from the encoder's (other weights, or an altered file)."""


@dataclasses.dataclass(frozen=True)
class Header:
    """Everything a decoder needs besides the streams and the model (layout: module docstring).

    Attributes:
        model_id: registry id of the model that wrote the file (e.g. ``"swincoder"``).
        config_hash: hash of the model config (bytes, at most 64).
        lmbda: rate-distortion weight used (NaN for fixed-rate models).
        height: original image height in pixels.
        width: original image width in pixels.
        pad_h: rows of padding added at the bottom.
        pad_w: columns of padding added at the right.
        y_shape: ``(h, w, c)`` of the latent y.
        z_shape: ``(h, w, c)`` of the hyper-latent z.
        downsampling: total x -> z factor; the padded image is a multiple of it.
        symbols_crc32: :func:`symbols_crc32` of the quantized symbols.
        pinned: ``(position, scale index)`` pairs, positions strictly increasing in y's coding
            order (layout: module docstring).
    """

    model_id: str
    config_hash: bytes
    lmbda: float
    height: int
    width: int
    pad_h: int
    pad_w: int
    y_shape: tuple[int, int, int]
    z_shape: tuple[int, int, int]
    downsampling: int
    symbols_crc32: int
    pinned: tuple[tuple[int, int], ...] = ()

    @property
    def padded_size(self) -> tuple[int, int]:
        """``(H + pad_h, W + pad_w)``: the size the model works at."""
        return self.height + self.pad_h, self.width + self.pad_w

    def validate(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> Header:
        """Checks every field (bounds and cross-field consistency); returns ``self``.

        Raises:
            ImageTooLargeError: the padded image exceeds ``max_pixels``.
            CorruptFileError: a field is out of bounds or inconsistent with the others.
        """
        _validate_header(self, max_pixels)
        return self

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view (``python -m swinjax info``)."""
        d = dataclasses.asdict(self)
        d["config_hash"] = self.config_hash.hex()
        d["y_shape"] = list(self.y_shape)
        d["z_shape"] = list(self.z_shape)
        d["lmbda"] = None if math.isnan(self.lmbda) else self.lmbda
        d["symbols_crc32"] = f"{self.symbols_crc32:08x}"
        d["pinned"] = len(self.pinned)
        d["format_version"] = FORMAT_VERSION
        return d


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_model_id(model_id: object) -> None:
    if not isinstance(model_id, str):
        raise CorruptFileError(f"model id must be a string, got {type(model_id).__name__}")
    raw = model_id.encode("utf-8", "replace")
    if not 1 <= len(raw) <= MAX_MODEL_ID_BYTES or not set(model_id) <= _ID_CHARS:
        raise CorruptFileError(
            f"invalid model id {model_id[:80]!r}: 1 to {MAX_MODEL_ID_BYTES} characters from "
            "[A-Za-z0-9._+-/:]"
        )


def _validate_header(h: Header, max_pixels: int) -> None:
    """All field checks; messages are one line and name the field."""
    if not _is_int(max_pixels) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive int, got {max_pixels!r}")
    _check_model_id(h.model_id)
    if not isinstance(h.config_hash, bytes) or len(h.config_hash) > MAX_CONFIG_HASH_BYTES:
        raise CorruptFileError(f"config hash must be at most {MAX_CONFIG_HASH_BYTES} bytes")
    if not isinstance(h.lmbda, (float, int, np.floating)) or isinstance(h.lmbda, bool):
        raise CorruptFileError(f"lambda must be a float, got {type(h.lmbda).__name__}")
    lm = float(h.lmbda)
    if not math.isnan(lm) and not (math.isfinite(lm) and lm > 0):
        raise CorruptFileError(
            f"lambda {lm!r} must be finite and > 0 (or NaN for fixed-rate models)"
        )
    ints = {
        "height": h.height,
        "width": h.width,
        "pad_h": h.pad_h,
        "pad_w": h.pad_w,
        "downsampling": h.downsampling,
        "symbols_crc32": h.symbols_crc32,
    }
    for name, v in ints.items():
        if not _is_int(v) or v < 0 or v > 2**32 - 1:
            raise CorruptFileError(f"{name} must be an int in [0, 2**32), got {v!r}")
    for name, shape in (("y_shape", h.y_shape), ("z_shape", h.z_shape)):
        if (
            not isinstance(shape, tuple)
            or len(shape) != 3
            or not all(_is_int(v) and 1 <= v <= 2**32 - 1 for v in shape)
        ):
            raise CorruptFileError(f"{name} must be three ints >= 1, got {shape!r}")
        if shape[2] > MAX_CHANNELS:
            raise CorruptFileError(f"{name} has {shape[2]} channels (at most {MAX_CHANNELS})")
    if h.height < 1 or h.width < 1:
        raise CorruptFileError(f"image size {h.height}x{h.width} is empty")
    if h.height * h.width > max_pixels:
        raise ImageTooLargeError(
            f"image size {h.height}x{h.width} exceeds the limit of {max_pixels} pixels "
            "(raise max_pixels to allow it)"
        )
    f = h.downsampling
    if not 1 <= f <= MAX_DOWNSAMPLING or f & (f - 1):
        raise CorruptFileError(f"downsampling {f} is not a power of two in [1, {MAX_DOWNSAMPLING}]")
    if h.pad_h >= f or h.pad_w >= f:
        raise CorruptFileError(f"padding {h.pad_h}x{h.pad_w} is not below the downsampling {f}")
    ph, pw = h.padded_size
    if ph % f or pw % f:
        raise CorruptFileError(f"padded size {ph}x{pw} is not a multiple of the downsampling {f}")
    if ph * pw > max_pixels:
        raise ImageTooLargeError(
            f"padded image size {ph}x{pw} exceeds the limit of {max_pixels} pixels "
            "(raise max_pixels to allow it)"
        )
    zh, zw, zc = h.z_shape
    if (zh, zw) != (ph // f, pw // f):
        raise CorruptFileError(
            f"z shape {h.z_shape} does not match a {ph}x{pw} padded image at downsampling {f}"
        )
    yh, yw, yc = h.y_shape
    g = ph // yh if yh and ph % yh == 0 else 0
    if not g or g & (g - 1) or f % g or (yh, yw) != (ph // g, pw // g):
        raise CorruptFileError(
            f"y shape {h.y_shape} does not match a {ph}x{pw} padded image at a power-of-two "
            f"stride dividing {f}"
        )
    if yh * yw * yc + zh * zw * zc > 3 * ph * pw:
        raise CorruptFileError(
            f"latents y {h.y_shape} and z {h.z_shape} hold more values than the {ph}x{pw} image"
        )
    _validate_pinned(h.pinned, yh * yw * yc)


def _validate_pinned(pinned: object, size: int) -> None:
    if not isinstance(pinned, tuple):
        raise CorruptFileError(f"pinned must be a tuple of pairs, got {type(pinned).__name__}")
    if len(pinned) > size:
        raise CorruptFileError(f"{len(pinned)} pinned scale indexes for {size} y elements")
    last = -1
    for item in pinned:
        if not isinstance(item, tuple) or len(item) != 2 or not all(_is_int(v) for v in item):
            raise CorruptFileError(f"pinned entry {item!r} is not a (position, index) pair")
        pos, index = item
        if not last < pos < size or not 0 <= index <= 255:
            raise CorruptFileError(
                f"pinned entry ({pos}, {index}): positions must increase and stay below {size}, "
                "indexes in [0, 255]"
            )
        last = pos


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        byte, v = v & 0x7F, v >> 7
        out.append(byte | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _pack_pinned(pinned: Sequence[tuple[int, int]]) -> bytes:
    parts, last = [_varint(len(pinned))], -1
    for pos, index in pinned:
        parts += [_varint(pos - last - 1), bytes([index])]
        last = pos
    return b"".join(parts)


def _serialize(header: Header, streams: Sequence[bytes]) -> bytes:
    """Writes the layout without validating (:func:`pack` validates; tests forge files here)."""
    model_id = header.model_id.encode("utf-8")
    lm = float(header.lmbda)
    body = _BODY.pack(
        float("nan") if math.isnan(lm) else lm,
        header.height,
        header.width,
        header.pad_h,
        header.pad_w,
        header.downsampling,
        *header.y_shape,
        *header.z_shape,
        header.symbols_crc32,
        len(streams),
    )
    parts = [
        bytes([len(model_id)]),
        model_id,
        bytes([len(header.config_hash)]),
        header.config_hash,
        body,
        struct.pack(f"<{len(streams)}I", *(len(s) for s in streams)),
        _pack_pinned(header.pinned),
        *(bytes(s) for s in streams),
    ]
    size = _FIXED.size + sum(len(p) for p in parts) + _CRC.size
    head = _FIXED.pack(MAGIC, FORMAT_VERSION, size % 2**32)
    payload = b"".join([head, *parts])
    return payload + _CRC.pack(zlib.crc32(payload))


def pack(header: Header, streams: Sequence[bytes], max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """Serializes a validated header and its streams (z first, then y groups / slices).

    Raises:
        FormatError: the header breaks a rule :func:`unpack` would enforce (an image over
            ``max_pixels`` raises :class:`ImageTooLargeError`).
        ValueError: no streams, more than 256, or a file over 4 GiB.
    """
    try:
        header.validate(max_pixels)
    except CorruptFileError as e:
        raise FormatError(f"cannot write this header: {e}") from None
    if not 1 <= len(streams) <= MAX_STREAMS:
        raise ValueError(f"need 1 to {MAX_STREAMS} streams, got {len(streams)}")
    if not all(isinstance(s, (bytes, bytearray, memoryview)) for s in streams):
        raise ValueError("streams must be bytes")
    data = _serialize(header, streams)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"file would be {len(data)} bytes (the format holds at most 4 GiB)")
    return data


class _Reader:
    """Bounds-checked cursor over the CRC-verified payload."""

    def __init__(self, data: memoryview, end: int) -> None:
        self.data, self.pos, self.end = data, _FIXED.size, end

    def take(self, n: int, what: str) -> memoryview:
        if n > self.end - self.pos:
            raise CorruptFileError(f"corrupt file: {what} runs past the end of the file")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def varint(self, what: str) -> int:
        """A LEB128 varint of at most 5 bytes (< 2**35)."""
        v = 0
        for shift in range(0, 35, 7):
            byte = self.take(1, what)[0]
            v |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return v
        raise CorruptFileError(f"corrupt file: {what} is longer than 5 bytes")


def unpack(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    expected_model_id: str | None = None,
) -> tuple[Header, list[bytes]]:
    """Parses and validates a swinjax file; returns the header and the streams.

    Order of checks: magic, version, announced size vs actual size, CRC32 of the file, then the
    fields (model id first, against ``expected_model_id`` if given) and stream lengths.

    Args:
        data: the whole file.
        max_pixels: bound on the padded image size the decoder will allocate.
        expected_model_id: the checkpoint's model id; a file from another model is refused.

    Raises:
        FormatError: one-line, specific (subclass names the kind of problem).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise FormatError(f"expected the bytes of a file, got {type(data).__name__}")
    view = memoryview(data).cast("B")
    n = len(view)
    if n == 0:
        raise NotASwinjaxFileError("not a swinjax file (the file is empty)")
    if bytes(view[: len(MAGIC)]) != MAGIC[: min(n, len(MAGIC))]:
        raise NotASwinjaxFileError("not a swinjax file (no SWJX magic bytes at the start)")
    if n < _FIXED.size:
        raise TruncatedFileError(
            f"truncated file: {n} bytes, the fixed header alone is {_FIXED.size}"
        )
    _, version, size = _FIXED.unpack_from(view)
    if version != FORMAT_VERSION:
        age = "an older" if version < FORMAT_VERSION else "a newer"
        raise UnsupportedVersionError(
            f"unsupported format version {version}, written by {age} swinjax (this swinjax "
            f"reads version {FORMAT_VERSION} only)"
        )
    if size > n:
        raise TruncatedFileError(
            f"truncated file: the header announces {size} bytes, {n} are present"
        )
    if size < n:
        raise CorruptFileError(
            f"corrupt file: {n - size} bytes after the announced end ({size} bytes)"
        )
    if size < _MIN_SIZE:
        raise CorruptFileError(f"corrupt file: {size} bytes is shorter than any valid header")
    (stored_crc,) = _CRC.unpack_from(view, size - _CRC.size)
    actual_crc = zlib.crc32(view[: size - _CRC.size])
    if actual_crc != stored_crc:
        raise CorruptFileError(
            f"corrupt file: checksum mismatch (file CRC32 {actual_crc:08x}, stored "
            f"{stored_crc:08x})"
        )

    r = _Reader(view, size - _CRC.size)
    raw_id = bytes(r.take(r.take(1, "model id length")[0], "model id"))
    try:
        model_id = raw_id.decode("ascii")
    except UnicodeDecodeError:
        raise CorruptFileError(f"corrupt file: model id {raw_id[:80]!r} is not ASCII") from None
    _check_model_id(model_id)
    if expected_model_id is not None and model_id != expected_model_id:
        raise ModelMismatchError(
            f"file was made by model {model_id!r} but the checkpoint is {expected_model_id!r}"
        )
    config_hash = bytes(r.take(r.take(1, "config hash length")[0], "config hash"))
    (lm, height, width, pad_h, pad_w, factor, yh, yw, yc, zh, zw, zc, sym_crc, count) = (
        _BODY.unpack(r.take(_BODY.size, "header"))
    )
    header = Header(
        model_id=model_id,
        config_hash=config_hash,
        lmbda=float("nan") if math.isnan(lm) else lm,
        height=height,
        width=width,
        pad_h=pad_h,
        pad_w=pad_w,
        y_shape=(yh, yw, yc),
        z_shape=(zh, zw, zc),
        downsampling=factor,
        symbols_crc32=sym_crc,
    )
    try:
        header.validate(max_pixels)
    except CorruptFileError as e:
        raise CorruptFileError(f"corrupt file: {e}") from None
    if not 1 <= count <= MAX_STREAMS:
        raise CorruptFileError(f"corrupt file: {count} streams (1 to {MAX_STREAMS} allowed)")
    lengths = struct.unpack(f"<{count}I", r.take(4 * count, "stream length table"))
    header = dataclasses.replace(header, pinned=_read_pinned(r, yh * yw * yc))
    remaining = r.end - r.pos
    if sum(lengths) != remaining:
        raise CorruptFileError(
            f"corrupt file: stream lengths add up to {sum(lengths)} bytes but {remaining} remain"
        )
    streams = [bytes(r.take(k, f"stream {i}")) for i, k in enumerate(lengths)]
    return header, streams


def _read_pinned(r: _Reader, size: int) -> tuple[tuple[int, int], ...]:
    """The pinned list, bounded before anything is allocated from its count."""
    n = r.varint("pinned count")
    if n > min(size, (r.end - r.pos) // 2):
        raise CorruptFileError(f"corrupt file: {n} pinned scale indexes cannot fit")
    pinned, pos = [], -1
    for _ in range(n):
        pos += r.varint("pinned gap") + 1
        if pos >= size:
            raise CorruptFileError(f"corrupt file: pinned position {pos} is past y's {size}")
        pinned.append((pos, r.take(1, "pinned index")[0]))
    return tuple(pinned)


def read_file(
    path: str | os.PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    expected_model_id: str | None = None,
) -> tuple[Header, list[bytes]]:
    """Reads and :func:`unpack` s a file, refusing files larger than the format allows first.

    Raises:
        FormatError: as :func:`unpack`, or the file is larger than 4 GiB.
        OSError: the file cannot be read.
    """
    size = os.stat(path).st_size
    if size > MAX_FILE_BYTES:
        raise CorruptFileError(f"not a valid swinjax file: {size} bytes (the format holds 4 GiB)")
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    return unpack(data, max_pixels=max_pixels, expected_model_id=expected_model_id)


def symbols_crc32(arrays: Sequence[np.ndarray]) -> int:
    """CRC32 of quantized symbols, chained over ``arrays`` in order.

    Each array is read as little-endian int32 in C order. The caller passes the z symbols, then
    the y symbols of each group / slice in coding order, on both the encoder and the decoder,
    so the value identifies exactly what was coded.

    Raises:
        ValueError: a non-integer array or a value outside int32.
    """
    crc = 0
    for a in arrays:
        arr = np.asarray(a)
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"symbols must be integer arrays, got dtype {arr.dtype}")
        if arr.dtype != np.int32 and arr.size:
            if int(arr.min()) < -(2**31) or int(arr.max()) > 2**31 - 1:
                raise ValueError("symbols must fit in int32")
        crc = zlib.crc32(np.ascontiguousarray(arr, dtype="<i4").tobytes(), crc)
    return crc


def check_symbols_crc32(header: Header | int, arrays: Sequence[np.ndarray]) -> None:
    """Raises :class:`ChecksumMismatchError` unless the decoded symbols match the encoder's CRC.

    Args:
        header: the file's header, or the stored CRC itself.
        arrays: the decoded symbols, in the order given to :func:`symbols_crc32` at encoding.
    """
    expected = header.symbols_crc32 if isinstance(header, Header) else int(header)
    actual = symbols_crc32(arrays)
    if actual != expected:
        raise ChecksumMismatchError(
            f"checksum mismatch: CRC32 of the decoded latents is {actual:08x}, the file says "
            f"{expected:08x} (the file was made with other weights under this model id, or "
            "altered)"
        )
