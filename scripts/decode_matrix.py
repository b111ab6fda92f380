"""Encode on one machine configuration, decode on every other: the cross-platform decode matrix.

    python scripts/decode_matrix.py [--ckpt swincoder-ref] [--data ../shared/datasets/kodak]
                                    [--images N] [--lmbda 16,128,1024] [--levels SSE4_2,AVX,...]
                                    [--threads 1,2] [--gpu] [--workdir DIR]

Files are written once, in this process (XLA's default CPU configuration), with the shipped model
(or ``--ckpt``). Each decode configuration then runs in a fresh process, since XLA reads its
flags once: ``XLA_FLAGS=--xla_cpu_max_isa=LEVEL`` for every instruction-set level this CPU has
(SSE4_2, AVX, AVX2, and AVX512 when ``/proc/cpuinfo`` lists ``avx512f``), each with one thread
(``taskset -c 0`` and ``--xla_cpu_multi_thread_eigen=false``) and with two. A decode fails when
the range decoder or the symbol checksum rejects the file; the table also gives the largest
difference of 8-bit pixels against the decode in the encoding process (the float32 synthesis
may round differently; the symbols may not).

``--gpu`` (needs a GPU jaxlib) adds GPU encode -> CPU decode (files written on the GPU, decoded
by the default CPU configuration) and CPU encode -> GPU decode.

Prints one row per configuration and exits with status 1 if any decode failed.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "datasets" / "kodak"


def cpu_levels() -> list[str]:
    """XLA CPU instruction-set levels this machine can run, oldest first."""
    flags: set[str] = set()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags |= set(line.split(":", 1)[1].split())
    except OSError:
        return []
    table = [("SSE4_2", "sse4_2"), ("AVX", "avx"), ("AVX2", "avx2"), ("AVX512", "avx512f")]
    return [level for level, flag in table if flag in flags]


def _env(platform: str, level: str | None, threads: int) -> tuple[dict[str, str], list[str]]:
    """Environment and command prefix of one decode configuration."""
    flags = os.environ.get("XLA_FLAGS", "").split()
    if level:
        flags.append(f"--xla_cpu_max_isa={level}")
    prefix: list[str] = []
    if threads == 1:
        flags.append("--xla_cpu_multi_thread_eigen=false")
        if shutil.which("taskset"):
            prefix = ["taskset", "-c", "0"]
    env = dict(os.environ, JAX_PLATFORMS=platform, XLA_FLAGS=" ".join(flags))
    return env, prefix


def encode(ckpt: str, images: list[pathlib.Path], lmbdas: list[float], out: pathlib.Path) -> None:
    """Writes ``out/<image>-<lambda>.swj`` and the decode of each in this process (``.npy``)."""
    from swinjax.checkpoint import load_model
    from swinjax.compression import ImageCodec
    from swinjax.imageio import load_image

    codec = ImageCodec(load_model(ckpt))
    out.mkdir(parents=True, exist_ok=True)
    for path in images:
        img = load_image(path)
        for lm in lmbdas:
            data = codec.compress(img, lm)
            stem = f"{path.stem}-{lm:g}"
            (out / f"{stem}.swj").write_bytes(data)
            np.save(out / f"{stem}.npy", codec.decompress(data))


def decode(ckpt: str, files: pathlib.Path, out: pathlib.Path) -> None:
    """Decodes every ``.swj`` in ``files``; writes ``out/<stem>.npy`` or ``out/<stem>.err``."""
    from swinjax.checkpoint import load_model
    from swinjax.coding import container
    from swinjax.compression import ImageCodec

    codec = ImageCodec(load_model(ckpt))
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted(files.glob("*.swj")):
        try:
            np.save(out / f"{f.stem}.npy", codec.decompress(f.read_bytes()))
        except container.FormatError as e:
            (out / f"{f.stem}.err").write_text(str(e))


def _run_decode(
    ckpt: str,
    files: pathlib.Path,
    out: pathlib.Path,
    platform: str,
    level: str | None,
    threads: int,
) -> tuple[float, str]:
    env, prefix = _env(platform, level, threads)
    cmd = [
        *prefix,
        sys.executable,
        __file__,
        "--ckpt",
        ckpt,
        "--decode-worker",
        str(files),
        "--workdir",
        str(out),
    ]
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    return time.perf_counter() - t, "" if r.returncode == 0 else r.stderr.strip()[-300:]


def compare(files: pathlib.Path, decoded: pathlib.Path) -> dict[str, Any]:
    """Failures and the largest pixel difference of one configuration's decodes."""
    fails, max_diff, n = [], 0, 0
    for f in sorted(files.glob("*.swj")):
        n += 1
        err = decoded / f"{f.stem}.err"
        got = decoded / f"{f.stem}.npy"
        if err.exists() or not got.exists():
            fails.append(f"{f.stem}: {err.read_text() if err.exists() else 'no output'}")
            continue
        ref = np.load(files / f"{f.stem}.npy").astype(np.int16)
        max_diff = max(max_diff, int(np.abs(np.load(got).astype(np.int16) - ref).max()))
    return {"files": n, "failed": len(fails), "max_pixel_diff": max_diff, "failures": fails}


