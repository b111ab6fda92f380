"""Control experiment: does one variable-rate model reach the rates of fixed-rate models?

    python scripts/lmbda_control.py [--config configs/swincoder_ref.py] [--steps 1200]
                                    [--workdir workdir/lmbda-control]

Trains, with the same widths, data, seed and schedule (cosine over ``--steps``), one
variable-rate model over the config's lambda range and one fixed-rate model at each end of it
(the config's ``fixedL`` variant), then measures each as training validation does (estimated bpp
and PSNR with deterministic rounding on the validation crops, at min / middle / max lambda). It
prints a table and writes ``results.json`` in the workdir. The check of the variable-rate design
(SwinCoder, Li et al., CLIC 2025: one model for the whole range): at each end of the range its
rate is within 20 % of the fixed-rate model trained there.

Each arm resumes from its own workdir, so an interrupted run continues where it stopped. On two
CPU cores the default (three arms of 1,200 steps of the reference model) takes about 45 minutes.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from swinjax import checkpoint, train_lib  # noqa: E402
from swinjax.config_utils import load_config  # noqa: E402
from swinjax.lmbda import lmbda_range  # noqa: E402


def arm_config(spec: str, arg: str, steps: int) -> Any:
    """The config of one arm: ``spec`` with ``arg`` ("" or "fixedL"), a schedule of ``steps``."""
    path, _, base_arg = spec.partition(":")
    args = ",".join(a for a in (base_arg, arg) if a)
    c = load_config(f"{path}:{args}" if args else path)
    c.total_steps = steps
    c.warmup_steps = min(int(c.warmup_steps), max(steps // 10, 1))
    c.eval_every = steps
    c.checkpoint_every = min(int(c.checkpoint_every), steps)
    c.export_on_finish = False
    return c


def measure(config: Any, workdir: pathlib.Path) -> dict[str, float]:
    """Training validation of the arm's latest checkpoint (min / middle / max lambda)."""
    trainer = train_lib.Trainer(config)
    step = checkpoint.latest_step(workdir)
    params = checkpoint.restore_params(workdir, step, config.model)
    batches = train_lib.validation_batches(config)
    return {"step": int(step), **train_lib.validate(trainer, params, batches)}


def main(argv: list[str] | None = None) -> int:
    """Trains the three arms (or resumes them), measures them and prints the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "swincoder_ref.py"))
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--workdir", default=str(ROOT / "workdir" / "lmbda-control"))
    args = p.parse_args(argv)
    root = pathlib.Path(args.workdir)
    rng = lmbda_range(arm_config(args.config, "", 1))
    ends = [rng.min, rng.max]
    arms = {"variable": ""} | {f"fixed{lm:g}": f"fixed{lm:g}" for lm in ends}
    results: dict[str, Any] = {"steps": args.steps, "config": args.config, "arms": {}}
    for name, arg in arms.items():
        config = arm_config(args.config, arg, args.steps)
        workdir = root / name
        print(f"== {name}: training {args.steps} steps in {workdir}", file=sys.stderr, flush=True)
        train_lib.train(config, workdir)
        results["arms"][name] = measure(config, workdir)
    var = results["arms"]["variable"]
    rows = [
        "| lambda | fixed-rate bpp | fixed-rate PSNR dB | variable bpp | variable PSNR dB "
        "| rate ratio |",
        "|---|---|---|---|---|---|",
    ]
    ok = True
    for lm in ends:
        f = results["arms"][f"fixed{lm:g}"]
        vb, vp = var[f"val_bpp@{lm:g}"], var[f"val_psnr_db@{lm:g}"]
        ratio = vb / f[f"val_bpp@{lm:g}"]
        ok &= abs(ratio - 1) <= 0.2
        rows.append(
            f"| {lm:g} | {f[f'val_bpp@{lm:g}']:.4f} | {f[f'val_psnr_db@{lm:g}']:.2f} | "
            f"{vb:.4f} | {vp:.2f} | {ratio:.3f} |"
        )
    span = var[f"val_bpp@{ends[1]:g}"] / var[f"val_bpp@{ends[0]:g}"]
    results["variable_rate_span"] = span
    results["within_20_percent"] = bool(ok)
    print("\n".join(rows))
    print(
        f"variable-rate model: {span:.2f}x the rate at lambda {ends[1]:g} than at {ends[0]:g}; "
        f"both ends within 20 % of the fixed-rate models: {'yes' if ok else 'no'}"
    )
    root.mkdir(parents=True, exist_ok=True)
    (root / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
