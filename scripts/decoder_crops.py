"""One file, two decoders, beside JPEG, WebP and AVIF at about the same bytes: a figure of crops.

    python scripts/decoder_crops.py [--image ../shared/datasets/kodak/kodim13.png] [--lmbda 128]
        [--crop Y,X,SIZE] [--out docs/img/decoder-crops.png]

Compresses one image with the shipped model into a real ``.swj`` file, decodes that one file with
the MSE synthesis and with the perceptual one (SwinCoder's stages 2-3, Li et al., CLIC 2025,
§II-B; README, "Two decoders for one file"), encodes the image with JPEG 4:2:0, WebP and
AVIF 4:4:4 at the quality whose file is closest in bytes to the model's (the evaluation's codec
settings, :mod:`swinjax.evaluation.classical`), and draws the same zoomed square of each with
its bytes, bpp, PSNR, LPIPS-Alex and DISTS (the packaged weights, docs/weights.md). Prints the
same numbers as a Markdown table.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from swinjax import metrics, perceptual  # noqa: E402
from swinjax.checkpoint import load_model  # noqa: E402
from swinjax.compression import ImageCodec  # noqa: E402
from swinjax.evaluation.classical import ClassicalCodec, select_codecs  # noqa: E402
from swinjax.export import DEFAULT_MODEL, paired_decoders  # noqa: E402
from swinjax.imageio import load_image  # noqa: E402

DEFAULT_IMAGE = ROOT.parent / "shared" / "datasets" / "kodak" / "kodim13.png"


def closest_setting(codec: ClassicalCodec, image: np.ndarray, target: int) -> tuple[float, bytes]:
    """The codec's quality setting whose file is closest to ``target`` bytes, and the file."""
    best = None
    for q in codec.settings:
        data = codec.encode(image, q)
        if best is None or abs(len(data) - target) < abs(len(best[1]) - target):
            best = (q, data)
    return best


def main(argv: list[str] | None = None) -> int:
    """Writes the figure and prints the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image", default=str(DEFAULT_IMAGE), help="the photo (default: Kodak 13)")
    p.add_argument("--ckpt", default=DEFAULT_MODEL, help="the base model (shipped name or export)")
    p.add_argument("--decoder", default="perceptual", help="the second decoder's name")
    p.add_argument("--lmbda", type=float, default=128.0)
    p.add_argument("--crop", default="", help="Y,X,SIZE of the zoomed square (default: centre)")
    p.add_argument("--out", default=str(ROOT / "docs" / "img" / "decoder-crops.png"))
    args = p.parse_args(argv)
    if not pathlib.Path(args.image).is_file():
        raise SystemExit(f"{args.image}: no such image (give one with --image)")
    image = load_image(args.image)
    h, w = image.shape[:2]
    base = load_model(args.ckpt)
    decoders = paired_decoders(base)
    if args.decoder not in decoders:
        have = ", ".join(decoders) or "none"
        raise SystemExit(f"{args.ckpt} has no shipped {args.decoder!r} decoder (paired: {have})")
    mse_codec, other = ImageCodec(base), ImageCodec(load_model(decoders[args.decoder]))
    data = mse_codec.compress(image, lmbda=args.lmbda)
    panels = [
        ("original", image, None),
        (f"{base.model_id}, MSE decoder", mse_codec.decompress(data), len(data)),
        (f"same file, {args.decoder} decoder", other.decompress(data), len(data)),
    ]
    codecs, _ = select_codecs(["jpeg", "webp", "avif"])
    for c in codecs:
        q, encoded = closest_setting(c, image, len(data))
        panels.append((f"{c.name} {c.setting} {q:g}", c.decode(encoded), len(encoded)))

    fns = {n: perceptual.packaged_metric(n) for n in ("lpips_alex", "dists")}
    x = image.astype(np.float32) / 255.0
    refs = {n: m.against(x) for n, m in fns.items()}
    rows = []
    for title, img, nbytes in panels[1:]:
        y = img.astype(np.float32) / 255.0
        rows.append(
            dict(
                title=title,
                bytes=nbytes,
                bpp=8 * nbytes / (h * w),
                psnr=metrics.psnr(image, img),
                lpips_alex=float(refs["lpips_alex"](y)),
                dists=float(refs["dists"](y)),
            )
        )
    print(f"{pathlib.Path(args.image).name}, lambda {args.lmbda:g}")
    print("| | bytes | bpp | PSNR (dB) | LPIPS-Alex | DISTS |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['title']} | {r['bytes']} | {r['bpp']:.3f} | {r['psnr']:.2f} | "
            f"{r['lpips_alex']:.3f} | {r['dists']:.3f} |"
        )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y0, x0, s = (int(v) for v in args.crop.split(",")) if args.crop else (h // 3, w // 3, 192)
    if not (0 <= y0 and 0 <= x0 and y0 + s <= h and x0 + s <= w):
        raise SystemExit(f"--crop {y0},{x0},{s} is outside the {w}x{h} image")
    fig, axes = plt.subplots(2, 3, figsize=(10.5, 8.6), gridspec_kw={"hspace": 0.32})
    for ax, (title, img, _), r in zip(axes.flat, panels, [None, *rows], strict=True):
        ax.imshow(img[y0 : y0 + s, x0 : x0 + s], interpolation="nearest")
        ax.set_title(title, fontsize=9)
        if r is not None:
            ax.set_xlabel(
                f"{r['bytes']} B, {r['bpp']:.3f} bpp, {r['psnr']:.2f} dB\n"
                f"LPIPS-Alex {r['lpips_alex']:.3f}, DISTS {r['dists']:.3f}",
                fontsize=8,
            )
        else:
            ax.set_xlabel(
                f"{pathlib.Path(args.image).name}, {s}x{s} crop at ({x0}, {y0})", fontsize=8
            )
        ax.set_xticks([])
        ax.set_yticks([])
    fig.subplots_adjust(left=0.02, right=0.98, top=0.96, bottom=0.07, wspace=0.06)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
