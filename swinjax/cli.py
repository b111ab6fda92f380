"""Command line: ``python -m swinjax macs|compress|decompress|info ...`` (docs/compress.md).

* ``macs --config FILE[:arg]``: parameters and MACs per part (:mod:`swinjax.costs`).
* ``compress [--ckpt C] [--lmbda L | --target-bpp B] [--tile N] IN OUT``: an image, or a folder
  of them (the tree is mirrored), to real range-coded ``.swj`` files.
* ``decompress [--ckpt C | --decoder D] [--max-decode-mb M] IN OUT``: ``.swj`` file(s) to PNG;
  without ``--ckpt`` each file is decoded by the shipped model its header names, with its own
  synthesis (``--decoder mse``, the default) or a shipped decoder export that pairs with it
  (``--decoder perceptual``: SwinCoder's stage-2/3 synthesis, the same file decoded for realism
  instead of fidelity); a file whose decode would need more than ``M`` MiB of memory is refused
  before anything is allocated.
* ``info FILE``: a file's header (no model needed).
* ``metrics REF DIST [DIST ...]``: PSNR, MS-SSIM, LPIPS-Alex, LPIPS-VGG and DISTS of each
  distorted image against the reference (the metrics' own repositories offer the same for one
  metric each: ``lpips_2imgs.py``, ``DISTS_pt.py --ref --dist``), with the packaged weights.

``--ckpt`` takes a shipped model's name, an export directory or a training workdir (default: the
shipped :data:`swinjax.export.DEFAULT_MODEL`). Outputs are written atomically and never replace
a file without ``--force``; in folder mode every output is checked before any work starts.

This module is the front end only: it parses, checks paths and reports. Coding is
:mod:`swinjax.compression`, tiles :mod:`swinjax.coding.tiled`, the rate search
:mod:`swinjax.rate_search`, planning a run's files :mod:`swinjax.jobs`, loading a model
:mod:`swinjax.codec_cache`. User mistakes print one line and exit with status 2, never a
traceback; a folder run reports a bad file on one line, goes on, and exits with status 1 if
any file failed.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from swinjax import jobs
from swinjax.coding import tiled
from swinjax.coding.container import DEFAULT_MAX_PIXELS


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


def _load_codec(
    ckpt: str | os.PathLike | None, max_pixels: int, max_decode_bytes: int | None = None
) -> Any:
    from swinjax.codec_cache import CheckpointError, open_codec

    try:
        return open_codec(ckpt, max_pixels, max_decode_bytes)
    except CheckpointError as e:
        raise UserError(str(e)) from e


def _shipped_for(header: Any, decoder: str = "mse") -> pathlib.Path:
    """The shipped model (or its ``decoder``) that decodes a file, from its header's model id."""
    from swinjax.export import shipped_model_for

    try:
        return shipped_model_for(header.model_id, header.config_hash.hex(), decoder)
    except FileNotFoundError as e:
        hint = "give --ckpt with the model that wrote it"
        if decoder != "mse":
            hint = f"no {decoder!r} decoder is shipped for it; use --decoder mse"
        raise UserError(f"{e}; {hint}") from e


def _write(path: pathlib.Path, write: Callable[[pathlib.Path, bool], Any], force: bool) -> None:
    """Runs ``write(path, overwrite)``, turning its errors into one-line user errors."""
    try:
        write(path, force)
    except FileExistsError as e:
        raise UserError(f"{path} exists; use --force to overwrite it") from e
    except OSError as e:  # a full disk, a read-only file system, ...
        raise UserError(f"cannot write {path}: {e.strerror or e}") from e


