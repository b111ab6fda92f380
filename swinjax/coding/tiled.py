"""Tiled swinjax files: very large images coded as independent tiles, with bounded memory.

A tiled file is a thin wrapper around complete, independently validated swinjax files, one per
tile (row-major), so every rule of the single-image format (docs/file-format.md) holds for each
tile::

    b"SWJT" | version u8 | height u32 | width u32 | tile u32 | count u32 |
    count x (length u32 | swinjax file)            (all integers big-endian)

Peak memory is that of one tile's networks plus the whole 8-bit image, whatever the image size.
The price is rate and quality at tile borders (no context or receptive field across them);
``benchmarks/highres.py`` measures it as a BD-rate.
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

import numpy as np

from swinjax.coding import container
from swinjax.coding.container import FormatError


class ImageCodec(Protocol):
    """What tiling needs of a codec (:class:`swinjax.compression.ImageCodec` has it)."""

    factor: int
    max_pixels: int

    def compress(self, image: np.ndarray, lmbda: float | None = None) -> bytes:
        """A swinjax file of ``image``."""
        ...

    def decompress(self, data: bytes) -> np.ndarray:
        """The image of a swinjax file."""
        ...


TILED_MAGIC = b"SWJT"
TILED_VERSION = 1
_TILED_HEAD = struct.Struct(">4sBIIII")
_LEN = struct.Struct(">I")


def is_tiled(data: bytes) -> bool:
    """Whether ``data`` is a tiled swinjax file (see :func:`compress_tiled`)."""
    return data[:4] == TILED_MAGIC


def tile_boxes(h: int, w: int, tile: int) -> list[tuple[int, int, int, int]]:
    """``(top, left, height, width)`` of every tile of an ``h x w`` image, row-major."""
    return [
        (r, c, min(tile, h - r), min(tile, w - c))
        for r in range(0, h, tile)
        for c in range(0, w, tile)
    ]


def compress_tiled(codec: ImageCodec, image: np.ndarray, lmbda: float | None, tile: int) -> bytes:
    """Compresses ``image`` as independent ``tile`` x ``tile`` tiles (edge tiles smaller).

    Args:
        codec: an :class:`~swinjax.compression.ImageCodec`.
        image: ``uint8 [H, W, 3]``.
        lmbda: λ for every tile (``None``: the model's default).
        tile: tile side in pixels, a positive multiple of the model's padding factor (so inner
            tiles need no padding).

    Returns:
        The bytes of a tiled file (format above).
    """
    f = int(codec.factor)
    if tile <= 0 or tile % f:
        raise ValueError(f"the tile must be a positive multiple of {f} for this model, got {tile}")
    h, w = image.shape[:2]
    parts = [_TILED_HEAD.pack(TILED_MAGIC, TILED_VERSION, h, w, tile, 0)]
    boxes = tile_boxes(h, w, tile)
    for r, c, th, tw in boxes:
        data = codec.compress(np.ascontiguousarray(image[r : r + th, c : c + tw]), lmbda)
        parts.append(_LEN.pack(len(data)) + data)
    parts[0] = _TILED_HEAD.pack(TILED_MAGIC, TILED_VERSION, h, w, tile, len(boxes))
    return b"".join(parts)


def read_tiled(data: bytes, max_pixels: int) -> tuple[dict[str, int], list[bytes]]:
    """Validates a tiled file's wrapper and splits it into the tiles' swinjax files.

    Raises:
        swinjax.coding.container.FormatError: bad magic/version, sizes over ``max_pixels``, a
            tile count that does not match the sizes, or lengths that do not add up.
    """
    if len(data) < _TILED_HEAD.size:
        raise FormatError("truncated tiled file (header incomplete)")
    magic, version, h, w, tile, count = _TILED_HEAD.unpack_from(data)
    if magic != TILED_MAGIC:
        raise FormatError("not a tiled swinjax file")
    if version != TILED_VERSION:
        raise FormatError(f"unsupported tiled-file version {version}")
    if h < 1 or w < 1 or tile < 1:
        raise FormatError(f"invalid tiled-file sizes {h}x{w}, tile {tile}")
    if h * w > max_pixels:
        raise FormatError(f"image of {h}x{w} exceeds the limit of {max_pixels} pixels")
    want = -(-h // tile) * -(-w // tile)
    if count != want:
        raise FormatError(
            f"tiled file lists {count} tiles, a {h}x{w} image in {tile} tiles has {want}"
        )
    tiles, pos = [], _TILED_HEAD.size
    for i in range(count):
        if pos + _LEN.size > len(data):
            raise FormatError(f"truncated tiled file (tile {i} of {count} missing)")
        (n,) = _LEN.unpack_from(data, pos)
        pos += _LEN.size
        if n > len(data) - pos:
            raise FormatError(f"truncated tiled file (tile {i} is cut short)")
        tiles.append(data[pos : pos + n])
        pos += n
    if pos != len(data):
        raise FormatError(f"{len(data) - pos} unexpected bytes after the last tile")
    return {"height": h, "width": w, "tile": tile, "tiles": count}, tiles


def decompress_tiled(codec: ImageCodec, data: bytes) -> np.ndarray:
    """Decodes a tiled file tile by tile into one ``uint8 [H, W, 3]`` image."""
    meta, tiles = read_tiled(data, codec.max_pixels)
    h, w, tile = meta["height"], meta["width"], meta["tile"]
    out = np.empty((h, w, 3), np.uint8)
    for i, ((r, c, th, tw), blob) in enumerate(zip(tile_boxes(h, w, tile), tiles, strict=True)):
        try:
            part = codec.decompress(blob)
        except FormatError as e:
            raise FormatError(f"tile {i}: {e}") from e
        if part.shape != (th, tw, 3):
            raise FormatError(f"tile {i} decodes to {part.shape[:2]}, expected {(th, tw)}")
        out[r : r + th, c : c + tw] = part
    return out


def first_header(data: bytes, max_pixels: int) -> container.Header:
    """The container header of a plain or tiled file (a tiled file's first tile describes it).

    Raises:
        FormatError: the file (or its wrapper) is not valid.
    """
    first = read_tiled(data, max_pixels)[1][0] if is_tiled(data) else data
    return container.unpack(first, max_pixels=max_pixels)[0]


def describe(data: bytes) -> dict[str, Any]:
    """What a plain or tiled file says about itself (``python -m swinjax info``), no model needed.

    A tiled file's first tile describes the model; per-tile fields get a ``tile0_`` prefix and
    the wrapper's own fields a ``tiled_`` prefix.

    Raises:
        FormatError: the file (or its wrapper) is not valid.
    """
    d: dict[str, Any] = {}
    if is_tiled(data):
        meta, tiles = read_tiled(data, 2**62)
        d.update({f"tiled_{k}": v for k, v in meta.items()})
        header, streams = container.unpack(tiles[0])
        d["tile0_stream_bytes"] = [len(s) for s in streams]
        height, width = meta["height"], meta["width"]
        h = header.as_dict()
        h = {k: v for k, v in h.items() if k not in ("height", "width", "pad_h", "pad_w")}
        tile_keys = ("y_shape", "z_shape", "symbols_crc32")
        d.update({("tile0_" + k if k in tile_keys else k): v for k, v in h.items()})
    else:
        header, streams = container.unpack(data)
        d["stream_bytes"] = [len(s) for s in streams]
        height, width = header.height, header.width
        d.update(header.as_dict())
    d["file_bytes"] = len(data)
    d["bpp"] = len(data) * 8 / (height * width)
    return d
