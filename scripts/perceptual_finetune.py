"""SwinCoder's perceptual stages on a shipped model, in one command: stage 2, stage 3, a decoder.

    nice -n 10 python scripts/perceptual_finetune.py [--base swincoder-ref]
        [--stage2-steps 1500] [--stage3-steps 300] [--workdir workdir] [--ship]

Fine-tunes the synthesis transform of ``--base`` with the encoder, hyperprior and entropy models
frozen (Li et al., CLIC 2025, §II-B, eqs. 1-2; ``configs/swincoder_stage2.py:ref`` and
``swincoder_stage3.py:ref``): stage 2 (``150 MSE + 0.1 L_per + 1e4 L_style``, VGG16: the
paper's terms at weights measured for this implementation's normalisation, see the stage-2
config) from the base, then stage 3 (``+ 0.01 L_adv``, U-Net discriminator) from the stage-2
checkpoint that validation ranks best. ``--style-weight`` / ``--perceptual-weight`` override the
weights; ``--compare-style W1,W2,...`` runs stage 2 alone at each style weight instead and prints
the arms' validation table (how the weights were chosen, docs/perceptual.md).

Each stage resumes from its workdir (``<workdir>/stage2-ref``, ``stage3-ref``), so an
interrupted run continues, and a finished stage is not trained again.

Steps are chosen by the validation curves, not by a fixed count: every ``eval_every`` steps
training validates LPIPS-Alex and DISTS at lambda 16 / 128 / 1024 on the validation crops; of the
kept checkpoints, the one with the lowest mean of (LPIPS-Alex + DISTS) over the three lambdas is
taken (the base model's own values are the first row of the table). The chosen parameters are
written as a decoder export (:func:`swinjax.export.export_decoder`: only g_s, paired with the
base) to ``<workdir>/<base>-perceptual``, or with ``--ship`` to
``swinjax/weights/<base>-perceptual`` (the shipped perceptual decoder:
``python -m swinjax decompress --decoder perceptual``). Prints the validation table (Markdown).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import sys
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from swinjax import checkpoint, export, train_lib  # noqa: E402
from swinjax.config_utils import load_config  # noqa: E402

LAMBDAS = ("16", "128", "1024")


def cpu_hours() -> float:
    """CPU time of this process so far (user + system), in hours."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return (r.ru_utime + r.ru_stime) / 3600


