"""Peak memory of decoding, measured against the decoder's own estimate, up to the largest file
its memory budget accepts.

    python benchmarks/decode_memory.py [--ckpt swincoder-ref] [--budget-mb 4096]
        [--sizes 768x512,3072x2048] [--aspect 1.5] [--json]

``ImageCodec`` refuses, before allocating anything, a file whose decode would need more than
``max_decode_bytes`` (default 4 GiB): it estimates the peak from the header (the float64 group
loop, plus XLA's own buffer assignment for the synthesis at that size). This script checks the
estimate against what decoding really takes:

* It finds the largest image of the given aspect ratio (sides multiples of the model's padding
  factor) whose estimate fits the budget: the largest file the decoder accepts.
* Each case is decoded in a fresh process. Its baseline is the resident memory after loading the
  model, decoding a 64x64 file and compiling the case's synthesis (JAX runtime, parameters,
  compiled programs); the decode's own memory is the peak while decoding the case minus that
  baseline (Linux: the kernel's high-water mark, reset after the warm-up).
* The ``--sizes`` cases are photos (Kodak images tiled to the size) compressed normally. The
  largest accepted size is too big to encode in one piece on a small machine (the analysis
  transform is 4x the synthesis), so its file is made with the analysis skipped: y and z are
  zeros and everything after them (quantization, entropy parameters, range coding, header) is
  the ordinary encoder. The decoder cannot tell: its work and buffers depend only on the
  header's shapes, as a forged file's would. One ``--sizes`` case is also made that way, to
  show the two give the same peak.

Rows: size, how the file was made, file bytes, the decoder's estimate, the measured decode
memory (peak - baseline) and the ratio estimate / measured (>= 1: the budget is an upper bound).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from highres import make_image  # noqa: E402  (the Kodak tiling shared with highres.py)

from swinjax.codec_cache import open_codec  # noqa: E402
from swinjax.coding import container  # noqa: E402


def header_for(codec: Any, h: int, w: int) -> Any:
    """A header of this model for an ``h x w`` image (sides multiples of the padding factor)."""
    small, _ = container.unpack(codec.compress(np.zeros((64, 64, 3), np.uint8)))
    g, f = codec.latent_stride, codec.factor
    return dataclasses.replace(
        small,
        height=h,
        width=w,
        pad_h=0,
        pad_w=0,
        y_shape=(h // g, w // g, small.y_shape[2]),
        z_shape=(h // f, w // f, small.z_shape[2]),
    )


def largest_accepted(codec: Any, budget: int, aspect: float) -> tuple[int, int, int]:
    """``(h, w, estimate)`` of the largest ``h x round(aspect h)`` image within ``budget``."""
    f = codec.factor

    def fits(k: int) -> int | None:
        h, w = k * f, max(1, round(aspect * k)) * f
        need = codec.decode_memory_bytes(header_for(codec, h, w))
        return need if need <= budget else None

    lo, hi = 1, 2
    while fits(hi) is not None:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) is not None else (lo, mid)
    return lo * f, max(1, round(aspect * lo)) * f, int(fits(lo) or 0)


def make_file(codec: Any, h: int, w: int, how: str, lmbda: float | None) -> bytes:
    """A file for an ``h x w`` image: ``photo`` (real compress) or ``zeros`` (analysis skipped)."""
    if how == "photo":
        return codec.compress(make_image(h, w), lmbda)
    import jax.numpy as jnp

    g, f = codec.latent_stride, codec.factor
    hdr = header_for(codec, h, w)
    y = jnp.zeros((1, h // g, w // g, hdr.y_shape[2]), jnp.float32)
    z = jnp.zeros((1, h // f, w // f, hdr.z_shape[2]), jnp.float32)
    front = codec._front
    codec._front = lambda p, x, lm: (y, z)  # everything after the analysis is the real encoder
    try:
        return codec.compress(np.zeros((h, w, 3), np.uint8), lmbda)
    finally:
        codec._front = front


def _status_bytes(field: str) -> int | None:
    """``VmRSS`` / ``VmHWM`` of this process from /proc (Linux), in bytes."""
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Resets this process's peak resident memory (Linux >= 4.0: ``clear_refs`` 5)."""
    try:
        pathlib.Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def decode_case(ckpt: str, path: str, budget: int) -> dict[str, Any]:
    """Run in a child: baseline after a 64x64 decode, then the peak after decoding ``path``.

    The peak is the kernel's high-water mark reset after the warm-up (``ru_maxrss`` would also
    carry the parent's peak across fork and exec); without /proc, ``ru_maxrss`` is used.
    """
    codec = open_codec(ckpt, max_decode_bytes=budget)
    codec.decompress(codec.compress(np.zeros((64, 64, 3), np.uint8)))
    data = pathlib.Path(path).read_bytes()
    header, _ = container.unpack(data)
    estimate = codec.decode_memory_bytes(header)  # compiles the synthesis for this size
    base = _status_bytes("VmRSS")
    exact = base is not None and _reset_peak()
    if not exact:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = codec.decompress(data)
    peak = _status_bytes("VmHWM") if exact else None
    peak = peak or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "shape": list(out.shape),
        "baseline_bytes": base,
        "peak_bytes": peak,
        "estimate_bytes": estimate,
    }


