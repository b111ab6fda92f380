"""Speed of the coding layer against raw constriction calls on the same symbols.

    python benchmarks/coding.py [--symbols 1000000] [--levels 64] [--repeats 7]
                                [--clock wall|cpu] [--json]

Data: ``--symbols`` Laplacian-ish integers, each with a scale index drawn from the default
64-level scale table (skewed towards small scales, as trained latents are) and the value
``round(Laplace(scale / sqrt 2))`` (variance ``scale**2``): heavier tails than the Gaussian the
tables model, so a few values escape, as in real files.

Rows (median of ``--repeats`` after one warm-up, all in this process):

* ``raw constriction``: the lower bound. The symbols already grouped by table row and mapped to
  in-table symbol numbers, the 64 categorical models already built; one ``RangeEncoder.encode``
  / ``RangeDecoder.decode`` call per row. This is exactly the constriction work the layer does.
* ``ConstrictionCoder``: the coding layer (:mod:`swinjax.coding.backend`) with a coder built
  once: input validation, the row permutation, offset mapping, escapes, the end marker, the
  inverse permutation on decode.
* ``backend.encode/decode``: the one-shot functions, which also build the models every call.
* ``constriction QuantizedGaussian``: for context only, a different coding model: constriction's
  own per-symbol Gaussian family (no tables), the usual way to code a Gaussian conditional with
  constriction directly.

The ratio column is time / raw time (goal for the layer: <= 1.3x). Whole-image timings
(compress / decompress of a Kodak image, split into network and coding) are printed with
``--codecs swincoder,swinnpe``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import constriction
import numpy as np

from swinjax.coding import backend
from swinjax.coding.backend import ConstrictionCoder
from swinjax.entropy.tables import CodingTables, build_gaussian_tables, default_scale_table

_ROOT = pathlib.Path(__file__).resolve().parents[1]


def make_data(n: int, levels: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symbols, scale indexes and the scale table (see the module docstring)."""
    rng = np.random.default_rng(seed)
    scales = default_scale_table(levels=levels)
    # Skewed towards small scales: most latent channels of a trained model are nearly constant.
    idx = np.minimum(rng.exponential(levels / 4, n), levels - 1).astype(np.int32)
    sym = np.round(rng.laplace(size=n) * scales[idx] / np.sqrt(2.0)).astype(np.int32)
    return sym, idx, scales


def median_seconds(fn: Callable[[], Any], repeats: int, clock: str = "wall") -> float:
    """Median time of ``repeats`` calls after one warm-up call.

    ``clock="cpu"`` measures this process's CPU time instead of wall time: steadier on a shared
    machine, and the same thing for this single-threaded code.
    """
    now = time.process_time if clock == "cpu" else time.perf_counter
    fn()
    times = []
    for _ in range(repeats):
        t = now()
        fn()
        times.append(now() - t)
    return statistics.median(times)


def raw_constriction(
    coder: ConstrictionCoder, sym: np.ndarray, idx: np.ndarray
) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """Encode / decode closures doing only the constriction calls (inputs prepared outside)."""
    tables = coder.tables
    order = np.argsort(idx, kind="stable")
    grouped, rows = sym[order], idx[order]
    n = tables.cdf_length.astype(np.int64) - 2
    s = grouped.astype(np.int64) - tables.cdf_offset[rows]
    s = np.where((s < 0) | (s >= n[rows]), n[rows], s).astype(np.int32)
    counts = np.bincount(idx, minlength=tables.num_rows)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    used = [int(r) for r in np.flatnonzero(counts)]
    runs = [s[bounds[r] : bounds[r + 1]] for r in used]
    models = [coder.model(r) for r in used]
    queue = constriction.stream.queue

    def encode() -> np.ndarray:
        enc = queue.RangeEncoder()
        for run, model in zip(runs, models, strict=True):
            enc.encode(run, model)
        return enc.get_compressed()

    words = encode()

    def decode() -> None:
        dec = queue.RangeDecoder(words)
        for run, model in zip(runs, models, strict=True):
            dec.decode(model, run.size)

    return encode, decode


def quantized_gaussian(
    sym: np.ndarray, idx: np.ndarray, scales: np.ndarray
) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """constriction's per-symbol QuantizedGaussian family (context row; no tables)."""
    bound = int(np.abs(sym).max()) + 1
    family = constriction.stream.model.QuantizedGaussian(-bound, bound)
    means = np.zeros(sym.size, np.float64)
    stds = scales[idx].astype(np.float64)
    queue = constriction.stream.queue

    def encode() -> np.ndarray:
        enc = queue.RangeEncoder()
        enc.encode(sym, family, means, stds)
        return enc.get_compressed()

    words = encode()

    def decode() -> None:
        queue.RangeDecoder(words).decode(family, means, stds)

    return encode, decode


def run(n: int, levels: int, repeats: int, clock: str = "wall") -> dict[str, Any]:
    """Times every row; returns a JSON-friendly dict."""
    sym, idx, scales = make_data(n, levels)
    tables: CodingTables = build_gaussian_tables(scales)
    coder = ConstrictionCoder(tables)
    data = coder.encode(sym, idx)
    assert np.array_equal(coder.decode(data, idx), sym)
    rows: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "raw constriction": raw_constriction(coder, sym, idx),
        "ConstrictionCoder": (lambda: coder.encode(sym, idx), lambda: coder.decode(data, idx)),
        "backend.encode/decode": (
            lambda: backend.encode(sym, idx, tables),
            lambda: backend.decode(data, idx, tables),
        ),
        "constriction QuantizedGaussian": quantized_gaussian(sym, idx, scales),
    }
    result: dict[str, Any] = {
        "symbols": n,
        "levels": levels,
        "repeats": repeats,
        "clock": clock,
        "bytes": len(data),
        "bits_per_symbol": 8 * len(data) / n,
        "escapes": int(
            np.sum(
                (sym - tables.cdf_offset[idx] < 0)
                | (sym - tables.cdf_offset[idx] >= tables.cdf_length[idx] - 2)
            )
        ),
        "rows": {},
    }
    for name, (enc, dec) in rows.items():
        result["rows"][name] = {
            "encode_seconds": median_seconds(enc, repeats, clock),
            "decode_seconds": median_seconds(dec, repeats, clock),
        }
    base = result["rows"]["raw constriction"]
    for r in result["rows"].values():
        r["encode_ratio"] = r["encode_seconds"] / base["encode_seconds"]
        r["decode_ratio"] = r["decode_seconds"] / base["decode_seconds"]
    return result


