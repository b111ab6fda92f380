"""Seconds per batch of the training input pipeline, decoded-image cache off vs on.

    python benchmarks/data_pipeline.py [--crops 128,256] [--batch 8] [--batches 60]
                                       [--repeats 3] [--step-seconds 0.55] [--threads 4]
                                       [--cache-mb 3072] [--train-dirs /a,/b]

For each crop it builds :func:`swinjax.data.train_dataset` over the training files (default: the
default training sets), takes two batches (thread start-up), then times ``--batches`` batches
``--repeats`` times and reports the median seconds per batch. The consumer does nothing else, so
this is the pipeline's throughput on the machine's cores. "off" is ``cache_mb=0`` (every example
decodes its whole file); "on" first reads one whole epoch (every file decoded once and cached),
then is timed. ``off/on`` is the speed-up; the "% step" columns are the pipeline's seconds per
batch as a share of ``--step-seconds`` (default 0.55 s: the measured training step of the
reference model). While the trainer runs, the pipeline's decoding competes with the step for the
same cores, so that share is roughly what the input costs the training.

Measured 2026-12-03 on the 2-core CPU machine (nothing else running; 627 default training files,
0.54 GB decoded; default arguments: 60 batches x 3 repeats, 4 decoding threads; 41 s in all):

    crop  batch  off s/batch  on s/batch  off/on  off % step  on % step
     128      8       0.0470      0.0029    16.0        8.6%       0.5%
     256      8       0.0543      0.0060     9.0        9.9%       1.1%

Filling the cache costs one epoch at the "off" speed (79 batches of 8, about 4 s). A previous
run with 30 batches gave 0.0498/0.0025 (128) and 0.0440/0.0066 (256): which files a batch draws
(2 ms for a BSDS500 JPEG, about 40 ms for a 1 MP PNG) moves "off" by about 10%.
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import time
from typing import Any

from swinjax import data, imageio


def time_batches(it: Any, batches: int, repeats: int) -> float:
    """Median over ``repeats`` of the mean seconds per batch over ``batches`` batches."""
    per_batch = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(batches):
            next(it)
        per_batch.append((time.perf_counter() - start) / batches)
    return statistics.median(per_batch)


def measure(files: list[str], crop: int, args: argparse.Namespace, cache_mb: float) -> float:
    """Seconds per batch at ``crop`` with ``cache_mb`` (after one epoch when caching)."""
    it = data.train_dataset(
        files,
        crop=crop,
        global_batch=args.batch,
        seed=0,
        num_threads=args.threads,
        cache_mb=cache_mb,
    )
    try:
        warmup = 2 + (math.ceil(len(files) / args.batch) if cache_mb else 0)
        for _ in range(warmup):
            next(it)
        return time_batches(it, args.batches, args.repeats)
    finally:
        it.close()
        del it
        gc.collect()  # drop the cached images before the next measurement


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--crops", default="128,256")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=60, help="batches per timed repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--step-seconds", type=float, default=0.55)
    parser.add_argument("--threads", type=int, default=4, help="decoding threads")
    parser.add_argument("--cache-mb", type=float, default=data.DEFAULT_CACHE_MB)
    parser.add_argument("--train-dirs", default="", help="default: the default training sets")
    args = parser.parse_args()

    files = data.find_images(data.resolve_dirs(args.train_dirs, purpose="train"), purpose="train")
    decoded = 0
    for path in files:
        height, width = imageio.image_size(path)
        decoded += height * width * 3
    print(
        f"{len(files)} training files, {decoded / 1e9:.2f} GB decoded; {args.batches} batches "
        f"x {args.repeats} repeats, {args.threads} threads, step {args.step_seconds} s"
    )
    header = "crop  batch  off s/batch  on s/batch  off/on  off % step  on % step"
    rows = []
    for crop in (int(c) for c in args.crops.split(",")):
        off = measure(files, crop, args, cache_mb=0)
        on = measure(files, crop, args, cache_mb=args.cache_mb)
        step = args.step_seconds
        rows.append(
            f"{crop:4d}  {args.batch:5d}  {off:11.4f}  {on:10.4f}  {off / on:6.1f}  "
            f"{100 * off / step:9.1f}%  {100 * on / step:8.1f}%"
        )
        print(rows[-1] if len(rows) > 1 else f"{header}\n{rows[-1]}", flush=True)


if __name__ == "__main__":
    main()
