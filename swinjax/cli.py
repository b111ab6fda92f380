"""Command line: ``python -m swinjax <command> ...``.

Commands:

* ``macs --config configs/<name>.py[:arg] [--height H --width W] [--json]``: parameters and MACs of
  the whole codec and of each part, from XLA's cost analysis (:mod:`swinjax.costs`).
* ``compress [--ckpt NAME_OR_DIR] [--lmbda L | --target-bpp B] IN OUT [--force]``: writes real
  range-coded files. ``IN`` is an image (``OUT`` a file, or a folder to put ``<stem>.swj`` in) or
  a folder of images (``OUT`` a folder: the tree is mirrored, ``a/b.png -> OUT/a/b.swj``, with a
  progress bar). ``--target-bpp`` searches λ per image (bisection on log λ over the trained range
  of a variable-rate model) for the largest rate not above the target, measured on the file.
  ``--tile N`` codes independent N x N tiles (a thin wrapper of complete swinjax files, one per
  tile): peak memory is bounded by the tile size, for images of any size (e.g. 4096 x 4096 on a
  CPU); decompress and info recognise such files.
* ``decompress [--ckpt NAME_OR_DIR] IN OUT [--force]``: a ``.swj`` file to a PNG, or a folder of
  them to a mirrored folder of PNGs.
* ``info in.swj [--json]``: prints a file's header (no model needed).

``--ckpt`` takes the name of a model shipped with swinjax (``swincoder-ref``), an export directory
or a training workdir (its latest checkpoint is exported on the fly); an existing path wins over a
name. Without ``--ckpt``, compress uses the shipped default model
(:data:`swinjax.checkpoint.DEFAULT_MODEL`) and decompress uses, for each file, the shipped model
whose model id the file's header names (files say which model wrote them), so a file decodes
without being told its model.

Images are read by :func:`swinjax.imageio.load_image`: grayscale and palette images become RGB,
16-bit samples are rounded to 8 bits, EXIF orientation is applied, and an alpha channel is dropped
(the codec codes RGB; the compress line says so when it happens).

Outputs are written atomically (temporary file, then rename) and never overwrite an existing file
without ``--force``; in folder mode every output is checked before any work starts.

User mistakes (missing files, bad images, bad arguments, invalid configs) print one line to stderr
and exit with status 2; they never print a traceback. A folder run reports a bad file on one line,
goes on with the others, and exits with status 1 if any file failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from swinjax.lmbda import lmbda_range


class UserError(Exception):
    """An error caused by the user's input: reported as one line, exit status 2."""


def _cmd_macs(args: argparse.Namespace) -> int:
    from swinjax.config_utils import load_config
    from swinjax.costs import cost_report, format_report

    try:
        config = load_config(args.config)
    except (FileNotFoundError, ValueError, ImportError, SyntaxError) as e:
        raise UserError(f"cannot load config {args.config!r}: {e}") from e
    try:
        report = cost_report(config, args.height, args.width)
    except ValueError as e:
        raise UserError(str(e)) from e
    print(format_report(report))
    if args.json:
        print(json.dumps(report, sort_keys=True))
    return 0


def _load_codec(ckpt: str | os.PathLike | None, max_pixels: int) -> Any:
    from swinjax.evaluation import EvaluationError, open_codec

    try:
        return open_codec(ckpt, max_pixels)
    except EvaluationError as e:
        raise UserError(str(e)) from e


def _header_of(data: bytes, max_pixels: int) -> Any:
    """The container header of a plain or tiled file (a tiled file's first tile describes it)."""
    from swinjax.coding import container

    first = read_tiled(data, max_pixels)[1][0] if is_tiled(data) else data
    return container.unpack(first, max_pixels=max_pixels)[0]


def _shipped_for(header: Any) -> pathlib.Path:
    """The shipped model that wrote a file, from the model id in its header."""
    from swinjax.checkpoint import shipped_model_for

    try:
        return shipped_model_for(header.model_id, header.config_hash.hex())
    except FileNotFoundError as e:
        raise UserError(f"{e}; give --ckpt with the model that wrote it") from e


def _check_output(path: str | pathlib.Path, force: bool) -> pathlib.Path:
    out = pathlib.Path(path)
    if out.exists() and not force:
        raise UserError(f"{out} exists; use --force to overwrite it")
    if out.is_dir():
        raise UserError(f"{out} is a folder; give a file name (or a folder as input)")
    if not out.parent.is_dir():
        raise UserError(f"output folder {out.parent} does not exist")
    return out