def format_table(result: dict[str, Any]) -> str:
    """The printed table."""
    n = result["symbols"]
    lines = [
        f"{n} symbols, {result['levels']} scale levels, "
        f"{result['bits_per_symbol']:.3f} bits/symbol, {result['escapes']} escapes, "
        f"median {result['clock']} time of {result['repeats']}",
        f"{'path':32s} {'enc Msym/s':>10s} {'dec Msym/s':>10s} {'enc ratio':>9s} {'dec ratio':>9s}",
    ]
    for name, r in result["rows"].items():
        enc, dec = n / r["encode_seconds"] / 1e6, n / r["decode_seconds"] / 1e6
        ratios = f"{r['encode_ratio']:8.2f}x {r['decode_ratio']:8.2f}x"
        lines.append(f"{name:32s} {enc:10.1f} {dec:10.1f} {ratios}")
    return "\n".join(lines)


def codec_times(name: str, image_path: str, repeats: int) -> dict[str, Any]:
    """Compress/decompress seconds of one image with an (untrained) full-size model.

    Split into network (the jitted pieces) and coding (the range coder on the same symbols and
    indexes). Weights are a fresh initialisation: the timing of the network does not depend on
    them, the coding time does a little (trained models code fewer non-zero symbols).
    """
    import tempfile

    import jax
    import jax.numpy as jnp

    from swinjax import checkpoint, export
    from swinjax.compression import ImageCodec
    from swinjax.config_utils import load_config
    from swinjax.imageio import load_image
    from swinjax.models import build_codec

    root = pathlib.Path(__file__).resolve().parents[1]
    config = load_config(str(root / "configs" / f"{name}.py"))
    codec = build_codec(config)
    x0 = jnp.zeros((1, 64, 64, 3), jnp.float32)
    params = jax.jit(codec.init)(jax.random.key(0), x0, jnp.ones((1,)), jax.random.key(1))
    with tempfile.TemporaryDirectory() as tmp:
        ic = ImageCodec(checkpoint.load_model(export.export(config, params, tmp)))
    img = load_image(image_path)
    lm = 128.0 if config.model.variable_rate else None
    data = ic.compress(img, lm)  # compile
    ic.decompress(data)
    t_comp = median_seconds(lambda: ic.compress(img, lm), repeats)
    t_dec = median_seconds(lambda: ic.decompress(data), repeats)
    # The coder alone, on the symbols and indexes of this image.
    x, _ = ic._prepare(img)
    lm_arr = ic._lm_array(ic._lmbda(lm))
    y, z = ic._front(ic.params, x, lm_arr)
    z_sym = ic._z_symbols(ic.params, z)
    z_np = np.asarray(z_sym)[0]
    jobs = [(ic.z_coder, z_np, ic._z_indexes(z_np.shape))]

    def code(k: int, gp: Any) -> Any:
        sym = ic._y_symbols[k](ic.params64, y, gp.mu)
        jobs.append((ic.y_coder, np.asarray(sym)[0], np.asarray(gp.index)[0]))
        return sym

    ic._groups(z_sym, lm_arr, code)
    streams = [c.encode(sy, ix) for c, sy, ix in jobs]
    t_enc = median_seconds(lambda: [c.encode(sy, ix) for c, sy, ix in jobs], repeats)
    t_dcd = median_seconds(
        lambda: [c.decode(st, ix) for (c, _, ix), st in zip(jobs, streams, strict=True)], repeats
    )
    return {
        "model": name,
        "image": f"{img.shape[1]}x{img.shape[0]}",
        "bytes": len(data),
        "compress_s": t_comp,
        "compress_coding_s": t_enc,
        "decompress_s": t_dec,
        "decompress_coding_s": t_dcd,
    }


def format_codec_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`codec_times` rows."""
    out = [
        "| model | image | compress s | network | coding | decompress s | network | coding |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['model']} | {r['image']} | {r['compress_s']:.2f} | "
            f"{r['compress_s'] - r['compress_coding_s']:.2f} | {r['compress_coding_s']:.3f} | "
            f"{r['decompress_s']:.2f} | {r['decompress_s'] - r['decompress_coding_s']:.2f} | "
            f"{r['decompress_coding_s']:.3f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=1_000_000)
    parser.add_argument("--levels", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--codecs", default="", help="also time whole images, e.g. swincoder,swinnpe (slow)"
    )
    parser.add_argument(
        "--image", default=str(_ROOT.parent / "shared" / "datasets" / "kodak" / "kodim01.png")
    )
    args = parser.parse_args(argv)
    result = run(args.symbols, args.levels, args.repeats, args.clock)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    names = [n for n in args.codecs.split(",") if n]
    if names:
        rows = [codec_times(n, args.image, max(3, args.repeats // 2)) for n in names]
        print(json.dumps(rows, indent=2) if args.json else format_codec_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
