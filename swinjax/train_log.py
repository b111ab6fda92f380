"""What training reports: the terminal lines, ``metrics.jsonl`` and TensorBoard scalars."""

from __future__ import annotations

import json
import math
import pathlib
import sys
from typing import Any

import jax
import numpy as np


def format_eta(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``12s``."""
    if not math.isfinite(seconds):
        return "?"
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class MetricsWriter:
    """Writes every logged record: ``workdir/metrics.jsonl`` and TensorBoard (process 0 only).

    The JSON lines are the record of a run (a resumed run appends). TensorBoard event files go to
    ``workdir/tensorboard`` when ``tensorboard`` is on and tensorboardX is installed (the
    ``[tensorboard]`` extra): scalars under ``train/`` and ``val/`` (``val/bpp/lambda_16`` ...),
    where users of TPU pods and GPU clusters look for them.
    """

    def __init__(self, workdir: pathlib.Path, tensorboard: bool = False) -> None:
        """Opens the file for appending (a resumed run continues it)."""
        self.enabled = jax.process_index() == 0
        self.path = workdir / "metrics.jsonl"
        self.tb: Any = None
        if not self.enabled:
            return
        workdir.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                log(
                    "TensorBoard: tensorboardX is not installed (pip install "
                    "'swinjax[tensorboard]'); metrics go to metrics.jsonl only"
                )
            else:
                self.tb = SummaryWriter(str(workdir / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        """Writes one record (floats rounded for readability in the JSON lines)."""
        if not self.enabled:
            return
        clean = {
            k: (round(float(v), 6) if isinstance(v, float | np.floating) else v)
            for k, v in record.items()
        }
        with self.path.open("a") as f:
            f.write(json.dumps(clean) + "\n")
        if self.tb is not None:
            step = int(record["step"])
            for k, v in record.items():
                if k == "step" or not isinstance(v, int | float | np.number):
                    continue
                # TensorBoard tags take no "@": val_bpp@16 -> val/bpp/lambda_16.
                tag = f"val/{k[4:]}" if k.startswith("val_") else f"train/{k}"
                tag = tag.replace("@", "/lambda_")
                self.tb.add_scalar(tag, float(v), step)
            self.tb.flush()

    def close(self) -> None:
        """Closes the TensorBoard writer (the JSON lines are closed after every record)."""
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def progress_line(step: int, total: int, m: dict[str, float], steps_per_s: float) -> str:
    """The terminal progress line: step, loss parts, bpp, PSNR, steps/s, ETA."""
    eta = (total - step) / steps_per_s if steps_per_s > 0 else float("inf")
    extra = "".join(f"  {k} {m[k]:.4f}" for k in ("per", "style", "adv", "d_loss") if k in m)
    return (
        f"step {step}/{total}  loss {m['loss']:.4f}  bpp {m['bpp']:.4f}  "
        f"mse {m['mse']:.5f}  psnr {m['psnr_db']:.2f} dB  aux {m['aux_loss']:.2f}{extra}  "
        f"{steps_per_s:.2f} steps/s  ETA {format_eta(eta)}"
    )


def log(msg: str) -> None:
    """Progress output of process 0, flushed immediately."""
    if jax.process_index() == 0:
        print(msg, file=sys.stderr, flush=True)


def validation_line(step: int, v: dict[str, float]) -> str:
    """``validation at step S: lambda 16: 0.1 bpp 25.0 dB | ...`` for the terminal.

    The perceptual stages' LPIPS-Alex and DISTS follow each lambda's PSNR when present.
    """
    parts = []
    for k in v:
        if not k.startswith("val_bpp@"):
            continue
        lm = k.split("@")[1]
        part = f"lambda {lm}: {v[k]:.4f} bpp {v['val_psnr_db@' + lm]:.2f} dB"
        for name, label in (("lpips_alex", "LPIPS-Alex"), ("dists", "DISTS")):
            if f"val_{name}@{lm}" in v:
                part += f" {label} {v[f'val_{name}@{lm}']:.4f}"
        parts.append(part)
    return f"validation at step {step}: " + " | ".join(parts)