def write_atomic(path: pathlib.Path, data: bytes, overwrite: bool = True) -> None:
    """Writes ``data`` to a temporary file beside ``path`` and renames it into place.

    With ``overwrite=False`` the final step is a hard link, which fails if ``path`` appeared in
    the meantime (another process), so an existing file is never replaced.
    """
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as e:  # read-only file system, no permission, ...
        raise UserError(f"cannot write {path}: {e.strerror or e}") from e
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except OSError as e:  # a full disk: nothing is left under the final name
            raise UserError(f"cannot write {path}: {e.strerror or e}") from e
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise UserError(f"{path} exists; use --force to overwrite it") from None
            except OSError:  # no hard links on this file system
                if path.exists():
                    raise UserError(f"{path} exists; use --force to overwrite it") from None
                os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


# -- jobs: one file, or a whole folder mirrored ------------------------------------------------


def _jobs(
    src: str, dst: str, find: Callable[[pathlib.Path], list[pathlib.Path]], suffix: str
) -> tuple[list[tuple[pathlib.Path, pathlib.Path]], bool]:
    """``[(input, output)]`` and whether the input was a folder (whose tree is mirrored)."""
    inp, out = pathlib.Path(src), pathlib.Path(dst)
    if inp.is_dir():
        if out.exists() and not out.is_dir():
            raise UserError(f"{inp} is a folder, so the output must be a folder too: {out}")
        files = find(inp)
        if not files:
            raise UserError(f"{inp}: no input files found (looked for {_find_what(suffix)})")
        pairs = [(f, out / f.relative_to(inp).with_suffix(suffix)) for f in files]
        seen: dict[pathlib.Path, pathlib.Path] = {}
        for f, o in pairs:
            if o in seen:
                raise UserError(f"{seen[o]} and {f} would both be written to {o}")
            seen[o] = f
        return pairs, True
    if not inp.exists():
        raise UserError(f"{inp}: no such file or folder")
    if out.is_dir():
        out = out / inp.with_suffix(suffix).name
    return [(inp, out)], False


def _find_what(suffix: str) -> str:
    return "image files" if suffix == ".swj" else "*.swj files"


def _find_images(folder: pathlib.Path) -> list[pathlib.Path]:
    from swinjax.data import DataConfigError, find_images

    try:
        return [pathlib.Path(f) for f in find_images([str(folder)])]
    except DataConfigError:
        return []


