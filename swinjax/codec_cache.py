"""An :class:`~swinjax.compression.ImageCodec` per ``--ckpt``, kept while it is in use.

Each ``ImageCodec`` owns its jitted programs, and compiling them is most of the time of a first
image. Codecs are cached per export (path and modification times), so a notebook, the CLI or a
test that opens the same checkpoint again reuses the compiled programs instead of compiling them
anew; an export rewritten in place gets a new codec.
"""

from __future__ import annotations

import functools
import os
import pathlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from swinjax.compression import ImageCodec


class CheckpointError(Exception):
    """A ``--ckpt`` that cannot be loaded or used; the message is one line for the user."""


def open_codec(
    ckpt: str | os.PathLike | None = None,
    max_pixels: int | None = None,
    max_decode_bytes: int | None = None,
) -> ImageCodec:
    """The (cached) codec of ``ckpt``.

    Args:
        ckpt: what :func:`swinjax.export.resolve_ckpt` takes: a shipped model's name, an export
            directory, a training workdir, or ``None`` for the shipped default model.
        max_pixels: the size limit of images and files (default: the file format's).
        max_decode_bytes: the decoder's memory budget (default:
            :data:`swinjax.compression.DEFAULT_DECODE_MEMORY`); a file whose decode needs more
            is refused with a one-line :class:`~swinjax.coding.container.ImageTooLargeError`.

    Raises:
        CheckpointError: ``ckpt`` is neither a shipped name, an export nor a training workdir,
            or is invalid.
    """
    from swinjax.checkpoint import load_model
    from swinjax.compression import DEFAULT_DECODE_MEMORY, DEFAULT_MAX_PIXELS
    from swinjax.export import DEFAULT_MODEL

    what = DEFAULT_MODEL if ckpt is None else str(ckpt)
    try:
        exported = load_model(ckpt)
    except (FileNotFoundError, ValueError, KeyError, OSError) as e:
        raise CheckpointError(f"cannot load checkpoint {what!r}: {e}") from e
    path = pathlib.Path(exported.path or what).resolve()
    stamps = tuple(
        (p.stat().st_mtime_ns, p.stat().st_size)
        for p in (path / "model.json", path / "params.msgpack", path / "tables.npz")
        if p.exists()
    )
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    budget = DEFAULT_DECODE_MEMORY if max_decode_bytes is None else int(max_decode_bytes)
    return _cached_codec(_CacheKey((str(path), stamps, limit, budget), exported))


@dataclass(frozen=True)
class _CacheKey:
    """Hashes by ``key`` only; carries the loaded export to build the codec on a cache miss."""

    key: tuple
    exported: Any = field(compare=False, hash=False)


@functools.lru_cache(maxsize=4)
def _cached_codec(k: _CacheKey) -> ImageCodec:
    from swinjax.compression import ImageCodec

    try:
        return ImageCodec(k.exported, max_pixels=k.key[2], max_decode_bytes=k.key[3])
    except ValueError as e:
        raise CheckpointError(f"cannot use checkpoint {k.key[0]}: {e}") from e
