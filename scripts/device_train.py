"""Continue the reference model on a lent accelerator for a fixed wall-clock budget, unattended.

Three steps, the middle one on the accelerator (the other two here)::

    # 1. here: training photos and the wheels the accelerator lacks, into an ignored folder
    python scripts/device_train.py pack --to .device
    # 2. there (one command, the folder carried with the working tree; about 9 minutes):
    python scripts/device_train.py train --data .device --out $OUT --budget-s 420
    # 3. here: the files that came back, joined into an export that loads and compresses
    python scripts/device_train.py load --parts /path/to/files --to workdir/device-export

``train`` continues ``--init`` (default: the shipped ``swincoder-ref``) with the reference recipe
at 256-px crops, a large batch and bfloat16 transforms (``config.dtype``; parameters, optimizer
and coding stay float32), stops when ``--budget-s`` seconds of the training loop are spent
(``config.max_train_seconds``), validates, and writes to ``--out`` at most 8 files, none over
16 MiB: ``train.log``, ``metrics.jsonl``, ``manifest.json`` and the export (``model.json``,
``params.msgpack`` at float16, ``tables.npz``) as one tar split into ``export.tar.partNN``. The
learning-rate schedule spans ``--steps`` (the budget times the throughput one expects, given by
the last run's ``steps/s`` in ``train.log``); stopping early leaves the cosine unfinished but
loses nothing. The export's ``history`` adds this run (its steps, the accelerator's name, its
wall seconds) to the shipped model's.

``pack`` copies a deterministic sample of the default training photos (up to ``--max-mb``) and
the first validation crops, and downloads the wheels of the packages that the accelerator's image
does not hold (grain, ml_collections, constriction and their own needs) for its Python 3.12.
``train`` then installs those wheels into ``/tmp/site`` itself when they are missing.

``--quick`` trains the tiny model for a few steps on 64-px crops on the CPU (seconds): CI runs
``pack`` (without wheels), ``train --quick`` and ``load`` end to end so that the script cannot
rot between the sessions that have an accelerator. docs/devices.md has the context.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runs from a checkout without an install
    sys.path.insert(0, str(ROOT))

PART_BYTES = 15 * 2**20  # the accelerator returns files of at most 16 MiB
MAX_FILES = 8  # and at most 8 of them
EXPORT_FILES = ("model.json", "params.msgpack", "tables.npz")
# Packages the accelerator's image lacks (its list: jax, flax, optax, orbax-checkpoint, numpy,
# pillow, absl-py, tqdm, matplotlib ... are there), with their own needs that it lacks too.
WHEELS = (
    "grain==0.2.18",
    "array-record==0.8.6",
    "portpicker==1.6.0",
    "ml_collections==1.1.0",
    "constriction==0.5.0",
    "filelock==4.3.2",
)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}


def _images(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _images_of(dirs: list[pathlib.Path], what: str, flag: str) -> list[pathlib.Path]:
    """Every image in ``dirs``; a folder without any is an error naming ``flag``."""
    files = []
    for d in dirs:
        found = _images(d)
        if not found:
            raise FileNotFoundError(f"{d}: no {what} images (set {flag})")
        files += found
    return files


def pack(
    to: pathlib.Path,
    train_dirs: list[pathlib.Path],
    val_dirs: list[pathlib.Path],
    max_mb: float,
    val_images: int,
    wheels: bool,
) -> dict[str, Any]:
    """Copies a training sample, the validation crops and (optionally) wheels into ``to``.

    The sample is a seeded shuffle of every training photo, taken in order until ``max_mb`` is
    reached, so that each source is represented about by its share of files.

    Raises:
        FileNotFoundError: a data folder is missing or holds no image.
    """
    files = _images_of(train_dirs, "training", "--train-dirs")
    random.Random(0).shuffle(files)
    budget, taken = max_mb * 2**20, []
    for f in files:
        if sum(p.stat().st_size for p in taken) + f.stat().st_size > budget:
            continue
        taken.append(f)
    val = _images_of(val_dirs, "validation", "--val-dirs")
    val = val[:val_images]
    if to.exists():
        shutil.rmtree(to / "train", ignore_errors=True)
        shutil.rmtree(to / "val", ignore_errors=True)
    for sub, group in (("train", taken), ("val", val)):
        (to / sub).mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(group):
            shutil.copyfile(f, to / sub / f"{i:04d}-{f.name}")
    if wheels:
        (to / "whl").mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        cmd += ["--python-version", "3.12", "--implementation", "cp", "-d", str(to / "whl")]
        for tag in ("manylinux_2_28", "manylinux_2_27", "manylinux_2_17", "manylinux2014"):
            cmd += ["--platform", f"{tag}_x86_64"]
        subprocess.run(cmd + ["--platform", "any", *WHEELS], check=True)
    size = sum(p.stat().st_size for p in to.rglob("*") if p.is_file())
    summary = {"train": len(taken), "val": len(val), "mib": round(size / 2**20, 1)}
    print(f"packed {summary['train']} training photos, {summary['val']} validation crops "
          f"({summary['mib']} MiB in all) into {to}")  # fmt: skip
    return summary


def _ensure_packages(data: pathlib.Path) -> None:
    """Installs the carried wheels into /tmp/site when a needed package cannot be imported."""
    import importlib.util

    missing = [m for m in ("grain", "ml_collections", "constriction") if not
               importlib.util.find_spec(m)]  # fmt: skip
    if not missing:
        return
    wheels = sorted((data / "whl").glob("*.whl"))
    if not wheels:
        raise SystemExit(
            f"error: {', '.join(missing)} not installed and no wheels in {data / 'whl'} "
            "(run `python scripts/device_train.py pack` here first)"
        )
    site = pathlib.Path("/tmp/site")
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
           "--no-compile", "--target", str(site), *map(str, wheels)]  # fmt: skip
    subprocess.run(cmd, check=True)
    sys.path.insert(0, str(site))


def device_config(args: argparse.Namespace, data: pathlib.Path) -> Any:
    """The reference recipe for an accelerator (or the tiny model for ``--quick``)."""
    from swinjax.config_utils import load_config

    if args.quick:
        c = load_config(str(ROOT / "configs" / "tiny.py"))
        c.crop, c.batch_size = 64, 2
        c.log_every, c.eval_every = 2, 1000
        c.data.val_images = 4
    else:
        c = load_config(str(ROOT / "configs" / "swincoder_ref.py"))
        c.crop, c.batch_size = 256, int(args.batch)
        c.dtype = args.dtype
        c.log_every, c.eval_every = 100, 1_000_000  # validated once, at the last step
        c.data.val_images = 32
        c.data.num_workers = int(args.workers)
    c.init_from = args.init if args.init is not None else ("" if args.quick else "swincoder-ref")
    c.total_steps = int(args.steps)
    c.warmup_steps = max(min(200, c.total_steps // 10), 1)
    c.lr = float(args.lr)
    c.max_train_seconds = float(args.budget_s)
    c.checkpoint_every = 1_000_000  # once, at the end: the machine's disk is gone afterwards
    c.export_on_finish = False  # exported below at float16, with the accelerator's history
    c.tensorboard = False
    c.data.train_dirs = str(data / "train")
    c.data.val_dirs = str(data / "val")
    return c


class _Tee(io.TextIOBase):
    """Writes to the console and to the log file: the log is what comes back."""

    def __init__(self, *streams: Any) -> None:
        self.streams = streams

    def write(self, s: str) -> int:
        for st in self.streams:
            st.write(s)
            st.flush()
        return len(s)


def split_export(export_dir: pathlib.Path, out: pathlib.Path) -> dict[str, Any]:
    """The export as a tar in parts of at most :data:`PART_BYTES`; returns the manifest."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in EXPORT_FILES:
            tar.add(export_dir / name, arcname=name)
    blob = buf.getvalue()
    parts = []
    for i in range(0, len(blob), PART_BYTES):
        name = f"export.tar.part{i // PART_BYTES:02d}"
        (out / name).write_bytes(blob[i : i + PART_BYTES])
        parts.append(name)
    return {"parts": parts, "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}


def train(args: argparse.Namespace) -> int:
    """The accelerator's command: train, validate, export, split; returns the exit status."""
    data, out = pathlib.Path(args.data).resolve(), pathlib.Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    _ensure_packages(data)
    if args.quick:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    from swinjax import checkpoint, train_lib
    from swinjax.export import export

    config = device_config(args, data)
    work = pathlib.Path(tempfile.mkdtemp(prefix="device-train-"))
    t0, cpu0 = time.perf_counter(), time.process_time()
    with (
        (out / "train.log").open("w") as logf,
        contextlib.redirect_stdout(_Tee(sys.stdout, logf)),
        contextlib.redirect_stderr(_Tee(sys.stderr, logf)),  # training's progress lines
    ):
        device = jax.devices()[0]
        print(f"device: {device.platform} {device.device_kind} x{jax.device_count()}; "
              f"jax {jax.__version__}; budget {args.budget_s:g} s; {args.steps} scheduled steps "
              f"of batch {config.batch_size} at {config.crop} px, {config.dtype}")  # fmt: skip
        final = train_lib.train(config, work)
        step = checkpoint.latest_step(work)
        if step is None:
            print("error: training ended without a checkpoint")
            return 1
        wall = time.perf_counter() - t0
        params = checkpoint.restore_params(work, step, config.model)
        hist = train_lib.run_history(config, step, time.process_time() - cpu0)
        where = f"{device.platform} {device.device_kind}"
        hist["runs"][-1].update(device=where, wall_s=round(wall))
        exp = export(config, params, work / "export", step, param_dtype=args.param_dtype,
                     history=hist)  # fmt: skip
        print(f"exported step {step} ({hist['total_steps']} steps in all) after {wall:.0f} s; "
              f"last loss {final.get('loss', float('nan')):.4f}")  # fmt: skip
    shutil.copyfile(work / "metrics.jsonl", out / "metrics.jsonl")
    manifest = split_export(exp, out)
    val = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    manifest.update(
        step=step,
        total_steps=hist["total_steps"],
        device=where,
        wall_s=round(wall, 1),
        validation={k: v for r in val for k, v in r.items() if k.startswith("val_")},
    )
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    files = [p for p in out.iterdir() if p.is_file()]
    too_big = [p.name for p in files if p.stat().st_size > 16 * 2**20]
    if len(files) > MAX_FILES or too_big:
        print(f"error: {len(files)} files in {out} (at most {MAX_FILES}), too big: {too_big}")
        return 1
    print(f"wrote {len(files)} files to {out}: {', '.join(sorted(p.name for p in files))}")
    if not args.keep_workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def load(parts: pathlib.Path, to: pathlib.Path) -> pathlib.Path:
    """Joins the files that came back into an export directory and checks that it loads.

    Raises:
        ValueError: a part is missing or the joined tar does not match the manifest's checksum,
            or it holds anything but an export's three files.
    """
    from swinjax.checkpoint import load_model

    manifest = json.loads((parts / "manifest.json").read_text())
    missing = [p for p in manifest["parts"] if not (parts / p).is_file()]
    if missing:
        raise ValueError(f"{parts}: missing {', '.join(missing)}")
    blob = b"".join((parts / p).read_bytes() for p in manifest["parts"])
    if hashlib.sha256(blob).hexdigest() != manifest["sha256"]:
        raise ValueError(f"{parts}: the joined parts do not match the manifest's sha256")
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        members = tar.getmembers()
        names = sorted(m.name for m in members)
        if names != sorted(EXPORT_FILES) or not all(m.isfile() for m in members):
            raise ValueError(f"{parts}: the tar holds {names}, not an export's files")
        to.mkdir(parents=True, exist_ok=True)
        for m in members:
            f = tar.extractfile(m)
            assert f is not None
            (to / m.name).write_bytes(f.read())
    model = load_model(to)
    print(f"{to}: {model.model_id} step {model.step}, {manifest.get('device', '?')}, "
          f"{manifest.get('wall_s', '?')} s")  # fmt: skip
    return to


def main(argv: list[str] | None = None) -> int:
    """``pack``, ``train`` or ``load`` (see the module docstring); returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pk = sub.add_parser("pack", help="training photos and wheels into a folder to carry")
    pk.add_argument("--to", default=".device")
    pk.add_argument("--train-dirs", default="", help="comma-separated (default: the training set)")
    pk.add_argument("--val-dirs", default="", help="comma-separated (default: the validation set)")
    pk.add_argument(
        "--max-mb",
        type=float,
        default=22.0,
        help="training photos (the working tree travels in 64 MiB)",
    )
    pk.add_argument("--val-images", type=int, default=32)
    pk.add_argument("--no-wheels", action="store_true", help="no pip download (CI, CPU runs)")
    tr = sub.add_parser("train", help="on the accelerator: train for --budget-s, write --out")
    tr.add_argument("--data", default=".device")
    tr.add_argument("--out", default=os.environ.get("OUT", "device-out"))
    tr.add_argument("--init", help="export or shipped name (default: swincoder-ref; quick: none)")
    tr.add_argument("--budget-s", type=float, default=420.0)
    tr.add_argument("--steps", type=int, default=6000, help="steps the lr schedule spans")
    tr.add_argument("--batch", type=int, default=32)
    tr.add_argument("--lr", type=float, default=1e-4)
    tr.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    tr.add_argument("--param-dtype", default="float16", choices=("float16", "float32"))
    tr.add_argument("--workers", type=int, default=8)
    tr.add_argument("--quick", action="store_true", help="tiny model on the CPU, seconds")
    tr.add_argument("--keep-workdir", action="store_true")
    ld = sub.add_parser("load", help="here: join the returned files into an export")
    ld.add_argument("--parts", required=True)
    ld.add_argument("--to", required=True)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.cmd == "pack":
            from swinjax import data as swdata

            def dirs(s: str, purpose: str) -> list[pathlib.Path]:
                return [pathlib.Path(d) for d in swdata.resolve_dirs(s, purpose=purpose)]

            pack(pathlib.Path(args.to), dirs(args.train_dirs, "train"),
                 dirs(args.val_dirs, "val"), args.max_mb, args.val_images,
                 not args.no_wheels)  # fmt: skip
            return 0
        if args.cmd == "train":
            return train(args)
        load(pathlib.Path(args.parts), pathlib.Path(args.to))
        return 0
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
