"""What caps the reference model's PSNR at high rates? Probes of the shipped model, then arms.

    nice -n 10 python scripts/high_rate_diagnosis.py [--steps 500] [--arms base,top,...]
                                                      [--workdir workdir/high-rate]

Two parts, one table each (Markdown, printed and written to ``results.json`` in the workdir):

1. **Probes** of the starting model (no training): on the validation crops (all 32 files at
   their full 256 px) at lambda 16 / 128 / 362 / 1024 and, beyond the trained range, 2048: the
   estimated bpp and PSNR as files code them (rounding around the predicted means), the PSNR of
   ``g_s`` on the *unquantized* latent (what the transforms could give with no quantization at
   all) and on the latent rounded with half the quantization step. A big gap between the first
   and the other two says the quantization step (the gain's range) caps the rate; no gap says
   the transforms do.
2. **Arms**: each continues the starting model for ``--steps`` steps (a short cosine from
   ``--lr``, the same data order and seed), changing one thing: ``base`` (the recipe as it is),
   ``top`` (every example at lambda 1024: the whole model's effort at the top, the fixed-rate
   control from the same initialisation), ``bias2`` (lambda drawn with density 2t over the
   log-range: the top octave gets 31 % of the draws, not 17 %), ``crop256`` (256-px crops,
   batch 2: equal pixels per step), ``gs_deep`` (one more Swin block in g_s's last two stages
   (at 1/4 and 1/2 resolution, where the reference has one and none), warm-started: only the new
   blocks are fresh), ``lr_low`` (peak lr 3e-5 instead of 1e-4). Each is measured as the probes
   are (estimated bpp / PSNR at the four lambdas) with its CPU time; the high-rate slope is the
   PSNR gain per doubling of lambda between 362 and 1024.

Each arm resumes from its workdir (an interrupted run continues); a finished arm is not trained
again. On two CPU cores an arm of 500 steps takes about 6 minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import resource
import sys
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from swinjax import checkpoint, data, losses, train_lib  # noqa: E402
from swinjax.config_utils import load_config  # noqa: E402
from swinjax.entropy.quantization import quantize  # noqa: E402

LAMBDAS = (16.0, 128.0, 362.0, 1024.0)
PROBE_LAMBDAS = (*LAMBDAS, 2048.0)
ARMS = ("base", "top", "bias2", "crop256", "gs_deep", "lr_low")


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system), in seconds."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def arm_config(arm: str, init: str, steps: int, lr: float) -> Any:
    """The reference config continued from ``init`` for ``steps``, with one change per arm."""
    c = load_config(str(ROOT / "configs" / "swincoder_ref.py"))
    c.crop, c.batch_size = 128, 8  # the recipe of the model's first 33,000 steps
    c.init_from = init
    c.total_steps = steps
    c.warmup_steps = max(steps // 20, 1)
    c.lr = lr
    c.eval_every = 0  # measured once at the end, on the common validation set below
    c.checkpoint_every = min(250, steps)
    c.export_on_finish = False
    c.tensorboard = False
    if arm == "top":
        c.lmbda_sampling_bias = 1e6  # t = u**1e-6: every draw at the top of the range
    elif arm == "bias2":
        c.lmbda_sampling_bias = 2.0
    elif arm == "crop256":
        c.crop, c.batch_size = 256, 2
    elif arm == "gs_deep":
        c.model.g_s.depths = (2, 1, 2, 1)
    elif arm == "lr_low":
        c.lr = 3e-5
    elif arm != "base":
        raise SystemExit(f"unknown arm {arm!r}; known: {', '.join(ARMS)}")
    return c


def validation_set(config: Any) -> list[np.ndarray]:
    """The 32 validation files at full size (256 px), batches of 8, padding dropped."""
    files = data.find_images(data.resolve_dirs(config.data.val_dirs, purpose="val"), purpose="val")
    files = files[: int(config.data.val_images)]
    out = []
    for b in data.val_batches(files, 8, 256):
        out.append(np.asarray(b["x"])[np.asarray(b["mask"])])
    return out


def probe(config: Any, params: Any, batches: list[np.ndarray], lambdas: tuple) -> dict:
    """Estimated bpp and PSNR (as coded), and g_s on unquantized / finer-quantized latents."""
    trainer = train_lib.cached_trainer(config)
    codec = trainer.eval_codec

    @jax.jit
    def finer(params: Any, x: jax.Array, lm: jax.Array) -> tuple[jax.Array, jax.Array]:
        lms = jnp.full((x.shape[0],), lm, jnp.float32)
        y = codec.apply(params, x, lms, method=codec.analysis).astype(jnp.float32)
        x_raw = codec.apply(params, y, lms, method=codec.synthesis)
        y_half = quantize(2.0 * y, "dequantize", jnp.zeros_like(y)) / 2.0
        x_half = codec.apply(params, y_half, lms, method=codec.synthesis)
        psnr = lambda xh: losses.psnr_db(losses.mse(x, jnp.clip(xh, 0, 1)))  # noqa: E731
        return psnr(x_raw), psnr(x_half)

    out: dict[str, float] = {}
    for lm in lambdas:
        bpp, psnr, raw, half = [], [], [], []
        for x in batches:
            m = jax.device_get(trainer.estimate(params, jnp.asarray(x), lm))
            bpp.append(np.asarray(m["bpp"]))
            psnr.append(np.asarray(m["psnr_db"]))
            r, h = jax.device_get(finer(params, jnp.asarray(x), jnp.float32(lm)))
            raw.append(np.asarray(r))
            half.append(np.asarray(h))
        out[f"bpp@{lm:g}"] = float(np.concatenate(bpp).mean())
        out[f"psnr@{lm:g}"] = float(np.concatenate(psnr).mean())
        out[f"psnr_unquantized@{lm:g}"] = float(np.concatenate(raw).mean())
        out[f"psnr_half_step@{lm:g}"] = float(np.concatenate(half).mean())
    out["slope_db_per_doubling"] = (out["psnr@1024"] - out["psnr@362"]) / math.log2(1024 / 362)
    out["rate_span"] = out["bpp@1024"] / out["bpp@16"]
    return out


def main(argv: list[str] | None = None) -> int:
    """Runs the probes and the arms (resuming), prints both tables, writes results.json."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--init", default="swincoder-ref", help="export or workdir to start from")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--workdir", default=str(ROOT / "workdir" / "high-rate"))
    args = p.parse_args(argv)
    root = pathlib.Path(args.workdir)
    root.mkdir(parents=True, exist_ok=True)
    res_path = root / "results.json"
    results: dict[str, Any] = json.loads(res_path.read_text()) if res_path.exists() else {}
    results.setdefault("arms", {})
    results.update(init=args.init, steps=args.steps, lr=args.lr)
    base = arm_config("base", args.init, args.steps, args.lr)
    batches = validation_set(base)
    if "probes" not in results:
        params = checkpoint.load_model(args.init).params
        print("== probes of the starting model", file=sys.stderr, flush=True)
        results["probes"] = probe(base, params, batches, PROBE_LAMBDAS)
        res_path.write_text(json.dumps(results, indent=2))
    for arm in args.arms.split(","):
        if arm in results["arms"] and results["arms"][arm].get("step") == args.steps:
            continue
        config = arm_config(arm, args.init, args.steps, args.lr)
        workdir = root / arm
        print(f"== {arm}: {args.steps} steps in {workdir}", file=sys.stderr, flush=True)
        c0, t0 = cpu_seconds(), time.perf_counter()
        train_lib.train(config, workdir)
        cpu, wall = cpu_seconds() - c0, time.perf_counter() - t0
        step = checkpoint.latest_step(workdir)
        params = checkpoint.restore_params(workdir, step, config.model)
        m = probe(config, params, batches, LAMBDAS)
        prev = results["arms"].get(arm, {})
        results["arms"][arm] = {
            "step": int(step),
            # a resumed arm adds the CPU time of this run to what an earlier run recorded
            "cpu_hours": prev.get("cpu_hours", 0.0) + cpu / 3600,
            "wall_hours": prev.get("wall_hours", 0.0) + wall / 3600,
            **m,
        }
        res_path.write_text(json.dumps(results, indent=2))
    print(tables(results))
    return 0


