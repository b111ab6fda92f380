"""Window partitioning, shifted-window masks and relative position indexes (Swin, Liu et al. 2021).

Everything that depends only on shapes is computed in numpy at trace time: masks and indexes are
static constants of the compiled program, so they cost nothing per step and are identical on every
platform (the entropy model relies on the latter, see docs/file-format.md).
"""

from __future__ import annotations

import functools

import jax
import numpy as np


def window_partition(x: jax.Array, window: tuple[int, int]) -> jax.Array:
    """Splits feature maps into non-overlapping windows.

    Args:
        x: ``[B, H, W, C]`` with H and W multiples of the window.
        window: ``(wh, ww)`` window height and width.

    Returns:
        ``[B, nH, nW, wh * ww, C]``: windows keep their grid position so that callers can add
        per-window masks by broadcasting, without a batch-major reshape.
    """
    b, h, w, c = x.shape
    wh, ww = window
    if h % wh or w % ww:
        raise ValueError(f"feature map {h}x{w} is not a multiple of the window {wh}x{ww}")
    x = x.reshape(b, h // wh, wh, w // ww, ww, c)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // wh, w // ww, wh * ww, c)


def window_reverse(windows: jax.Array, window: tuple[int, int]) -> jax.Array:
    """Inverse of :func:`window_partition`: ``[B, nH, nW, wh*ww, C]`` -> ``[B, H, W, C]``."""
    b, nh, nw, n, c = windows.shape
    wh, ww = window
    if n != wh * ww:
        raise ValueError(f"windows hold {n} tokens, expected {wh}x{ww}")
    x = windows.reshape(b, nh, nw, wh, ww, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, nh * wh, nw * ww, c)


@functools.lru_cache(maxsize=256)
def relative_position_index(window: tuple[int, int], table_window: tuple[int, int]) -> np.ndarray:
    """Index into a relative-position-bias table for every (query, key) pair of a window.

    The table has ``(2*th - 1) * (2*tw - 1)`` rows for a ``table_window`` of ``(th, tw)``. A window
    smaller than the table's (the map is smaller than the configured window) indexes the same
    table, so one set of parameters serves every image size.

    Args:
        window: the window actually used, ``(wh, ww)`` with ``wh <= th`` and ``ww <= tw``.
        table_window: the configured window the table was sized for.

    Returns:
        int32 array ``[wh*ww, wh*ww]``.
    """
    wh, ww = window
    th, tw = table_window
    if wh > th or ww > tw:
        raise ValueError(f"window {window} is larger than the bias table's {table_window}")
    coords = np.stack(np.meshgrid(np.arange(wh), np.arange(ww), indexing="ij")).reshape(2, -1)
    rel = coords[:, :, None] - coords[:, None, :]  # [2, N, N]
    index = (rel[0] + th - 1) * (2 * tw - 1) + (rel[1] + tw - 1)
    index = index.astype(np.int32)
    index.setflags(write=False)
    return index


@functools.lru_cache(maxsize=256)
def shifted_window_mask(
    size: tuple[int, int],
    window: tuple[int, int],
    shift: tuple[int, int],
    valid: tuple[int, int] | None = None,
    kv_stride: int = 1,
) -> np.ndarray | None:
    """Additive attention mask for (shifted) windows over a padded map.

    After a cyclic roll by ``-shift``, windows on the bottom/right edge hold tokens that were far
    apart in the image; tokens may only attend to tokens of the same region. Tokens of the padding
    (outside ``valid``) are never attended to, so results do not depend on how the map was padded.

    Args:
        size: ``(H, W)`` of the padded map, multiples of ``window``.
        window: ``(wh, ww)``.
        shift: ``(sh, sw)`` roll applied before partitioning (0 for regular windows).
        valid: ``(h, w)`` of the unpadded map; ``None`` means no padding.
        kv_stride: keys/values sampled every ``kv_stride`` tokens in each axis (CvT-style strided
            key/value projection); the mask keeps only those key columns.

    Returns:
        float32 ``[nH, nW, N, N // kv_stride**2]`` with 0 where attention is allowed and -1e9
        where it is not, or ``None`` when every pair is allowed (no shift and no padding).
    """
    h, w = size
    wh, ww = window
    sh, sw = shift
    vh, vw = valid if valid is not None else size
    if (sh, sw) == (0, 0) and (vh, vw) == (h, w):
        return None
    n = wh * ww

    # Region ids on the rolled map: the last window of each axis mixes the map's end with the rows
    # (columns) that the roll wrapped around from its start; three bands per axis, as in Swin.
    def bands(n: int, win: int, s: int) -> np.ndarray:
        ids = np.zeros(n, np.int64)
        if s:
            ids[n - win : n - s] = 1
            ids[n - s :] = 2
        return ids

    region = bands(h, wh, sh)[:, None] * 3 + bands(w, ww, sw)[None, :]
    pad = np.zeros((h, w), bool)
    pad[vh:, :] = True
    pad[:, vw:] = True
    # Padding is defined on the unrolled map; rolled position p holds unrolled position p + shift.
    pad_rolled = np.roll(pad, (-sh, -sw), axis=(0, 1))
    ids = (
        region.reshape(h // wh, wh, w // ww, ww).transpose(0, 2, 1, 3).reshape(h // wh, w // ww, -1)
    )
    padw = pad_rolled.reshape(h // wh, wh, w // ww, ww).transpose(0, 2, 1, 3)
    padw = padw.reshape(h // wh, w // ww, -1)
    allowed = (ids[..., :, None] == ids[..., None, :]) & ~padw[..., None, :]
    # A padded query may attend to itself so its softmax stays finite (its output is cropped).
    allowed |= np.eye(n, dtype=bool)[None, None] & padw[..., :, None]
    if kv_stride > 1:
        if wh % kv_stride or ww % kv_stride:
            raise ValueError(f"window {window} is not divisible by kv_stride {kv_stride}")
        grid = np.arange(n).reshape(wh, ww)[::kv_stride, ::kv_stride].reshape(-1)
        allowed = allowed[..., grid]
        # A padded query keeps one key (its strided neighbour) so its softmax stays finite.
        allowed[..., 0] |= ~allowed.any(axis=-1)
    mask = np.where(allowed, 0.0, -1e9).astype(np.float32)
    mask.setflags(write=False)
    return mask