def _find_swj(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(
        p
        for p in folder.rglob("*.swj")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _file_id(path: pathlib.Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _prepare_outputs(pairs: list[tuple[pathlib.Path, pathlib.Path]], force: bool) -> None:
    """Refuses existing outputs before any work (no half-done folder runs) and makes folders.

    An output that is one of the inputs (the same file, under any name) is refused even with
    ``--force``: writing it would destroy the user's original.
    """
    inputs = {_file_id(i): i for i, _ in pairs}
    inputs.pop(None, None)
    for _, o in pairs:
        clash = inputs.get(_file_id(o)) if o.exists() else None
        if clash is not None:
            raise UserError(
                f"{o} is an input ({clash}); refusing to write over it, even with --force"
            )
    existing = [o for _, o in pairs if o.exists()]
    if existing and not force:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise UserError(f"{existing[0]}{more} exist(s); use --force to overwrite")
    for _, o in pairs:
        if o.is_dir():
            raise UserError(f"{o} is a folder; cannot write a file there")
    for _, o in pairs:
        o.parent.mkdir(parents=True, exist_ok=True)


def _run_jobs(
    pairs: list[tuple[pathlib.Path, pathlib.Path]],
    folder: bool,
    work: Callable[[pathlib.Path, pathlib.Path], str],
    label: str,
    quiet: bool,
) -> int:
    """Runs ``work`` on every pair; a folder run reports failures per file and goes on."""
    from swinjax.evaluation import Progress

    if not folder:
        msg = work(*pairs[0])
        if not quiet:
            print(msg)
        return 0
    bar = Progress(len(pairs), label, None if quiet else sys.stderr)
    failed = 0
    for src, dst in pairs:
        try:
            msg = work(src, dst)
        except UserError as e:
            failed += 1
            print(f"error: {e}", file=sys.stderr)
            msg = ""
        if msg and not quiet:
            print(msg)
        bar.update(src.name)
    done = len(pairs) - failed
    print(f"{label}: {done} of {len(pairs)} file(s) done, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


# -- compress ----------------------------------------------------------------------------------


def compress_to_bpp(
    codec: Any, image: Any, target_bpp: float, max_steps: int = 12, rtol: float = 0.01
) -> tuple[bytes, float, str]:
    """Compresses with the largest λ whose *actual* bpp does not exceed ``target_bpp``.

    Bisection on log λ over the model's trained range (rate grows with λ, since the training
    loss is R + λ·D), on real files: each step is a full ``compress`` and the measure is the
    file size, header included. Stops when the rate is within ``rtol`` of the target (from
    below) or after ``max_steps`` files.

    Returns:
        ``(file bytes, λ used, note)``; the note says when the target is out of reach (the
        model's lowest rate is above it: the lowest-rate file is returned) or when it is above
        the model's highest rate.

    Raises:
        UserError: the model is not variable-rate (one rate point: nothing to search).
    """
    model = codec.model
    if not bool(model.get("variable_rate", False)):
        raise UserError("--target-bpp needs a variable-rate model (this one has one rate point)")
    pixels = image.shape[0] * image.shape[1]

    def bpp(data: bytes) -> float:
        return len(data) * 8 / pixels

    lo, hi = lmbda_range(model).min, lmbda_range(model).max
    low = codec.compress(image, lo)
    if bpp(low) > target_bpp:
        note = f"target {target_bpp:g} bpp is below this model's lowest rate {bpp(low):.4f} bpp"
        return low, lo, note
    high = codec.compress(image, hi)
    if bpp(high) <= target_bpp:
        return high, hi, f"target above this model's highest rate {bpp(high):.4f} bpp"
    best, best_lm = low, lo
    a, b = np.log(lo), np.log(hi)
    for _ in range(max_steps):
        mid = float(np.exp((a + b) / 2))
        data = codec.compress(image, mid)
        if bpp(data) <= target_bpp:
            a, best, best_lm = np.log(mid), data, mid
            if bpp(data) >= target_bpp * (1 - rtol):
                break
        else:
            b = np.log(mid)
    return best, best_lm, ""


# -- tiles: bounded memory for very large images -------------------------------------------------
# A tiled file is a thin wrapper around complete, independently validated swinjax files, one per
# tile (row-major), so every rule of the single-image format (README: file format) holds for each
# tile:
#
#   b"SWJT" | version u8 | height u32 | width u32 | tile u32 | count u32 |
#   count x (length u32 | swinjax file)            (all integers big-endian)
#
# Peak memory is that of one tile's networks plus the whole 8-bit image, whatever the image
# size. The price is rate and quality at tile borders (no context or receptive field across
# them); benchmarks/highres.py measures it as a BD-rate.

TILED_MAGIC = b"SWJT"
TILED_VERSION = 1
_TILED_HEAD = struct.Struct(">4sBIIII")
_LEN = struct.Struct(">I")


def is_tiled(data: bytes) -> bool:
    """Whether ``data`` is a tiled swinjax file (see :func:`compress_tiled`)."""
    return data[:4] == TILED_MAGIC


def _tile_boxes(h: int, w: int, tile: int) -> list[tuple[int, int, int, int]]:
    return [
        (r, c, min(tile, h - r), min(tile, w - c))
        for r in range(0, h, tile)
        for c in range(0, w, tile)
    ]


def compress_tiled(codec: Any, image: Any, lmbda: float | None, tile: int) -> bytes:
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
        raise ValueError(f"--tile must be a positive multiple of {f} for this model, got {tile}")
    h, w = image.shape[:2]
    parts = [_TILED_HEAD.pack(TILED_MAGIC, TILED_VERSION, h, w, tile, 0)]
    boxes = _tile_boxes(h, w, tile)
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
    from swinjax.coding.container import FormatError

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


def decompress_tiled(codec: Any, data: bytes) -> Any:
    """Decodes a tiled file tile by tile into one ``uint8 [H, W, 3]`` image."""
    from swinjax.coding.container import FormatError

    meta, tiles = read_tiled(data, codec.max_pixels)
    h, w, tile = meta["height"], meta["width"], meta["tile"]
    out = np.empty((h, w, 3), np.uint8)
    for i, ((r, c, th, tw), blob) in enumerate(zip(_tile_boxes(h, w, tile), tiles, strict=True)):
        try:
            part = codec.decompress(blob)
        except FormatError as e:
            raise FormatError(f"tile {i}: {e}") from e
        if part.shape != (th, tw, 3):
            raise FormatError(f"tile {i} decodes to {part.shape[:2]}, expected {(th, tw)}")
        out[r : r + th, c : c + tw] = part
    return out


def _alpha_note(path: pathlib.Path) -> str:
    """A note when the image has transparency, which the codec drops (the codec is RGB only)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
                return " (alpha channel dropped: the codec codes RGB only)"
    except Exception:  # noqa: BLE001 - the loader already reported unreadable files
        return ""
    return ""


def _cmd_compress(args: argparse.Namespace) -> int:
    from swinjax.coding import container
    from swinjax.imageio import ImageError, load_image

    if args.lmbda is not None and args.target_bpp is not None:
        raise UserError("give either --lmbda or --target-bpp, not both")
    if args.target_bpp is not None and not args.target_bpp > 0:
        raise UserError("--target-bpp must be positive")
    if args.tile is not None and args.target_bpp is not None:
        raise UserError("--target-bpp is not supported with --tile (give --lmbda)")
    pairs, folder = _jobs(args.input, args.output, _find_images, ".swj")
    loaded = {}
    if not folder:
        _check_output(pairs[0][1], args.force)
        # A bad single image is reported before the (slow) model load.
        try:
            loaded[pairs[0][0]] = load_image(pairs[0][0], max_pixels=args.max_pixels)
        except ImageError as e:
            raise UserError(str(e)) from e
    _prepare_outputs(pairs, args.force)
    codec = _load_codec(args.ckpt, args.max_pixels)

    def work(src: pathlib.Path, dst: pathlib.Path) -> str:
        try:
            image = loaded.pop(src, None)
            if image is None:
                image = load_image(src, max_pixels=args.max_pixels)
        except ImageError as e:
            raise UserError(str(e)) from e
        note = ""
        try:
            t0 = time.perf_counter()
            if args.target_bpp is not None:
                data, _, note = compress_to_bpp(codec, image, args.target_bpp)
            elif args.tile is not None:
                data = compress_tiled(codec, image, args.lmbda, args.tile)
            else:
                data = codec.compress(image, args.lmbda)
            seconds = time.perf_counter() - t0
        except ValueError as e:
            raise UserError(f"{src}: {e}") from e
        write_atomic(dst, data, overwrite=args.force)
        h, w = image.shape[:2]
        first = read_tiled(data, codec.max_pixels)[1][0] if is_tiled(data) else data
        lmbda = container.unpack(first)[0].lmbda  # what the file says (the default, if none given)
        lm = "" if not np.isfinite(lmbda) else f", lambda {lmbda:.4g}"
        if is_tiled(data):
            lm += f", {len(_tile_boxes(h, w, args.tile))} tiles of {args.tile}"
        note = f"; {note}" if note else ""
        return (
            f"{src} -> {dst}: {w}x{h}, {len(data)} bytes, {len(data) * 8 / (h * w):.4f} bpp "
            f"(actual, header included){lm}, {seconds:.2f} s{_alpha_note(src)}{note}"
        )

    return _run_jobs(pairs, folder, work, "compress", args.quiet)


def _cmd_decompress(args: argparse.Namespace) -> int:
    from swinjax.coding.container import FormatError
    from swinjax.imageio import save_png

    pairs, folder = _jobs(args.input, args.output, _find_swj, ".png")
    if not folder:
        _check_output(pairs[0][1], args.force)
    _prepare_outputs(pairs, args.force)
    # Without --ckpt each file picks its model (the shipped one its header names): one codec
    # per model, loaded when a file first needs it.
    codecs: dict[pathlib.Path | None, Any] = {}
    if args.ckpt is not None:
        codecs[None] = _load_codec(args.ckpt, args.max_pixels)

    def work(src: pathlib.Path, dst: pathlib.Path) -> str:
        try:
            data = src.read_bytes()
        except OSError as e:
            raise UserError(f"cannot read {src}: {e.strerror or e}") from e
        try:
            if args.ckpt is None:
                model = _shipped_for(_header_of(data, args.max_pixels))
                if model not in codecs:
                    codecs[model] = _load_codec(model, args.max_pixels)
                codec = codecs[model]
            else:
                codec = codecs[None]
            t0 = time.perf_counter()
            image = decompress_tiled(codec, data) if is_tiled(data) else codec.decompress(data)
            seconds = time.perf_counter() - t0
        except (UserError, FormatError, ValueError) as e:
            raise UserError(f"{src}: {e}") from e
        try:
            save_png(dst, image, overwrite=args.force)
        except FileExistsError as e:
            raise UserError(f"{dst} exists; use --force to overwrite it") from e
        except OSError as e:  # a full disk, a read-only file system, ...
            raise UserError(f"cannot write {dst}: {e.strerror or e}") from e
        return f"{src} -> {dst}: {image.shape[1]}x{image.shape[0]}, {seconds:.2f} s"

    return _run_jobs(pairs, folder, work, "decompress", args.quiet)


def _cmd_info(args: argparse.Namespace) -> int:
    from swinjax.coding.container import FormatError, unpack

    try:
        blob = pathlib.Path(args.input).read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {args.input}: {e.strerror or e}") from e
    try:
        d: dict[str, Any] = {}
        if is_tiled(blob):
            meta, tiles = read_tiled(blob, 2**62)
            d.update({f"tiled_{k}": v for k, v in meta.items()})
            header, streams = unpack(tiles[0])  # the first tile's header describes the model
            d["tile0_stream_bytes"] = [len(s) for s in streams]
            height, width = meta["height"], meta["width"]
        else:
            header, streams = unpack(blob)
            d["stream_bytes"] = [len(s) for s in streams]
            height, width = header.height, header.width
    except FormatError as e:
        raise UserError(f"{args.input}: {e}") from e
    h = header.as_dict()
    if is_tiled(blob):
        h = {k: v for k, v in h.items() if k not in ("height", "width", "pad_h", "pad_w")}
        tile_keys = ("y_shape", "z_shape", "symbols_crc32")
        h = {("tile0_" + k if k in tile_keys else k): v for k, v in h.items()}
    d.update(h)
    d["file_bytes"] = len(blob)
    d["bpp"] = d["file_bytes"] * 8 / (height * width)
    if args.json:
        print(json.dumps(d, sort_keys=True))
    else:
        for k in sorted(d):
            print(f"{k:<18} {d[k]}")
    return 0


def _common_io_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--max-pixels", type=int, default=100_000_000, help="image size limit")
    p.add_argument("--quiet", action="store_true", help="no per-file lines or progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m swinjax``."""
    from swinjax.checkpoint import DEFAULT_MODEL, shipped_models

    parser = argparse.ArgumentParser(prog="python -m swinjax", description=__doc__.split("\n")[0])
    shipped = ", ".join(shipped_models()) or "none shipped"
    ckpt_help = f"a shipped model's name ({shipped}), an export directory or a training workdir"
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("macs", help="parameters and MACs per part (XLA cost analysis)")
    p.add_argument("--config", required=True, help="config file, e.g. configs/swincoder.py[:tiny]")
    p.add_argument("--height", type=int, default=512, help="image height (default 512)")
    p.add_argument("--width", type=int, default=768, help="image width (default 768)")
    p.add_argument("--json", action="store_true", help="also print one JSON object (last line)")
    p.set_defaults(func=_cmd_macs)

    p = sub.add_parser("compress", help="image (or folder of images) -> .swj file(s)")
    p.add_argument(
        "--ckpt",
        default=None,
        help=f"{ckpt_help} (default: the shipped {DEFAULT_MODEL})",
    )
    p.add_argument(
        "--lmbda",
        type=float,
        default=None,
        help="rate-distortion weight (variable-rate models; default: the middle of "
        "the model's range)",
    )
    p.add_argument(
        "--target-bpp",
        type=float,
        default=None,
        help="pick lambda per image by bisection so the file's actual bpp is at most this "
        "(variable-rate models)",
    )
    p.add_argument(
        "--tile",
        type=int,
        default=None,
        help="code independent TILE x TILE tiles (bounded memory for very large images; a "
        "multiple of the model's padding factor, e.g. 1024)",
    )
    p.add_argument("input", help="an image file, or a folder (its tree is mirrored)")
    p.add_argument("output", help="a .swj file, or a folder")
    _common_io_flags(p)
    p.set_defaults(func=_cmd_compress)

    p = sub.add_parser("decompress", help=".swj file (or folder of them) -> PNG")
    p.add_argument(
        "--ckpt",
        default=None,
        help=f"{ckpt_help} (default: the shipped model named in each file's header)",
    )
    p.add_argument("input", help="a .swj file, or a folder (its tree is mirrored)")
    p.add_argument("output", help="a .png file, or a folder")
    _common_io_flags(p)
    p.set_defaults(func=_cmd_decompress)

    p = sub.add_parser("info", help="print a .swj file's header")
    p.add_argument("input")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=_cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