def stage_config(
    stage: int,
    init: str,
    steps: int,
    style_weight: float | None = None,
    perceptual_weight: float | None = None,
) -> Any:
    """The ``ref`` config of ``stage``, started from ``init``, for ``steps`` steps.

    ``style_weight`` and ``perceptual_weight`` replace the config's ``perceptual.style_weight``
    and ``perceptual.perceptual_weight`` when given.
    """
    c = load_config(str(ROOT / "configs" / f"swincoder_stage{stage}.py") + ":ref")
    c.init_from = init
    if style_weight is not None:
        c.perceptual.style_weight = float(style_weight)
    if perceptual_weight is not None:
        c.perceptual.perceptual_weight = float(perceptual_weight)
    c.total_steps = steps
    c.warmup_steps = min(int(c.warmup_steps), max(steps // 10, 1))
    c.eval_every = min(int(c.eval_every), steps)
    c.checkpoint_every = c.eval_every
    c.keep_checkpoints = 12
    c.export_on_finish = False
    return c


def score(v: dict[str, float]) -> float:
    """What the step is chosen by: mean over the lambdas of LPIPS-Alex + DISTS (lower wins)."""
    return sum(v[f"val_lpips_alex@{lm}"] + v[f"val_dists@{lm}"] for lm in LAMBDAS) / len(LAMBDAS)


def validations(workdir: pathlib.Path) -> dict[int, dict[str, float]]:
    """``{step: validation record}`` from a training workdir's metrics.jsonl."""
    out = {}
    path = workdir / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        r = json.loads(line)
        if "val_dists@16" in r:
            out[int(r["step"])] = r
    return out


def best_checkpoint(workdir: pathlib.Path) -> tuple[int, dict[str, float]]:
    """The kept checkpoint step with the lowest :func:`score`, and its validation."""
    vals = validations(workdir)
    kept = set(checkpoint.checkpoint_manager(workdir, 12).all_steps())
    ranked = sorted((score(v), s) for s, v in vals.items() if s in kept)
    if not ranked:
        raise SystemExit(f"{workdir}: no validated checkpoint to choose from")
    step = ranked[0][1]
    return step, vals[step]


def main(argv: list[str] | None = None) -> int:
    """Runs both stages (resuming), chooses the step, writes the decoder export."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default="swincoder-ref", help="shipped model name or export")
    p.add_argument("--stage2-steps", type=int, default=1500)
    p.add_argument("--stage3-steps", type=int, default=300)
    p.add_argument("--workdir", default=str(ROOT / "workdir"))
    p.add_argument("--ship", action="store_true", help="write to swinjax/weights/ (shipped)")
    p.add_argument(
        "--style-weight",
        type=float,
        default=None,
        help="weight of L_style in both stages (default: the config's; see its docstring)",
    )
    p.add_argument(
        "--perceptual-weight",
        type=float,
        default=None,
        help="weight of L_per in both stages (default: the config's)",
    )
    p.add_argument(
        "--compare-style",
        default="",
        metavar="W1,W2,...",
        help="instead: stage 2 alone for --stage2-steps at each style weight (one workdir each "
        "under --workdir), then the validation table of the arms",
    )
    args = p.parse_args(argv)
    root = pathlib.Path(args.workdir)
    base = checkpoint.load_model(args.base)
    name = base.path.name if base.path else args.base
    table = root / f"{name}-perceptual-validation.json"
    record: dict[str, Any] = json.loads(table.read_text()) if table.exists() else {}
    if "base" not in record:
        c = stage_config(2, args.base, args.stage2_steps)
        trainer = train_lib.cached_trainer(c)
        params = jax.device_put(base.params, trainer.state_shardings.params)
        record["base"] = train_lib.validate(trainer, params, train_lib.validation_batches(c))
        root.mkdir(parents=True, exist_ok=True)
        table.write_text(json.dumps(record, indent=2))
    if args.compare_style:
        return compare_style(args, root, record["base"])
    hours = record.get("cpu_hours", {})
    w2, w3 = root / "stage2-ref", root / "stage3-ref"
    c2 = stage_config(2, args.base, args.stage2_steps, args.style_weight, args.perceptual_weight)
    h0 = cpu_hours()
    train_lib.train(c2, w2)
    hours["stage2"] = hours.get("stage2", 0.0) + cpu_hours() - h0
    s2, _ = best_checkpoint(w2)
    init3 = root / f"stage2-ref-export-{s2}"
    if not (init3 / "model.json").is_file():
        export.export(c2, checkpoint.restore_params(w2, s2, c2.model), init3, s2)
    chosen = ("stage 2", s2, w2, c2)
    if args.stage3_steps > 0:
        c3 = stage_config(
            3, str(init3), args.stage3_steps, args.style_weight, args.perceptual_weight
        )
        h0 = cpu_hours()
        train_lib.train(c3, w3)
        hours["stage3"] = hours.get("stage3", 0.0) + cpu_hours() - h0
        s3, v3 = best_checkpoint(w3)
        if score(v3) < score(validations(w2)[s2]):
            chosen = ("stage 3", s3, w3, c3)
    label, step, workdir, config = chosen
    params = checkpoint.restore_params(workdir, step, config.model)
    out = (ROOT / "swinjax" / "weights" if args.ship else root) / f"{name}-perceptual"
    training = {
        "base": name,
        "base_step": int(export.history_of(base.path).get("total_steps", base.step)),
        "stage2_steps": s2,
        "stage3_steps": step if label == "stage 3" else 0,
        "chosen": f"{label} step {step}",
        "cpu_core_hours": round(sum(hours.values()), 2),
    }
    export.export_decoder(base, params, out, step, "perceptual", name, training)
    record.update(cpu_hours=hours, chosen=training)
    record["stage2"] = {str(k): v for k, v in validations(w2).items()}
    record["stage3"] = {str(k): v for k, v in validations(w3).items()}
    root.mkdir(parents=True, exist_ok=True)
    table.write_text(json.dumps(record, indent=2))
    print(format_table(record))
    print(f"wrote the perceptual decoder ({label}, step {step}) to {out}")
    return 0


def compare_style(args: argparse.Namespace, root: pathlib.Path, base: dict[str, float]) -> int:
    """Stage 2 at each weight of ``--compare-style`` for the same steps; prints their table.

    The arms differ only in ``perceptual.style_weight`` (same base, data order, schedule and
    steps), so their validation rows at the last step compare the weights at equal CPU time.
    """
    rows = [*_header("arm"), _row("base (MSE decoder)", "-", base)]
    hours = {}
    per = args.perceptual_weight
    for w in (float(v) for v in args.compare_style.split(",")):
        workdir = root / (f"style-{w:g}" + ("" if per is None else f"-per-{per:g}"))
        arm = f"style weight {w:g}" + ("" if per is None else f", L_per weight {per:g}")
        h0 = cpu_hours()
        train_lib.train(stage_config(2, args.base, args.stage2_steps, w, per), workdir)
        hours[w] = cpu_hours() - h0
        vals = validations(workdir)
        rows += [_row(arm, str(step), vals[step]) for step in sorted(vals)]
    print("\n".join(rows))
    print(
        "CPU-core-hours per arm (this run): "
        + ", ".join(f"{w:g}: {h:.2f}" for w, h in hours.items())
    )
    return 0


def _header(first: str) -> list[str]:
    """The table's head and separator lines, the first column named ``first``."""
    cols = " | ".join(f"lambda {lm}: PSNR / LPIPS-Alex / DISTS" for lm in LAMBDAS)
    return [f"| {first} | step | {cols} |", "|---|---|" + "---|" * len(LAMBDAS)]


def _row(stage: str, step: str, v: dict[str, float]) -> str:
    """One table row: PSNR / LPIPS-Alex / DISTS at each validation lambda."""
    cells = " | ".join(
        f"{v[f'val_psnr_db@{lm}']:.2f} / {v[f'val_lpips_alex@{lm}']:.4f} / "
        f"{v[f'val_dists@{lm}']:.4f}"
        for lm in LAMBDAS
    )
    return f"| {stage} | {step} | {cells} |"


def format_table(record: dict[str, Any]) -> str:
    """The validation curves: PSNR / LPIPS-Alex / DISTS at each lambda, per stage and step."""
    rows = [*_header("stage"), _row("base (MSE decoder)", "-", record["base"])]
    for stage in ("stage2", "stage3"):
        for step, v in sorted(record.get(stage, {}).items(), key=lambda kv: int(kv[0])):
            rows.append(_row(stage.replace("stage", "stage "), step, v))
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