def _run_jobs(
    pairs: list[tuple[pathlib.Path, pathlib.Path]],
    folder: bool,
    work: Callable[[pathlib.Path, pathlib.Path], str],
    label: str,
    quiet: bool,
) -> int:
    """Runs ``work`` on every pair; a folder run reports failures per file and goes on."""
    from tqdm.auto import tqdm

    if not folder:
        msg = work(*pairs[0])
        if not quiet:
            print(msg)
        return 0
    bar = tqdm(total=len(pairs), desc=label, unit="file", file=sys.stderr, disable=quiet)
    failed = 0
    for src, dst in pairs:
        try:
            msg = work(src, dst)
        except UserError as e:
            failed += 1
            bar.write(f"error: {e}", file=sys.stderr)
            msg = ""
        if msg and not quiet:
            bar.write(msg, file=sys.stdout)
        bar.update()
    bar.close()
    done = len(pairs) - failed
    print(f"{label}: {done} of {len(pairs)} file(s) done, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


def _cmd_compress(args: argparse.Namespace) -> int:
    from swinjax.atomic import write_atomic
    from swinjax.imageio import ImageError, has_alpha, load_image
    from swinjax.rate_search import compress_to_bpp

    if args.lmbda is not None and args.target_bpp is not None:
        raise UserError("give either --lmbda or --target-bpp, not both")
    if args.tile is not None and args.target_bpp is not None:
        raise UserError("--target-bpp is not supported with --tile (give --lmbda)")
    pairs, folder = jobs.plan(args.input, args.output, jobs.find_images, ".swj")
    loaded = {}
    if not folder:
        jobs.check_output(pairs[0][1], args.force)
        # A bad single image is reported before the (slow) model load.
        try:
            loaded[pairs[0][0]] = load_image(pairs[0][0], max_pixels=args.max_pixels)
        except ImageError as e:
            raise UserError(str(e)) from e
    jobs.prepare_outputs(pairs, args.force)
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
                data = tiled.compress_tiled(codec, image, args.lmbda, args.tile)
            else:
                data = codec.compress(image, args.lmbda)
            seconds = time.perf_counter() - t0
        except ValueError as e:
            raise UserError(f"{src}: {e}") from e
        _write(dst, lambda path, force: write_atomic(path, data, overwrite=force), args.force)
        h, w = image.shape[:2]
        # What the file says (the model's default lambda when none was given).
        lmbda = tiled.first_header(data, codec.max_pixels).lmbda
        lm = "" if not np.isfinite(lmbda) else f", lambda {lmbda:.4g}"
        if tiled.is_tiled(data):
            lm += f", {len(tiled.tile_boxes(h, w, args.tile))} tiles of {args.tile}"
        alpha = " (alpha channel dropped: the codec codes RGB only)" if has_alpha(src) else ""
        note = f"; {note}" if note else ""
        return (
            f"{src} -> {dst}: {w}x{h}, {len(data)} bytes, {len(data) * 8 / (h * w):.4f} bpp "
            f"(actual, header included){lm}, {seconds:.2f} s{alpha}{note}"
        )

    return _run_jobs(pairs, folder, work, "compress", args.quiet)


def _cmd_decompress(args: argparse.Namespace) -> int:
    from swinjax.coding.container import FormatError
    from swinjax.imageio import save_png

    if args.max_decode_mb <= 0:
        raise UserError(f"--max-decode-mb must be positive, got {args.max_decode_mb}")
    budget = args.max_decode_mb * 2**20
    pairs, folder = jobs.plan(args.input, args.output, jobs.find_swj, ".png")
    if not folder:
        jobs.check_output(pairs[0][1], args.force)
    jobs.prepare_outputs(pairs, args.force)
    # Without --ckpt each file picks its model (the shipped one its header names): one codec
    # per model, loaded when a file first needs it.
    codecs: dict[pathlib.Path | None, Any] = {}
    if args.ckpt is not None:
        codecs[None] = _load_codec(args.ckpt, args.max_pixels, budget)
        have = codecs[None].exported.decoder
        if args.decoder is not None and args.decoder != have:
            raise UserError(
                f"--ckpt {args.ckpt} is the {have!r} decoder, not {args.decoder!r}: give one of "
                "--ckpt and --decoder"
            )

    def work(src: pathlib.Path, dst: pathlib.Path) -> str:
        try:
            data = src.read_bytes()
        except OSError as e:
            raise UserError(f"cannot read {src}: {e.strerror or e}") from e
        try:
            if args.ckpt is None:
                header = tiled.first_header(data, args.max_pixels)
                model = _shipped_for(header, args.decoder or "mse")
                if model not in codecs:
                    codecs[model] = _load_codec(model, args.max_pixels, budget)
                codec = codecs[model]
            else:
                codec = codecs[None]
            t0 = time.perf_counter()
            if tiled.is_tiled(data):
                image = tiled.decompress_tiled(codec, data)
            else:
                image = codec.decompress(data)
            seconds = time.perf_counter() - t0
        except (UserError, FormatError, ValueError) as e:
            raise UserError(f"{src}: {e}") from e
        _write(dst, lambda path, force: save_png(path, image, overwrite=force), args.force)
        return f"{src} -> {dst}: {image.shape[1]}x{image.shape[0]}, {seconds:.2f} s"

    return _run_jobs(pairs, folder, work, "decompress", args.quiet)


def _cmd_info(args: argparse.Namespace) -> int:
    from swinjax.coding.container import FormatError

    try:
        blob = pathlib.Path(args.input).read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {args.input}: {e.strerror or e}") from e
    try:
        d = tiled.describe(blob)
    except FormatError as e:
        raise UserError(f"{args.input}: {e}") from e
    if args.json:
        print(json.dumps(d, sort_keys=True))
    else:
        for k in sorted(d):
            print(f"{k:<18} {d[k]}")
    return 0


def _io_args(p: argparse.ArgumentParser, ckpt_help: str, what_in: str, what_out: str) -> None:
    """The flags and arguments compress and decompress share."""
    p.add_argument("--ckpt", default=None, help=ckpt_help)
    p.add_argument("input", help=f"{what_in}, or a folder (its tree is mirrored)")
    p.add_argument("output", help=f"{what_out}, or a folder")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="image size limit")
    p.add_argument("--quiet", action="store_true", help="no per-file lines or progress bar")