def pinned_count(files: pathlib.Path) -> int:
    """Pinned scale indexes over all files (see :mod:`swinjax.compression`)."""
    from swinjax.coding import container

    return sum(len(container.unpack(f.read_bytes())[0].pinned) for f in files.glob("*.swj"))


def _images(args: argparse.Namespace) -> list[pathlib.Path]:
    images = sorted(pathlib.Path(args.data).glob("*.png"))
    return images[: args.images] if args.images else images


def _lmbdas(args: argparse.Namespace) -> list[float]:
    return [float(v) for v in args.lmbda.split(",") if v]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", default="swincoder-ref")
    p.add_argument("--data", default=str(KODAK))
    p.add_argument("--images", type=int, default=0, help="first N images only (0: all)")
    p.add_argument("--lmbda", default="16,128,1024")
    p.add_argument("--levels", default="", help="comma-separated; default: every level here")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--gpu", action="store_true", help="also GPU -> CPU and CPU -> GPU")
    p.add_argument("--workdir", default="")
    p.add_argument("--json", action="store_true")
    p.add_argument("--decode-worker", default="", help=argparse.SUPPRESS)
    p.add_argument("--encode-worker", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.encode_worker:
        encode(args.ckpt, _images(args), _lmbdas(args), pathlib.Path(args.encode_worker))
        return 0
    if args.decode_worker:
        decode(args.ckpt, pathlib.Path(args.decode_worker), pathlib.Path(args.workdir))
        return 0

    images, lmbdas = _images(args), _lmbdas(args)
    if not images:
        p.error(f"no PNG images in {args.data}")
    levels = [v for v in args.levels.split(",") if v] or cpu_levels()
    threads = [int(v) for v in args.threads.split(",") if v]
    work = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="decode-matrix-"))
    cpu_files = work / "files-cpu"
    t = time.perf_counter()
    encode(args.ckpt, images, lmbdas, cpu_files)
    print(
        f"encoded {len(images)} images x {len(lmbdas)} lambdas in "
        f"{time.perf_counter() - t:.0f} s, {pinned_count(cpu_files)} pinned scale indexes "
        f"in all ({work})",
        flush=True,
    )

    runs: list[tuple[str, pathlib.Path, str, str | None, int]] = [
        (f"cpu -> cpu {level or 'default'}, {n} thread{'s' * (n > 1)}", cpu_files, "cpu", level, n)
        for level in levels
        for n in threads
    ]
    if args.gpu:
        gpu_files = work / "files-gpu"
        env, _ = _env("cuda", None, 2)
        cmd = [sys.executable, __file__, "--ckpt", args.ckpt, "--data", args.data]
        cmd += ["--images", str(args.images), "--lmbda", args.lmbda]
        r = subprocess.run(
            [*cmd, "--encode-worker", str(gpu_files)], env=env, text=True, capture_output=True
        )
        if r.returncode:
            print(f"GPU encode failed: {r.stderr.strip()[-300:]}")
            return 1
        runs += [
            ("gpu -> cpu default, 2 threads", gpu_files, "cpu", None, 2),
            ("cpu -> gpu", cpu_files, "cuda", None, 2),
        ]

    rows, failed = [], 0
    print(
        "| configuration | files | failed | max pixel diff | seconds |\n|---|---:|---:|---:|---:|"
    )
    for i, (name, files, platform, level, n) in enumerate(runs):
        out = work / f"decoded-{i}"
        seconds, err = _run_decode(args.ckpt, files, out, platform, level, n)
        row = {"configuration": name, "seconds": seconds, **compare(files, out)}
        if err:
            row["error"] = err
        rows.append(row)
        failed += row["failed"]
        print(
            f"| {name} | {row['files']} | {row['failed']} | {row['max_pixel_diff']} | "
            f"{seconds:.0f} |",
            flush=True,
        )
        for line in row["failures"][:5]:
            print(f"    {line}")
        if err:
            print(f"    worker: {err}")
    if args.json:
        print(json.dumps(rows, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
