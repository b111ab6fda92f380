"""Command line: ``python -m swinjax <command> ...``.

Commands:

* ``macs --config configs/<name>.py[:arg] [--height H --width W] [--json]``: parameters and MACs of
  the whole codec and of each part, from XLA's cost analysis (:mod:`swinjax.costs`).
* ``compress --ckpt DIR [--lmbda L] in.png out.swj [--force]``: writes a real range-coded file.
* ``decompress --ckpt DIR in.swj out.png [--force]``: decodes it.
* ``info in.swj [--json]``: prints a file's header (no model needed).

``--ckpt`` takes an export directory or a training workdir (its latest checkpoint is exported on
the fly). Outputs are written atomically and never overwrite an existing file without ``--force``.

User mistakes (missing files, bad arguments, invalid configs) print one line to stderr and exit
with status 2; they never print a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any


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


def _load_codec(ckpt: str, max_pixels: int) -> Any:
    from swinjax.checkpoint import load_model
    from swinjax.compression import ImageCodec

    try:
        return ImageCodec(load_model(ckpt), max_pixels=max_pixels)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(f"cannot load checkpoint {ckpt!r}: {e}") from e


def _check_output(path: str, force: bool) -> pathlib.Path:
    out = pathlib.Path(path)
    if out.exists() and not force:
        raise UserError(f"{out} exists; use --force to overwrite it")
    if not out.parent.is_dir():
        raise UserError(f"output folder {out.parent} does not exist")
    return out


def write_atomic(path: pathlib.Path, data: bytes) -> None:
    """Writes ``data`` to a temporary file beside ``path`` and renames it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _cmd_compress(args: argparse.Namespace) -> int:
    from swinjax.imageio import ImageError, load_image

    out = _check_output(args.output, args.force)
    try:
        image = load_image(args.input, max_pixels=args.max_pixels)
    except ImageError as e:
        raise UserError(str(e)) from e
    codec = _load_codec(args.ckpt, args.max_pixels)
    try:
        t0 = time.perf_counter()
        data = codec.compress(image, args.lmbda)
        seconds = time.perf_counter() - t0
    except ValueError as e:
        raise UserError(str(e)) from e
    write_atomic(out, data)
    h, w = image.shape[:2]
    print(
        f"{args.input} -> {out}: {len(data)} bytes, {len(data) * 8 / (h * w):.4f} bpp "
        f"(actual, header included), {seconds:.2f} s"
    )
    return 0


def _cmd_decompress(args: argparse.Namespace) -> int:
    from swinjax.coding.container import FormatError
    from swinjax.imageio import save_png

    out = _check_output(args.output, args.force)
    try:
        data = pathlib.Path(args.input).read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {args.input}: {e.strerror or e}") from e
    codec = _load_codec(args.ckpt, args.max_pixels)
    try:
        t0 = time.perf_counter()
        image = codec.decompress(data)
        seconds = time.perf_counter() - t0
    except (FormatError, ValueError) as e:
        raise UserError(f"{args.input}: {e}") from e
    save_png(out, image, overwrite=args.force)
    print(f"{args.input} -> {out}: {image.shape[1]}x{image.shape[0]}, {seconds:.2f} s")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from swinjax.coding.container import FormatError, read_file

    try:
        header, streams = read_file(args.input)
    except FormatError as e:
        raise UserError(f"{args.input}: {e}") from e
    except OSError as e:
        raise UserError(f"cannot read {args.input}: {e.strerror or e}") from e
    d = header.as_dict()
    d["stream_bytes"] = [len(s) for s in streams]
    d["file_bytes"] = pathlib.Path(args.input).stat().st_size
    d["bpp"] = d["file_bytes"] * 8 / (header.height * header.width)
    if args.json:
        print(json.dumps(d, sort_keys=True))
    else:
        for k in sorted(d):
            print(f"{k:<16} {d[k]}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m swinjax``."""
    parser = argparse.ArgumentParser(prog="python -m swinjax", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("macs", help="parameters and MACs per part (XLA cost analysis)")
    p.add_argument("--config", required=True, help="config file, e.g. configs/swincoder.py[:tiny]")
    p.add_argument("--height", type=int, default=512, help="image height (default 512)")
    p.add_argument("--width", type=int, default=768, help="image width (default 768)")
    p.add_argument("--json", action="store_true", help="also print one JSON object (last line)")
    p.set_defaults(func=_cmd_macs)

    p = sub.add_parser("compress", help="image -> .swj file")
    p.add_argument("--ckpt", required=True, help="export directory or training workdir")
    p.add_argument(
        "--lmbda",
        type=float,
        default=None,
        help="rate-distortion weight (variable-rate models; default: the middle of "
        "the model's range)",
    )
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--max-pixels", type=int, default=100_000_000, help="image size limit")
    p.set_defaults(func=_cmd_compress)

    p = sub.add_parser("decompress", help=".swj file -> PNG")
    p.add_argument("--ckpt", required=True, help="export directory or training workdir")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--max-pixels", type=int, default=100_000_000, help="image size limit")
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