def tables(results: dict[str, Any]) -> str:
    """The probe table and the arm table, in Markdown."""
    pr = results["probes"]
    rows = [
        "| lambda | est. bpp | PSNR as coded | PSNR, g_s(y) unquantized | PSNR, half step |",
        "|---|---|---|---|---|",
    ]
    for lm in PROBE_LAMBDAS:
        rows.append(
            f"| {lm:g} | {pr[f'bpp@{lm:g}']:.3f} | {pr[f'psnr@{lm:g}']:.2f} | "
            f"{pr[f'psnr_unquantized@{lm:g}']:.2f} | {pr[f'psnr_half_step@{lm:g}']:.2f} |"
        )
    rows += [
        "",
        f"starting model: slope {pr['slope_db_per_doubling']:.2f} dB per doubling of lambda "
        f"(362 -> 1024), rate span {pr['rate_span']:.2f}x (16 -> 1024)",
        "",
        "| arm | steps | CPU h | lambda 16 | lambda 128 | lambda 1024 | slope dB/doubling | span |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, a in results["arms"].items():
        cells = " | ".join(
            f"{a[f'bpp@{lm:g}']:.3f} / {a[f'psnr@{lm:g}']:.2f}" for lm in (16, 128, 1024)
        )
        rows.append(
            f"| {arm} | {a['step']} | {a['cpu_hours']:.2f} | {cells} | "
            f"{a['slope_db_per_doubling']:.2f} | {a['rate_span']:.2f}x |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