def run_child(ckpt: str, path: str, budget: int) -> dict[str, Any]:
    here = str(pathlib.Path(__file__).parent)
    code = (
        f"import json, sys; sys.path.insert(0, {here!r}); import decode_memory as m; "
        f"print('RESULT ' + json.dumps(m.decode_case({ckpt!r}, {path!r}, {budget})))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
    return {"error": f"exit {proc.returncode}: {tail}"}


def format_table(result: dict[str, Any]) -> str:
    gib = 2**30
    lines = [
        f"model {result['model']}, decode budget {result['budget_bytes'] / gib:.2f} GiB, largest "
        f"accepted {result['largest'][1]}x{result['largest'][0]} (aspect {result['aspect']})",
        f"{'size':>11} {'MP':>5} {'file':>6} {'bytes':>9} {'estimate':>9} {'measured':>9} "
        f"{'est/meas':>8} {'peak':>7} {'base':>6}  (GiB)",
    ]
    for r in result["rows"]:
        size = f"{r['width']}x{r['height']}"
        head = f"{size:>11} {r['height'] * r['width'] / 1e6:5.1f} {r['how']:>6} {r['bytes']:9d}"
        if "error" in r:
            lines.append(f"{head} {r['error']}")
            continue
        used = r["peak_bytes"] - r["baseline_bytes"]
        lines.append(
            f"{head} {r['estimate_bytes'] / gib:9.2f} {used / gib:9.2f} "
            f"{r['estimate_bytes'] / max(used, 1):8.2f} {r['peak_bytes'] / gib:7.2f} "
            f"{r['baseline_bytes'] / gib:6.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", default="swincoder-ref", help="shipped model name or export dir")
    p.add_argument("--budget-mb", type=int, default=None, help="default: the decoder's default")
    p.add_argument("--sizes", default="768x512,3072x2048", help="photo cases, WxH list")
    p.add_argument("--aspect", type=float, default=1.5, help="width / height of the largest case")
    p.add_argument("--lmbda", type=float, default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from swinjax.compression import DEFAULT_DECODE_MEMORY

    budget = DEFAULT_DECODE_MEMORY if args.budget_mb is None else args.budget_mb * 2**20
    codec = open_codec(args.ckpt, max_decode_bytes=budget)
    h_max, w_max, _ = largest_accepted(codec, budget, args.aspect)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",") if s]
    cases = [(h, w, "photo") for w, h in sizes]
    if sizes:
        w, h = sizes[-1]
        cases.append((h, w, "zeros"))
    cases.append((h_max, w_max, "zeros"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (h, w, how) in enumerate(cases):
            data = make_file(codec, h, w, how, args.lmbda)
            path = os.path.join(tmp, f"{i}.swj")
            pathlib.Path(path).write_bytes(data)
            row = {"height": h, "width": w, "how": how, "bytes": len(data)}
            row.update(run_child(args.ckpt, path, budget))
            rows.append(row)
            print(f"{w}x{h} {how}: done", file=sys.stderr, flush=True)
    result = {
        "model": codec.exported.model_id,
        "budget_bytes": budget,
        "aspect": args.aspect,
        "largest": [h_max, w_max],
        "rows": rows,
    }
    print(json.dumps(result, indent=1) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
