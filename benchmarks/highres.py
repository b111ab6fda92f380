"""High-resolution compress/decompress on CPU: time and peak memory, whole image vs tiles.

    python benchmarks/highres.py --ckpt DIR | --config configs/tiny.py
        [--sizes 2048x1376,4096x4096] [--tiles 0,512,1024] [--lmbda 256] [--repeats 3]
        [--bd-tile 256 --bd-images 4] [--skip-whole-above 9000000] [--json]

Rows: one per (image size, tile) case; tile 0 = the whole image in one file. Each case runs in a
fresh subprocess so its peak resident memory (``ru_maxrss`` of the child: JAX runtime, compiled
programs, image buffers and activations together) is its own; a ``64x64`` row gives the baseline
that any run pays. Times are the median of ``--repeats`` after one untimed warm-up (which
compiles), wall-clock seconds of ``compress`` and ``decompress`` in memory. Images are Kodak
photos tiled to the requested size (synthetic texture if ../shared is absent).

The tiling cost is a BD-rate: ``--bd-images`` Kodak images coded whole and in ``--bd-tile``
tiles at 4 lambdas over the model's range; PSNR-RGB vs actual bpp; tiled curve against the whole
curve (PCHIP, overlap only). Tiles are independent swinjax files (``python -m swinjax compress
--tile``), so the cost is the lost context across tile borders plus one header per tile.

Whole-image cases above ``--skip-whole-above`` pixels are skipped for models with more than
``--whole-max-params`` parameters, whose activations on a shared 24 GiB machine risk the OOM
killer; the tiled rows are what bounds memory.

Measured (2026-11-22, shared 2-core x86-64 VM under load, so times are noisy):

* SwinCoder (configs/swincoder.py, 19.6 M params, random init, default λ): 64x64 baseline
  1.26 GB peak; 2048x1376 whole image 2.64 GB, 14.0 s encode / 10.2 s decode; in 1024 tiles
  1.42 GB, 17.3 s / 8.5 s; 4096x4096 in 1024 tiles 1.42 GB peak (the same bound), 97 s / 53 s
  (whole 4096x4096 not run: extrapolated ~9 GB).
* swincoder-tiny trained 4000 steps: 4096x4096 whole 2.5 GB, in 512 tiles 1.8 GB (before psnr
  stopped making float64 copies). Tiling cost on 4 Kodak images, 4 λ: BD-rate +0.7 % with 512
  tiles (2 per image), +9.7 % with 256 tiles (6 per image).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from swinjax.lmbda import lmbda_range

ROOT = pathlib.Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "datasets" / "kodak"


def make_image(h: int, w: int, seed: int = 5) -> np.ndarray:
    """A Kodak photo tiled (mirrored, so no hard seams) to ``h x w``."""
    path = KODAK / f"kodim{seed:02d}.png"
    if path.is_file():
        from PIL import Image

        a = np.asarray(Image.open(path).convert("RGB"))
        a = np.concatenate([a, a[::-1]], 0)
        a = np.concatenate([a, a[:, ::-1]], 1)
    else:
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:512, 0:512] / 30.0
        base = np.stack([np.sin(xx), np.cos(yy), np.sin(xx * yy / 20)], -1)
        a = np.clip(128 + 90 * base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    reps = (-(-h // a.shape[0]), -(-w // a.shape[1]), 1)
    return np.ascontiguousarray(np.tile(a, reps)[:h, :w])


def _codec(ckpt: str) -> Any:
    from swinjax.codec_cache import open_codec

    return open_codec(ckpt)


def case(ckpt: str, h: int, w: int, tile: int, lmbda: float | None, repeats: int) -> dict:
    """One (size, tile) measurement in this process (run by :func:`run_case` in a child)."""
    from swinjax.coding import tiled

    codec = _codec(ckpt)
    img = make_image(h, w)

    def enc() -> bytes:
        return tiled.compress_tiled(codec, img, lmbda, tile) if tile else codec.compress(img, lmbda)

    def dec(data: bytes) -> np.ndarray:
        return tiled.decompress_tiled(codec, data) if tile else codec.decompress(data)

    t0 = time.perf_counter()
    data = enc()
    out = dec(data)
    warm = time.perf_counter() - t0
    enc_t, dec_t = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        data = enc()
        t1 = time.perf_counter()
        out = dec(data)
        t2 = time.perf_counter()
        enc_t.append(t1 - t0)
        dec_t.append(t2 - t1)
    from swinjax.metrics import psnr

    return {
        "height": h,
        "width": w,
        "tile": tile,
        "bytes": len(data),
        "bpp": len(data) * 8 / (h * w),
        "psnr": psnr(img, out),
        "first_run_s": warm,
        "encode_s": statistics.median(enc_t),
        "decode_s": statistics.median(dec_t),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_case(ckpt: str, h: int, w: int, tile: int, lmbda: float | None, repeats: int) -> dict:
    """:func:`case` in a fresh Python process (its own peak memory)."""
    here = str(pathlib.Path(__file__).parent)
    call = f"highres.case({ckpt!r}, {h}, {w}, {tile}, {lmbda!r}, {repeats})"
    code = f"import json, sys; sys.path.insert(0, {here!r}); import highres; "
    code += f"print('RESULT ' + json.dumps({call}))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy()
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
    return {"height": h, "width": w, "tile": tile, "error": f"exit {proc.returncode}: {tail}"}


def tiling_bd(ckpt: str, tile: int, n_images: int) -> dict:
    """BD-rate (PSNR) of tiled against whole-image coding on Kodak images, 4 lambdas."""
    from PIL import Image

    from swinjax import metrics
    from swinjax.coding import tiled

    codec = _codec(ckpt)
    model = codec.model_config
    if not bool(model.get("variable_rate", False)):
        return {"note": "fixed-rate model: one point, no BD-rate"}
    lms = lmbda_range(model).sweep(4)
    files = sorted(KODAK.glob("kodim*.png"))[:n_images]
    if not files:
        return {"note": "no Kodak images in ../shared"}
    curves: dict[str, dict[str, list[float]]] = {"whole": {}, "tiled": {}}
    for name in curves:
        bpp, q = [], []
        for lm in lms:
            b, p = [], []
            for f in files:
                img = np.asarray(Image.open(f).convert("RGB"))
                if name == "whole":
                    data = codec.compress(img, lm)
                    out = codec.decompress(data)
                else:
                    data = tiled.compress_tiled(codec, img, lm, tile)
                    out = tiled.decompress_tiled(codec, data)
                b.append(len(data) * 8 / (img.shape[0] * img.shape[1]))
                p.append(metrics.psnr(img, out))
            bpp.append(float(np.mean(b)))
            q.append(float(np.mean(p)))
        curves[name] = {"bpp": bpp, "psnr": q}
    w, t = curves["whole"], curves["tiled"]
    try:
        bd = metrics.bd_rate(w["bpp"], w["psnr"], t["bpp"], t["psnr"])
    except ValueError as e:
        bd = None
        curves["note"] = str(e)  # type: ignore[assignment]
    return {"tile": tile, "images": len(files), "lmbdas": lms, "bd_rate_psnr": bd, **curves}


def _export_config(spec: str) -> str:
    import jax

    from swinjax.config_utils import load_config
    from swinjax.models import build_codec

    config = load_config(spec)
    codec = build_codec(config)
    x = np.zeros((1, 64, 64, 3), np.float32)
    params = jax.jit(codec.init)(jax.random.key(0), x, np.ones((1,), np.float32), jax.random.key(1))
    out = pathlib.Path(tempfile.mkdtemp(prefix="highres-export-"))
    from swinjax.export import export

    export(config, params, out)
    return str(out)


def _param_count(ckpt: str) -> int:
    import jax

    from swinjax.checkpoint import load_model

    return sum(int(np.size(p)) for p in jax.tree.leaves(load_model(ckpt).params))


def format_table(result: dict) -> str:
    lines = [
        f"model {result['model']} ({result['params'] / 1e6:.2f} M params), lambda "
        f"{result['lmbda']}, {result['device']}",
        f"{'size':>11} {'tile':>6} {'bpp':>7} {'PSNR':>6} {'enc s':>7} {'dec s':>7} "
        f"{'1st run s':>9} {'peak MB':>8}",
    ]
    for r in result["rows"]:
        size = f"{r['width']}x{r['height']}"
        tile = "whole" if not r["tile"] else str(r["tile"])
        if "error" in r:
            lines.append(f"{size:>11} {tile:>6} {r['error']}")
            continue
        lines.append(
            f"{size:>11} {tile:>6} {r['bpp']:7.4f} {r['psnr']:6.2f} {r['encode_s']:7.2f} "
            f"{r['decode_s']:7.2f} {r['first_run_s']:9.2f} {r['peak_rss_mb']:8.0f}"
        )
    bd = result.get("tiling_bd")
    if bd and bd.get("bd_rate_psnr") is not None:
        lines.append(
            f"tiling cost: BD-rate {bd['bd_rate_psnr']:+.2f} % (PSNR) for {bd['tile']}x"
            f"{bd['tile']} tiles vs whole images, {bd['images']} Kodak images"
        )
    elif bd:
        lines.append(f"tiling cost: n/a ({bd.get('note', '')})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", help="export directory or training workdir")
    src.add_argument("--config", help="config spec; random init (time and memory only)")
    p.add_argument("--sizes", default="2048x1376,4096x4096", help="WxH list")
    p.add_argument("--tiles", default="0,512,1024", help="tile sides; 0 = whole image")
    p.add_argument("--lmbda", type=float, default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--bd-tile", type=int, default=256, help="0: skip the tiling BD-rate")
    p.add_argument("--bd-images", type=int, default=4)
    p.add_argument("--skip-whole-above", type=int, default=9_000_000)
    p.add_argument("--whole-max-params", type=int, default=5_000_000)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    import jax

    ckpt = args.ckpt or _export_config(args.config)
    codec = _codec(ckpt)
    params = _param_count(ckpt)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",") if s]
    tiles = [int(t) for t in args.tiles.split(",") if t != ""]
    rows = [run_case(ckpt, 64, 64, 0, args.lmbda, 1)]
    for w, h in sizes:
        for t in tiles:
            if not t and h * w > args.skip_whole_above and params > args.whole_max_params:
                rows.append({"height": h, "width": w, "tile": 0, "error": "skipped (memory)"})
                continue
            rows.append(run_case(ckpt, h, w, t, args.lmbda, args.repeats))
    result = {
        "model": codec.exported.model_id,
        "params": params,
        "lmbda": args.lmbda,
        "device": f"{jax.devices()[0].platform}, {os.cpu_count()} cores",
        "rows": rows,
    }
    if args.bd_tile:
        result["tiling_bd"] = tiling_bd(ckpt, args.bd_tile, args.bd_images)
    print(json.dumps(result, indent=1) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