def _cmd_metrics(args: argparse.Namespace) -> int:
    """PSNR, MS-SSIM and the perceptual metrics of each ``DIST`` against ``REF``."""
    from swinjax import metrics, perceptual
    from swinjax.imageio import ImageError, load_image
    from swinjax.packaged_weights import PackagedWeightsError

    def read(path: str) -> np.ndarray:
        try:
            return load_image(path)
        except ImageError as e:  # its message names the file
            raise UserError(str(e)) from e
        except OSError as e:
            raise UserError(f"{path}: {e}") from e

    ref = read(args.ref)
    dists = [(d, read(d)) for d in args.dist]
    for path, img in dists:
        if img.shape != ref.shape:
            raise UserError(
                f"{path} is {img.shape[1]}x{img.shape[0]}, the reference {args.ref} is "
                f"{ref.shape[1]}x{ref.shape[0]}: the metrics compare images of one size"
            )
    try:
        fns = {n: perceptual.packaged_metric(n) for n in perceptual.METRIC_NAMES}
    except PackagedWeightsError as e:
        raise UserError(str(e)) from e
    x = ref.astype(np.float32) / 255.0
    refs = {}
    for name, m in fns.items():
        try:
            refs[name] = m.against(x)
        except ValueError:  # smaller than the network needs: no value
            refs[name] = None
    try:
        ms_ref = metrics.MsSsimReference(ref)
    except ValueError:  # below MS-SSIM's smallest size
        ms_ref = None
    rows = []
    for path, img in dists:
        row: dict[str, Any] = {"ref": args.ref, "dist": path, "psnr": metrics.psnr(ref, img)}
        row["ms_ssim"] = None if ms_ref is None else ms_ref(img)
        y = img.astype(np.float32) / 255.0
        for name, fn in refs.items():
            row[name] = None if fn is None else fn(y)
        rows.append(row)
        if args.json:
            print(json.dumps({k: (float(v) if isinstance(v, np.floating) else v)
                              for k, v in row.items()}))  # fmt: skip
    if not args.json:
        keys = ("psnr", "ms_ssim", *perceptual.METRIC_NAMES)
        labels = ("PSNR", "MS-SSIM", "LPIPS-Alex", "LPIPS-VGG", "DISTS")
        width = max(len(r["dist"]) for r in rows)
        print(f"{'image':<{width}} " + " ".join(f"{h:>10}" for h in labels))
        for r in rows:
            cells = " ".join(f"{'n/a':>10}" if r[k] is None else f"{r[k]:>10.4f}" for k in keys)
            print(f"{r['dist']:<{width}} {cells}")
        print(f"reference: {args.ref}; PSNR in dB; LPIPS, DISTS: lower is more similar")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m swinjax``."""
    from swinjax.compression import DEFAULT_DECODE_MEMORY
    from swinjax.export import DEFAULT_MODEL, shipped_models

    parser = argparse.ArgumentParser(prog="python -m swinjax", description=__doc__.split("\n")[0])
    shipped = ", ".join(shipped_models()) or "none shipped"
    ckpt = f"a shipped model's name ({shipped}), an export directory or a training workdir"
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("macs", help="parameters and MACs per part (XLA cost analysis)")
    p.add_argument("--config", required=True, help="config file, e.g. configs/swincoder.py[:tiny]")
    p.add_argument("--height", type=int, default=512, help="image height (default 512)")
    p.add_argument("--width", type=int, default=768, help="image width (default 768)")
    p.add_argument("--json", action="store_true", help="also print one JSON object (last line)")
    p.set_defaults(func=_cmd_macs)

    p = sub.add_parser("compress", help="image (or folder of images) -> .swj file(s)")
    _io_args(p, f"{ckpt} (default: the shipped {DEFAULT_MODEL})", "an image file", "a .swj file")
    p.add_argument(
        "--lmbda",
        type=float,
        help="rate-distortion weight (variable-rate models; default: the middle of its range)",
    )
    p.add_argument(
        "--target-bpp",
        type=float,
        help="pick lambda per image by bisection so the file's actual bpp is at most this "
        "(variable-rate models)",
    )
    p.add_argument(
        "--tile",
        type=int,
        help="code independent TILE x TILE tiles (bounded memory for very large images; a "
        "multiple of the model's padding factor, e.g. 1024)",
    )
    p.set_defaults(func=_cmd_compress)

    p = sub.add_parser("decompress", help=".swj file (or folder of them) -> PNG")
    _io_args(
        p, f"{ckpt} (default: the shipped model each file's header names)", "a .swj file", "a .png"
    )
    p.add_argument(
        "--max-decode-mb",
        type=int,
        default=DEFAULT_DECODE_MEMORY // 2**20,
        help="refuse, before allocating, a file whose decode needs more memory than this many "
        f"MiB (default {DEFAULT_DECODE_MEMORY // 2**20})",
    )
    p.add_argument(
        "--decoder",
        default=None,
        help="which shipped synthesis decodes the files: mse (the model's own, default) or "
        "perceptual (SwinCoder's stage-2/3 fine-tuned g_s: the same file decoded for realism)",
    )
    p.set_defaults(func=_cmd_decompress)

    p = sub.add_parser("info", help="print a .swj file's header")
    p.add_argument("input")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "metrics",
        help="PSNR, MS-SSIM, LPIPS-Alex, LPIPS-VGG and DISTS of images against a reference",
    )
    p.add_argument("ref", help="the reference image")
    p.add_argument("dist", nargs="+", help="distorted image(s) of the same size")
    p.add_argument(
        "--json", action="store_true", help="one JSON object per pair instead of the table"
    )
    p.set_defaults(func=_cmd_metrics)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    if func in (_cmd_compress, _cmd_decompress):
        from swinjax import compile_cache

        compile_cache.enable()  # later runs load the compiled programs instead of compiling
    try:
        return func(args)
    except (UserError, jobs.JobError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
